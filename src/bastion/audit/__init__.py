# SPDX-License-Identifier: Apache-2.0
"""Audit trail: who did what security-relevant thing, when, from where (ids, never content)."""
