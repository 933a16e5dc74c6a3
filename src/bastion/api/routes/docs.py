# SPDX-License-Identifier: Apache-2.0
"""API documentation pages that work under the strict page CSP (served only when docs are enabled)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse

from bastion.api.deps import public

OPENAPI_URL = "/openapi.json"


def _with_nonce(page: HTMLResponse, request: Request) -> HTMLResponse:
    """Mark the page's own script and style tags with this response's CSP nonce.

    The page CSP allows no inline code; the nonce made by SecurityHeaders lets exactly these tags run.
    """
    nonce = request.state.csp_nonce
    html = bytes(page.body).decode()
    for tag in ("<script", "<style", '<link rel="stylesheet"', '<link type="text/css" rel="stylesheet"'):
        html = html.replace(tag, f'{tag} nonce="{nonce}"')
    return HTMLResponse(html)


def docs_router(app: FastAPI) -> APIRouter:
    router = APIRouter(include_in_schema=False, dependencies=[Depends(public)])

    @router.get("/docs")
    async def swagger(request: Request) -> HTMLResponse:
        return _with_nonce(get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{app.title} API"), request)

    @router.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        return _with_nonce(get_redoc_html(openapi_url=OPENAPI_URL, title=f"{app.title} API"), request)

    return router
