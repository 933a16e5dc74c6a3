# SPDX-License-Identifier: Apache-2.0
"""Included routers served as top-level routes.

FastAPI keeps an included router as one entry of the app's table and resolves its routes on each
request through two more layers: the entry matches the request against the router's routes,
the router matches it again to pick the route, and the route then finds its settings for this
inclusion (prefix, dependencies, response class) in the request's scope. That walk costs about
17 µs on every request to an included route, which is every Bastion route: an eighth of an
authenticated read.

``flatten_included`` replaces each included router of the app's table, once every router is
included, by top-level routes built from what FastAPI resolved for that inclusion: the same
paths, methods, dependencies, response models and classes, names and operation ids, in the same
order, so the first match and the API description are what the included routers gave. A router
with anything but plain FastAPI routes (mounts, websockets, another route class) stays included.
Routes added to a router after it was flattened are not served: add them to the app.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from bastion.api.content_types import JsonRoute
from bastion.api.direct import DirectRoute

#: Route classes whose constructor adds nothing to what FastAPI resolved (JsonRoute's require_json
#: dependency is already among the resolved dependencies): rebuilt as ``DirectRoute``.
_PLAIN = (APIRoute, DirectRoute, JsonRoute)


def _route_of(context: Any) -> APIRoute:
    return DirectRoute(
        context.path,
        context.endpoint,
        response_model=context.response_model,
        status_code=context.status_code,
        tags=list(context.tags),
        dependencies=list(context.dependencies),
        summary=context.summary,
        description=context.description,
        response_description=context.response_description,
        responses=dict(context.responses),
        deprecated=context.deprecated,
        name=context.name,
        methods=set(context.methods),
        operation_id=context.operation_id,
        response_model_include=context.response_model_include,
        response_model_exclude=context.response_model_exclude,
        response_model_by_alias=context.response_model_by_alias,
        response_model_exclude_unset=context.response_model_exclude_unset,
        response_model_exclude_defaults=context.response_model_exclude_defaults,
        response_model_exclude_none=context.response_model_exclude_none,
        include_in_schema=context.include_in_schema,
        response_class=context.response_class,
        dependency_overrides_provider=context.dependency_overrides_provider,
        callbacks=context.callbacks,
        openapi_extra=context.openapi_extra,
        generate_unique_id_function=context.generate_unique_id_function,
        strict_content_type=context.strict_content_type,
        max_body_size=context.max_body_size,
    )


def _flat(entry: BaseRoute) -> list[BaseRoute] | None:
    """The routes an included router serves, as top-level routes; None to keep it included."""
    contexts = getattr(entry, "effective_route_contexts", None)
    if contexts is None or getattr(entry, "effective_low_priority_routes", lambda: True)():
        return None
    include = getattr(entry, "include_context", None)
    if include is None or getattr(include, "form_limits", None):
        return None  # form limits the inclusion sets on the request
    resolved = list(contexts())
    if not resolved or any(
        type(getattr(context, "original_route", None)) not in _PLAIN
        or context.stream_item_type is not None  # generator endpoints: their item type is inferred
        or context.is_json_stream
        or context.is_sse_stream
        for context in resolved
    ):
        return None
    return [_route_of(context) for context in resolved]


def flatten_included(app: FastAPI) -> None:
    """Serve every included router of ``app`` that qualifies as its routes (see the module)."""
    table: list[BaseRoute] = []
    for entry in app.router.routes:
        routes = _flat(entry)
        table.extend([entry] if routes is None else routes)
    app.router.routes[:] = table
