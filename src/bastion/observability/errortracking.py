# SPDX-License-Identifier: Apache-2.0
"""SENTRY_DSN: unhandled errors reported to Sentry, scrubbed before anything leaves the process.

sentry-sdk keeps one client per process (``sentry_sdk.init`` sets it on the global scope, and its
integrations patch Starlette and the logging module process-wide). ``create_app`` calls
``start_error_tracking`` because the app factory is what runs in every process that serves
requests: each uvicorn worker of ``bastion serve --workers N`` (spawned, so nothing initialized in
the supervising process would reach it) and ``uvicorn bastion.app:create_app --factory`` alike.

Two apps in one process (tests do this) do not report into each other: each app captures its
unhandled errors with its own client, on a scope of its own, so an app's events go only to its own
DSN and pass only through its own scrubber. Building an app without SENTRY_DSN also takes a client
that an earlier app installed off the global scope, so what the integrations catch by themselves
(a crashed thread, an error outside a request) is not sent on the earlier app's behalf.

What is sent: the exception (type, scrubbed message, stack frames without local variables), the
request's method, URL path and a few harmless headers, scrubbed log breadcrumbs, ENVIRONMENT and
the release. What never is: request bodies, query strings, cookies, any other header, local
variables, user addresses, and any configured secret wherever it would appear (docs/error-tracking.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, cast

import sentry_sdk
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

from bastion import __version__
from bastion.observability.logging import redactor_for
from bastion.observability.redaction import Redactor
from bastion.settings import Settings

__all__ = ["ALLOWED_HEADERS", "ErrorTracker", "EventScrubber", "start_error_tracking"]

# The only request headers an event may carry; every other one (credentials, cookies, CSRF tokens,
# forwarding addresses, headers nobody thought of) is dropped whole.
ALLOWED_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "content-length", "content-type", "host", "user-agent"}
)
# Of the request, only these survive; query strings, cookies, bodies and the server environment go.
_REQUEST_FIELDS = ("method", "url", "headers")
SHUTDOWN_FLUSH_SECONDS = 2.0
ERRORS_LOGGER = "bastion.errors"  # bastion.web.errors.UnhandledErrors logs there


class EventScrubber:
    """``before_send``, ``before_send_transaction`` and ``before_breadcrumb`` of Bastion's client.

    Built on the app's log ``Redactor``: the same rules (credential-shaped names and values, Bastion
    API keys, JWTs, bearer tokens, URL passwords) and the same configured secret values.
    """

    def __init__(self, redactor: Redactor, *, allowed_headers: Iterable[str] = ALLOWED_HEADERS) -> None:
        self.redactor = redactor
        self.allowed_headers = frozenset(allowed_headers)

    def __call__(self, event: Event, _hint: Hint) -> Event | None:
        fields: dict[str, Any] = dict(event)
        request = fields.get("request")
        if isinstance(request, dict):
            fields["request"] = self._request(request)
        fields.pop("user", None)  # never set by Bastion; an address or id put there is not sent
        scrubbed = self.redactor.value(fields, keep=(datetime, date))
        return cast("Event", scrubbed) if isinstance(scrubbed, dict) else None

    def breadcrumb(self, crumb: Breadcrumb, _hint: BreadcrumbHint) -> Breadcrumb | None:
        scrubbed = self.redactor.value(dict(crumb), keep=(datetime, date))
        return cast("Breadcrumb", scrubbed) if isinstance(scrubbed, dict) else None

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        kept = {name: request[name] for name in _REQUEST_FIELDS if name in request}
        if isinstance(kept.get("url"), str):
            kept["url"] = self.redactor.url(kept["url"])
        if "headers" in kept:
            kept["headers"] = self.redactor.headers(kept["headers"], allowed=self.allowed_headers)
        return kept


class ErrorTracker:
    """The app's Sentry client; ``capture`` reports one unhandled exception through it."""

    def __init__(self, client: sentry_sdk.client.BaseClient) -> None:
        self.client = client

    def capture(self, exc: BaseException) -> None:
        # A scope of its own with this app's client: the request details the integration put on
        # the request's isolation scope are kept, and the event goes to this app's DSN only.
        with sentry_sdk.new_scope() as scope:
            scope.set_client(self.client)
            scope.capture_exception(exc)

    def flush(self, timeout: float = SHUTDOWN_FLUSH_SECONDS) -> None:
        self.client.flush(timeout=timeout)


def _ours(client: sentry_sdk.client.BaseClient) -> bool:
    options = getattr(client, "options", None) or {}
    return isinstance(options.get("before_send"), EventScrubber)


def start_error_tracking(settings: Settings) -> ErrorTracker | None:
    """Initialize sentry-sdk for this process when SENTRY_DSN is set; None (and no client) otherwise."""
    dsn = settings.secret("SENTRY_DSN")
    global_scope = sentry_sdk.get_global_scope()
    if dsn is None:
        if _ours(global_scope.client):
            global_scope.set_client(None)  # an earlier app's client: not this app's to report with
        return None
    redactor = redactor_for(settings)
    scrubber = EventScrubber(redactor)
    sentry_sdk.init(
        dsn=dsn,
        environment=settings.environment,
        release=f"bastion@{__version__}",
        # What the SDK collects at all (``data_collection`` supersedes ``send_default_pii``, which
        # sentry-sdk 2.75 deprecates): no user, cookies, query strings, bodies or local variables,
        # and only the allowed headers. The scrubber below still checks everything it lets through.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "allowlist", "terms": sorted(ALLOWED_HEADERS)}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "graphql": {"document": False, "variables": False},
            "gen_ai": {"inputs": False, "outputs": False},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
        },
        max_request_body_size="never",
        include_local_variables=False,
        before_send=scrubber,
        before_send_transaction=scrubber,
        before_breadcrumb=scrubber.breadcrumb,
        # Tracing stays off: error events only.
        traces_sample_rate=None,
        # Only the integrations named here and the SDK's defaults; none that would record Redis
        # commands, SQL statements or outgoing URLs as breadcrumbs.
        auto_enabling_integrations=False,
        integrations=[
            # Domain errors (503 outages, 502 upstream failures) are answers, not bugs: only
            # exceptions that escaped the app are reported, by UnhandledErrors.
            # No spans around each middleware either: tracing is off.
            StarletteIntegration(failed_request_status_codes=set(), middleware_spans=False),
            FastApiIntegration(failed_request_status_codes=set(), middleware_spans=False),
            # Log lines become (scrubbed) breadcrumbs, never events of their own: the unhandled
            # error is captured once, with its exception, by UnhandledErrors.
            LoggingIntegration(level=logging.INFO, event_level=None),
        ],
    )
    # The unhandled-error log line is the event itself: as a breadcrumb it would repeat the
    # whole traceback inside the event.
    ignore_logger(ERRORS_LOGGER)
    return ErrorTracker(global_scope.client)
