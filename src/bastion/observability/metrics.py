# SPDX-License-Identifier: Apache-2.0
"""Prometheus metrics: one registry per app, built by ``create_app`` and kept on ``app.state.metrics``.

No metric lives at module level and the process-wide default registry is never used, so two apps
in one process (tests, benchmarks) never share counts. Labels only ever carry values from small
fixed sets (route templates, statuses, reasons, policy names, guard categories, provider names):
never ids, keys, addresses, e-mails or text, so the number of series stays bounded whatever
clients send.

Code that counts something asks for ``metrics_of(app)``, which is ``NULL_METRICS`` (every method a
no-op) when the app has none, so services and middleware work unchanged in unit tests.

Under ``bastion serve --workers N`` the values live in per-worker files and every scrape merges
them (``bastion.observability.multiprocess``); the registry per app stays as it is.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bastion.observability.logging import get_logger
from bastion.observability.multiprocess import WorkerFiles, in_multiprocess_mode

__all__ = [
    "CONTENT_TYPE_LATEST",
    "NULL_METRICS",
    "Exposition",
    "Metrics",
    "NullMetrics",
    "metrics_of",
    "state_metrics",
]

# 1 ms to 30 s: a health check at the bottom, a long model reply at the top.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MODEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
OTHER = "other"
# Reasons, policies and categories come from Bastion's own literals; anything else is "other".
_LABEL = re.compile(r"[a-z][a-z0-9_]{0,39}")
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
SAMPLE_TIMEOUT_SECONDS = 2.0
# With several workers, each samples the gauges this often as well as before the scrapes it
# answers: the PROMETHEUS_PORT listener runs in the supervising process, which cannot sample.
WORKER_SAMPLE_SECONDS = 15.0
# Sampled gauges: with several workers, the value most recently sampled by a live worker. The
# sampled state is shared (Redis) in a multi-worker deployment, so the freshest reading is the
# true one; summing or taking the maximum of stale readings would not be.
SAMPLED: Literal["livemostrecent"] = "livemostrecent"


class Exposition(Protocol):
    """What a metrics listener serves: gauges sampled on demand, then the text exposition."""

    async def sample(self, state: Any) -> None: ...

    def render(self) -> bytes: ...


def _bounded(value: str) -> str:
    return value if _LABEL.fullmatch(value) else OTHER


class NullMetrics:
    """The metrics of an app that has none: every event is ignored."""

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request, counted when its response has been sent in full."""

    def auth_failure(self, reason: str) -> None:
        """A presented credential was refused (a bad key, an invalid token, a failed login)."""

    def rate_limited(self, policy: str) -> None:
        """A request refused with 429 by ``policy``."""

    def guard_verdict(self, direction: str, action: str, categories: list[str]) -> None:
        """A content guard verdict that was not a plain allow."""

    def model_call(self, provider: str, outcome: str, seconds: float) -> None:
        """One call to the model provider and how it ended (``ok``, ``error``, ``interrupted``)."""

    def model_tokens(self, provider: str, *, prompt: int, completion: int) -> None:
        """Tokens a model call used."""

    def delivery_backlog(self, kind: str, size: int) -> None:
        """Documents waiting in a background delivery (audit sink, access records)."""

    def delivery_dropped(self, kind: str, reason: str, count: int) -> None:
        """Documents a background delivery or an audit sink could not keep."""

    def alert_raised(self, kind: str) -> None:
        """An anomaly detector raised an alert of ``kind``."""


NULL_METRICS = NullMetrics()


def metrics_of(app: Any) -> NullMetrics:
    """The app's metrics (``app.state.metrics``), or the no-op ones when it has none."""
    return state_metrics(getattr(app, "state", None))


def state_metrics(state: Any) -> NullMetrics:
    """``state.metrics`` (an app's state), or the no-op metrics when there are none."""
    metrics = getattr(state, "metrics", None)
    return metrics if isinstance(metrics, NullMetrics) else NULL_METRICS


class Metrics(NullMetrics):
    """The app's registry and every metric Bastion exports (docs/metrics.md)."""

    def __init__(self, *, multiprocess_dir: Path | None = None) -> None:
        """``multiprocess_dir``: PROMETHEUS_MULTIPROC_DIR, when this process is one of several workers."""
        if multiprocess_dir is not None and not in_multiprocess_mode():
            # The variable was set after prometheus_client was imported: this process's values
            # are in memory and would be missing from the merge.
            raise RuntimeError("PROMETHEUS_MULTIPROC_DIR must be set before the process starts")
        self.registry = CollectorRegistry(auto_describe=True)
        self.workers = WorkerFiles(multiprocess_dir) if multiprocess_dir is not None else None
        r = self.registry
        self.requests = Counter(
            "bastion_requests", "HTTP requests answered", ("method", "route", "status"), registry=r
        )
        self.request_duration = Histogram(
            "bastion_request_duration_seconds",
            "Time from the request to the last byte of its response",
            ("method", "route"),
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "bastion_auth_failures", "Presented credentials refused, by reason", ("reason",), registry=r
        )
        self.rate_limit_rejections = Counter(
            "bastion_rate_limit_rejections", "Requests refused with 429, by policy", ("policy",), registry=r
        )
        self.guard_verdicts = Counter(
            "bastion_guard_verdicts",
            "Content guard verdicts other than a clean allow, one per category",
            ("direction", "action", "category"),
            registry=r,
        )
        self.model_calls = Counter(
            "bastion_model_calls", "Calls to the model provider", ("provider", "outcome"), registry=r
        )
        self.model_call_duration = Histogram(
            "bastion_model_call_duration_seconds",
            "Duration of model calls, streams until their last chunk",
            ("provider",),
            buckets=MODEL_BUCKETS,
            registry=r,
        )
        self.model_tokens_total = Counter(
            "bastion_model_tokens", "Tokens used by model calls", ("provider", "kind"), registry=r
        )
        self.delivery_backlog_size = Gauge(
            "bastion_delivery_backlog",
            "Documents waiting in a background delivery (audit sinks, access records)",
            ("kind",),
            registry=r,
            multiprocess_mode="livesum",  # with several workers: what all live workers hold
        )
        self.delivery_drops = Counter(
            "bastion_delivery_dropped",
            "Documents an audit sink or background delivery could not keep",
            ("kind", "reason"),
            registry=r,
        )
        self.alerts_raised = Counter(
            "bastion_alerts_raised", "Alerts raised by the anomaly detectors, by kind", ("kind",), registry=r
        )
        # Every kind from the start, at 0: a first alert changes a value, never the set of series
        # (and "none yet" is visible as 0 rather than as a missing series).
        from bastion.alerts.rules import AlertKind  # here: bastion.alerts imports this module

        for kind in AlertKind:
            self.alerts_raised.labels(str(kind))
        # Sampled by ``sample`` just before each scrape: both need an await, which a collector
        # (called synchronously by the exposition code) cannot do.
        self.breaker_state = Gauge(
            "bastion_model_breaker_state",
            "Circuit breaker of the model provider: 0 closed, 1 half-open, 2 open",
            ("provider",),
            registry=r,
            multiprocess_mode=SAMPLED,
        )
        self.active_sessions = Gauge(
            "bastion_chat_sessions_active",
            "Chat sessions holding a slot of the session quota",
            registry=r,
            multiprocess_mode=SAMPLED,
        )
        # The request path's children, looked up once per label set instead of through
        # ``labels()`` (a lock and a validation) on every request.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.log = get_logger("bastion.metrics")

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            label = method if method in METHODS else OTHER
            children = (
                self.requests.labels(label, route, str(status)),
                self.request_duration.labels(label, route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(_bounded(reason)).inc()

    def rate_limited(self, policy: str) -> None:
        self.rate_limit_rejections.labels(_bounded(policy)).inc()

    def guard_verdict(self, direction: str, action: str, categories: list[str]) -> None:
        for category in categories or ["none"]:
            self.guard_verdicts.labels(_bounded(direction), _bounded(action), _bounded(category)).inc()

    def model_call(self, provider: str, outcome: str, seconds: float) -> None:
        name = _bounded(provider)
        self.model_calls.labels(name, _bounded(outcome)).inc()
        self.model_call_duration.labels(name).observe(seconds)

    def model_tokens(self, provider: str, *, prompt: int, completion: int) -> None:
        name = _bounded(provider)
        if prompt:
            self.model_tokens_total.labels(name, "prompt").inc(prompt)
        if completion:
            self.model_tokens_total.labels(name, "completion").inc(completion)

    def delivery_backlog(self, kind: str, size: int) -> None:
        self.delivery_backlog_size.labels(_bounded(kind)).set(size)

    def delivery_dropped(self, kind: str, reason: str, count: int) -> None:
        self.delivery_drops.labels(_bounded(kind), _bounded(reason)).inc(count)

    def alert_raised(self, kind: str) -> None:
        self.alerts_raised.labels(_bounded(kind)).inc()

    async def sample(self, state: Any) -> None:
        """Read the gauges that need an await (breaker state, active sessions) before a scrape.

        Each is skipped, and keeps its last value, when its store does not answer in time.
        """
        llm = getattr(state, "llm", None)
        if llm is not None and not getattr(llm, "offline", False):
            try:
                status = await asyncio.wait_for(llm.status(), SAMPLE_TIMEOUT_SECONDS)
            except Exception as exc:  # breaker state lives in Redis, which may be down
                self.log.warning("metrics_sample_failed", gauge="breaker", error=type(exc).__name__)
            else:
                if status in BREAKER_STATES:
                    self.breaker_state.labels(_bounded(llm.name)).set(BREAKER_STATES[status])
        quota = getattr(state, "session_quota", None)
        if quota is not None:
            try:
                active = await asyncio.wait_for(quota.active(), SAMPLE_TIMEOUT_SECONDS)
            except Exception as exc:  # a limiter outage must not fail the scrape
                self.log.warning("metrics_sample_failed", gauge="sessions", error=type(exc).__name__)
            else:
                self.active_sessions.set(active)

    def render(self) -> bytes:
        """The text exposition (``CONTENT_TYPE_LATEST``): of every worker when there are several."""
        if self.workers is not None:
            return self.workers.render()
        return generate_latest(self.registry)

    def close(self) -> None:
        """The app stopped: with several workers, this one's sampled gauges leave the merge."""
        if self.workers is not None:
            self.workers.forget(os.getpid())
