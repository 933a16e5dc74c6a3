# SPDX-License-Identifier: Apache-2.0
"""Encrypted database backups: ``bastion db backup`` and ``bastion db restore`` (docs/backups.md)."""
