# SPDX-License-Identifier: Apache-2.0
"""Behind a TLS-terminating proxy: the client subject header is believed only from trusted proxies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import assert_error, audit_events, identity_app, identity_settings

HEADER = "X-Client-Cert-Subject"


@asynccontextmanager
async def client_at(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        yield http


async def test_the_subject_header_counts_only_from_a_trusted_proxy(make_settings: SettingsFactory) -> None:
    settings = identity_settings(
        make_settings,
        TRUSTED_PROXIES="10.0.0.0/8",
        MTLS_CLIENT_HEADER=HEADER,
        MTLS_SERVICE_IDENTITIES="CN=billing,O=Example Corp=>billing;CN=reports=>reports",
    )
    async with identity_app(settings, client=("10.1.2.3", 443)) as (app, proxy):
        # Through the proxy: the subject it verified is the caller (attribute order is irrelevant).
        for subject in (
            "CN=billing,O=Example Corp",
            "O=Example Corp,CN=billing",
            "cn=billing, o=Example Corp",
        ):
            ready = await proxy.get("/health/ready", headers={HEADER: subject})
            assert ready.status_code in (200, 503), (subject, ready.text)
        # Near misses and unlisted subjects are nobody.
        for subject in (
            "CN=billing",
            "CN=billing,O=Example Corp,OU=x",
            "CN=billing-evil,O=Example Corp",
            "",
            "CN",
        ):
            assert_error(await proxy.get("/health/ready", headers={HEADER: subject}), 403)
        assert_error(
            await proxy.get("/health/ready", headers=[(HEADER, "CN=reports"), (HEADER, "CN=reports")]), 403
        )
        assert_error(await proxy.get("/health/ready"), 403)

        # Straight from a client: the same header means nothing.
        async with client_at(app, "198.51.100.20") as direct:
            assert_error(await direct.get("/health/ready", headers={HEADER: "CN=reports"}), 403)
            assert_error(
                await direct.get("/health/ready", headers={HEADER: "CN=billing,O=Example Corp"}), 403
            )
        reasons = [event.details["reason"] for event in await audit_events(app, "auth_failure")]
        assert "untrusted_header" in reasons and "unknown_subject" in reasons


async def test_without_a_configured_header_no_subject_is_read(make_settings: SettingsFactory) -> None:
    settings = identity_settings(
        make_settings, TRUSTED_PROXIES="10.0.0.0/8", MTLS_SERVICE_IDENTITIES="CN=reports=>reports"
    )
    async with identity_app(settings, client=("10.1.2.3", 443)) as (_app, proxy):
        assert_error(await proxy.get("/health/ready", headers={HEADER: "CN=reports"}), 403)
