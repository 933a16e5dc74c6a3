# SPDX-License-Identifier: Apache-2.0
"""The suite on several pytest-xdist workers (``make test``: two): the tests that share a worker.

A test marked ``xdist_group(NAME)`` runs on the one worker that runs every test of NAME, one after
the other in their order (``--dist loadgroup``). pytest-xdist 3.8 carries a test's group from the
worker that collected it to the scheduling process inside the test's node id, which it rewrites;
pytest 9.2's node ids no longer take that rewrite, and every group is dropped without a word
(pytest-xdist issue 1386). So each worker writes the groups of the tests it collected to a file
the scheduling process named, and its scheduler (xdist's own for loadgroup) reads them there.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

GROUPS_FILE = "bastion_xdist_groups"  # the worker's input naming the file it writes
_FOLDER = pytest.StashKey[Path]()


def group_of(item: pytest.Item) -> str | None:
    """The test's group, named as pytest-xdist names it (several marks: their names joined)."""
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "_".join(sorted(names)) or None


def write_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: the group of each grouped test it collected, to the file the scheduler reads."""
    path = getattr(config, "workerinput", {}).get(GROUPS_FILE)
    if path is not None:
        groups = {item.nodeid: group for item in items if (group := group_of(item)) is not None}
        Path(path).write_text(json.dumps(groups))


def name_groups_file(node: Any) -> None:
    """In the scheduling process, for each worker it starts: the file that worker writes."""
    config: pytest.Config = node.config
    if _FOLDER not in config.stash:
        config.stash[_FOLDER] = Path(tempfile.mkdtemp(prefix="bastion-xdist-groups-"))
    node.workerinput[GROUPS_FILE] = str(config.stash[_FOLDER] / f"{node.workerinput['workerid']}.json")


def remove_groups_files(config: pytest.Config) -> None:
    if _FOLDER in config.stash:
        shutil.rmtree(config.stash[_FOLDER], ignore_errors=True)


def scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's loadgroup scheduler, taking each test's group from the files the workers wrote.

    It runs once every worker has collected (and so written its file); a test without a group is a
    unit of its own, sent to whichever worker is free."""
    from xdist.scheduler import LoadGroupScheduling

    class FileGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def __init__(self, config: pytest.Config, log: Any) -> None:
            super().__init__(config, log)
            self.groups: dict[str, str] = {}

        def schedule(self) -> None:
            folder = config.stash.get(_FOLDER, None)
            if self.collection is None and folder is not None:  # the first call
                self.groups = {}
                for path in sorted(folder.glob("*.json")):
                    self.groups.update(json.loads(path.read_text()))
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            return self.groups.get(nodeid) or str(super()._split_scope(nodeid))

    return FileGroupScheduling(config, log)
