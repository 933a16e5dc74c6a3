# SPDX-License-Identifier: Apache-2.0
"""The app's Prometheus metrics in the text exposition format (docs/metrics.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from bastion.api.deps import require
from bastion.auth.permissions import Permission
from bastion.observability.metrics import CONTENT_TYPE_LATEST, Metrics

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    dependencies=[Depends(require(Permission.METRICS_READ))],
    response_class=Response,
    responses={
        200: {
            "description": "Every metric of this process, in the Prometheus text exposition format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    """Admins and service keys with the ``monitoring`` scope; scraped without auth on PROMETHEUS_PORT."""
    registry: Metrics = request.app.state.metrics
    await registry.sample(request.app.state)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
