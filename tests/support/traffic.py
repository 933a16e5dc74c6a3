# SPDX-License-Identifier: Apache-2.0
"""Bounded concurrent traffic against served instances, every answer recorded for later checks.

A ``Cluster`` stands for the load balancer: each request goes to the next instance that is up,
and an instance taken down (killed) gets no new requests until it is marked up again. Each
``Client`` sends its requests one after the other and keeps an ``Answer`` per request: the
status (or, with no HTTP answer at all, the transport error), which instance answered, when, and
what was wrong with the body of a refusal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.bastion_server import ServerProcess


@dataclass
class Answer:
    client: int
    action: str
    instance: int
    started: float
    ended: float
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    problem: str = ""  # the transport error, or what is wrong with a refusal's body


def shape_problem(response: httpx.Response) -> str:
    """What is wrong with a refusal ('' when nothing is): the error shape, and Retry-After on
    429 and 503."""
    if response.status_code < 400:
        return ""
    try:
        detail = response.json()["detail"]
        missing = {"error", "message", "request_id"} - detail.keys()
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"not the error shape: {response.text[:200]!r}"
    if missing:
        return f"error shape without {sorted(missing)}"
    if response.status_code in (429, 503):
        retry_after = response.headers.get("retry-after")
        if retry_after is None or str(detail.get("retry_after")) != retry_after or int(retry_after) < 1:
            return f"Retry-After {retry_after!r} vs retry_after {detail.get('retry_after')!r}"
    return ""


class Cluster:
    """Served instances behind a round-robin balancer that skips the ones marked down."""

    def __init__(self, servers: list[ServerProcess]) -> None:
        self.servers = servers
        self.down: set[int] = set()
        self._turn = 0

    def pick(self) -> int:
        live = [index for index in range(len(self.servers)) if index not in self.down]
        self._turn += 1
        return live[self._turn % len(live)]

    def url(self, index: int) -> str:
        return self.servers[index].url


@dataclass
class Client:
    """One user of the cluster: a credential, the requests it sent, what was acknowledged."""

    number: int
    http: httpx.AsyncClient
    cluster: Cluster
    headers: dict[str, str] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)

    async def call(
        self, action: str, method: str, path: str, *, instance: int | None = None, **kwargs: Any
    ) -> httpx.Response | None:
        """Send one request (to ``instance``, else to the balancer's pick) with the client's
        credential (or ``headers=`` instead); None without an answer."""
        index = self.cluster.pick() if instance is None else instance
        started = time.monotonic()
        headers = kwargs.pop("headers", self.headers)
        try:
            response = await self.http.request(
                method, self.cluster.url(index) + path, headers=headers, **kwargs
            )
        except httpx.TransportError as exc:
            self.answers.append(
                Answer(self.number, action, index, started, time.monotonic(), None, type(exc).__name__)
            )
            return None
        await response.aread()
        self.answers.append(
            Answer(
                self.number,
                action,
                index,
                started,
                time.monotonic(),
                response.status_code,
                shape_problem(response),
            )
        )
        return response

    def ok(self, action: str) -> list[Answer]:
        return [a for a in self.answers if a.action == action and a.status is not None and a.status < 300]


def summary(answers: list[Answer], since: float, bucket: float = 1.0) -> str:
    """Answers per time bucket and action: ``12s message 200x4 503x2``, for a failure's report."""
    rows: dict[tuple[int, str], dict[str, int]] = {}
    for answer in answers:
        key = (int((answer.started - since) // bucket), answer.action)
        status = str(answer.status) if answer.status is not None else answer.problem
        counts = rows.setdefault(key, {})
        counts[status] = counts.get(status, 0) + 1
    return "\n".join(
        f"{second * bucket:>6.0f}s {action:<14} "
        + " ".join(f"{status}x{count}" for status, count in sorted(counts.items()))
        for (second, action), counts in sorted(rows.items())
    )
