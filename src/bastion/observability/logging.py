# SPDX-License-Identifier: Apache-2.0
"""Structured logging: JSON lines (or console), a request id on every line, secrets redacted.

Every string in an event is scanned by the redactor unless it is ``Own`` (text Bastion wrote
itself, or already scrubbed), so a line whose fields are Bastion's own costs no scan.

Library loggers (uvicorn, SQLAlchemy, Alembic) are routed through the same processors, so their
lines are redacted and carry the request id too.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import select
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

from bastion.audit.context import CURRENT
from bastion.observability.redaction import Own, Redactor
from bastion.settings import Settings

# Loggers that would print request lines or SQL on their own: theirs is replaced by ours.
_QUIET = {
    "uvicorn.access": logging.WARNING,
    "sqlalchemy.engine": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
}


# Concrete loggers for lines written on every request, dropped whenever logging is configured again.
_BOUND: dict[str, structlog.stdlib.BoundLogger] = {}
# The largest write a pipe takes whole (POSIX guarantees at least 512; Linux gives 4096).
_ATOMIC_WRITE = getattr(select, "PIPE_BUF", 512)
# json.dumps builds its C encoder on every call; this one is built once, with the JSON renderer's
# settings (ASCII output, ", " and ": " separators, keys in their order).
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_ENCODE = (
    _C_ENCODER(None, str, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True)
    if _C_ENCODER is not None
    else None
)
_DUMPS = json.JSONEncoder(ensure_ascii=True, check_circular=False).encode


def _json(fields: dict[str, Any]) -> str:
    return "".join(_ENCODE(fields, 0)) if _ENCODE is not None else _DUMPS(fields)


class DirectLines:
    """Writes a line whose every field Bastion wrote itself straight to the configured stream.

    A line through the processor chain (redaction, logger name, level, timestamp, the standard
    library's record and formatter) costs about 100 µs; the access line, written on every request,
    costs a few here. The line is the one the JSON renderer writes for the same event (its fields,
    then ``event``, ``request_id``, ``logger``, ``level``, ``timestamp``).

    Lines written on the event loop are joined and written once per turn of the loop, after the
    callbacks of that turn, in writes of at most PIPE_BUF bytes that end on a line's end (a pipe
    shared with other processes takes each whole); elsewhere they are written at once. Either way
    under the handler's lock.

    It is taken only when lines are JSON and go to Bastion's one handler (``ready``); ``write``
    answers False otherwise (console lines, a handler another library added, a level switched off),
    and the caller logs through the chain. Nothing is scanned, so every string given must be ``Own``:
    Bastion's own text or text the redactor already scrubbed.
    """

    def __init__(self, name: str, handler: logging.StreamHandler[TextIO], json_lines: bool) -> None:
        self.name = name
        self.handler = handler
        self.json_lines = json_lines
        self.root = logging.getLogger()
        self.logger = logging.getLogger(name)
        self._pending: list[str | tuple[Callable[..., str], tuple[Any, ...]]] = []
        self._flushing_on: asyncio.AbstractEventLoop | None = None
        self._second = -1
        self._second_text = ""

    def timestamp(self, now: float | None = None) -> str:
        """ISO 8601 in UTC with microseconds (of ``now``, or of this moment), as the chain's
        stamper writes it; the date and time of day are formatted once a second."""
        if now is None:
            now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1_000_000):06d}Z"

    def ready(self, level: int) -> bool:
        """Whether a line at ``level`` may be written here (False: log it through the chain)."""
        root = self.root
        return (
            self.json_lines
            and len(root.handlers) == 1
            and root.handlers[0] is self.handler
            and not self.logger.handlers
            and self.logger.isEnabledFor(level)
        )

    def write(self, level: int, level_name: str, event: str, fields: dict[str, Any], request_id: str) -> bool:
        """``fields`` as a line, followed by the chain's own fields; False when not ``ready``."""
        if not self.ready(level):
            return False
        fields["event"] = event
        fields["request_id"] = request_id
        fields["logger"] = self.name
        fields["level"] = level_name
        fields["timestamp"] = self.timestamp()
        self.put(_json(fields))
        return True

    def put(self, line: str) -> None:
        """A line already rendered (JSON, no newline), written at the end of this turn of the loop."""
        self._queue(line)

    def put_later(self, render: Callable[..., str], *args: Any) -> None:
        """The line ``render(*args)`` will return, rendered and written at the end of this turn of
        the loop with the turn's other lines (where the rendering code stays hot in the caches:
        served, a line rendered on its request's path costs several times what it costs here)."""
        self._queue((render, args))

    def _queue(self, line: str | tuple[Callable[..., str], tuple[Any, ...]]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            text = self._text(line)
            if text:
                self._emit(text)
            return
        if self._flushing_on is not loop:  # a loop that stopped mid-turn left its lines here too
            self._flushing_on = loop
            loop.call_soon(self.flush)
        self._pending.append(line)

    def _text(self, line: str | tuple[Callable[..., str], tuple[Any, ...]]) -> str:
        """The line with its terminator; "" for a line whose rendering failed, which goes to the
        handler's error report (as a broken stream does) and costs the turn's other lines nothing."""
        if not isinstance(line, str):
            render, args = line
            try:
                line = render(*args)
            except Exception:
                self.handler.handleError(logging.makeLogRecord({"msg": f"unrendered line: {render!r}"}))
                return ""
        return line + self.handler.terminator

    def flush(self) -> None:
        self._flushing_on = None
        pending, self._pending = self._pending, []
        # Writes of at most PIPE_BUF bytes: a pipe (a container's log, several workers' shared
        # stderr) takes each whole, never interleaved with another process's line.
        chunk: list[str] = []
        size = 0
        for item in pending:  # ASCII: as many bytes as characters
            line = self._text(item)
            if not line:
                continue
            if chunk and size + len(line) > _ATOMIC_WRITE:
                self._emit("".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._emit("".join(chunk))

    def _emit(self, text: str) -> None:
        handler = self.handler
        with handler.lock:  # type: ignore[union-attr]
            try:
                handler.stream.write(text)
                handler.flush()
            except Exception:  # as the handler itself does: a broken stream never breaks a request
                handler.handleError(logging.makeLogRecord({"msg": text}))


_DIRECT: dict[str, DirectLines] = {}


@atexit.register
def flush_lines() -> None:
    """Write the lines waiting for the end of the loop's turn now (at exit; tests reading a log)."""
    for writer in list(_DIRECT.values()):
        writer.flush()


_HANDLER: list[tuple[logging.StreamHandler[TextIO], bool]] = []


def redactor_for(settings: Settings) -> Redactor:
    return Redactor(extra_names=(settings.api_key_header,), secret_values=settings.secret_values())


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library root logger for this process.

    Logging is process-wide by nature; the app factory calls this, and calling it again (a second
    app in the same process, as tests do) replaces the previous configuration.
    """
    _BOUND.clear()
    flush_lines()  # lines of the configuration ending go where it said
    _DIRECT.clear()
    _HANDLER.clear()
    redactor = redactor_for(settings)
    # The redactor runs before the processors that add the logger name, level and timestamp: those
    # are the chain's own text and need no scan. Exceptions are rendered before it, so their
    # messages (untrusted text) are scrubbed.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.format_exc_info,
        redactor,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if settings.enable_json_logging:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _drop_color, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    _HANDLER.append((handler, settings.enable_json_logging))
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "alembic"):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)


def _add_request_id(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The id of the request being served (``RequestContext`` sets it), on every line written meanwhile."""
    facts = CURRENT.get()
    if facts is not None and "request_id" not in event_dict:
        request_id = facts.request_id()
        if request_id:
            event_dict["request_id"] = Own(request_id)  # Bastion's own id, or a client's it checked
    return event_dict


def _drop_color(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of the message
    return event_dict


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def bound_logger(name: str) -> structlog.stdlib.BoundLogger:
    """``name``'s logger, resolved once per configuration.

    ``get_logger`` returns a lazy proxy that builds a new logger on every call, so that a new
    configuration applies at once; a line written on every request resolves it once instead.
    """
    logger = _BOUND.get(name)
    if logger is None:
        logger = _BOUND[name] = structlog.stdlib.get_logger(name).bind()
    return logger


def direct_lines(name: str) -> DirectLines | None:
    """``name``'s direct writer for this configuration, or None before logging is configured."""
    writer = _DIRECT.get(name)
    if writer is None and _HANDLER:
        handler, json_lines = _HANDLER[0]
        writer = _DIRECT[name] = DirectLines(name, handler, json_lines)
    return writer


def log_own(name: str, level: int, event: str, fields: dict[str, Any]) -> None:
    """Log ``event`` on ``name``: during a request, when every string in ``fields`` is ``Own``,
    straight to the stream (``DirectLines``: the chain's line for a fraction of its cost);
    through the chain otherwise (which scans what is not ``Own``)."""
    facts = CURRENT.get()
    request_id = facts.request_id() if facts is not None else None
    direct = direct_lines(name)
    if (
        request_id
        and direct is not None
        and all(isinstance(value, Own) or not isinstance(value, str) for value in fields.values())
        and direct.write(level, logging.getLevelName(level).lower(), event, fields, request_id)
    ):
        return
    bound_logger(name).log(level, event, **fields)
