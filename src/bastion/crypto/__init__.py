# SPDX-License-Identifier: Apache-2.0
"""Key material, field encryption and signatures."""
