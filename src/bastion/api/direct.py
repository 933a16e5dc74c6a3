# SPDX-License-Identifier: Apache-2.0
"""Routes with simple inputs, answered without FastAPI's per-request machinery.

FastAPI answers every route the same way: it reads the body, solves the dependency tree
(building a cache, an error list and a result object on each request), runs the endpoint, then
validates and serializes what it returned. For a route whose dependencies take nothing but the
``Request`` (``GET /api/auth/me``, whose principal comes from a ``Require`` dependency), and
whose endpoint takes at most path and query parameters, one JSON model body and the ``Response``
besides (``POST /api/sessions/{session_id}/messages``, ``GET /api/sessions?limit=``), nearly all
of that is bookkeeping with nothing to decide: about 55 µs of an authenticated read that costs
140 µs in all.

``DirectRoute`` hands such a route a handler that does what FastAPI's does, in its order, with
its own helpers: it reads and parses the body (a malformed JSON body fails before any
dependency runs), calls the dependencies once each (one refusing the caller wins over a body
that fails validation), validates the path parameters, the query parameters, then the body with
``request_params_to_args`` and ``request_body_to_args`` (their errors raised together, in that
order, as FastAPI raises them), calls the endpoint, then serializes the answer with
``serialize_response`` (the same validation against the response model, the same bytes) and
merges what the endpoint set on its ``Response`` parameter. Exceptions travel as from FastAPI's
handler, to the same exception handlers. Every other route (header and cookie parameters,
dependencies that take parameters, forms and files, background tasks, security scopes, sync or
``yield`` functions, streams), and every route while the app has dependency overrides set, is
answered by FastAPI's own handler: a route qualifies only when FastAPI would have nothing else
to do. FastAPI's OpenTelemetry hooks are not called (Bastion turns FastAPI's telemetry off).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import params
from fastapi._compat import ModelField, Undefined
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.routing import APIRoute, serialize_response
from fastapi.sse import EventSourceResponse
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from bastion.api.request_body import endpoint_context, read_json_body

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
#: What an endpoint may take besides the request and still be answered directly.
_ENDPOINT_INPUTS = ("path_params", "query_params", "body_params")
_ENDPOINT_SPECIAL_PARAMETERS = ("response_param_name",)


def _coroutine_function(call: Any) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one (``Require`` instances)."""
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def _takes_only(dependant: Dependant, inputs: tuple[str, ...], special: tuple[str, ...]) -> bool:
    """True when ``dependant`` is a coroutine that takes no input but the request and those named."""
    return (
        dependant.call is not None
        and _coroutine_function(dependant.call)
        and not any(getattr(dependant, name) for name in _INPUTS if name not in inputs)
        and not any(getattr(dependant, name) for name in _SPECIAL_PARAMETERS if name not in special)
        and not dependant.own_oauth_scopes
    )


def _request_only(dependant: Dependant) -> bool:
    """True when ``dependant`` takes nothing but (optionally) the request, and is a coroutine."""
    return _takes_only(dependant, (), ())


def _json_model_body(route: Any, body_params: list[ModelField]) -> bool:
    """True when the route has no body, or one JSON body parameter that is a pydantic model."""
    if route.body_field is None:
        return not body_params
    if len(body_params) != 1 or isinstance(route.body_field.field_info, params.Form):
        return False
    info = body_params[0].field_info
    annotation = info.annotation
    return (
        not isinstance(info, params.Form)
        and isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
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


def _temporary_response() -> Response:
    """The ``Response`` FastAPI lends an endpoint to set headers, cookies and a status code on."""
    response = Response()
    del response.headers["content-length"]
    response.status_code = None  # type: ignore[assignment]
    return response


# Core schema types whose JSON, as pydantic writes it, is byte for byte what ``json.dumps`` writes
# (as ``JSONResponse`` calls it) for the same value in pydantic's JSON mode: no float (``repr`` and
# pydantic format some differently, and ``json.dumps`` refuses infinities that pydantic writes as
# null), nothing typed ``Any`` (its values could be floats), no custom serializer.
_JSON_LEAVES = frozenset({"str", "int", "bool", "none", "datetime", "date", "uuid"})
_JSON_WRAPPERS = frozenset({"nullable", "default", "model", "model-field", "list", "function-after"})


def _json_equivalent(schema: Any, definitions: dict[str, Any] | None = None) -> bool:
    """True when every value ``schema`` (a pydantic core schema) serializes is written alike by
    pydantic's ``dump_json`` and by ``json.dumps`` of its JSON-mode Python form."""
    if not isinstance(schema, dict) or "serialization" in schema:
        return False
    kind = schema.get("type")
    if definitions is None:
        definitions = {}
    if kind == "definitions":
        found = {**definitions, **{each["ref"]: each for each in schema["definitions"]}}
        return all(_json_equivalent(each, found) for each in schema["definitions"]) and _json_equivalent(
            schema["schema"], found
        )
    if kind == "definition-ref":
        return schema["schema_ref"] in definitions  # the definition itself is checked where it is given
    if kind in _JSON_LEAVES:
        return True
    if kind == "literal":
        return all(value is None or isinstance(value, str | int) for value in schema["expected"])
    if kind == "enum":
        return schema.get("sub_type") in ("str", "int")
    if kind == "model":
        config = schema.get("config", {})
        # A model's own JSON settings (temporal values as numbers, say), or extra values of any type.
        if config.get("extra_fields_behavior") == "allow" or any(
            name.startswith("ser_json") for name in config
        ):
            return False
    if kind in _JSON_WRAPPERS:
        return _json_equivalent(schema.get("items_schema" if kind == "list" else "schema"), definitions)
    if kind == "union":
        return all(
            _json_equivalent(choice[0] if isinstance(choice, tuple) else choice, definitions)
            for choice in schema["choices"]
        )
    if kind == "dict":
        return _json_equivalent(schema.get("keys_schema"), definitions) and _json_equivalent(
            schema.get("values_schema"), definitions
        )
    if kind == "model-fields":
        return (
            schema.get("extra_behavior") != "allow"
            and all(_json_equivalent(field, definitions) for field in schema["fields"].values())
            and all(
                _json_equivalent(field["return_schema"], definitions)
                for field in schema.get("computed_fields", ())
            )
        )
    return False


def _renders_as_json_response(response_class: type[Response]) -> bool:
    """True when ``response_class`` is ``JSONResponse`` with at most its own media type: it renders,
    builds its headers and sends as ``JSONResponse`` does (a class that signs its body as it sends,
    ``SignedJSONResponse``, is built as itself)."""
    return (
        issubclass(response_class, JSONResponse)
        and response_class.render is JSONResponse.render
        and response_class.__init__ is JSONResponse.__init__
        and response_class.init_headers is Response.init_headers
        and response_class.__call__ is Response.__call__
    )


def _json_bytes(route: Any, actual_class: type[Response]) -> bool:
    """True when the route's answers may be serialized straight to JSON bytes by pydantic: the
    bytes ``actual_class`` would render from the JSON-mode dump, for every value of its model."""
    adapter = getattr(route.response_field, "_type_adapter", None)
    return _renders_as_json_response(actual_class) and _json_equivalent(getattr(adapter, "core_schema", None))


def direct_handler(route: Any) -> Handler | None:
    """A handler for ``route`` (an ``APIRoute`` or FastAPI's view of an included one) that skips
    FastAPI's machinery; None when the route does not qualify."""
    dependant: Dependant = route.dependant
    endpoint = dependant.call
    response_class = route.response_class
    actual_class = response_class.value if isinstance(response_class, DefaultPlaceholder) else response_class
    calls = _calls(dependant)
    body_params = list(dependant.body_params)
    if (
        calls is None
        or endpoint is None
        or not _takes_only(dependant, _ENDPOINT_INPUTS, _ENDPOINT_SPECIAL_PARAMETERS)
        or not _json_model_body(route, body_params)
        or inspect.isasyncgenfunction(endpoint)
        or getattr(route, "stream_item_field", None) is not None
        or getattr(route, "is_json_stream", False)
        or issubclass(actual_class, EventSourceResponse)
    ):
        return None
    request_parameter = dependant.request_param_name
    response_parameter = dependant.response_param_name
    path_params = list(dependant.path_params)
    query_params = list(dependant.query_params)
    path = dependant.path or ""
    embed_body_fields: bool = getattr(route, "_embed_body_fields", False)
    strict = route.strict_content_type
    strict_content_type: bool = strict.value if isinstance(strict, DefaultPlaceholder) else strict
    status_code: int | None = route.status_code
    response_field = route.response_field
    dump_json = response_field is not None and isinstance(response_class, DefaultPlaceholder)
    # A JSON response class rendering a model that pydantic writes as ``json.dumps`` would: the
    # same bytes straight from pydantic, without the dict and the second encoder between them.
    json_bytes = response_field is not None and not dump_json and _json_bytes(route, actual_class)
    json_media_type = "application/json" if dump_json else actual_class.media_type
    serialization = {
        "field": response_field,
        "include": route.response_model_include,
        "exclude": route.response_model_exclude,
        "by_alias": route.response_model_by_alias,
        "exclude_unset": route.response_model_exclude_unset,
        "exclude_defaults": route.response_model_exclude_defaults,
        "exclude_none": route.response_model_exclude_none,
        "dump_json": dump_json or json_bytes,
    }

    async def handler(request: Request) -> Response:
        # FastAPI's order: the body is read first, then the dependencies run, then the
        # parameters and the body are validated, their errors raised together.
        body = (
            await read_json_body(request, strict_content_type, endpoint, path) if body_params else Undefined
        )
        values: dict[str, Any] = {}
        for names, call in calls:
            value = await call(request)
            for name in names:
                values[name] = value
        if path_params or query_params or body_params:
            values_, errors = request_params_to_args(path_params, request.path_params)
            values.update(values_)
            if query_params:
                values_, query_errors = request_params_to_args(query_params, request.query_params)
                values.update(values_)
                errors.extend(query_errors)
            if body_params:
                values_, body_errors = await request_body_to_args(body_params, body, embed_body_fields)
                values.update(values_)
                errors.extend(body_errors)
            if errors:
                raise RequestValidationError(
                    errors,
                    body=None if body is Undefined else body,
                    endpoint_ctx=endpoint_context(endpoint, path, request),
                )
        if request_parameter is not None:
            values[request_parameter] = request
        lent = None
        if response_parameter is not None:
            lent = values[response_parameter] = _temporary_response()
        raw = await endpoint(**values)
        if isinstance(raw, Response):
            return raw  # FastAPI merges nothing into a response the endpoint built
        try:
            content = await serialize_response(response_content=raw, **serialization)
        except ResponseValidationError as exc:
            # The context names the endpoint in the error, as FastAPI's does: made only for an
            # answer that fails its model.
            raise ResponseValidationError(
                exc.errors(), body=exc.body, endpoint_ctx=endpoint_context(endpoint, path, request)
            ) from None
        # FastAPI's ``_build_response_args``: a status code set on the lent response wins.
        response_args: dict[str, Any] = {} if status_code is None else {"status_code": status_code}
        if lent is not None and lent.status_code:
            response_args["status_code"] = lent.status_code
        if dump_json or json_bytes:
            response = Response(content=content, media_type=json_media_type, **response_args)
        else:
            response = actual_class(content, **response_args)
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        if lent is not None:
            response.headers.raw.extend(lent.headers.raw)
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
