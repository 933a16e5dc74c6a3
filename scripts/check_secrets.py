#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fail when a tracked file holds a secret that .secrets.baseline does not list.

detect-secrets' own pre-commit hook rewrites the baseline (and fails) whenever a listed finding
moves to another line, which would make CI edit the tree and fail on unrelated changes. This check
compares findings by file, type and hashed value only, and never writes: a reviewed finding may
move freely, a new one fails until it is removed or reviewed into the baseline with
`detect-secrets scan --baseline .secrets.baseline` (docs/ci.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from detect_secrets.core import baseline
from detect_secrets.core.secrets_collection import SecretsCollection
from repository import tracked_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=".secrets.baseline")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    baseline_path = root / args.baseline
    if not baseline_path.is_file():
        print(f"check-secrets: {args.baseline} is missing", file=sys.stderr)
        return 1
    # Paths relative to the repository, as the baseline's file names and --exclude-files filter are.
    os.chdir(root)
    # Loading the baseline also configures the plugins and filters it was made with.
    known = baseline.load(baseline.load_from_file(args.baseline), args.baseline)
    found = SecretsCollection()
    found.scan_files(*tracked_files(root))
    new = sorted(found - known, key=lambda item: (item[0], item[1].line_number or 0))
    if not new:
        return 0
    for filename, secret in new:
        print(f"{filename}:{secret.line_number}: {secret.type}", file=sys.stderr)
    print(
        f"check-secrets: {len(new)} finding(s) not in {args.baseline}: remove the secret, or if it is "
        "not one, review it into the baseline (docs/ci.md)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
