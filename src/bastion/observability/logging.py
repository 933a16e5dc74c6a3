# SPDX-License-Identifier: Apache-2.0
"""Structured logging: JSON lines (or console), a request id on every line, secrets redacted.

Every string in an event is scanned by the redactor unless it is ``Own`` (text Bastion wrote
itself, or already scrubbed), so a line whose fields are Bastion's own costs no scan.

Library loggers (uvicorn, SQLAlchemy, Alembic) are routed through the same processors, so their
lines are redacted and carry the request id too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from bastion.observability.redaction import Redactor
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


def redactor_for(settings: Settings) -> Redactor:
    return Redactor(extra_names=(settings.api_key_header,), secret_values=settings.secret_values())


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library root logger for this process.

    Logging is process-wide by nature; the app factory calls this, and calling it again (a second
    app in the same process, as tests do) replaces the previous configuration.
    """
    _BOUND.clear()
    redactor = redactor_for(settings)
    # The redactor runs before the processors that add the logger name, level and timestamp: those
    # are the chain's own text and need no scan. Exceptions are rendered before it, so their
    # messages (untrusted text) are scrubbed.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
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
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "alembic"):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)


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
