# SPDX-License-Identifier: Apache-2.0
"""The repository guards of `make check` on a scratch copy of the repository: each passes on the
tree as it is and fails on the mistake it exists for (a committed secret, a source file without the
SPDX header, a dependency added without `make lock`)."""

from __future__ import annotations

import secrets
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.crypto.material import token

ROOT = Path(__file__).resolve().parents[2]


def git(copy: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=copy,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The tracked files of this tree (as they are now, edits included) in a new repository."""
    copy = tmp_path / "repo"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        if name.startswith(("data/", "tests/data/")) or not (ROOT / name).is_file():
            continue  # data files are not checked, and are large
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", "scratch")
    return copy


def commit(copy: Path, name: str, content: str) -> None:
    (copy / name).parent.mkdir(parents=True, exist_ok=True)
    (copy / name).write_text(content)
    git(copy, "add", name)
    git(copy, "commit", "-q", "-m", f"add {name}")


def check(copy: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(copy / "scripts" / script), "--root", str(copy)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_source_file_without_the_header_fails(scratch: Path) -> None:
    assert check(scratch, "check_license_headers.py").returncode == 0
    commit(scratch, "src/bastion/unlicensed.py", '"""A module without the header."""\n')
    commit(scratch, "scripts/tool", "#!/bin/sh\necho no header\n")
    commit(scratch, "scripts/licensed", "#!/bin/sh\n# SPDX-License-Identifier: Apache-2.0\necho ok\n")
    commit(scratch, "docs/notes.md", "Documentation needs no header.\n")
    failed = check(scratch, "check_license_headers.py")
    assert failed.returncode == 1
    named = [line.split(":")[0] for line in failed.stderr.splitlines() if "does not start" in line]
    assert named == ["scripts/tool", "src/bastion/unlicensed.py"]


def test_a_committed_secret_fails(scratch: Path) -> None:
    # Built at run time so that this file itself holds no secret-shaped literal.
    access_key = "AKIA" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(16))
    commit(
        scratch,
        "src/bastion/leaked.py",
        f'AWS_ACCESS_KEY_ID = "{access_key}"\nupstream_api_key = "{token()}"\n',
    )
    failed = check(scratch, "check_secrets.py")
    assert failed.returncode == 1, failed.stderr
    findings = [line for line in failed.stderr.splitlines() if line.startswith("src/")]
    assert findings and all(line.startswith("src/bastion/leaked.py:") for line in findings), failed.stderr
    assert any("AWS Access Key" in line for line in findings)
    assert "not in .secrets.baseline" in failed.stderr
    # Only the new file is reported: every finding already reviewed stays quiet, wherever it moved.
    git(scratch, "rm", "-q", "src/bastion/leaked.py")
    git(scratch, "commit", "-q", "-m", "remove the leak")
    settings = scratch / "src/bastion/settings.py"
    settings.write_text("# moved down a line\n" + settings.read_text())
    passed = check(scratch, "check_secrets.py")
    assert passed.returncode == 0, passed.stderr


def test_a_dependency_added_without_relocking_fails(scratch: Path) -> None:
    assert check(scratch, "check_lock.py").returncode == 0
    pyproject = scratch / "pyproject.toml"
    added = pyproject.read_text().replace('    "numpy>=', '    "leftpad-unlocked>=1.0",\n    "numpy>=', 1)
    pyproject.write_text(added)
    failed = check(scratch, "check_lock.py")
    assert failed.returncode == 1
    assert "requirements.lock: leftpad-unlocked is not pinned" in failed.stderr
    assert "requirements-dev.lock: leftpad-unlocked is not pinned" in failed.stderr
