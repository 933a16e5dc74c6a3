# SPDX-License-Identifier: Apache-2.0
"""`bastion check --url`: what a running instance shows a client, checked from the outside.

Everything here is what any client on the network can see: response headers, HSTS, the plain-http
redirect, which TLS versions and suites the listener accepts, whether a foreign origin is refused
by CORS, and whether the API description and the metrics answer without credentials. Requests
carry no credentials, and nothing is written.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bastion.deploycheck.registry import Finding, Severity

# Each live check: severity and the one-line fix. Ids are stable like the configuration checks'.
LIVE_CHECKS: dict[str, tuple[Severity, str]] = {
    "live-unreachable": (Severity.CRITICAL, "check the URL, DNS and that the instance is up"),
    "live-plain-http": (
        Severity.CRITICAL,
        "serve https (nginx-config or serve --ssl-certfile) and check that URL",
    ),
    "live-headers-missing": (Severity.HIGH, "make sure the proxy passes Bastion's headers through unchanged"),
    "live-hsts-weak": (Severity.HIGH, "set FORCE_HTTPS=true (Bastion sends HSTS for a year with preload)"),
    "live-no-https-redirect": (
        Severity.HIGH,
        "redirect http to https at the proxy (nginx-config does) or set FORCE_HTTPS=true",
    ),
    "live-tls-old-protocol": (Severity.HIGH, "accept TLS 1.2 and 1.3 only (nginx-config, serve --ssl-*)"),
    "live-tls-weak-cipher": (
        Severity.HIGH,
        "offer ECDHE with AEAD suites only (nginx-config, serve --ssl-*)",
    ),
    "live-cors-foreign-origin": (Severity.HIGH, "list only your own origins in ALLOWED_ORIGINS"),
    "live-docs-exposed": (Severity.MEDIUM, "unset ENABLE_DOCS, or block /docs, /redoc and /openapi.json"),
    "live-metrics-exposed": (
        Severity.HIGH,
        "keep /metrics behind credentials, or PROMETHEUS_PORT on a private address",
    ),
    "live-server-banner": (Severity.LOW, "hide the proxy's version (nginx: server_tokens off)"),
}
# What every answer of Bastion carries; a proxy that strips one weakens every page.
REQUIRED_HEADERS = (
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
)
HSTS_MIN_SECONDS = 31_536_000  # one year, what preload lists and scanners ask
FOREIGN_ORIGIN = "https://deploy-check.invalid"  # .invalid never resolves: nobody owns it
EXPOSED_DOCS = ("/docs", "/redoc", "/openapi.json")
# Offered one group at a time over TLS 1.2: suites without AEAD, and suites without forward
# secrecy, told apart by the fields OpenSSL reports for each suite it knows.
WEAK_SUITES: dict[str, Callable[[Mapping[str, object]], bool]] = {
    "without AEAD (CBC, RC4, 3DES)": lambda suite: not suite["aead"],
    "without forward secrecy": lambda suite: suite["kea"] == "kx-rsa",
    "without server authentication": lambda suite: suite["auth"] == "auth-null",
}


def _weak_suites(weak: Callable[[Mapping[str, object]], bool]) -> str:
    """An OpenSSL cipher string of every TLS 1.2 suite this OpenSSL knows that ``weak`` picks."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("ALL:@SECLEVEL=0")
    names = [
        suite["name"] for suite in context.get_ciphers() if suite["protocol"] != "TLSv1.3" and weak(suite)
    ]
    return ":".join(names) + ":@SECLEVEL=0"


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    http_url: str | None = None  # where plain http is expected to redirect; http://HOST when unset
    ca_file: Path | None = None  # trust this CA too (a private CA or a test certificate)
    timeout: float = 10.0


def _finding(check_id: str, message: str) -> Finding:
    severity, fix = LIVE_CHECKS[check_id]
    return Finding(check_id, severity, message, fix, "live")


def probe(target: Target) -> list[Finding]:
    """Every live check against ``target``; one ``live-unreachable`` when nothing answers."""
    parts = urlsplit(target.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [_finding("live-unreachable", f"{target.url} is not an http(s) URL")]
    base = f"{parts.scheme}://{parts.netloc}"
    verify: ssl.SSLContext | bool = True
    if target.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(target.ca_file))
    with httpx.Client(base_url=base, verify=verify, timeout=target.timeout, follow_redirects=False) as client:
        try:
            health = client.get("/health")
        except httpx.HTTPError as exc:
            return [
                _finding("live-unreachable", f"{base}/health did not answer ({type(exc).__name__}: {exc})")
            ]
        found = list(_headers(health, https=parts.scheme == "https"))
        found += _cors(client)
        found += _exposed(client)
    if parts.scheme == "http":
        found.append(_finding("live-plain-http", f"{base} is served over plain http"))
    else:
        found += _redirect(target, parts.hostname, verify)
        found += tls_findings(parts.hostname, parts.port or 443, target.timeout)
    return found


def _headers(response: httpx.Response, *, https: bool) -> Iterator[Finding]:
    missing = [name for name in REQUIRED_HEADERS if name not in response.headers]
    if missing:
        yield _finding("live-headers-missing", f"GET /health answers without {', '.join(missing)}")
    banner = " ".join(response.headers.get_list("server") + response.headers.get_list("x-powered-by"))
    if any(character.isdigit() for character in banner):
        yield _finding("live-server-banner", f"the answer names its software and version ({banner[:80]})")
    if not https:
        return
    hsts = response.headers.get("strict-transport-security")
    if hsts is None:
        yield _finding("live-hsts-weak", "no Strict-Transport-Security on https answers")
        return
    directives = {part.strip().split("=", 1)[0].lower(): part.strip() for part in hsts.split(";")}
    try:
        max_age = int(directives.get("max-age", "max-age=0").split("=", 1)[1].strip('"'))
    except (IndexError, ValueError):
        max_age = 0
    if max_age < HSTS_MIN_SECONDS:
        yield _finding("live-hsts-weak", f"Strict-Transport-Security max-age={max_age}, under one year")


def _cors(client: httpx.Client) -> Iterator[Finding]:
    simple = client.get("/health", headers={"Origin": FOREIGN_ORIGIN})
    preflight = client.options(
        "/api/auth/login",
        headers={"Origin": FOREIGN_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    for what, response in (("a request", simple), ("a preflight", preflight)):
        allowed = response.headers.get("access-control-allow-origin")
        if allowed in ("*", FOREIGN_ORIGIN):
            yield _finding(
                "live-cors-foreign-origin",
                f"{what} from the foreign origin {FOREIGN_ORIGIN} is allowed "
                f"(Access-Control-Allow-Origin: {allowed})",
            )


def _exposed(client: httpx.Client) -> Iterator[Finding]:
    open_docs = [path for path in EXPOSED_DOCS if client.get(path).status_code == 200]
    if open_docs:
        yield _finding("live-docs-exposed", f"{', '.join(open_docs)} answer without credentials")
    if client.get("/metrics").status_code == 200:
        yield _finding("live-metrics-exposed", "/metrics answers without credentials")


def _redirect(target: Target, host: str, verify: ssl.SSLContext | bool) -> Iterator[Finding]:
    http_url = target.http_url or f"http://{host}"
    try:
        with httpx.Client(verify=verify, timeout=target.timeout) as client:
            # `/`, not /health: a loopback probe of /health is answered without a redirect.
            response = client.get(http_url.rstrip("/") + "/")
    except httpx.ConnectError:
        return  # nothing listens for plain http: nothing to downgrade to (HSTS covers the name)
    except httpx.HTTPError as exc:
        yield _finding("live-no-https-redirect", f"{http_url} failed ({type(exc).__name__})")
        return
    location = urlsplit(response.headers.get("location", ""))
    if not (response.is_redirect and location.scheme == "https" and location.hostname == host):
        yield _finding(
            "live-no-https-redirect",
            f"plain http at {http_url} answers {response.status_code} instead of redirecting to https://{host}",
        )


def _handshake(host: str, port: int, timeout: float, context: ssl.SSLContext) -> tuple[str, str] | None:
    """The (protocol, suite) the server accepts with this client context, or None when it refuses."""
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the offer is under test here, not the certificate
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            cipher = tls.cipher()
            return (tls.version() or "?", cipher[0] if cipher else "?")
    except (ssl.SSLError, OSError):
        return None


def tls_findings(host: str, port: int, timeout: float = 10.0) -> Iterator[Finding]:
    """TLS 1.0 and 1.1, and TLS 1.2 suites without AEAD or forward secrecy, offered one at a time."""
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        # Let this client really offer the old protocol, so a refusal is the server's. Python warns
        # that these versions are deprecated: offering one is the point of the probe.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            try:
                context.set_ciphers("ALL:@SECLEVEL=0")
                context.minimum_version = context.maximum_version = version
            except (ValueError, ssl.SSLError):
                continue
            accepted = _handshake(host, port, timeout, context)
        if accepted is not None:
            yield _finding("live-tls-old-protocol", f"the listener accepts {accepted[0]}")
    for what, weak in WEAK_SUITES.items():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.set_ciphers(_weak_suites(weak))
        except ssl.SSLError:
            continue
        accepted = _handshake(host, port, timeout, context)
        if accepted is not None:
            yield _finding(
                "live-tls-weak-cipher", f"the listener accepts {accepted[1]} over TLS 1.2 ({what})"
            )
