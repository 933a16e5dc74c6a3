# SPDX-License-Identifier: Apache-2.0
"""Routing in time that does not grow with the route table.

FastAPI matches a request against every route in turn, and each included router re-checks its
own routes on every request (twice for the one that answers). With Bastion's ~120 routes in 24
routers, finding a route late in the table costs more than the rest of the request: about 2 µs
for each route before it, 80 µs for the chat routes.

``RouteIndex`` sits where the router's own matching starts and hands it only the top-level
entries that can match the request's path, found by the path's first two segments. The
entries keep their order, so the first match is the one the whole table would give. A route
whose first two segments are not literal (``/{tenant}/...``), a mount, a host route or any
other kind of route is a candidate for every path. A path the narrowed table does not match
goes to the whole table, so 405s, trailing-slash redirects and 404s are decided exactly as
without the index. The index is built on first use and again whenever routes are added to the
app's router or, through FastAPI's own methods, to any router included in it. A table with
routes FastAPI matches after all others (frontend routes) is not indexed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from fastapi.routing import APIRouter
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

Key = tuple[str, ...]
# An entry with routes matched after every other route (FastAPI's frontend routes): no index.
_LOW_PRIORITY: set[Key] = set()


def path_key(path: str) -> Key:
    """A request path's (or a literal route path's) first two segments."""
    return tuple(path.split("/", 3)[1:3])


def route_key(path: str) -> Key | None:
    """The key every path this route template matches has; None when it is not fixed."""
    brace = path.find("{")
    if brace < 0:
        return path_key(path)
    complete = path[:brace].split("/")[1:-1]  # segments followed by a "/" before the first parameter
    return tuple(complete[:2]) if len(complete) >= 2 else None


def _entry_keys(entry: BaseRoute) -> set[Key] | None:
    """The keys an entry of the top-level table can match; None when it may match any path."""
    if isinstance(entry, Route):  # APIRoute included
        return _keys((entry.path,))
    contexts = getattr(entry, "effective_route_contexts", None)
    low_priority = getattr(entry, "effective_low_priority_routes", None)
    if contexts is None or low_priority is None:
        return None
    if low_priority():
        return _LOW_PRIORITY
    paths: list[str] = []
    for context in contexts():
        route = getattr(context, "original_route", None)
        path = getattr(context, "path", "")
        if not isinstance(route, Route) or not path:
            return None
        paths.append(path)
    return _keys(paths)


def _keys(paths: Iterable[str]) -> set[Key] | None:
    keys: set[Key] = set()
    for path in paths:
        key = route_key(path)
        if key is None:
            return None
        keys.add(key)
    return keys


class RouteIndex:
    """The app router's matching over the entries that can match, then over all of them."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.whole: ASGIApp = router.app
        # Set to None when routes are added anywhere in the table (``_watch``).
        self._built_for: tuple[int, int] | None = None
        self._views: dict[Key, APIRouter] = {}
        self._anywhere: APIRouter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routes = self.router.routes
        if scope["type"] != "http" or not routes:
            await self.whole(scope, receive, send)
            return
        if self._built_for != (len(routes), id(routes[-1])):
            self._build()
        view = self._views.get(path_key(get_route_path(scope)), self._anywhere)
        if view is None:
            await self.whole(scope, receive, send)
            return
        scope.setdefault("router", self.router)  # url_for and friends see every route
        await view.app(scope, receive, send)

    def _build(self) -> None:
        routes = list(self.router.routes)
        self._built_for = (len(routes), id(routes[-1]))
        self._watch(self.router)
        keyed: list[tuple[BaseRoute, set[Key] | None]] = [(entry, _entry_keys(entry)) for entry in routes]
        if getattr(self.router, "_low_priority_routes", None) or any(
            keys is _LOW_PRIORITY for _, keys in keyed
        ):
            self._views, self._anywhere = {}, None  # matched after every other route: the whole table
            return
        every = {key for _, keys in keyed if keys for key in keys}
        self._views = {
            key: self._view([entry for entry, keys in keyed if keys is None or key in keys]) for key in every
        }
        anywhere = [entry for entry, keys in keyed if keys is None]
        self._anywhere = self._view(anywhere) if anywhere else None

    def _watch(self, router: APIRouter) -> None:
        """Be told when routes are added to ``router`` or to a router included in it, at any depth."""
        if getattr(router, "_route_index_watch", None) is self:
            return
        changed = getattr(router, "_mark_routes_changed", None)
        if changed is not None:

            def mark() -> None:
                changed()
                self._built_for = None

            router._mark_routes_changed = mark  # type: ignore[method-assign]
            router._route_index_watch = self  # type: ignore[attr-defined]
        for entry in router.routes:
            included = getattr(entry, "original_router", None)
            if isinstance(included, APIRouter):
                self._watch(included)

    def _view(self, entries: list[BaseRoute]) -> APIRouter:
        view = copy.copy(self.router)
        view.routes = entries
        view.redirect_slashes = False  # the whole table decides redirects
        view.default = self.whole
        return view
