# SPDX-License-Identifier: Apache-2.0
"""Metrics of several worker processes (``bastion serve --workers N``), merged for each scrape.

prometheus_client's multiprocess mode: with PROMETHEUS_MULTIPROC_DIR in a process's environment
when the library is first imported, every metric value lives in a per-process memory-mapped file
in that directory (``counter_<pid>.db``, ``gauge_livemostrecent_<pid>.db``, ...) instead of in
memory, and ``MultiProcessCollector`` sums them (gauges by their ``multiprocess_mode``). The
library picks this once, at import, from the environment: setting the variable later in a running
process has no effect, which is why ``bastion serve`` sets it before it starts its workers.

Each app still builds its own registry (names are checked there, and a single process uses it as
before); in multiprocess mode its scrape is rendered from the directory instead, so whichever
worker answers shows every worker's counts.

A worker that stops cleanly takes its live gauges with it (``forget``). One that died (killed,
crashed) is noticed at the next scrape: live-gauge files of processes that no longer exist are
removed then. Its counters and histograms are kept, so totals never go backwards when a worker
is replaced.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = ["WorkerFiles", "in_multiprocess_mode", "new_directory"]

_LIVE_GAUGE_FILES = "gauge_live*_*.db"


def in_multiprocess_mode() -> bool:
    """Whether prometheus_client chose its file-backed values when this process imported it."""
    return bool(getattr(prometheus_values.ValueClass, "_multiprocess", False))


def new_directory() -> Path:
    """A fresh, empty directory for one run's worker files, readable by this user only (0700).

    Never reused: a directory left by an earlier run would add its counts to this one's.
    """
    return Path(tempfile.mkdtemp(prefix="bastion-metrics-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WorkerFiles:
    """The files every worker writes under ``path``, rendered as one exposition."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(self.registry, path=str(path))  # type: ignore[no-untyped-call]

    def forget_dead_workers(self) -> list[int]:
        """Remove the live gauges of processes that no longer exist; their process ids."""
        dead: set[int] = set()
        for file in self.path.glob(_LIVE_GAUGE_FILES):
            owner = file.stem.rpartition("_")[2]
            if owner.isdigit() and not _alive(int(owner)):
                dead.add(int(owner))
        for pid in dead:
            self.forget(pid)
        return sorted(dead)

    def forget(self, pid: int) -> None:
        """Drop ``pid``'s live gauges (it stopped); its counters and histograms stay in the totals."""
        mark_process_dead(pid, str(self.path))  # type: ignore[no-untyped-call]

    async def sample(self, state: object) -> None:
        """Nothing to sample here: each worker samples its own gauges into its files."""

    def render(self) -> bytes:
        self.forget_dead_workers()
        return generate_latest(self.registry)
