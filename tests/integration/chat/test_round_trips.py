# SPDX-License-Identifier: Apache-2.0
"""What one chat message costs: Redis round trips and database transactions.

The message's limits, the session's quota slot and the token budget are decided in one round
trip, the budget settled (with the anomaly detector's token count) in a second (without a daily
budget there is no second: the detector's worker counts the tokens afterwards); one transaction
stores the user's message, one the reply, none is open while the model answers. On PostgreSQL
these are four round trips: BEGIN, one statement (the place taken, the message stored, the
history read) and COMMIT; then the reply's one statement, alone in autocommit.

Counted apart, because every route pays them before routing: the global per-address limit
(``RateLimit``, which refuses before any route work) and the shared version counters that
authentication and the block answers poll at most every INVALIDATION_POLL_SECONDS. Authentication
itself (``bastion.auth.cache``) and the key and user block lookups (``PrincipalBlocks``) answer
from memory once the credential was verified: the whole request takes three round trips and the
chat's two transactions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import SettingsFactory
from tests.integration.chat.conftest import chat_app, new_session, upstream_settings
from tests.integration.keys.helpers import create_key, key_header
from tests.support.db_counting import Checkout, Transaction, recording_checkouts, recording_transactions
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_counting import recording_round_trips

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
# Authentication: version counters, the token denylist.
AUTHENTICATION = ("GET bastion:version:", "EXISTS bastion:auth:", "GET bastion:auth:")


def every_route(command: str) -> bool:
    """Authentication's reads, the global limit and the block lookups of the caller's key and user."""
    global_limit = command.startswith("EVALSHA bastion:rl:{ip:") and ":b:global " in command
    block = command.startswith("GET bastion:rl:{") and command.endswith("}:x")
    return command.startswith(AUTHENTICATION) or global_limit or block


def chat_path(trips: list[list[str]]) -> list[list[str]]:
    return [trip for trip in trips if not all(every_route(command) for command in trip)]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("credential", ["user_token", "api_key"])
async def test_a_message_takes_two_round_trips_and_two_transactions(
    make_settings: SettingsFactory,
    redis_url: str,
    postgres_url: str,
    upstream: FakeUpstream,
    stream: bool,
    credential: str,
) -> None:
    settings: dict[str, Any] = {
        **upstream_settings(upstream),
        "REDIS_URL": redis_url,
        "DATABASE_URL": postgres_url,
        "RATE_LIMIT_TOKEN_BUDGET_PER_DAY": 100_000,
        # The verified credential stays in memory for the whole test, however slow the machine.
        "AUTH_CACHE_SECONDS": 60,
    }
    db_now: list[list[Transaction]] = []
    async with chat_app(make_settings, **settings) as (app, http, auth):
        if credential == "api_key":
            token = auth["Authorization"].removeprefix("Bearer ")
            auth = key_header((await create_key(http, token))["key"])
        sid = (await new_session(http, auth))["id"]
        # The breaker's clean reading is reused for 0.25 s of the provider's clock: held still, so
        # the count does not depend on how fast this machine runs.
        app.state.llm.provider.clock = lambda: 1_000_000.0
        # Likewise the remembered answer to "is this key or user blocked?".
        app.state.blocklist.monotonic = lambda: 1_000_000.0
        # What is open on the database when the model is called: nothing of the chat's.
        open_at_call: list[list[Transaction]] = []
        provider = app.state.llm
        complete, stream_reply = provider.complete, provider.stream

        def opened() -> list[Transaction]:
            current = db_now[-1] if db_now else []
            return [t for t in current if t.outcome == "open" and not t.touches("access_logs")]

        async def complete_noting(*args: Any) -> Any:
            open_at_call.append(opened())
            return await complete(*args)

        def stream_noting(*args: Any) -> Any:
            open_at_call.append(opened())
            return stream_reply(*args)

        provider.complete, provider.stream = complete_noting, stream_noting
        url = f"/api/sessions/{sid}/messages"
        await http.post(url, json={"content": "warm up", "stream": stream}, headers=auth)
        open_at_call.clear()
        for n in range(3):
            with (
                recording_round_trips() as trips,
                recording_transactions(app.state.engine) as db,
                recording_checkouts(app.state.engine) as uses,
            ):
                db_now.append(db)
                body = {"content": f"hello {n}", "stream": stream}
                response = await http.post(url, json=body, headers=auth)
            assert response.status_code == 200, response.text
            assert "event: done" in response.text if stream else response.json()["role"] == "assistant"
            path = chat_path(trips)
            assert len(path) <= 2, path
            # The whole request: the global per-address limit, then the chat's two. Authentication
            # and the block lookups answer from memory (only the shared versions are polled, at
            # most every INVALIDATION_POLL_SECONDS).
            whole = [t for t in trips if not all(c.startswith("GET bastion:version:") for c in t)]
            assert len(whole) <= 3, whole
            # Everything the message decides before the model call, together: every limit, the
            # budget, the quota slot; then the settlement with the anomaly detector's count.
            admission, settlement = path
            for part in (
                ":b:messages ",
                ":b:messages_hourly ",
                ":b:messages_user_hourly ",
                "budget:",
                "slots:",
            ):
                assert part in " ".join(admission) + " ", (part, admission)
            assert "budget:" in settlement[0] and "alerts:" in settlement[1]
            # The chat path's transactions: one before the model call (committed before it), one
            # after. Not counted: the access log's batch writer.
            chat = [t for t in db if t.touches("chat_messages") or t.touches("chat_sessions")]
            assert len(chat) == 2 and all(t.outcome == "commit" for t in chat), chat
            assert open_at_call == [[]], open_at_call
            others = [t for t in db if t not in chat and not t.touches("access_logs")]
            assert others == [], others  # authentication read nothing
            assert_four_round_trips([use for use in uses if use.trips and not use.touches("access_logs")])
            open_at_call.clear()
        history = (await http.get(url, headers=auth)).json()["items"]
        assert len(history) == 8  # every message and reply stored


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_without_a_budget_a_message_takes_one_round_trip_and_its_count_follows(
    make_settings: SettingsFactory, redis_url: str, upstream: FakeUpstream, stream: bool
) -> None:
    # No daily budget: nothing to settle, so the anomaly detector's token count has no round trip
    # to ride. The reply does not wait for it: the detector's worker counts it afterwards.
    settings = {**upstream_settings(upstream), "REDIS_URL": redis_url, "AUTH_CACHE_SECONDS": 60}
    async with chat_app(make_settings, **settings) as (app, http, auth):
        sid = (await new_session(http, auth))["id"]
        app.state.llm.provider.clock = lambda: 1_000_000.0
        app.state.blocklist.monotonic = lambda: 1_000_000.0
        url = f"/api/sessions/{sid}/messages"
        await http.post(url, json={"content": "warm up", "stream": stream}, headers=auth)
        await app.state.anomaly.drain()
        # The detector's worker is held: a reply that waited on the count would never come.
        held = asyncio.Event()
        app.state.anomaly.queue.put_nowait(held.wait)
        with recording_round_trips() as trips:
            response = await http.post(url, json={"content": "hello", "stream": stream}, headers=auth)
        assert response.status_code == 200, response.text
        [admission] = chat_path(trips)
        assert ":b:messages " in " ".join(admission) + " " and not any("alerts:" in c for c in admission)
        held.set()
        with recording_round_trips() as later:
            await app.state.anomaly.drain()
        assert [trip for trip in later if any("alerts:" in command for command in trip)], later


def assert_four_round_trips(uses: list[Checkout]) -> None:
    """The chat's two uses of a connection: BEGIN, the one statement opening the turn, COMMIT;
    then the reply's statement alone (each statement prepared once per connection, not counted)."""
    [opening, reply] = [use.executed for use in uses]
    # "BEGIN;" on a new connection, "BEGIN ISOLATION LEVEL ..." on one whose level the pool reset
    # after a statement ran alone in autocommit: which one a request gets depends on the pool.
    assert [sql.split()[0].rstrip(";") for sql in opening] == ["BEGIN", "WITH", "COMMIT"], opening
    assert "INSERT INTO chat_messages" in opening[1] and "FROM chat_messages" in opening[1], opening
    assert len(reply) == 1 and "UPDATE chat_sessions" in reply[0], reply
    assert "INSERT INTO chat_messages" in reply[0], reply
