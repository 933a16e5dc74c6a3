# SPDX-License-Identifier: Apache-2.0
"""`bastion check` about API docs, and the TLS context policy of `bastion serve`."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.cli.tls import TLS12_CIPHERS, harden
from bastion.crypto import material


def production_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in material.generate_all("EdDSA").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://app.example.org")
    monkeypatch.setenv("ALLOWED_HOSTS", "api.example.org")


def test_check_warns_when_docs_are_enabled_in_production(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    production_env(monkeypatch, tmp_path)
    quiet = CliRunner().invoke(app, ["check"])
    monkeypatch.setenv("ENABLE_DOCS", "true")
    loud = CliRunner().invoke(app, ["check"])
    assert quiet.exit_code == 0 and loud.exit_code == 0
    assert "ENABLE_DOCS" not in quiet.output
    assert "warning: ENABLE_DOCS=true" in loud.output


def test_docs_default_per_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bastion.settings import Settings

    dev = Settings(_env_file=None, environment="test", var_dir=tmp_path)  # type: ignore[call-arg]
    assert dev.docs_enabled
    production_env(monkeypatch, tmp_path)
    assert not Settings(_env_file=None).docs_enabled  # type: ignore[call-arg]


def test_hardened_context_policy() -> None:
    context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.maximum_version is ssl.TLSVersion.TLSv1_3
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert sorted(tls12) == sorted(TLS12_CIPHERS.split(":"))
    for cipher in context.get_ciphers():
        assert cipher["aead"], cipher["name"]
        assert cipher["kea"] in ("kx-ecdhe", "kx-any"), cipher["name"]  # kx-any: TLS 1.3 (always ephemeral)
