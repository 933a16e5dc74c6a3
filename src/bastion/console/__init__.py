# SPDX-License-Identifier: Apache-2.0
"""The admin web console at ``/admin``: pages and ES modules shipped in the package (docs/console.md)."""

from __future__ import annotations

from bastion.console.pages import PAGES, console_router

__all__ = ["PAGES", "console_router"]
