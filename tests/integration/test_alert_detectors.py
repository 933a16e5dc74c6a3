# SPDX-License-Identifier: Apache-2.0
"""Each detector alerts at threshold + 1 and not at its threshold, once per window, in process
and on the real Redis, and instances sharing Redis add up to one count."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bastion.alerts import AnomalyDetector
from tests.conftest import BACKENDS, SettingsFactory, backend_redis_url
from tests.integration.alerts_support import signal, started
from tests.support.clock import FakeClock

Feed = Callable[[AnomalyDetector, int], Awaitable[None]]


async def failed_login_from_ip(detector: AnomalyDetector, i: int) -> None:
    await detector.observe_event(signal("auth_failure", ip="203.0.113.9"))


async def failed_login_on_account(detector: AnomalyDetector, i: int) -> None:
    # The new event name, from a different address each time: only the account adds up.
    await detector.observe_event(signal("auth_failure", ip=f"198.51.{i}.1", user_id="u-target"))


async def too_many_requests(detector: AnomalyDetector, i: int) -> None:
    await detector.observe_request(status=429, route="/x", ip="192.0.2.44", user_id=None, api_key_id=None)


async def server_error(detector: AnomalyDetector, i: int) -> None:
    await detector.observe_request(
        status=500 + i % 4, route="/x", ip=f"192.0.2.{i}", user_id=None, api_key_id=None
    )


async def refused_key(detector: AnomalyDetector, i: int) -> None:
    # 401s from many addresses: only the key adds up (its 429s would count for the address too).
    await detector.observe_request(status=401, route="/x", ip=f"192.0.2.{i}", user_id=None, api_key_id="k1")


async def extraction_attempt(detector: AnomalyDetector, i: int) -> None:
    event = "guard_input_flagged" if i % 2 else "guard_input_blocked"
    categories = ("prompt_injection", "prompt_extraction")
    await detector.observe_event(signal(event, ip=f"192.0.2.{i}", api_key_id="k2", categories=categories))


async def session_created(detector: AnomalyDetector, i: int) -> None:
    await detector.observe_event(signal("chat_session_created", result="success", user_id=f"u{i}"))


# (feed, the alert kind, its subject, the documented default threshold)
CASES: dict[str, tuple[Feed, str, str, int]] = {
    "auth failures per address": (failed_login_from_ip, "auth_failures_ip", "ip:203.0.113.9", 10),
    "auth failures per account": (failed_login_on_account, "auth_failures_account", "user:u-target", 10),
    "429s per address": (too_many_requests, "rate_limit_ip", "ip:192.0.2.44", 100),
    "server errors": (server_error, "server_errors", "all", 10),
    "401s per key": (refused_key, "key_refusals", "key:k1", 20),
    "prompt extraction": (extraction_attempt, "prompt_extraction", "key:k2", 5),
    "session spike": (session_created, "session_spike", "all", 200),
}


@pytest.fixture(params=BACKENDS)
def shared_state(request: pytest.FixtureRequest) -> str | None:
    return backend_redis_url(request)


def kinds(alerts: list[Any]) -> list[tuple[str, str]]:
    return [(alert.kind, alert.subject) for alert in alerts]


@pytest.mark.parametrize("case", list(CASES))
async def test_each_detector_fires_above_its_threshold_and_not_at_it(
    make_settings: SettingsFactory, shared_state: str | None, case: str
) -> None:
    feed, kind, subject, threshold = CASES[case]
    async with started(make_settings(), FakeClock(), redis_url=shared_state) as stack:
        for i in range(threshold):
            await feed(stack.detector, i)
        assert await stack.alerts() == []
        await feed(stack.detector, threshold)
        alerts = await stack.alerts()
        assert kinds(alerts) == [(kind, subject)]
        assert alerts[0].count == threshold + 1 and alerts[0].threshold == threshold
        assert stack.metrics.alerts_raised.labels(kind)._value.get() == 1


async def test_unwatched_events_and_statuses_raise_nothing(make_settings: SettingsFactory) -> None:
    async with started(make_settings(), FakeClock()) as stack:
        for _i in range(300):
            await stack.detector.observe_event(signal("journal.entry_created", ip="192.0.2.1"))
            await stack.detector.observe_event(
                signal("guard_input_flagged", ip="192.0.2.1", categories=("profanity",))
            )
            await stack.detector.observe_request(
                status=404, route="/x", ip="192.0.2.1", user_id=None, api_key_id="k"
            )
            await stack.detector.observe_request(
                status=403, route="/x", ip="192.0.2.1", user_id=None, api_key_id="k"
            )
        assert await stack.alerts() == []


async def test_one_alert_per_window_then_again_in_a_later_window(
    make_settings: SettingsFactory, shared_state: str | None
) -> None:
    clock = FakeClock(start=1_700_000_100.0)  # at the start of a 300 s window (1_700_000_100 % 300 == 100)
    async with started(make_settings(), clock, redis_url=shared_state) as stack:
        for i in range(60):  # far past the threshold, in one window
            await failed_login_from_ip(stack.detector, i)
        alerts = await stack.alerts()
        assert kinds(alerts) == [("auth_failures_ip", "ip:203.0.113.9")]
        assert alerts[0].occurrences == 1
        clock.advance(300)  # the next window: it persists, so it fires again, on the open alert
        for i in range(11):
            await failed_login_from_ip(stack.detector, i)
        alerts = await stack.alerts()
        assert len(alerts) == 1 and alerts[0].occurrences == 2
        assert stack.metrics.alerts_raised.labels("auth_failures_ip")._value.get() == 2


async def test_an_ipv6_client_counts_by_its_prefix(make_settings: SettingsFactory) -> None:
    async with started(make_settings(), FakeClock()) as stack:
        for i in range(11):  # a new address of the same /64 each time
            await stack.detector.observe_event(signal("auth_failure", ip=f"2001:db8:1:2::{i + 1:x}"))
        assert kinds(await stack.alerts()) == [("auth_failures_ip", "ip:2001:db8:1:2::/64")]


async def test_a_threshold_of_zero_turns_a_detector_off(make_settings: SettingsFactory) -> None:
    async with started(make_settings(ALERT_SERVER_ERRORS=0), FakeClock()) as stack:
        for i in range(50):
            await server_error(stack.detector, i)
        assert await stack.alerts() == []


async def test_instances_sharing_redis_cross_a_threshold_together(
    make_settings: SettingsFactory, each_redis_url: str
) -> None:
    redis_url = each_redis_url
    clock = FakeClock()
    settings = make_settings()
    async with (
        started(settings, clock, redis_url=redis_url) as one,
        started(settings, clock, redis_url=redis_url, migrate_first=False) as two,
    ):
        for i in range(6):
            await failed_login_from_ip(one.detector, i)
        for i in range(5):
            await failed_login_from_ip(two.detector, i)
        # Neither saw more than 6, and together they saw 11: one alert, raised by one of them.
        await two.detector.drain()  # whichever raised it stored it; both read the same table
        alerts = await one.alerts()
        assert kinds(alerts) == [("auth_failures_ip", "ip:203.0.113.9")]
        assert alerts[0].count == 11


async def test_alone_an_instance_without_redis_counts_only_its_own(make_settings: SettingsFactory) -> None:
    clock = FakeClock()
    settings = make_settings()
    async with started(settings, clock) as one, started(settings, clock, migrate_first=False) as two:
        for i in range(6):
            await failed_login_from_ip(one.detector, i)
            await failed_login_from_ip(two.detector, i)
        assert await one.alerts() == []


async def test_token_usage_far_above_the_keys_own_baseline(
    make_settings: SettingsFactory, shared_state: str | None
) -> None:
    clock = FakeClock(start=1_700_002_800.0)  # the start of an hour
    settings = make_settings(ALERT_TOKEN_USAGE_MIN_TOKENS=1000)
    async with started(settings, clock, redis_url=shared_state) as stack:
        detector = stack.detector
        # A new key's first hour has no baseline: however much it spends, nothing fires.
        await detector.observe_tokens(api_key_id="k", user_id=None, tokens=400)
        await detector.observe_tokens(api_key_id="k", user_id=None, tokens=600)
        assert await stack.alerts() == []
        clock.advance(3600)  # baseline: 1000 tokens an hour; factor 5 makes the threshold 5000
        await detector.observe_tokens(api_key_id="k", user_id=None, tokens=4999)
        await detector.observe_tokens(api_key_id="k", user_id=None, tokens=1)
        assert await stack.alerts() == []  # 5000: at the threshold, not above it
        await detector.observe_tokens(api_key_id="k", user_id=None, tokens=1)
        alerts = await stack.alerts()
        assert kinds(alerts) == [("token_usage", "key:k")]
        assert (alerts[0].count, alerts[0].threshold, alerts[0].details["baseline"]) == (5001, 5000, 1000.0)
        await detector.observe_tokens(api_key_id="k", user_id=None, tokens=50_000)  # the same hour: once
        assert len(await stack.alerts()) == 1


async def test_tokens_counted_off_the_callers_path_keep_the_hour_they_were_spent_in(
    make_settings: SettingsFactory, shared_state: str | None
) -> None:
    # A chat reply leaves the count to the detector's worker (when no budget settlement carries
    # it): the count runs later, and still lands in the hour of the call.
    clock = FakeClock(start=1_700_002_800.0)
    async with started(
        make_settings(ALERT_TOKEN_USAGE_MIN_TOKENS=1000), clock, redis_url=shared_state
    ) as stack:
        stack.detector.count_tokens(api_key_id="k", user_id=None, tokens=1000)
        clock.advance(3600)  # before the worker ran: the 1000 tokens are still the first hour's
        stack.detector.count_tokens(api_key_id="k", user_id=None, tokens=5001)
        stack.detector.count_tokens(api_key_id="k", user_id=None, tokens=0)  # nothing to count
        alerts = await stack.alerts()
        assert kinds(alerts) == [("token_usage", "key:k")]
        assert (alerts[0].count, alerts[0].details["baseline"]) == (5001, 1000.0)


async def test_token_usage_needs_a_minimum_volume(make_settings: SettingsFactory) -> None:
    clock = FakeClock(start=1_700_002_800.0)
    async with started(make_settings(ALERT_TOKEN_USAGE_MIN_TOKENS=1000), clock) as stack:
        await stack.detector.observe_tokens(api_key_id=None, user_id="u", tokens=10)
        clock.advance(3600)
        await stack.detector.observe_tokens(api_key_id=None, user_id="u", tokens=999)  # 100x, but small
        assert await stack.alerts() == []
        await stack.detector.observe_tokens(api_key_id=None, user_id="u", tokens=1)
        assert kinds(await stack.alerts()) == [("token_usage", "user:u")]


async def test_a_redis_outage_never_reaches_the_caller(
    make_settings: SettingsFactory, dead_redis: Any
) -> None:
    async with started(make_settings(), FakeClock()) as stack:
        from bastion.alerts.counters import Counters

        stack.detector.counters = Counters(dead_redis)
        for i in range(11):
            await failed_login_from_ip(stack.detector, i)
        # Counted in process meanwhile (open), the failure logged and counted, never raised.
        assert stack.detector.counters.stats["storage_failures"] >= 1
        assert kinds(await stack.alerts()) == [("auth_failures_ip", "ip:203.0.113.9")]
