# SPDX-License-Identifier: Apache-2.0
"""What the repository checks read: the files git tracks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def tracked_files(root: Path) -> list[str]:
    """The files git tracks under ``root`` (relative paths), those present in the tree."""
    git = shutil.which("git")
    if git is None:
        raise SystemExit("git is not installed: the repository checks list the files git tracks")
    listed = subprocess.run([git, "ls-files", "-z"], cwd=root, capture_output=True, check=True)  # noqa: S603
    return [name for name in sorted(listed.stdout.decode().split("\0")) if name and (root / name).is_file()]
