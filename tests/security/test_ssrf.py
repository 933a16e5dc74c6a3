# SPDX-License-Identifier: Apache-2.0
"""Server-side request forgery through settings (OWASP API7): what a URL- or path-taking setting
can make Bastion connect to or read.

Decided per setting (docs/attack-suite.md): LLM_BASE_URL, ALERT_WEBHOOK_URL, the http(s)
collectors of AUDIT_LOG_SINK and SENTRY_DSN are http(s) only, never a link-local or cloud
metadata address (in any spelling the resolver accepts), and never carry credentials except
where the format is made of them (a Sentry DSN's public key). SMTP_HOST is a bare host.
Loopback and private addresses stay allowed: a local model server or relay is a normal
deployment. Redirects are not followed: a model server answering 302 towards another address
gets that address no request at all. TERMS_FILE is a .txt/.md/.html regular file of at most
1 MB, and so is whatever it links to, checked again on every read.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from bastion.db import migrate
from bastion.settings import ConfigurationError
from tests.conftest import SettingsFactory, serve_app
from tests.integration.auth.helpers import bearer, identity_settings, user_session
from tests.security.helpers import assert_error_shape

SECRET = "hunter2-in-the-url"  # pragma: allowlist secret
METADATA = [
    "169.254.169.254",
    "2852039166",  # 169.254.169.254 as one number
    "0xa9.0xfe.0xa9.0xfe",
    "0251.0376.0251.0376",
    "[::ffff:169.254.169.254]",
    "[fe80::1]",
    "[fd00:ec2::254]",
    "metadata.google.internal",
    "METADATA.GOOGLE.INTERNAL.",
]
OPENAI = {"LLM_PROVIDER": "openai", "LLM_MODEL": "m"}


def refused(make_settings: SettingsFactory, **values: object) -> str:
    with pytest.raises((ConfigurationError, ValidationError)) as caught:
        make_settings(**values)
    return str(caught.value)


@pytest.mark.parametrize("host", METADATA)
def test_no_url_setting_reaches_a_metadata_service(make_settings: SettingsFactory, host: str) -> None:
    url = f"http://{host}/latest/meta-data/"
    cases = [
        ("LLM_BASE_URL", {**OPENAI, "LLM_BASE_URL": url}),
        ("ALERT_WEBHOOK_URL", {"ALERT_WEBHOOK_URL": url}),
        ("collector URL", {"AUDIT_LOG_SINK": f"db,{url}"}),
        ("SENTRY_DSN", {"SENTRY_DSN": f"http://public@{host}/1"}),
        ("SMTP_HOST", {"SMTP_HOST": host.strip("[]")}),
    ]
    for name, values in cases:
        message = refused(make_settings, **values)
        assert name in message and "metadata" in message, (name, message)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "ftp://x/",
        "dict://x:11211/",
        "//x/",
        "http://",
        "http://x:99999/",
    ],
)
def test_only_http_urls(make_settings: SettingsFactory, url: str) -> None:
    assert "LLM_BASE_URL" in refused(make_settings, **OPENAI, LLM_BASE_URL=url)
    assert "ALERT_WEBHOOK_URL" in refused(make_settings, ALERT_WEBHOOK_URL=url)
    if not url.startswith("file:"):  # file:PATH is the file sink, a path the operator chose
        refused(make_settings, AUDIT_LOG_SINK=url)


def test_credentials_in_urls_are_refused_and_never_echoed(make_settings: SettingsFactory) -> None:
    for values in (
        {**OPENAI, "LLM_BASE_URL": f"https://user:{SECRET}@models.example.org/v1"},
        {"ALERT_WEBHOOK_URL": f"https://user:{SECRET}@hooks.example.org/x"},
        {"AUDIT_LOG_SINK": f"https://user:{SECRET}@logs.example.org/in"},
    ):
        message = refused(make_settings, **values)
        assert "credentials" in message, message
        assert SECRET not in message


@pytest.mark.parametrize(
    "url", ["https://models.example.org/v1?api-version=1", "https://models.example.org/v1#x"]
)
def test_a_model_url_with_a_query_or_fragment_is_refused_at_start(
    make_settings: SettingsFactory, url: str
) -> None:
    """The endpoint's paths are appended to it, and its client refuses such a URL: refused at start,
    not as a failed call on every message."""
    assert "LLM_BASE_URL must not carry a query" in refused(make_settings, **OPENAI, LLM_BASE_URL=url)


@pytest.mark.parametrize(
    "value", ["smtp://mail.example.org", "mail.example.org:25", "user@mail.example.org", "a b", "mail/x"]
)
def test_smtp_host_is_a_bare_host(make_settings: SettingsFactory, value: str) -> None:
    assert "SMTP_HOST" in refused(make_settings, SMTP_HOST=value)


def test_local_and_private_destinations_stay_allowed(make_settings: SettingsFactory) -> None:
    for host in ("127.0.0.1:8080", "localhost", "10.0.0.5", "[::1]", "models.internal.example"):
        make_settings(**OPENAI, LLM_BASE_URL=f"http://{host}/v1", ALERT_WEBHOOK_URL=f"http://{host}/hook")
    make_settings(SMTP_HOST="::1")
    make_settings(SMTP_HOST="relay.internal.example")


class _Counting(BaseHTTPRequestHandler):
    hits: list[str]
    location: str | None

    def _answer(self) -> None:
        self.hits.append(self.path)
        if self.location is not None:
            self.send_response(302)
            self.send_header("Location", self.location + self.path)
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer  # http.server calls do_<METHOD>

    def log_message(self, *_args: object) -> None:  # quiet
        return


@contextmanager
def counting_server(location: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server recording every request; with ``location``, each answer is a 302."""
    hits: list[str] = []
    handler = type("Handler", (_Counting,), {"hits": hits, "location": location})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_the_model_server_cannot_redirect_bastion(make_settings: SettingsFactory) -> None:
    with counting_server() as (target, target_hits), counting_server(location=target) as (redirector, hits):
        settings = identity_settings(
            make_settings,
            **OPENAI,
            LLM_BASE_URL=f"{redirector}/v1",
            LLM_MAX_RETRIES=0,
            OPENAI_API_KEY="sk-test-" + "k" * 24,  # pragma: allowlist secret
        )
        await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
        async with serve_app(settings) as (_app, http):
            _, tokens = await user_session(http, "ssrf@example.com")
            response = await http.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hello"}]},
                headers=bearer(tokens["access_token"]),
            )
    assert hits, "the model server was not called at all"
    assert target_hits == []  # the redirect was not followed
    assert response.status_code in (502, 503), response.text
    assert response.json()["detail"]["request_id"] == response.headers["x-request-id"]
    assert target not in response.text and redirector not in response.text


def test_terms_file_links_and_special_files_are_refused(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    link = tmp_path / "terms.txt"
    link.symlink_to("/etc/passwd")
    assert "TERMS_FILE" in refused(make_settings, TERMS_FILE=link)
    environ = tmp_path / "environ.md"
    environ.symlink_to("/proc/self/environ")
    assert "TERMS_FILE" in refused(make_settings, TERMS_FILE=environ)
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    assert "TERMS_FILE" in refused(make_settings, TERMS_FILE=fifo)
    zero = tmp_path / "zero.txt"
    zero.symlink_to("/dev/zero")
    assert "TERMS_FILE" in refused(make_settings, TERMS_FILE=zero)
    directory = tmp_path / "dir.html"
    directory.mkdir()
    assert "TERMS_FILE" in refused(make_settings, TERMS_FILE=directory)


async def test_a_terms_file_swapped_after_startup_is_not_served(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """Read on every request: what it is now is checked now, without blocking on a FIFO."""
    terms = tmp_path / "terms.md"
    terms.write_text("# Terms\n")
    settings = make_settings(TERMS_FILE=terms)
    async with serve_app(settings) as (_app, http):
        assert (await http.get("/legal/terms")).text == "# Terms\n"
        for swap in ("/etc/passwd", "/dev/zero", "fifo"):
            terms.unlink()
            if swap == "fifo":
                os.mkfifo(terms)
            else:
                terms.symlink_to(swap)
            response = await http.get("/legal/terms")
            assert_error_shape(response, swap)
            assert response.status_code == 404, swap
            assert "root:" not in response.text
        terms.unlink()
        big = tmp_path / "big.md"
        big.write_bytes(b"x" * 1_000_001)
        terms.symlink_to(big)
        assert (await http.get("/legal/terms")).status_code == 404
