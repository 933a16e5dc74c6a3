# SPDX-License-Identifier: Apache-2.0
"""Posting alerts to ALERT_WEBHOOK_URL from the background, never from the request that raised them.

A ``Courier`` (bastion.observability.delivery, the mechanism the audit collector sink uses too)
of kind ``alert_webhook``, one alert a post: a bounded queue (a full one drops, counted and
logged), one task posting in order, retries with backoff and jitter up to
ALERT_WEBHOOK_MAX_ATTEMPTS on network errors, timeouts, 429 and 5xx; any other answer ends the
delivery (2xx delivered, other 4xx refused). The body is JSON; with ALERT_WEBHOOK_SECRET set each
attempt is signed: ``X-Bastion-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with
the timestamp in ``X-Bastion-Timestamp`` (seconds), so a receiver can check who sent it, and when.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import httpx

from bastion.observability.delivery import Courier, Signer
from bastion.observability.metrics import NullMetrics

SIGNATURE_HEADER = "X-Bastion-Signature"
TIMESTAMP_HEADER = "X-Bastion-Timestamp"
MAX_BACKOFF_SECONDS = 300.0
KIND = "alert_webhook"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value of ``X-Bastion-Signature`` for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signer(secret: str, clock: Callable[[], float] = time.time) -> Signer:
    """Headers signing each attempt's body with a fresh timestamp."""

    def sign(body: bytes) -> dict[str, str]:
        timestamp = str(int(clock()))
        return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}

    return sign


def webhook_courier(
    *,
    url: str,
    client: httpx.AsyncClient | None,
    metrics: NullMetrics,
    secret: str | None = None,
    timeout: float = 5.0,
    max_attempts: int = 6,
    backoff: float = 1.0,
    queue_size: int = 1000,
) -> Courier:
    return Courier(
        url,
        kind=KIND,
        client=client,
        headers={"User-Agent": "bastion-alerts"},
        sign=signer(secret) if secret is not None else None,
        batch_size=1,
        max_buffer=queue_size,
        max_attempts=max_attempts,
        timeout_seconds=timeout,
        backoff_seconds=backoff,
        max_backoff_seconds=MAX_BACKOFF_SECONDS,
        metrics=metrics,
    )
