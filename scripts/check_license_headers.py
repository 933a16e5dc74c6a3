#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fail when a tracked source file does not start with the SPDX license header.

Source means code and configuration: Python, shell, TOML, YAML, templates, web assets, the
Makefile, Dockerfile and scripts with a shebang. The header is on the first line, or the second
after a shebang. Data (data/, tests/data/), documentation and lock files are not source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repository import tracked_files

HEADER = "SPDX-License-Identifier: Apache-2.0"
SUFFIXES = frozenset(
    {".py", ".pyi", ".sh", ".toml", ".yaml", ".yml", ".mako", ".cfg", ".ini", ".js", ".css", ".html"}
)
NAMES = frozenset({"Makefile", "Dockerfile"})
NOT_SOURCE = ("data/", "tests/data/")


def is_source(path: Path, name: str) -> bool:
    if name.startswith(NOT_SOURCE):
        return False
    if path.suffix in SUFFIXES or path.name in NAMES:
        return True
    with path.open("rb") as handle:
        return handle.read(2) == b"#!"


def has_header(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = [handle.readline() for _ in range(2)]
    first = 1 if lines[0].startswith("#!") else 0
    return HEADER in lines[first]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd())
    root: Path = parser.parse_args(argv).root.resolve()
    missing = [
        name for name in tracked_files(root) if is_source(root / name, name) and not has_header(root / name)
    ]
    for name in missing:
        print(f"{name}: does not start with '# {HEADER}'", file=sys.stderr)
    if missing:
        print(f"check-license-headers: {len(missing)} file(s) without the header", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
