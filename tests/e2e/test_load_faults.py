# SPDX-License-Identifier: Apache-2.0
"""Two served instances on one PostgreSQL and one Redis, under concurrent traffic while things break.

Many users (tokens) and apps (API keys) chat (JSON and streamed), write, replace and read journal
entries on two `bastion serve` processes behind a round-robin balancer. Meanwhile: an API key is
revoked and a user logs out; the model provider fails (5xx and dropped connections) and recovers;
Redis is restarted on its port; PostgreSQL is paused (every server process SIGSTOPped) for a few
seconds; one instance is killed with SIGKILL and started again. Afterwards:

* every write answered 2xx (journal entries, chat replies) is in the database and readable, and
  a replaced entry reads as its last acknowledged content (or a later one whose answer was lost);
* no 500; every refusal has the error shape, and every 429 and 503 a Retry-After;
* a limit is never exceeded across the instances (2xx per limited identity vs the limit);
* the revoked key and the ended session are refused on both instances after a second;
* every acknowledged journal entry has its audit record, and `bastion audit verify` finds both
  audit chains intact; neither instance logged an unhandled exception.

Bounded: a fixed number of clients, a request cap per client and a wall-clock cap. `make soak` runs
the fault cycle again and again for BASTION_SOAK_SECONDS, with BASTION_SOAK_CLIENTS clients
(BASTION_SOAK_REQUESTS caps each client's requests).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from bastion.crypto import material
from bastion.db import migrate
from tests.integration.auth.helpers import CHEAP_HASHING, PASSWORD
from tests.support.bastion_server import ServerProcess, bastion_process, run_bastion
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import PostgresServer, RedisServer, paused
from tests.support.traffic import Answer, Client, Cluster, summary

SOAK_SECONDS = float(os.environ.get("BASTION_SOAK_SECONDS", "0"))  # 0: one fault cycle
CLIENTS = max(10, int(os.environ.get("BASTION_SOAK_CLIENTS", "24")))  # the roles below need ten
MAX_REQUESTS = int(os.environ.get("BASTION_SOAK_REQUESTS", "0")) or 400 + int(SOAK_SECONDS * 10)
WALL_CLOCK_CAP = 60.0 + SOAK_SECONDS * 1.5  # traffic stops here whatever happened
TAIL = 3.0  # seconds of traffic after the last fault, to see every part recovered
BACKOFF = 0.1  # seconds a client waits after a refusal or no answer
PROPAGATION = 1.0  # a revocation holds on every instance this long after it was answered
JOURNAL_RATE, JOURNAL_BURST = 120, 10  # per minute, per user: one every 0.5 s
KEY_MESSAGES_PER_HOUR = 5  # the limited apps' keys

# Client roles, by number (everyone else chats, writes and reads in turn).
GREEDY = {2, 3}  # write journal entries as fast as they can (a token, a key)
LIMITED = {5, 7}  # keys with KEY_MESSAGES_PER_HOUR, chatting as fast as they can
LOGGED_OUT = 8  # a user who logs out mid-run
REVOKED = 9  # an app whose key its owner revokes mid-run

# One fault cycle takes about a minute with its setup (a restarted instance alone needs ~10 s on a
# busy machine); the margin keeps a slow machine from failing it, a hang is still bounded.
# Under pytest-xdist it shares the "load" group with the other test that loads the machine with
# many clients (tests/e2e/test_sqlite_concurrency.py): one worker runs them one after the other,
# never both at once, so neither restarts, pauses or queues against the other's load.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.timeout(int(240 + SOAK_SECONDS * 2)),
    pytest.mark.xdist_group("load"),
]


def deployment(postgres: PostgresServer, redis: RedisServer, upstream: FakeUpstream) -> dict[str, str]:
    return {
        "DATABASE_URL": postgres.url(),
        "REDIS_URL": redis.url,
        # Without the shared state a limit or a revocation cannot hold across instances: refuse.
        "RATE_LIMIT_FAIL_MODE": "closed",
        "DATABASE_TIMEOUT_SECONDS": "1",
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": upstream.base_url,
        "LLM_MODEL": "fake-model",
        "LLM_TIMEOUT_SECONDS": "5",
        "LLM_MAX_RETRIES": "1",
        "LLM_BREAKER_RECOVERY_SECONDS": "1",
        # Every instance signs, verifies and hashes with the same secrets.
        **material.generate_all(),
        "API_KEY_SALT": secrets.token_urlsafe(32),
        # One address for every client: only the limits under test are tight.
        "RATE_LIMIT_PER_MINUTE": "100000000",
        "RATE_LIMIT_REGISTER": "100000/minute",
        "RATE_LIMIT_LOGIN": "100000/minute",
        "RATE_LIMIT_SESSIONS_CREATE": "100000/hour",
        "RATE_LIMIT_MESSAGES": "100000/minute",
        "RATE_LIMIT_MESSAGES_PER_HOUR": "100000",
        "RATE_LIMIT_JOURNAL_CREATE": f"{JOURNAL_RATE}/minute;burst={JOURNAL_BURST}",
        "RATE_LIMIT_JOURNAL_READ": "100000/minute",
        "RATE_LIMIT_BLOCK_VIOLATIONS": "0",
        "RATE_LIMIT_BLOCK_AUTH_FAILURES": "0",
        **{name: str(value) for name, value in CHEAP_HASHING.items()},
    }


@dataclass
class User(Client):
    """A client with its account, session and what the cluster acknowledged to it."""

    token: str = ""
    key: str = ""
    key_id: str = ""
    session_id: str = ""
    # Each entry's contents in the order they were written, and whether the write was answered 2xx.
    journal: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)
    message_ids: list[str] = field(default_factory=list)
    steps: int = 0

    @property
    def uses_key(self) -> bool:
        return self.number % 2 == 1

    async def setup(self) -> None:
        """Account, key and chat session, made on the first instance before anything breaks."""
        account = {"email": f"load{self.number}@example.com", "password": PASSWORD}
        await self.settle("POST", "/api/auth/register", json=account)
        self.token = (await self.settle("POST", "/api/auth/login", json=account))["access_token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}
        if self.uses_key:
            body: dict[str, Any] = {"name": f"app-{self.number}", "scopes": ["chat", "journal"]}
            if self.number in LIMITED:
                body["messages_per_hour"] = KEY_MESSAGES_PER_HOUR
            created = await self.settle("POST", "/api/keys", json=body)
            self.key, self.key_id = created["key"], created["id"]
            self.headers = {"X-API-Key": self.key}
        self.session_id = (await self.settle("POST", "/api/sessions", json={}))["id"]

    async def settle(self, method: str, path: str, **kwargs: Any) -> Any:
        """One setup request, asked again (bounded) while the first instance answers 503: a burst
        of sign-ups may find every pooled connection busy for longer than DATABASE_TIMEOUT_SECONDS."""
        for _ in range(20):
            answered = await self.call("setup", method, path, instance=0, **kwargs)
            if answered is not None and answered.status_code != 503:
                assert answered.status_code < 300, answered.text
                return answered.json()
            await asyncio.sleep(0.3)
        raise AssertionError(f"{method} {path} was never answered")

    async def step(self) -> None:
        self.steps += 1
        turn = self.steps % 4
        if self.number in GREEDY or (turn == 1 and self.number not in LIMITED):
            body = {"title": f"day {self.steps}", "content": f"Slept badly, walked a lot ({self.steps})."}
            written = await self.call("journal_create", "POST", "/api/journal", json=body)
            if written is not None and written.status_code == 201:
                self.journal[written.json()["id"]] = [(body["content"], True)]
        elif self.number in LIMITED or turn == 0:
            path = f"/api/sessions/{self.session_id}/messages"
            streamed = self.number not in LIMITED and self.steps % 8 == 4
            content = {"content": f"I feel tired today ({self.steps})", "stream": streamed}
            reply = await self.call("stream" if streamed else "message", "POST", path, json=content)
            if reply is None or reply.status_code != 200:
                return
            if not streamed:
                self.message_ids.append(reply.json()["id"])
                return
            # The last event before the stream's signature: the reply (done) or an error.
            events = [
                (event.removeprefix("event: "), json.loads(data.removeprefix("data: ")))
                for event, data in (block.split("\n")[:2] for block in reply.text.strip().split("\n\n"))
                if event != "event: signature"
            ]
            last, detail = events[-1] if events else ("nothing", {})
            if last == "done":
                self.message_ids.append(detail["id"])
            elif last != "error" or {"error", "message", "request_id"} - detail.keys():
                self.answers[-1].problem = f"a stream that ended with {last} {detail}"
        elif turn == 2 and self.journal:
            entry = list(self.journal)[self.steps % len(self.journal)]
            if self.steps % 8 == 2:
                await self.call("journal_read", "GET", f"/api/journal/{entry}")
                return
            content = f"Revised: slept better ({self.steps})."
            path = f"/api/journal/{entry}"
            replaced = await self.call("journal_update", "PUT", path, json={"content": content})
            self.journal[entry].append((content, replaced is not None and replaced.status_code == 200))
        else:
            await self.call(
                "history", "GET", f"/api/sessions/{self.session_id}/messages", params={"limit": "20"}
            )


@dataclass
class Timeline:
    """When the faults happened (monotonic seconds), for the checks that depend on them."""

    started: float = field(default_factory=time.monotonic)
    revoked: dict[int, float] = field(default_factory=dict)  # client -> revocation answered
    revoking: dict[int, float] = field(default_factory=dict)  # client -> revocation sent
    down: list[tuple[float, float]] = field(default_factory=list)  # the killed instance's outages
    recovered: float = 0.0  # the last fault over
    ended: float = 0.0


async def until(timeline: Timeline, offset: float, cycle_start: float) -> None:
    await asyncio.sleep(max(0.0, cycle_start + offset - time.monotonic()))


async def revoke(users: list[User], timeline: Timeline) -> None:
    """The owner of REVOKED's key revokes it; LOGGED_OUT logs out. Retried (bounded) on a 503."""
    app, person = users[REVOKED], users[LOGGED_OUT]
    owner = {"Authorization": f"Bearer {app.token}"}
    for user, method, path, headers in (
        (app, "DELETE", f"/api/keys/{app.key_id}", owner),
        (person, "POST", "/api/auth/logout", person.headers),
    ):
        timeline.revoking[user.number] = time.monotonic()
        for _ in range(50):
            answered = await user.call("revoke", method, path, instance=0, headers=headers)
            if answered is not None and answered.status_code < 300:
                timeline.revoked[user.number] = time.monotonic()
                break
            await asyncio.sleep(0.2)


async def break_things(
    cluster: Cluster,
    users: list[User],
    upstream: FakeUpstream,
    redis: RedisServer,
    postgres: PostgresServer,
    timeline: Timeline,
) -> None:
    """One fault after the other, in cycles until the soak time is spent (one cycle by default)."""
    victim = cluster.servers[1]
    for cycle in range(max(1, math.ceil(SOAK_SECONDS / 20))):
        start = time.monotonic()
        if cycle == 0:
            await until(timeline, 2, start)
            await revoke(users, timeline)
        await until(timeline, 4, start)
        upstream.failing(Fault.status_code(500), Fault.drop(), Fault.status_code(503, retry_after="1"))
        await until(timeline, 7, start)
        upstream.failing()
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(redis.start)
        await until(timeline, 12, start)
        with paused(postgres):
            await asyncio.sleep(3)
        await until(timeline, 17, start)
        cluster.down.add(1)  # the balancer notices at once: new requests go to the other one
        went_down = time.monotonic()
        await asyncio.to_thread(victim.kill)
        await asyncio.sleep(1)
        await asyncio.to_thread(victim.start)
        cluster.down.discard(1)
        timeline.down.append((went_down, time.monotonic()))
        timeline.recovered = time.monotonic()
        await asyncio.sleep(TAIL)
        if time.monotonic() - timeline.started >= SOAK_SECONDS:
            break


async def traffic(user: User, stop: asyncio.Event, deadline: float) -> None:
    for _ in range(MAX_REQUESTS):
        if stop.is_set() or time.monotonic() > deadline:
            return
        await user.step()
        last = user.answers[-1]
        if last.status is None or last.status >= 400:
            await asyncio.sleep(BACKOFF)  # a refused client pauses (less than Retry-After asks)


@asynccontextmanager
async def clients(cluster: Cluster) -> AsyncIterator[list[User]]:
    # Idle connections are dropped before the server's keep-alive timeout (uvicorn: 5 s), as a
    # balancer's are: a request sent on one the server is closing at that instant never arrives.
    limits = httpx.Limits(max_connections=4, keepalive_expiry=2.0)
    users = [
        User(n, httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits), cluster)
        for n in range(CLIENTS)
    ]
    try:
        yield users
    finally:
        await asyncio.gather(*(user.http.aclose() for user in users))


async def run_scenario(
    cluster: Cluster, upstream: FakeUpstream, redis: RedisServer, postgres: PostgresServer
) -> tuple[list[User], Timeline]:
    async with clients(cluster) as users:
        await asyncio.gather(*(user.setup() for user in users))
        timeline = Timeline()
        stop = asyncio.Event()
        deadline = timeline.started + WALL_CLOCK_CAP
        loads = [asyncio.create_task(traffic(user, stop, deadline)) for user in users]
        try:
            await asyncio.wait_for(
                break_things(cluster, users, upstream, redis, postgres, timeline), WALL_CLOCK_CAP
            )
        finally:
            stop.set()
            await asyncio.gather(*loads)
            timeline.ended = time.monotonic()
        await read_back(users, cluster)
        await probe_revocations(users, cluster)
    return users, timeline


async def read_back(users: list[User], cluster: Cluster) -> None:
    """Everything acknowledged is readable through the API (the revoked credentials excepted)."""
    for user in users:
        if user.number in (LOGGED_OUT, REVOKED):
            continue
        listed: set[str] = set()
        after: str | None = None
        for _ in range(100):  # bounded pages
            params = {"limit": "100", **({"after": after} if after else {})}
            page = await user.call("read_back", "GET", "/api/journal", instance=0, params=params)
            assert page is not None and page.status_code == 200, page and page.text
            listed.update(item["id"] for item in page.json()["items"])
            after = page.json()["next"]
            if after is None:
                break
        assert set(user.journal) <= listed, f"client {user.number} lost {set(user.journal) - listed}"
        for entry, writes in user.journal.items():
            if len(writes) == 1:
                continue
            # The last acknowledged content, or one written after it whose answer was lost.
            last_acknowledged = max(index for index, (_content, ok) in enumerate(writes) if ok)
            possible = {content for content, _ok in writes[last_acknowledged:]}
            read = await user.call("read_back", "GET", f"/api/journal/{entry}", instance=1)
            assert read is not None and read.status_code == 200, read and read.text
            assert read.json()["content"] in possible, (user.number, entry, read.json()["content"], writes)
        history: set[str] = set()
        before: int | None = None
        for _ in range(100):
            params = {"limit": "100", **({"before": str(before)} if before is not None else {})}
            path = f"/api/sessions/{user.session_id}/messages"
            page = await user.call("read_back", "GET", path, instance=1, params=params)
            assert page is not None and page.status_code == 200, page and page.text
            history.update(item["id"] for item in page.json()["items"])
            before = page.json()["next"]
            if before is None:
                break
        assert set(user.message_ids) <= history, (
            f"client {user.number} lost {set(user.message_ids) - history}"
        )


async def probe_revocations(users: list[User], cluster: Cluster) -> None:
    app, person = users[REVOKED], users[LOGGED_OUT]
    for instance in range(len(cluster.servers)):
        for user, path in ((app, "/api/sessions"), (person, "/api/auth/me")):
            status = None
            for _ in range(20):  # bounded: a 503 (nothing decided) is asked again
                answered = await user.call("probe", "GET", path, instance=instance)
                status = answered.status_code if answered is not None else None
                if status != 503:
                    break
                await asyncio.sleep(0.2)
            assert status == 401, (instance, path, status)


async def column(postgres: PostgresServer, query: str) -> set[str]:
    """The first column of what ``query`` returns, read straight from the database."""
    url = make_url(postgres.url())
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
    )
    try:
        return {row[0] for row in await connection.fetch(query)}
    finally:
        await connection.close()


def unexpected(answer: Answer, timeline: Timeline) -> bool:
    """Whether an answer is one the faults do not explain."""
    if answer.status is None:
        # No answer only from the killed instance, for requests in flight when it went down.
        return not any(
            answer.instance == 1 and answer.ended >= down and answer.started <= up
            for down, up in timeline.down
        )
    if answer.problem or answer.status == 500:
        return True
    if answer.status < 300 or answer.status in (429, 503):
        return False
    if answer.status in (502, 504):
        return answer.action not in ("message", "stream")  # the model provider failing
    if answer.status == 401:
        # Only the revoked credentials, once their revocation was sent.
        return answer.started < timeline.revoking.get(answer.client, math.inf) or answer.action == "revoke"
    return True


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """Redis with its append-only file, as the compose file runs it: a restart keeps the state."""
    server = RedisServer(data_dir=tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def test_two_instances_keep_their_promises_through_faults(
    tmp_path: Path, dedicated_postgres: PostgresServer, persistent_redis: RedisServer
) -> None:
    with FakeUpstream() as upstream:
        env = deployment(dedicated_postgres, persistent_redis, upstream)
        migrate.upgrade(env["DATABASE_URL"])
        servers: list[ServerProcess] = [bastion_process(tmp_path, env=env) for _ in range(2)]
        try:
            with ThreadPoolExecutor(len(servers)) as pool:
                list(pool.map(ServerProcess.start, servers))
            cluster = Cluster(servers)
            users, timeline = asyncio.run(
                run_scenario(cluster, upstream, persistent_redis, dedicated_postgres)
            )
        finally:
            for server in servers:
                server.stop()

    answers = [answer for user in users for answer in user.answers]
    # Shown when the test fails (and by `make soak`): answers per action and status over time.
    print(summary(answers, timeline.started, bucket=max(1.0, (timeline.ended - timeline.started) / 60)))
    print(f"timeline: {timeline}")
    odd = [a for a in answers if unexpected(a, timeline)]
    assert not odd, f"{len(odd)} unexplained answers, e.g. {odd[:10]}"
    assert not [a for a in answers if a.status == 500]

    # Every acknowledged write is in the database (the revoked clients' too).
    journals = asyncio.run(column(dedicated_postgres, "SELECT id FROM journal_entries"))
    messages = asyncio.run(column(dedicated_postgres, "SELECT id FROM chat_messages"))
    created = "SELECT target_id FROM audit_logs WHERE event_type = 'journal_entry_created'"
    audited = asyncio.run(column(dedicated_postgres, created))
    for user in users:
        assert set(user.journal) <= journals, f"client {user.number} lost journal entries"
        assert set(user.journal) <= audited, f"client {user.number}'s entries without their audit record"
        assert set(user.message_ids) <= messages, f"client {user.number} lost chat replies"

    # No limit exceeded across the two instances.
    elapsed = timeline.ended - timeline.started
    for user in users:  # creates and replacements spend one allowance
        written = len(user.ok("journal_create")) + len(user.ok("journal_update"))
        assert written <= JOURNAL_BURST + math.floor(elapsed / (60 / JOURNAL_RATE)), (user.number, written)
    for number in LIMITED:
        chatted = len(users[number].ok("message"))
        assert chatted <= KEY_MESSAGES_PER_HOUR + math.floor(elapsed / (3600 / KEY_MESSAGES_PER_HOUR))
        assert chatted >= 1
    limited = [a for n in GREEDY | LIMITED for a in users[n].answers if a.status == 429]
    assert limited, "the limits under test never refused anything"

    # Revocations held: nothing accepted with them a second after they were answered.
    for number in (REVOKED, LOGGED_OUT):
        assert number in timeline.revoked, f"the revocation for client {number} never succeeded"
        accepted = [
            a
            for a in users[number].answers
            if a.action not in ("revoke", "setup")
            and a.started > timeline.revoked[number] + PROPAGATION
            and a.status is not None
            and a.status < 300
        ]
        assert not accepted, f"client {number}'s revoked credential was accepted: {accepted[:5]}"

    # The faults were felt, and the cluster recovered from each.
    assert any(a.status == 503 for a in answers)
    assert any(a.action == "message" and a.status in (502, 503, 504) for a in answers)
    assert any(a.action == "stream" and a.status == 200 for a in answers)
    assert any(a.action == "journal_update" and a.status == 200 for a in answers)
    after = [a for a in answers if a.started > timeline.recovered + 1 and a.status in range(200, 300)]
    assert {a.instance for a in after} == {0, 1}, "an instance served nothing after the faults"
    assert any(a.action == "message" for a in after), "no chat reply after the faults"

    # Nothing escaped as a bug, not even where no status could tell it (a stream already started).
    for server in servers:
        log = server.log_path.read_text(errors="replace")
        assert "unhandled_exception" not in log, log[log.index("unhandled_exception") - 500 :][:3000]

    verified = run_bastion(tmp_path, "audit", "verify", "--format", "json", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    chains = json.loads(verified.stdout)
    assert all(chain["intact"] for chain in chains) and sum(c["records"] for c in chains) > 0
