# SPDX-License-Identifier: Apache-2.0
"""Bastion's app plus one JSON route that reads its body, for raw-socket tests against uvicorn.

Serve with ``uvicorn tests.support.echo_app:create --factory`` (settings from the environment).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request

from bastion.api.content_types import require_json
from bastion.app import create_app


def create() -> FastAPI:
    app = create_app()

    @app.post("/echo", dependencies=[Depends(require_json)])
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app
