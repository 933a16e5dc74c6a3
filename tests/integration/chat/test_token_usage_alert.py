# SPDX-License-Identifier: Apache-2.0
"""The tokens chat spends reach the anomaly detector: a key (here an account) far above its baseline."""

from __future__ import annotations

from sqlalchemy import select

from bastion.alerts.models import Alert
from tests.conftest import SettingsFactory
from tests.integration.chat.conftest import chat_app, new_session
from tests.support.clock import FakeClock


async def test_an_hour_far_above_the_accounts_baseline_raises_an_alert(
    make_settings: SettingsFactory,
) -> None:
    async with chat_app(make_settings, ALERT_TOKEN_USAGE_MIN_TOKENS=1) as (app, http, auth):
        clock = FakeClock(start=1_700_002_800.0)  # the start of an hour
        app.state.anomaly.clock = clock
        me = (await http.get("/api/auth/me", headers=auth)).json()
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"

        async def say(text: str) -> None:
            reply = await http.post(url, json={"content": text}, headers=auth)
            assert reply.status_code == 200, reply.text

        async def alerts() -> list[tuple[str, str]]:
            await app.state.anomaly.drain()
            async with app.state.sessionmaker() as db:
                return [(a.kind, a.subject) for a in (await db.scalars(select(Alert))).all()]

        await say("A first message: the baseline hour.")
        assert await alerts() == []
        clock.advance(3600)
        # Each later message costs more than the first (the history grows): six are over 5x.
        for n in range(6):
            await say(f"Message {n} of a much busier hour.")
        assert await alerts() == [("token_usage", f"user:{me['id']}")]
