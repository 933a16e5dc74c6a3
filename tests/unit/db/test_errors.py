# SPDX-License-Identifier: Apache-2.0
"""Which database failures are outages (503 with Retry-After) rather than bugs (500)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from sqlalchemy import exc as sa
from starlette.types import Receive, Scope, Send

from bastion.db.errors import unavailable
from bastion.errors import ServiceUnavailable
from bastion.web.errors import UnhandledErrors


class _Orig(Exception):
    pass


def _wrapped(error: BaseException) -> RuntimeError:
    try:
        try:
            raise error
        except BaseException as inner:
            raise RuntimeError("while handling a request") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "error",
    [
        sa.OperationalError("SELECT 1", {}, _Orig("server closed the connection")),
        sa.InterfaceError("SELECT 1", {}, _Orig("connection is closed")),
        sa.DBAPIError("SELECT 1", {}, _Orig("gone"), connection_invalidated=True),
        sa.TimeoutError("QueuePool limit reached, connection timed out"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        sa.DBAPIError("SELECT 1", {}, asyncpg.exceptions.QueryCanceledError("statement timeout")),
        _wrapped(ConnectionResetError()),
    ],
)
def test_connection_class_errors_are_outages(error: BaseException) -> None:
    outage = unavailable(error)
    assert isinstance(outage, ServiceUnavailable)
    assert outage.retry_after >= 1 and outage.headers["Retry-After"] == str(outage.retry_after)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        sa.IntegrityError("INSERT", {}, _Orig("duplicate key")),
        sa.DBAPIError("SELECT 1", {}, _Orig("syntax error")),
        _wrapped(KeyError("x")),
    ],
)
def test_other_errors_stay_bugs(error: BaseException) -> None:
    assert unavailable(error) is None


async def _answer(error: BaseException) -> httpx.Response:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise error

    transport = httpx.ASGITransport(app=UnhandledErrors(app), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        return await http.get("/api/anything")


async def test_the_unhandled_error_layer_answers_an_outage_with_503_and_the_error_shape() -> None:
    response = await _answer(sa.OperationalError("SELECT 1", {}, _Orig("connection refused")))
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail["error"] == "service_unavailable"
    assert response.headers["retry-after"] == str(detail["retry_after"])
    assert (await _answer(ValueError("a bug"))).status_code == 500
