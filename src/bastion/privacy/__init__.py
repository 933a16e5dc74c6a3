# SPDX-License-Identifier: Apache-2.0
"""The user's rights and retention: export of an account, its erasure, the scheduled purges."""
