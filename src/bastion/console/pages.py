# SPDX-License-Identifier: Apache-2.0
"""Serves the admin console: an HTML shell per page and its static assets, all public.

The pages hold no data: every figure on them comes from the admin API, called by the page's
scripts with the administrator's cookie session (and its CSRF token for changes), so serving the
HTML to anyone discloses nothing. The shell is filled in per request with the CSP nonce that
``SecurityHeaders`` made, the only way its module script may run under the strict page policy
(no inline code, no third-party origin); the modules it imports inherit the nonce. Assets are read
from the package once, when the router is built, and looked up by exact name (anything else is a
404), so no request path ever reaches the filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bastion.api.deps import public
from bastion.errors import NotFound

PREFIX = "/admin"
# path segment -> the title shown in the navigation and the page heading.
PAGES: dict[str, str] = {
    "overview": "Overview",
    "alerts": "Alerts",
    "audit": "Audit log",
    "users": "Users",
    "keys": "API keys",
    "blocklist": "Blocklist",
    "rate-limits": "Rate limits",
}
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The assets change with the package: browsers revalidate instead of running a stale module.
_ASSET_CACHE = "no-cache"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str


def _static() -> resources.abc.Traversable:
    return resources.files("bastion.console").joinpath("static")


def load_assets() -> dict[str, Asset]:
    """Every servable file of ``static/`` (flat names only), read into memory."""
    found: dict[str, Asset] = {}
    for entry in _static().iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in _TYPES:
            found[entry.name] = Asset(entry.read_bytes(), _TYPES[suffix])
    return found


def load_pages() -> dict[str, str]:
    """Each page's HTML (the shell around its own main section), with ``{{nonce}}`` left to fill."""
    static = _static()
    shell = static.joinpath("shell.html").read_text(encoding="utf-8")
    nav = "\n".join(
        f'        <li><a href="{PREFIX}/{name}"{{{{current:{name}}}}}>{title}</a></li>'
        for name, title in PAGES.items()
    )
    built: dict[str, str] = {}
    for name, title in PAGES.items():
        main = static.joinpath("pages", f"{name}.html").read_text(encoding="utf-8")
        html = shell.replace("{{nav}}", nav).replace("{{main}}", main)
        html = html.replace("{{page}}", name).replace("{{title}}", title)
        for other in PAGES:
            html = html.replace(f"{{{{current:{other}}}}}", ' aria-current="page"' if other == name else "")
        built[name] = html
    return built


def console_router() -> APIRouter:
    """The console's routes, every one ``public()``: the data behind them is the admin API's."""
    assets = load_assets()
    pages = load_pages()
    router = APIRouter(include_in_schema=False, dependencies=[Depends(public)])

    def page(name: str, request: Request) -> HTMLResponse:
        html = pages[name].replace("{{nonce}}", request.state.csp_nonce)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.get(PREFIX)
    async def console_home() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/overview", status_code=303)

    @router.get(PREFIX + "/static/{name}")
    async def console_asset(name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            raise NotFound()
        return Response(asset.body, media_type=asset.media_type, headers={"Cache-Control": _ASSET_CACHE})

    @router.get(PREFIX + "/{name}")
    async def console_page(request: Request, name: str) -> HTMLResponse:
        if name not in pages:
            raise NotFound()
        return page(name, request)

    return router
