# SPDX-License-Identifier: Apache-2.0
"""`bastion blocks list|lift` against the Redis a running app shares; audited; clear without Redis."""

from __future__ import annotations

import asyncio
import json

import httpx
from click.testing import Result
from typer.testing import CliRunner

from bastion.cli import app as cli
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    make_admin,
)
from tests.integration.auth.test_cli_and_maintenance import cli_env, run_cli


async def blocks(env: dict[str, str], *args: str) -> Result:
    """`bastion blocks ...` in process (in a thread: the command runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, ["blocks", *args], env=env)


async def _until_status(http: httpx.AsyncClient, headers: dict[str, str], status: int) -> httpx.Response:
    """The instance reloads network blocks within INVALIDATION_POLL_SECONDS of a change elsewhere."""
    for _ in range(100):
        response = await http.get("/api/admin/blocklist", headers=headers)
        if response.status_code == status:
            break
        await asyncio.sleep(0.02)
    return response


async def test_list_and_lift_from_the_command_line(
    make_settings: SettingsFactory, each_redis_url: str
) -> None:
    """On one Redis and on a Redis Cluster: the command line connects as the server does."""
    redis_url = each_redis_url
    settings = identity_settings(make_settings, REDIS_URL=redis_url)
    env = cli_env(settings, REDIS_URL=redis_url)
    async with identity_app(settings) as (app, http):
        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        for body in (
            {"kind": "ip", "value": "::ffff:203.0.113.7"},
            {"kind": "cidr", "value": "2001:db8::5/48", "seconds": None},
            # The administrator shuts themselves out, insisting.
            {"kind": "cidr", "value": "0.0.0.0/0", "force": True},
        ):
            assert (await http.post("/api/admin/blocklist", json=body, headers=admin)).status_code == 201
        assert_error(await http.get("/api/admin/blocklist", headers=admin), 403, "blocked")

        listed = await blocks(env, "list")
        assert listed.exit_code == 0, listed.stderr
        header, *rows = listed.stdout.splitlines()
        assert header.split() == ["KIND", "VALUE", "REASON", "CREATED", "UNTIL"]
        assert sorted(row.split()[:3] for row in rows) == [
            ["cidr", "0.0.0.0/0", "manual"],
            ["cidr", "2001:db8::/48", "manual"],
            ["ip", "203.0.113.7", "manual"],
        ]
        as_json = await blocks(env, "list", "--format", "json")
        assert as_json.exit_code == 0, as_json.stderr
        items = json.loads(as_json.stdout)
        assert {(item["kind"], item["value"]) for item in items} == {
            ("cidr", "0.0.0.0/0"),
            ("cidr", "2001:db8::/48"),
            ("ip", "203.0.113.7"),
        }
        assert all(item["until"] > item["created_at"] for item in items)

        lifted = await blocks(env, "lift", "cidr", "0.0.0.0/0")
        assert lifted.exit_code == 0 and "lifted cidr:0.0.0.0/0" in lifted.stdout, lifted.stderr
        # The running instance lets the administrator back in.
        assert (await _until_status(http, admin, 200)).status_code == 200
        # Any spelling of an address lifts its block.
        mapped = await blocks(env, "lift", "ip", "::ffff:203.0.113.7")
        assert mapped.exit_code == 0 and "ip:203.0.113.7" in mapped.stdout, mapped.stderr
        items = (await http.get("/api/admin/blocklist", headers=admin)).json()["items"]
        assert [(item["kind"], item["value"]) for item in items] == [("cidr", "2001:db8::/48")]

        missing = await blocks(env, "lift", "ip", "203.0.113.7")
        assert missing.exit_code == 1 and "no block is in force" in missing.stderr
        invalid = await blocks(env, "lift", "cidr", "10.0.0.0/33")
        assert invalid.exit_code == 2 and "not a valid cidr value" in invalid.stderr
        assert all(
            result.exception is None or isinstance(result.exception, SystemExit)
            for result in (missing, invalid)
        )

        # Lifts from the command line are in the audit trail, as lifts through the API are.
        events = await audit_events(app, "client_unblocked")
        assert [(e.actor_type, e.actor_id, e.request_id, e.target_type, e.target_id) for e in events] == [
            ("admin", "cli", "cli", "cidr", "0.0.0.0/0"),
            ("admin", "cli", "cli", "ip", "203.0.113.7"),
        ]
        assert events[1].ip_address == "203.0.113.7"


async def test_without_redis_the_command_says_where_blocks_live(make_settings: SettingsFactory) -> None:
    env = cli_env(make_settings())
    # A real process: what the operator sees, exit code and all.
    listed = await asyncio.to_thread(run_cli, env, "blocks", "list")
    lifted = await blocks(env, "lift", "ip", "192.0.2.1")
    for exit_code, stdout, stderr in (
        (listed.returncode, listed.stdout, listed.stderr),
        (lifted.exit_code, lifted.stdout, lifted.stderr),
    ):
        assert exit_code == 2
        assert "REDIS_URL is not set" in stderr and "restart" in stderr
        assert "Traceback" not in stderr and stdout == ""


async def test_an_unreachable_redis_is_an_error_not_an_empty_list(make_settings: SettingsFactory) -> None:
    env = cli_env(make_settings(), REDIS_URL="redis://127.0.0.1:1/0")
    result = await blocks(env, "list")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "did not answer" in result.stderr and not isinstance(result.exception, Exception)
