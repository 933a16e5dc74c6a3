# SPDX-License-Identifier: Apache-2.0
"""Bastion: a security-hardened backend for AI chat applications."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bastion")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
