# SPDX-License-Identifier: Apache-2.0
"""Routes whose only input is the request, answered without FastAPI's per-request machinery.

FastAPI answers every route the same way: it reads the body, solves the dependency tree
(building a cache, an error list and a result object on each request), runs the endpoint, then
validates and serializes what it returned. For a route whose endpoint and dependencies take
nothing but the ``Request`` (``GET /api/auth/me``, whose principal comes from a
``Require`` dependency), nearly all of that is bookkeeping with nothing to decide: about 55 µs
of an authenticated read that costs 140 µs in all.

``DirectRoute`` hands such a route a handler that calls its dependencies in order, then the
endpoint, then serializes the answer with FastAPI's own ``serialize_response`` (the same
validation against the response model, the same bytes). Exceptions travel as from FastAPI's
handler, to the same exception handlers. Every other route, and every route while the app has
dependency overrides set, is answered by FastAPI's own handler: a route qualifies only when
FastAPI would have nothing else to do.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, serialize_response
from fastapi.sse import EventSourceResponse
from fastapi.utils import is_body_allowed_for_status_code
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Call = Callable[[Request], Awaitable[Any]]

_INPUTS = (
    "path_params",
    "query_params",
    "header_params",
    "cookie_params",
    "body_params",
)
_SPECIAL_PARAMETERS = (
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)


def _coroutine_function(call: Any) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one (``Require`` instances)."""
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def _request_only(dependant: Dependant) -> bool:
    """True when ``dependant`` takes nothing but (optionally) the request, and is a coroutine."""
    return (
        dependant.call is not None
        and _coroutine_function(dependant.call)
        and not any(getattr(dependant, name) for name in _INPUTS)
        and not any(getattr(dependant, name) for name in _SPECIAL_PARAMETERS)
        and not dependant.own_oauth_scopes
    )


def _calls(dependant: Dependant) -> list[tuple[list[str], Call]] | None:
    """The dependencies of a qualifying route in FastAPI's order, each with the parameters it
    feeds, called once (FastAPI caches a dependency by its callable within a request); None when
    the route does not qualify."""
    calls: dict[int, tuple[list[str], Call]] = {}
    for sub in dependant.dependencies:
        if sub.call is None or sub.dependencies or not _request_only(sub) or not sub.use_cache:
            return None
        names, _ = calls.setdefault(id(sub.call), ([], _caller(sub.call, sub.request_param_name)))
        if sub.name is not None:
            names.append(sub.name)
    return list(calls.values())


def _caller(call: Callable[..., Awaitable[Any]], request_parameter: str | None) -> Call:
    if request_parameter is None:
        return lambda request: call()
    return lambda request: call(**{request_parameter: request})


def direct_handler(route: Any) -> Handler | None:
    """A handler for ``route`` (an ``APIRoute`` or FastAPI's view of an included one) that skips
    FastAPI's machinery; None when the route does not qualify."""
    dependant: Dependant = route.dependant
    endpoint = dependant.call
    response_class = route.response_class
    actual_class = response_class.value if isinstance(response_class, DefaultPlaceholder) else response_class
    calls = _calls(dependant)
    if (
        calls is None
        or endpoint is None
        or route.body_field is not None
        or not _request_only(dependant)
        or inspect.isasyncgenfunction(endpoint)
        or getattr(route, "stream_item_field", None) is not None
        or getattr(route, "is_json_stream", False)
        or issubclass(actual_class, EventSourceResponse)
    ):
        return None
    request_parameter = dependant.request_param_name
    response_field = route.response_field
    dump_json = response_field is not None and isinstance(response_class, DefaultPlaceholder)
    response_args: dict[str, Any] = {} if route.status_code is None else {"status_code": route.status_code}
    serialization = {
        "field": response_field,
        "include": route.response_model_include,
        "exclude": route.response_model_exclude,
        "by_alias": route.response_model_by_alias,
        "exclude_unset": route.response_model_exclude_unset,
        "exclude_defaults": route.response_model_exclude_defaults,
        "exclude_none": route.response_model_exclude_none,
        "dump_json": dump_json,
    }

    async def handler(request: Request) -> Response:
        values: dict[str, Any] = {}
        for names, call in calls:
            value = await call(request)
            for name in names:
                values[name] = value
        if request_parameter is not None:
            values[request_parameter] = request
        raw = await endpoint(**values)
        if isinstance(raw, Response):
            return raw
        content = await serialize_response(response_content=raw, **serialization)
        if dump_json:
            response = Response(content=content, media_type="application/json", **response_args)
        else:
            response = actual_class(content, **response_args)
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        return response

    return handler


def _overridden(provider: Any) -> bool:
    return bool(getattr(provider, "dependency_overrides", None))


class DirectRoute(APIRoute):
    """An ``APIRoute`` answered by ``direct_handler`` when it qualifies (see the module).

    Served as a top-level route (``bastion.api.flat``), a qualifying route also skips FastAPI's
    per-request wrapper (two exit stacks, which only dependencies with ``yield`` use, and a second
    exception layer in front of the app's own, which answers with the same handlers). While the
    app has dependency overrides, FastAPI's own handler answers.
    """

    _direct: Handler | None = None  # set by ``get_route_handler`` for this route's own view

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)  # builds the handler: ``_direct`` is known
        direct = self._direct
        if direct is None or self.max_body_size is not None:
            return
        standard = self.app
        provider = self.dependency_overrides_provider

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if _overridden(provider):
                await standard(scope, receive, send)
                return
            response = await direct(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

    def get_route_handler(self) -> Handler:
        standard = super().get_route_handler()
        route = self._effective()
        direct = direct_handler(route)
        if route is self:
            self._direct = direct
        if direct is None:
            return standard
        provider = route.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            return await (standard if _overridden(provider) else direct)(request)

        return handler

    def _effective(self) -> Any:
        """The route as FastAPI sees it for this handler: the included view while one is built."""
        from fastapi.routing import _effective_route_context_var

        context = _effective_route_context_var.get()
        if context is not None and context.original_route is self:
            return context
        return self
