# SPDX-License-Identifier: Apache-2.0
"""A configuration refusal raised while the app starts is reported as one line, not a traceback."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.settings import ConfigurationError


class StartupRefusals:
    """Rewrites the server's ``lifespan.startup.failed`` message for a ConfigurationError.

    The framework reports any startup failure with its full traceback; for a refusal the operator
    needs the one line that names what to fix (the variable, the key id), so that line replaces it.
    Everything else passes through unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def send_holding_failure(message: Message) -> None:
            # The failure message is sent before the exception is re-raised: hold it until the
            # exception shows whether it is a refusal.
            if message["type"] == "lifespan.startup.failed":
                held.append(message)
                return
            await send(message)

        try:
            await self.app(scope, receive, send_holding_failure)
        except BaseException as exc:
            for message in held:
                if isinstance(exc, ConfigurationError):
                    message = {**message, "message": f"{exc.heading}: {'; '.join(exc.problems)}"}
                await send(message)
            raise
        for message in held:
            await send(message)
