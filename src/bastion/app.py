# SPDX-License-Identifier: Apache-2.0
"""The composition root: the one place that orders middleware and mounts routers.

Serve with ``uvicorn bastion.app:create_app --factory`` or ``bastion serve``.
"""

from __future__ import annotations

import sys

from fastapi import FastAPI
from starlette.middleware import Middleware

from bastion import __version__
from bastion.alerts import AnomalyDetector
from bastion.api.contract import install_contract
from bastion.api.deps import check_route_access
from bastion.api.flat import flatten_included
from bastion.api.responses import UTF8JSONResponse
from bastion.api.route_index import RouteIndex
from bastion.api.routes import (
    admin_alerts,
    admin_audit,
    admin_blocks,
    admin_rate_limits,
    admin_secrets,
    admin_sessions,
    admin_users,
    api_keys,
    auth,
    chat,
    health,
    journal,
    legal,
    me,
    openai_compat,
    root,
)
from bastion.api.routes import metrics as metrics_route
from bastion.api.routes.docs import OPENAPI_URL, docs_router
from bastion.audit.access import AccessLog
from bastion.console import console_router
from bastion.errors import install_error_handlers
from bastion.lifespan import lifespan
from bastion.observability.errortracking import start_error_tracking
from bastion.observability.logging import configure_logging, redactor_for
from bastion.observability.metrics import Metrics
from bastion.settings import ConfigurationError, Settings, load_settings, prometheus_multiproc_dir
from bastion.web import (
    CORS,
    BodyLimit,
    HeaderLimits,
    HTTPSRedirect,
    ProxyHeaders,
    RateLimit,
    RequestContext,
    SecurityHeaders,
    StartupRefusals,
    TrustedHosts,
    UnhandledErrors,
)
from bastion.web.api_keys import ApiKeyAuthentication
from bastion.web.authentication import Authentication
from bastion.web.blocklist import PrincipalBlocks
from bastion.web.body_limit import MIB
from bastion.web.json_bodies import StrictJsonBodies
from bastion.web.metrics import RequestMetrics
from bastion.web.mtls import ClientCertificates

# Routes whose bodies may exceed MAX_REQUEST_BODY_BYTES: the audio upload, plus room for the
# multipart framing around it.
VOICE_CHAT_PATH = "/api/sessions/{id}/voice-chat"
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def voice_body_bytes(settings: Settings) -> int:
    """The body cap of the voice upload route: the audio limit plus its multipart framing."""
    return settings.max_audio_size_mb * MIB + MULTIPART_OVERHEAD_BYTES


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Bastion app for ``settings`` (read from the environment when omitted).

    Without explicit settings (the ``--factory`` entry point) a configuration problem is printed
    as a list and the process exits with status 2, with no traceback.
    """
    if settings is None:
        try:
            settings = load_settings()
        except ConfigurationError as exc:
            print(exc.render(), file=sys.stderr)
            raise SystemExit(2) from None
    configure_logging(settings)
    # Process-wide like logging: this is the one call every serving process makes (each worker
    # builds its app here); the app reports with its own client (docs/error-tracking.md).
    error_tracker = start_error_tracking(settings)

    docs = settings.docs_enabled
    # The app's own registry (never the process-wide default); the lifespan serves it on
    # PROMETHEUS_PORT when that is set, GET /metrics always.
    # With several workers (PROMETHEUS_MULTIPROC_DIR, set by `bastion serve`) its scrapes show
    # the merge of every worker's values.
    metrics = Metrics(multiprocess_dir=prometheus_multiproc_dir())
    # Request records: the middleware notes each request, the lifespan starts the batch writer.
    access_log = AccessLog(metrics=metrics, flush_seconds=settings.access_log_flush_seconds)
    # The anomaly detector sees every finished request (RequestMetrics below) and every audit
    # record; the lifespan connects it to Redis, the database and ALERT_WEBHOOK_URL.
    anomaly = AnomalyDetector(settings, metrics=metrics)
    license_url = settings.license_url
    # Listed outermost first. SecurityHeaders sits above the host check and the redirect (not
    # below them) because those answer on their own and their responses need the headers too.
    # 1. RequestContext: every log line and every error body of a request carries its id.
    # 1b. RequestMetrics: right inside, so every answer (middleware refusals too) is counted and
    #     timed to its last byte; the route label is known once the router has run further in.
    # 2. ProxyHeaders: resolves client address and scheme (X-Forwarded-* only from TRUSTED_PROXIES)
    #    before anything reads them: HSTS and the https redirect need the scheme, rate limits and
    #    blocklists further in need the client in scope["client"].
    # 3. SecurityHeaders: outside every layer that answers on its own (host 400, 431, 308 redirect,
    #    CORS preflight and 403, 413/408, 500), so every response gets the headers.
    # 4. HeaderLimits: oversized header sets are refused before any later layer parses them.
    # 5. TrustedHosts: the Host is checked before the redirect builds a URL from it.
    # 6. HTTPSRedirect: plain http goes to https before CORS or the app see the request.
    # 7. CORS: outside the body limit and the error layer so a permitted origin can read their
    #    413/500 answers; preflights are answered here without touching the app.
    # 8. RateLimit: blocklist (403) and the global per-client limit (429), keyed on the resolved
    #    client address; inside the header and CORS layers so its answers carry them, and before
    #    any body is read. It runs before authentication, so the global limit is per address;
    #    per-user and per-key policies are route dependencies, which run after authentication.
    # 9. BodyLimit: caps bodies as they stream, right before the app reads them.
    # 10. UnhandledErrors: its 500 still passes through every header layer above.
    # 11. Authentication: sets scope["state"]["principal"] and never answers by itself (route
    #     dependencies give the 401/403); inside UnhandledErrors so its failures get the shape.
    #     Policies compose, first identity wins, outermost first: ClientCertificates (mutual-TLS
    #     service identity), ApiKeyAuthentication (managed and static keys; answers 401 for a bad
    #     key and enforces REQUIRE_API_KEY), then Authentication (JWT bearer or cookie).
    # 12. PrincipalBlocks: blocked API keys and users get 403 once they are known, before routing.
    # 13. StrictJsonBodies: a JSON body with duplicate names, NaN, non-UTF-8 text or deep nesting
    #     is a 400 before FastAPI's lenient parser reads it (after the blocks: a blocked caller
    #     learns nothing about its body).
    # 0. StartupRefusals: a refusal while starting (a wrong DATABASE_ENCRYPTION_KEY) is logged as
    #    one line instead of a traceback; it only looks at lifespan messages.
    middleware = [
        Middleware(StartupRefusals),
        Middleware(RequestContext, redactor=redactor_for(settings)),
        Middleware(RequestMetrics, metrics=metrics, access_log=access_log, observer=anomaly),
        Middleware(ProxyHeaders, trusted_proxies=settings.trusted_proxies),
        Middleware(
            SecurityHeaders,
            api_key_header=settings.api_key_header,
            microphone_paths=settings.microphone_paths,
            x_xss_protection=settings.x_xss_protection,
            extra_headers=settings.license_headers,
        ),
        Middleware(
            HeaderLimits,
            max_count=settings.max_request_headers,
            max_bytes=settings.max_request_header_bytes,
            license_url=license_url,
        ),
        Middleware(TrustedHosts, allowed_hosts=settings.allowed_hosts, license_url=license_url),
        Middleware(HTTPSRedirect, enabled=settings.force_https),
        Middleware(
            CORS,
            allowed_origins=settings.allowed_origins,
            allow_headers=("Content-Type", "Authorization", settings.api_key_header, "X-CSRF-Token"),
            license_url=license_url,
        ),
        Middleware(RateLimit, trusted_proxies=settings.trusted_proxies, license_url=license_url),
        Middleware(
            BodyLimit,
            max_body_bytes=settings.max_request_body_bytes,
            route_limits={
                VOICE_CHAT_PATH: voice_body_bytes(settings),
            },
            json_max_bytes=settings.max_json_body_bytes,
            timeout_seconds=settings.request_body_timeout_seconds,
            license_url=license_url,
        ),
        Middleware(UnhandledErrors, license_url=license_url, error_tracker=error_tracker),
        Middleware(
            ClientCertificates,
            identities=settings.mtls_service_identities,
            client_header=settings.mtls_client_header,
            trusted_proxies=settings.trusted_proxies,
        ),
        Middleware(
            ApiKeyAuthentication,
            header=settings.api_key_header,
            require_api_key=bool(settings.require_api_key),
            trusted_proxies=settings.trusted_proxies,
            license_url=license_url,
        ),
        Middleware(Authentication, trusted_proxies=settings.trusted_proxies, license_url=license_url),
        Middleware(PrincipalBlocks, license_url=license_url),
        Middleware(StrictJsonBodies, license_url=license_url),
    ]
    app = FastAPI(
        title="Bastion",
        version=__version__,
        debug=False,
        lifespan=lifespan,
        middleware=middleware,
        default_response_class=UTF8JSONResponse,
        # FastAPI's own OpenTelemetry export is off: Bastion sends no spans or telemetry anywhere
        # an operator did not configure in Bastion's settings (a provider some other library set
        # up globally would otherwise receive every request), and the check for such a provider
        # cost about 3 µs on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # The framework's pages carry inline code the page CSP refuses; docs.py serves nonced ones.
        docs_url=None,
        redoc_url=None,
        openapi_url=OPENAPI_URL if docs else None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.access_log = access_log
    app.state.anomaly = anomaly
    app.state.error_tracker = error_tracker
    install_error_handlers(app)
    app.include_router(root.router)
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    app.include_router(legal.router)
    app.include_router(auth.jwks_router)
    app.include_router(auth.router)
    app.include_router(me.router)
    app.include_router(admin_users.router)
    app.include_router(admin_users.invitations)
    app.include_router(admin_blocks.router)
    app.include_router(admin_audit.router)
    app.include_router(admin_alerts.router)
    app.include_router(admin_sessions.router)
    app.include_router(admin_rate_limits.router)
    app.include_router(admin_secrets.router)
    app.include_router(api_keys.router)
    app.include_router(api_keys.admin_router)
    app.include_router(chat.router)
    app.include_router(journal.router)
    app.include_router(openai_compat.router)
    app.include_router(openai_compat.models_router)
    # The admin console's pages and assets: public (they hold no data; every figure on them comes
    # from the admin API with the administrator's session).
    app.include_router(console_router())
    if docs:
        app.include_router(docs_router(app))
    # Each included router's routes as top-level routes: FastAPI's per-request walk through an
    # included router costs more than most routes' own work (bastion.api.flat).
    flatten_included(app)
    # Every route declares one permission (or public): a route that forgot refuses to start.
    check_route_access(app.routes)
    install_contract(app)
    app.router.routes.insert(0, health.liveness_route())
    app.router.middleware_stack = RouteIndex(app.router)
    return app
