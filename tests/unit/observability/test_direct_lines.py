# SPDX-License-Identifier: Apache-2.0
"""The access line written straight to the stream: the chain's line, batched per loop turn."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import select
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from bastion.audit.context import CURRENT, RequestFacts
from bastion.observability.logging import (
    DirectLines,
    bound_logger,
    configure_logging,
    direct_lines,
    flush_lines,
    log_own,
)
from bastion.observability.redaction import REDACTED, Own
from bastion.settings import Settings
from bastion.web import RequestContext
from tests.conftest import SettingsFactory
from tests.unit.web.apps import client_for, responder

NAME = "bastion.access"
SECRET = "sk-live-abcdef0123456789abcdef"  # pragma: allowlist secret
QUERY = f"page=2&api_key={SECRET}"
TIMESTAMP_FIELD = re.compile(r'"timestamp": "[^"]*"')
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


class CountingStream(io.StringIO):
    """A stream that remembers each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("disk full")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test configures logging for itself; the root logger's handlers are put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger(NAME)
    access_handlers = list(access.handlers)
    yield
    flush_lines()
    root.handlers[:] = handlers
    root.setLevel(level)
    access.handlers[:] = access_handlers


def _fields() -> dict[str, Any]:
    return {
        "method": Own("GET"),
        "route": Own("/v1/things/{id}"),
        "path": Own("/v1/things/7"),
        "status": 200,
        "duration_ms": 1.25,
        "client": Own("198.51.100.7"),
        "query": Own(f"page=2&api_key={REDACTED}"),
    }


def _writer() -> DirectLines:
    writer = direct_lines(NAME)
    assert writer is not None
    return writer


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _configure(settings: Settings, stream: io.StringIO | None = None) -> io.StringIO:
    stream = stream if stream is not None else CountingStream()
    configure_logging(settings, stream=stream)
    return stream


# -- the line -----------------------------------------------------------------------------------


def test_the_direct_line_is_the_chains_line(make_settings: SettingsFactory) -> None:
    stream = _configure(make_settings())
    assert _writer().write(logging.INFO, "info", Own("request"), _fields(), "abc123")
    bound = structlog.contextvars.bind_contextvars(request_id=Own("abc123"))
    try:
        bound_logger(NAME).info(Own("request"), **_fields())
    finally:
        structlog.contextvars.reset_contextvars(**bound)
    direct_text, chain_text = (TIMESTAMP_FIELD.sub("", t) for t in stream.getvalue().splitlines())
    assert direct_text == chain_text  # byte for byte, but for the time
    direct, chain = _lines(stream)
    assert list(direct) == list(chain)
    assert list(direct) == [
        "method",
        "route",
        "path",
        "status",
        "duration_ms",
        "client",
        "query",
        "event",
        "request_id",
        "logger",
        "level",
        "timestamp",
    ]
    for line in (direct, chain):
        assert TIMESTAMP.fullmatch(line.pop("timestamp"))
    assert direct == chain
    assert direct["logger"] == NAME and direct["level"] == "info" and direct["event"] == "request"


def test_the_error_line_is_the_chains_line(make_settings: SettingsFactory) -> None:
    stream = _configure(make_settings())
    fields = {**_fields(), "status": 502, "client": None}
    assert _writer().write(logging.ERROR, "error", Own("request"), dict(fields), "id-1")
    bound = structlog.contextvars.bind_contextvars(request_id=Own("id-1"))
    try:
        bound_logger(NAME).error(Own("request"), **fields)
    finally:
        structlog.contextvars.reset_contextvars(**bound)
    direct, chain = _lines(stream)
    direct.pop("timestamp")
    chain.pop("timestamp")
    assert list(direct.items()) == list(chain.items())
    assert direct["level"] == "error" and direct["client"] is None


def test_log_own_writes_bastions_own_fields_directly_and_anything_else_through_the_chain(
    make_settings: SettingsFactory,
) -> None:
    """During a request, a line whose strings are all ``Own`` is the direct line; a string Bastion
    did not write (an upstream's model name) sends the line through the chain, which scrubs it;
    outside a request there is no request id to write, and the chain writes the line."""
    stream = _configure(make_settings())
    own = {"session_id": Own("s-1"), "model": Own("fake-model"), "prompt_tokens": 11}
    token = CURRENT.set(RequestFacts(scope={"state": {"request_id": "rid-1"}}, started=0.0))
    try:
        log_own(NAME, logging.INFO, "model_usage", dict(own))
        log_own(NAME, logging.INFO, "model_usage", {**own, "model": f"m {SECRET}"})
    finally:
        CURRENT.reset(token)
    log_own(NAME, logging.INFO, "model_usage", dict(own))
    direct_text, chain_text, _ = (TIMESTAMP_FIELD.sub("", t) for t in stream.getvalue().splitlines())
    assert direct_text == chain_text.replace("m sk-[REDACTED]", "fake-model")  # the chain's line
    direct, chained, outside = _lines(stream)
    assert SECRET not in stream.getvalue() and chained["model"] == f"m sk-{REDACTED}"
    assert direct["request_id"] == chained["request_id"] == "rid-1" and "request_id" not in outside
    assert {k: direct[k] for k in own} == own and direct["event"] == "model_usage"


def test_non_ascii_text_is_escaped_as_the_chain_does(make_settings: SettingsFactory) -> None:
    stream = _configure(make_settings())
    fields = {"path": Own("/caf\u00e9/\u2603"), "status": 404}
    assert _writer().write(logging.INFO, "info", Own("request"), dict(fields), "r")
    bound_logger(NAME).info(Own("request"), request_id=Own("r"), **fields)
    direct, chain = stream.getvalue().splitlines()
    assert direct.isascii()
    assert json.loads(direct)["path"] == json.loads(chain)["path"] == "/caf\u00e9/\u2603"


def test_outside_a_loop_the_line_is_written_at_once(make_settings: SettingsFactory) -> None:
    stream = _configure(make_settings())
    writer = _writer()
    assert writer.write(logging.INFO, "info", Own("request"), _fields(), "one")
    assert len(stream.writes) == 1
    assert writer.write(logging.INFO, "info", Own("request"), _fields(), "two")
    assert len(stream.writes) == 2
    assert [line["request_id"] for line in _lines(stream)] == ["one", "two"]
    assert stream.writes[0].endswith("\n")


def test_there_is_no_writer_before_logging_is_configured(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.observability import logging as module

    monkeypatch.setattr(module, "_HANDLER", [])
    monkeypatch.setattr(module, "_DIRECT", {})
    assert direct_lines(NAME) is None


def test_one_writer_per_name_and_configuration(make_settings: SettingsFactory) -> None:
    _configure(make_settings())
    first = direct_lines(NAME)
    assert direct_lines(NAME) is first
    assert direct_lines("bastion.other") is not first
    _configure(make_settings())
    assert direct_lines(NAME) is not first


# -- on the loop --------------------------------------------------------------------------------


async def test_on_the_loop_lines_wait_for_flush_lines(make_settings: SettingsFactory) -> None:
    stream = _configure(make_settings())
    assert _writer().write(logging.INFO, "info", Own("request"), _fields(), "waiting")
    assert stream.getvalue() == ""
    flush_lines()
    assert [line["request_id"] for line in _lines(stream)] == ["waiting"]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(stream.writes) == 1  # the turn's callback finds nothing left


async def test_on_the_loop_lines_are_written_when_the_turn_ends(make_settings: SettingsFactory) -> None:
    stream = _configure(make_settings())
    writer = _writer()
    for request_id in ("a", "b", "c"):
        assert writer.write(logging.INFO, "info", Own("request"), _fields(), request_id)
    assert stream.writes == []
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(stream.writes) == 1  # three lines, one write
    assert [line["request_id"] for line in _lines(stream)] == ["a", "b", "c"]
    assert writer.write(logging.INFO, "info", Own("request"), _fields(), "d")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(stream.writes) == 2
    assert [line["request_id"] for line in _lines(stream)] == ["a", "b", "c", "d"]


async def test_a_line_rendered_later_keeps_its_place_and_is_rendered_once_at_the_turns_end(
    make_settings: SettingsFactory,
) -> None:
    stream = _configure(make_settings())
    writer = _writer()
    rendered: list[str] = []

    def render(text: str) -> str:
        rendered.append(text)
        return json.dumps({"event": text})

    writer.put(json.dumps({"event": "first"}))
    writer.put_later(render, "second")
    writer.put(json.dumps({"event": "third"}))
    assert rendered == [] and stream.writes == []
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert rendered == ["second"] and len(stream.writes) == 1
    assert [line["event"] for line in _lines(stream)] == ["first", "second", "third"]


def test_outside_a_loop_a_line_rendered_later_is_rendered_and_written_at_once(
    make_settings: SettingsFactory,
) -> None:
    stream = _configure(make_settings())
    _writer().put_later(lambda text: json.dumps({"event": text}), "now")
    assert [line["event"] for line in _lines(stream)] == ["now"]


async def test_a_request_line_has_the_time_its_request_ended_not_the_time_it_was_written(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _configure(make_settings())
    with monkeypatch.context() as patched:
        patched.setattr(time, "time", lambda: 1_800_000_000.25)
        await _request(RequestContext(responder()), "/then")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    (line,) = _lines(stream)
    assert line["timestamp"] == "2027-01-15T08:00:00.250000Z" and line["path"] == "/then"


async def _request(app: Any, path: str = "/", query: bytes = b"") -> list[dict[str, Any]]:
    """One request straight through the ASGI app, without any suspension in between."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": [],
        "client": ("198.51.100.7", 4321),
        "scheme": "http",
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_requests_finishing_in_one_turn_are_one_write(make_settings: SettingsFactory) -> None:
    stream = _configure(make_settings())
    app = RequestContext(responder())
    answers = await asyncio.gather(*(_request(app, f"/r{i}") for i in range(5)))
    assert all(sent[0]["status"] == 200 for sent in answers)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(stream.writes) == 1
    lines = _lines(stream)
    assert sorted(line["path"] for line in lines) == [f"/r{i}" for i in range(5)]
    ids = {dict(sent[0]["headers"])[b"x-request-id"].decode() for sent in answers}
    assert {line["request_id"] for line in lines} == ids


async def test_the_request_context_line_through_a_client(make_settings: SettingsFactory) -> None:
    stream = _configure(make_settings())
    async with client_for(RequestContext(responder()), base_url="http://testserver") as http:
        response = await http.get("/things", params={"page": "2", "api_key": SECRET})
    flush_lines()
    (line,) = _lines(stream)
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["event"] == "request" and line["status"] == 200 and line["method"] == "GET"
    assert line["query"] == f"page=2&api_key={REDACTED}"
    assert SECRET not in stream.getvalue()


async def test_a_request_line_on_the_loop_is_not_written_before_the_turn_ends(
    make_settings: SettingsFactory,
) -> None:
    stream = _configure(make_settings())
    await _request(RequestContext(responder()), "/now")
    assert stream.getvalue() == ""
    await asyncio.sleep(0)
    (line,) = _lines(stream)
    assert line["path"] == "/now"


# -- when the chain writes instead -------------------------------------------------------------


async def _one_logged_request(settings: Settings) -> str:
    stream = _configure(settings)
    async with client_for(RequestContext(responder()), base_url="http://testserver") as http:
        await http.get("/things", params={"page": "2", "api_key": SECRET})
    flush_lines()
    return stream.getvalue()


async def test_another_root_handler_sends_the_line_through_the_chain(make_settings: SettingsFactory) -> None:
    stream = _configure(make_settings())
    other = io.StringIO()
    extra = logging.StreamHandler(other)
    logging.getLogger().addHandler(extra)
    assert not _writer().write(logging.INFO, "info", Own("request"), _fields(), "x")
    assert stream.getvalue() == ""
    async with client_for(RequestContext(responder()), base_url="http://testserver") as http:
        await http.get("/things", params={"page": "2", "api_key": SECRET})
    (line,) = _lines(stream)  # written at once, by the chain
    assert line["query"] == f"page=2&api_key={REDACTED}"
    assert SECRET not in stream.getvalue()
    assert "request" in other.getvalue()  # the other handler has it too
    assert SECRET not in other.getvalue()


async def test_a_handler_on_the_access_logger_sends_the_line_through_the_chain(
    make_settings: SettingsFactory,
) -> None:
    stream = _configure(make_settings())
    own = io.StringIO()
    logging.getLogger(NAME).addHandler(logging.StreamHandler(own))
    assert not _writer().write(logging.INFO, "info", Own("request"), _fields(), "x")
    async with client_for(RequestContext(responder()), base_url="http://testserver") as http:
        await http.get("/things", params={"api_key": SECRET})
    (line,) = _lines(stream)
    assert line["query"] == f"api_key={REDACTED}"
    assert own.getvalue() != ""
    assert SECRET not in stream.getvalue() + own.getvalue()


async def test_console_lines_go_through_the_chain(make_settings: SettingsFactory) -> None:
    settings = make_settings(ENABLE_JSON_LOGGING=False)
    _configure(settings)
    assert not _writer().write(logging.INFO, "info", Own("request"), _fields(), "x")
    output = await _one_logged_request(settings)
    (line,) = output.splitlines()
    assert "request" in line and "/things" in line
    assert REDACTED in line
    assert SECRET not in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


async def test_at_debug_the_line_has_headers_through_the_chain(make_settings: SettingsFactory) -> None:
    settings = make_settings(LOG_LEVEL="DEBUG")
    stream = _configure(settings)
    async with client_for(RequestContext(responder()), base_url="http://testserver") as http:
        await http.get("/things", params={"api_key": SECRET}, headers={"Authorization": f"Bearer {SECRET}"})
    # written at once: the chain does not wait for the loop's turn
    access = [json.loads(line) for line in stream.getvalue().splitlines() if '"bastion.access"' in line]
    (line,) = access
    assert line["query"] == f"api_key={REDACTED}"
    assert line["headers"]["authorization"] == REDACTED
    assert SECRET not in stream.getvalue()


async def test_a_level_switched_off_is_not_written(make_settings: SettingsFactory) -> None:
    stream = _configure(make_settings(LOG_LEVEL="WARNING"))
    writer = _writer()
    assert not writer.write(logging.INFO, "info", Own("request"), _fields(), "info-line")
    assert writer.write(logging.ERROR, "error", Own("request"), _fields(), "error-line")
    async with client_for(RequestContext(responder()), base_url="http://testserver") as http:
        await http.get("/quiet")
        await http.get("/failing-upstream")  # 200 too: nothing logged at WARNING
    async with client_for(RequestContext(responder(status=503)), base_url="http://testserver") as http:
        await http.get("/down")
    flush_lines()
    lines = _lines(stream)
    assert [
        (line["request_id"] if line["request_id"] == "error-line" else line["path"]) for line in lines
    ] == [
        "error-line",
        "/down",
    ]
    assert lines[1]["level"] == "error" and lines[1]["status"] == 503


# -- a broken stream, a new configuration --------------------------------------------------------


async def test_a_stream_that_raises_does_not_break_the_request(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(make_settings(), BrokenStream())
    handler = logging.getLogger().handlers[0]
    failed: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", failed.append)
    async with client_for(RequestContext(responder()), base_url="http://testserver") as http:
        response = await http.get("/things")
        assert response.status_code == 200
        await asyncio.sleep(0)
    flush_lines()
    assert len(failed) == 1
    assert json.loads(failed[0].getMessage())["path"] == "/things"  # the line it could not write
    # and the next turn's line is tried again
    assert _writer().write(logging.INFO, "info", Own("request"), _fields(), "next")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(failed) == 2
    assert json.loads(failed[1].getMessage())["request_id"] == "next"


def test_a_stream_that_raises_goes_to_the_handlers_error_report(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(make_settings(), BrokenStream())
    monkeypatch.setattr(logging, "raiseExceptions", True)
    assert _writer().write(logging.INFO, "info", Own("request"), _fields(), "reported")
    assert "disk full" in capsys.readouterr().err


async def test_a_line_that_fails_to_render_is_reported_and_the_turns_other_lines_are_written(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = _configure(make_settings())
    monkeypatch.setattr(logging, "raiseExceptions", True)
    writer = _writer()

    def broken() -> str:
        raise ValueError("cannot render")

    writer.put(json.dumps({"event": "before"}))
    writer.put_later(broken)
    writer.put(json.dumps({"event": "after"}))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [line["event"] for line in _lines(stream)] == ["before", "after"]
    assert "cannot render" in capsys.readouterr().err


async def test_configuring_again_flushes_pending_lines_to_the_old_stream(
    make_settings: SettingsFactory,
) -> None:
    old = _configure(make_settings())
    assert _writer().write(logging.INFO, "info", Own("request"), _fields(), "before")
    assert old.getvalue() == ""
    new = _configure(make_settings())
    assert [line["request_id"] for line in _lines(old)] == ["before"]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert new.getvalue() == ""
    assert _writer().write(logging.INFO, "info", Own("request"), _fields(), "after")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [line["request_id"] for line in _lines(new)] == ["after"]
    assert [line["request_id"] for line in _lines(old)] == ["before"]


def test_a_line_left_by_a_loop_that_stopped_is_written_by_the_next_loop(
    make_settings: SettingsFactory,
) -> None:
    stream = _configure(make_settings())
    writer = _writer()

    def write(request_id: str) -> None:
        writer.write(logging.INFO, "info", Own("request"), _fields(), request_id)

    first = asyncio.new_event_loop()
    try:
        first.call_soon(first.stop)
        first.call_soon(write, "last-of-first")  # the loop stops before the next turn
        first.run_forever()
    finally:
        first.close()

    async def later() -> None:
        write("in-second")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(later())
    assert [line["request_id"] for line in _lines(stream)] == ["last-of-first", "in-second"]


# -- the line of a routed request, rendered from its parts --------------------------------------


class _Route:
    path = "/things/list"


def _routed(status: int) -> Any:
    """An app that names its route (as the router does) and answers ``status``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = _Route()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


@pytest.mark.parametrize("status", [200, 404, 503])
async def test_a_routed_requests_line_is_the_chains_line(make_settings: SettingsFactory, status: int) -> None:
    """Rendered from cached parts (a path that is its template, no query) and through the whole chain
    (forced by a second root handler): the same line, byte for byte, but for the timing fields."""
    rendered: list[str] = []
    for through_chain in (False, True):
        stream = _configure(make_settings())
        if through_chain:
            logging.getLogger().addHandler(logging.NullHandler())
        app = RequestContext(_routed(status))
        async with client_for(app, base_url="http://testserver", client=("203.0.113.9", 4000)) as http:
            for _ in range(2):  # the second one from the cached start of the line
                await http.get("/things/list", headers={"X-Request-ID": "trace-0001-routed"})
        flush_lines()
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2 and lines[0] != ""
        rendered += lines
        if through_chain:
            logging.getLogger().handlers.pop()
    timing = re.compile(r'"duration_ms": [0-9.e-]+|"timestamp": "[^"]*"')
    assert len({timing.sub("", line) for line in rendered}) == 1, rendered
    line = json.loads(rendered[0])
    assert (line["route"], line["path"], line["status"], line["client"]) == (
        "/things/list",
        "/things/list",
        status,
        "203.0.113.9",
    )
    assert line["level"] == ("error" if status >= 500 else "info")
    assert TIMESTAMP.match(line["timestamp"])


async def test_a_turns_lines_are_written_in_whole_lines_of_at_most_a_pipes_atomic_write(
    make_settings: SettingsFactory,
) -> None:
    stream = _configure(make_settings())
    assert isinstance(stream, CountingStream)
    writer = _writer()
    for n in range(60):  # about 250 bytes each: several writes' worth
        assert writer.write(logging.INFO, "info", Own("request"), {**_fields(), "n": n}, f"id-{n}")
    await asyncio.sleep(0)
    assert len(stream.writes) > 1
    for chunk in stream.writes:
        assert len(chunk.encode()) <= select.PIPE_BUF and chunk.endswith("\n")
    assert [line["n"] for line in _lines(stream)] == list(range(60))
