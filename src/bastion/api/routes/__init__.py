# SPDX-License-Identifier: Apache-2.0
"""One router per resource."""
