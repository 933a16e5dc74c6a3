# SPDX-License-Identifier: Apache-2.0
"""`bastion nginx-config`: hardened output, and nothing hostile gets written into the config."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.cli.nginx import NginxConfigError, NginxOptions, render


def test_defaults_are_hardened() -> None:
    text = render(NginxOptions(domain="api.example.org"))
    for directive in (
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_session_tickets off;",
        "ssl_stapling on;",
        "ssl_stapling_verify on;",
        "server_tokens off;",
        "return 308 https://api.example.org$request_uri;",
        'add_header Strict-Transport-Security "max-age=31536000; includeSubDomains; preload" always;',
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header Host $host;",
        "client_max_body_size 1048576;",
        "client_max_body_size 10485760;",
        "server 127.0.0.1:8000;",
        "ssl_reject_handshake on;",
        "ssl_certificate /etc/letsencrypt/live/api.example.org/fullchain.pem;",
    ):
        assert directive in text, directive
    assert "$host$request_uri" not in text  # the redirect never follows a client-chosen name
    for weak in ("TLSv1 ", "TLSv1.1", "CBC", "SHA1", "RC4", "3DES", ":DHE-", " DHE-"):
        assert weak not in text
    ciphers = next(line for line in text.splitlines() if "ssl_ciphers" in line).split()[1].rstrip(";")
    assert all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in ciphers.split(":"))


def test_unix_socket_upstream_and_custom_ports() -> None:
    text = render(NginxOptions(domain="h.test", upstream="unix:/run/bastion.sock", https_port=8443))
    assert "server unix:/run/bastion.sock;" in text
    assert "return 308 https://h.test:8443$request_uri;" in text


@pytest.mark.parametrize(
    "options",
    [
        {"domain": "evil.com; include /etc/passwd"},
        {"domain": "a b"},
        {"domain": "h.test:443"},
        {"domain": "h.test", "upstream": "10.0.0.5:8000"},
        {"domain": "h.test", "upstream": "example.com:80"},
        {"domain": "h.test", "upstream": "127.0.0.1:99999"},
        {"domain": "h.test", "upstream": "unix:relative.sock"},
        {"domain": "h.test", "upstream": "unix:/run/x.sock;} server {"},
        {"domain": "h.test", "certificate": "/etc/ssl/a b.pem"},
        {"domain": "h.test", "certificate_key": "/etc/ssl/../../root/key.pem"},
        {"domain": "h.test", "pid_file": "relative.pid"},
        {"domain": "h.test", "error_log": "/var/log/x.log\nuser root"},
        {"domain": "h.test", "resolver": "1.1.1.1; include /x"},
        {"domain": "h.test", "listen": "all"},
        {"domain": "h.test", "user": "root; worker_processes 1"},
        {"domain": "h.test", "temp_dir": "/tmp/$host"},
        {"domain": "h.test", "http_port": 0},
    ],
)
def test_hostile_values_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(NginxConfigError):
        render(NginxOptions(**options))  # type: ignore[arg-type]


def test_command_writes_the_file_and_uses_the_body_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MAX_REQUEST_BODY_BYTES", "4096")
    output = tmp_path / "bastion.conf"
    result = CliRunner().invoke(app, ["nginx-config", "--domain", "api.example.org", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "client_max_body_size 4096;" in output.read_text()
    refused = CliRunner().invoke(app, ["nginx-config", "--domain", "x;y"])
    assert refused.exit_code == 2
    assert "--domain" in refused.output
