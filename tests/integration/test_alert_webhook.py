# SPDX-License-Identifier: Apache-2.0
"""ALERT_WEBHOOK_URL against a real local receiver: delivered, retried, signed, never in the way."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable

import httpx

from bastion.alerts import AnomalyDetector
from bastion.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, webhook_courier
from bastion.observability.metrics import Metrics
from tests.conftest import SettingsFactory
from tests.integration.alerts_support import NO_LOGIN_THROTTLE, signal, started
from tests.integration.auth.helpers import identity_app, identity_settings
from tests.support.clock import FakeClock
from tests.support.webhook_receiver import WebhookReceiver

FAST_RETRIES = {"ALERT_WEBHOOK_BACKOFF_SECONDS": 0.01, "ALERT_WEBHOOK_MAX_ATTEMPTS": 5}
SECRET = "w" * 16 + "h" * 16 + "s" * 8


async def eleven_failures(detector: AnomalyDetector) -> None:
    for _ in range(11):
        await detector.observe_event(signal("auth_failure", ip="203.0.113.9"))


def dropped(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "bastion_delivery_dropped_total", {"kind": "alert_webhook", "reason": reason}
    )
    return float(value or 0)


async def until(condition: Callable[[], object]) -> None:
    """Wait for something another thread or task does (no deadline here: pytest's timeout has it)."""
    while not condition():
        await asyncio.sleep(0.01)


async def test_the_receiver_gets_each_alert_as_signed_json(make_settings: SettingsFactory) -> None:
    with WebhookReceiver() as receiver:
        settings = make_settings(ALERT_WEBHOOK_URL=receiver.url, ALERT_WEBHOOK_SECRET=SECRET, **FAST_RETRIES)
        async with started(settings, FakeClock()) as stack:
            await eleven_failures(stack.detector)
            stored = await stack.alerts()
            assert stack.detector.webhook is not None
            await stack.detector.webhook.flush()
        [delivered] = receiver.answered
        body = delivered.json()
        assert body["id"] == stored[0].id
        assert (body["kind"], body["severity"], body["subject"]) == (
            "auth_failures_ip",
            "warning",
            "ip:203.0.113.9",
        )
        assert (body["count"], body["threshold"], body["window_seconds"], body["status"]) == (
            11,
            10,
            300,
            "open",
        )
        assert delivered.headers["content-type"] == "application/json"
        timestamp = delivered.headers[TIMESTAMP_HEADER.lower()]
        expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + delivered.body, hashlib.sha256)
        assert delivered.headers[SIGNATURE_HEADER.lower()] == f"sha256={expected.hexdigest()}"


async def test_a_receiver_answering_500_gets_the_alert_on_a_retry(make_settings: SettingsFactory) -> None:
    with WebhookReceiver() as receiver:
        receiver.script(500, 503)
        async with started(
            make_settings(ALERT_WEBHOOK_URL=receiver.url, **FAST_RETRIES), FakeClock()
        ) as stack:
            await eleven_failures(stack.detector)
            await stack.alerts()
            assert stack.detector.webhook is not None
            await stack.detector.webhook.flush()
            assert stack.detector.webhook.stats == {"delivered": 1, "retried": 2, "dropped": 0}
        assert len(receiver.received) == 3
        assert [r.json()["kind"] for r in receiver.answered] == ["auth_failures_ip"]


async def test_a_receiver_that_is_down_gets_the_alert_once_it_is_up(make_settings: SettingsFactory) -> None:
    receiver = WebhookReceiver()  # its port is chosen, nothing listens on it yet
    settings = make_settings(
        ALERT_WEBHOOK_URL=receiver.url, ALERT_WEBHOOK_BACKOFF_SECONDS=0.05, ALERT_WEBHOOK_MAX_ATTEMPTS=20
    )
    async with started(settings, FakeClock()) as stack:
        await eleven_failures(stack.detector)
        await stack.alerts()
        sender = stack.detector.webhook
        assert sender is not None
        await until(lambda: sender.stats["retried"] >= 1)  # refused at least once
        with receiver:
            await sender.flush()
            assert [r.json()["kind"] for r in receiver.answered] == ["auth_failures_ip"]
        assert sender.stats["delivered"] == 1 and sender.stats["dropped"] == 0


async def test_an_alert_the_receiver_keeps_refusing_is_dropped_counted(
    make_settings: SettingsFactory,
) -> None:
    with WebhookReceiver() as receiver:
        receiver.script(500, 500, 500, 500, 500, 400)
        async with started(
            make_settings(ALERT_WEBHOOK_URL=receiver.url, **FAST_RETRIES), FakeClock()
        ) as stack:
            await eleven_failures(stack.detector)
            await stack.alerts()
            sender = stack.detector.webhook
            assert sender is not None
            await sender.flush()
            assert dropped(stack.metrics, "gave_up") == 1
            # A 4xx other than 429 is the receiver refusing: not retried.
            sender.offer({"id": "x", "kind": "server_errors"})
            await sender.flush()
            assert dropped(stack.metrics, "refused") == 1
        assert len(receiver.received) == 6 and receiver.answered == []


async def test_a_full_queue_drops_alerts_counted_and_shutdown_counts_what_is_left() -> None:
    metrics = Metrics()
    with WebhookReceiver() as receiver:
        receiver.hold()
        async with httpx.AsyncClient(trust_env=False) as client:
            sender = webhook_courier(url=receiver.url, client=client, metrics=metrics, queue_size=1)
            for n in range(3):  # no await between: the queue holds one, two are dropped
                sender.offer({"id": str(n), "kind": "server_errors"})
            assert dropped(metrics, "queue_full") == 2
            await until(lambda: receiver.received)  # the one queued is in flight, held
            await sender.aclose(grace=0.05)
            assert dropped(metrics, "shutdown") == 1
        receiver.release()


async def test_a_slow_receiver_does_not_hold_up_the_request_that_raised_the_alert(
    make_settings: SettingsFactory,
) -> None:
    with WebhookReceiver() as receiver:
        receiver.hold()
        settings = identity_settings(
            make_settings, ALERT_WEBHOOK_URL=receiver.url, **FAST_RETRIES, **NO_LOGIN_THROTTLE
        )
        async with identity_app(settings) as (app, http):
            app.state.anomaly.clock = FakeClock()  # no window may end mid-test
            for _ in range(11):
                refused = await http.post(
                    "/api/auth/login", json={"email": "nobody@example.org", "password": "x" * 12}
                )
                assert refused.status_code == 401
            # The eleventh request has answered; its alert reaches the receiver, which holds it.
            await until(lambda: receiver.received)
            assert receiver.answered == []
            assert (await http.get("/health")).status_code == 200  # the app answers meanwhile
            receiver.release()
            await app.state.anomaly.drain()
            await app.state.anomaly.webhook.flush()
        assert [r.json()["subject"] for r in receiver.answered] == ["ip:127.0.0.1"]
