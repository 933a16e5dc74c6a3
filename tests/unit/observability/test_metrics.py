# SPDX-License-Identifier: Apache-2.0
"""The registry per app, bounded labels, the no-op default and the metered provider."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from bastion.llm.base import ChatMessage, GenerationOptions, StreamChunk, StreamInterrupted
from bastion.llm.metered import MeteredProvider
from bastion.llm.offline import OfflineProvider
from bastion.observability.metrics import NULL_METRICS, Metrics, metrics_of
from bastion.observability.multiprocess import WorkerFiles


def total(metrics: Metrics, name: str, **labels: str) -> float:
    found = 0.0
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and set(labels.items()) <= set(sample.labels.items()):
                found += sample.value
    return found


def test_each_app_has_its_own_registry_and_none_is_global() -> None:
    first, second = Metrics(), Metrics()
    first.request("GET", "/health", 200, 0.001)
    assert total(first, "bastion_requests_total") == 1
    assert total(second, "bastion_requests_total") == 0
    assert not any(name.startswith("bastion_") for name in REGISTRY._names_to_collectors)


def test_labels_outside_the_known_sets_collapse_to_other() -> None:
    metrics = Metrics()
    metrics.request("BREW", "/health", 418, 0.001)
    metrics.auth_failure("user@example.com")
    metrics.rate_limited("Key 42")
    metrics.guard_verdict("input", "flag", ["profanity", "<script>"])
    assert total(metrics, "bastion_requests_total", method="other") == 1
    assert total(metrics, "bastion_auth_failures_total", reason="other") == 1
    assert total(metrics, "bastion_rate_limit_rejections_total", policy="other") == 1
    assert total(metrics, "bastion_guard_verdicts_total", category="profanity") == 1
    assert total(metrics, "bastion_guard_verdicts_total", category="other") == 1


def test_an_app_without_metrics_gets_the_no_op_ones() -> None:
    assert metrics_of(None) is NULL_METRICS
    assert metrics_of(SimpleNamespace(state=SimpleNamespace())) is NULL_METRICS
    NULL_METRICS.request("GET", "/x", 200, 0.1)  # accepted and ignored


async def test_the_metered_provider_counts_calls_and_tokens() -> None:
    metrics = Metrics()
    provider = MeteredProvider(OfflineProvider(), metrics)
    messages = [ChatMessage("user", "I feel tired today")]
    await provider.complete(messages, GenerationOptions())
    async for _ in provider.stream(messages, GenerationOptions()):
        pass
    assert total(metrics, "bastion_model_calls_total", provider="offline", outcome="ok") == 2
    assert total(metrics, "bastion_model_tokens_total", provider="offline", kind="completion") > 0


class Breaking(OfflineProvider):
    async def stream(  # type: ignore[override]
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        yield StreamChunk("partial")
        raise StreamInterrupted("partial")


async def test_interrupted_and_abandoned_streams_are_told_apart() -> None:
    metrics = Metrics()
    provider = MeteredProvider(Breaking(), metrics)
    with pytest.raises(StreamInterrupted):
        async for _ in provider.stream([], GenerationOptions()):
            pass
    stream = provider.stream([], GenerationOptions())
    await anext(stream)
    await stream.aclose()  # the client went away
    assert total(metrics, "bastion_model_calls_total", outcome="interrupted") == 1
    assert total(metrics, "bastion_model_calls_total", outcome="abandoned") == 1


def test_an_app_refuses_multiprocess_mode_the_library_did_not_start_in(tmp_path: Path) -> None:
    # PROMETHEUS_MULTIPROC_DIR was not in this test process's environment at import.
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        Metrics(multiprocess_dir=tmp_path)


def _worker_file(directory: Path, kind: str, pid: int, metric: str, value: float) -> None:
    """One worker's file as prometheus_client's multiprocess mode writes it."""
    values = MmapedDict(str(directory / f"{kind}_{pid}.db"))
    values.write_value(mmap_key(metric, metric, [], [], "help"), value, 1.0)
    values.close()


def test_a_dead_workers_counts_stay_and_its_sampled_gauges_go(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead, alive = int(finished.stdout), os.getpid()
    for pid, count in ((dead, 5), (alive, 7)):
        _worker_file(tmp_path, "counter", pid, "bastion_requests_total", count)
        _worker_file(tmp_path, "gauge_livemostrecent", pid, "bastion_chat_sessions_active", count)
    files = WorkerFiles(tmp_path)
    text = files.render().decode()
    assert not (tmp_path / f"gauge_livemostrecent_{dead}.db").exists()
    assert (tmp_path / f"gauge_livemostrecent_{alive}.db").exists()
    found = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert found["bastion_requests_total"] == 12  # the dead worker's requests still count
    assert found["bastion_chat_sessions_active"] == 7  # only a live worker's reading
