#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fail when the lock files do not match pyproject.toml: a dependency missing from a lock, pinned
to a version its requirement excludes, or pinned without hashes. Regenerate with `make lock`.

A fast, offline check (pip-compile itself needs the index): it catches the usual mistake, a
dependency added to pyproject.toml without `make lock`.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")


def pins(lock: Path) -> tuple[dict[str, str], list[str]]:
    """name -> pinned version, and the names pinned without a hash."""
    found: dict[str, str] = {}
    unhashed: list[str] = []
    lines = lock.read_text().splitlines()
    for number, line in enumerate(lines):
        if match := PIN.match(line):
            name = canonicalize_name(match.group(1))
            found[name] = match.group(2)
            following = lines[number + 1] if number + 1 < len(lines) else ""
            if "--hash=sha256:" not in line + following:
                unhashed.append(name)
    return found, unhashed


def problems(root: Path) -> list[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    locks = {
        "requirements.lock": project["dependencies"],
        "requirements-dev.lock": project["dependencies"] + project["optional-dependencies"]["dev"],
    }
    found: list[str] = []
    for name, requirements in locks.items():
        if not (root / name).is_file():
            found.append(f"{name} is missing")
            continue
        pinned, unhashed = pins(root / name)
        found += [f"{name}: {package} has no hash" for package in unhashed]
        for line in requirements:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            version = pinned.get(canonicalize_name(requirement.name))
            if version is None:
                found.append(f"{name}: {requirement.name} is not pinned")
            elif not requirement.specifier.contains(version, prereleases=True):
                found.append(f"{name}: {requirement.name}=={version} does not satisfy {requirement}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd())
    found = problems(parser.parse_args(argv).root)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        print("check-lock: run `make lock` and commit the lock files", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
