# SPDX-License-Identifier: Apache-2.0
"""What a team would write by hand instead of Bastion: the baseline of the authenticated reads.

A FastAPI app with ``GET /health`` and ``GET /me``: a bearer JWT (PyJWT, HS256) checked by a
dependency that then reads the user from the database on every request (SQLAlchemy async on SQLite,
one primary-key read in its own session), the usual tutorial shape. With ``--slowapi`` the same app
gets a per-client rate limit from slowapi (its pure-ASGI middleware and a default limit, set far
above what the benchmark sends), the library FastAPI apps usually adopt for it.

Served by ``bench/run_all.py`` (uvicorn, one worker) as:
``python bench/baseline_app.py --port P --database PATH --secret S [--slowapi]``; the user with
id 1 is created at startup, and a token for it is ``token(secret)``.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependencies of the routes below from
# their annotations, which name functions local to ``create``.
import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

USER_ID = 1


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "baseline_users"  # beside Bastion's own tables when both use one PostgreSQL
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    is_active: Mapped[bool]


def token(secret: str, lifetime: float = 3600) -> str:
    """A bearer token for the benchmark's user."""
    return jwt.encode({"sub": str(USER_ID), "exp": int(time.time() + lifetime)}, secret, algorithm="HS256")


def create(database: str, secret: str, *, slowapi: bool = False) -> FastAPI:
    """``database`` is a SQLite file, or a database URL (``postgresql+asyncpg://...``)."""
    engine = create_async_engine(database if "://" in database else f"sqlite+aiosqlite:///{database}")
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        async with sessions.begin() as session:
            if await session.get(User, USER_ID) is None:
                session.add(User(id=USER_ID, email="bench@example.com", role="user", is_active=True))
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    bearer = HTTPBearer()

    async def current_user(
        credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
    ) -> User:
        try:
            claims = jwt.decode(credentials.credentials, secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            raise HTTPException(status_code=401, detail="invalid token") from None
        async with sessions() as session:
            user = await session.scalar(select(User).where(User.id == int(claims["sub"])))
        if user is None or not user.is_active:
            raise HTTPException(status_code=401, detail="invalid token")
        return user

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    async def me(request: Request, user: Annotated[User, Depends(current_user)]) -> dict[str, object]:
        return {"id": user.id, "email": user.email, "role": user.role}

    if slowapi:
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded
        from slowapi.middleware import SlowAPIASGIMiddleware
        from slowapi.util import get_remote_address

        app.state.limiter = Limiter(key_func=get_remote_address, default_limits=["100000000/minute"])
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        app.add_middleware(SlowAPIASGIMiddleware)
    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--slowapi", action="store_true")
    args = parser.parse_args()
    app = create(args.database, args.secret, slowapi=args.slowapi)
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
