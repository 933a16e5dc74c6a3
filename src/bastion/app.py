# SPDX-License-Identifier: Apache-2.0
"""The composition root: the one place that orders middleware and mounts routers.

Serve with ``uvicorn bastion.app:create_app --factory`` or ``bastion serve``.
"""

from __future__ import annotations

import sys

from fastapi import FastAPI
from starlette.middleware import Middleware

from bastion import __version__
from bastion.api.routes import admin_blocks, health
from bastion.errors import install_error_handlers
from bastion.lifespan import lifespan
from bastion.observability.logging import configure_logging
from bastion.settings import ConfigurationError, Settings, load_settings
from bastion.web import RateLimit, RequestContext, UnhandledErrors


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

    docs = not settings.is_production
    # Listed outermost first. The request context is outermost so every line logged for a
    # request carries its id; the unhandled-error layer is innermost so the response it makes
    # still passes through every header-adding layer above it.
    middleware = [
        Middleware(RequestContext),
        # Blocklist + global per-client limit: after the request context (its 403/429 carry the
        # request id) and after trusted-proxy resolution, before any route work.
        Middleware(RateLimit, trusted_proxies=settings.trusted_proxies, license_url=settings.license_url),
        Middleware(UnhandledErrors, license_url=settings.license_url),
    ]
    app = FastAPI(
        title="Bastion",
        version=__version__,
        debug=False,
        lifespan=lifespan,
        middleware=middleware,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(admin_blocks.router)
    return app
