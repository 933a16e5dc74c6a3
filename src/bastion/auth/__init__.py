# SPDX-License-Identifier: Apache-2.0
"""Identity: who is calling, and what they may do."""
