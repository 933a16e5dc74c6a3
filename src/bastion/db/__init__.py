# SPDX-License-Identifier: Apache-2.0
"""Storage: declarative base, engines, units of work and migrations."""
