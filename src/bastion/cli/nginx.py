# SPDX-License-Identifier: Apache-2.0
"""`bastion nginx-config`: a hardened TLS reverse proxy configuration in front of Bastion."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from bastion.cli.tls import TLS12_CIPHERS
from bastion.web.hosts import host_name
from bastion.web.security_headers import HSTS_MAX_AGE

# Values are written into the config verbatim, so anything that could end a directive or open a
# block ({ } ; quotes, whitespace, $ variables) is refused rather than escaped.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
_SAFE_RESOLVER = re.compile(r"^[A-Za-z0-9.:\[\] ]+$")
_SAFE_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
VOICE_CHAT_LOCATION = r"^/api/sessions/[^/]+/voice-chat/?$"
# nginx's own error pages, in Bastion's error shape (no request id: the request never reached it).
_NGINX_ERRORS = {
    413: ("payload_too_large", "The request body is too large"),
    502: ("service_unavailable", "The service is temporarily unavailable"),
    503: ("service_unavailable", "The service is temporarily unavailable"),
    504: ("service_unavailable", "The service is temporarily unavailable"),
}


_ERROR_CSP = "default-src 'none'; frame-ancestors 'none'"


class NginxConfigError(ValueError):
    """An option value that cannot go into the configuration."""


@dataclass(frozen=True)
class NginxOptions:
    domain: str
    upstream: str = "127.0.0.1:8000"
    certificate: str = "/etc/letsencrypt/live/{domain}/fullchain.pem"
    certificate_key: str = "/etc/letsencrypt/live/{domain}/privkey.pem"
    trusted_certificate: str | None = "/etc/letsencrypt/live/{domain}/chain.pem"
    listen: str = "0.0.0.0"  # noqa: S104 # nosec B104 # a public reverse proxy listens on every address
    http_port: int = 80
    https_port: int = 443
    body_bytes: int = 1024 * 1024
    voice_body_bytes: int = 10 * 1024 * 1024
    resolver: str = "1.1.1.1 9.9.9.9"
    pid_file: str = "/run/nginx.pid"
    error_log: str = "/var/log/nginx/error.log"
    access_log: str = "/var/log/nginx/access.log"
    temp_dir: str | None = None
    user: str | None = None


def _path(value: str, option: str) -> str:
    if not _SAFE_PATH.fullmatch(value) or ".." in value.split("/"):
        raise NginxConfigError(f"{option} must be an absolute path of letters, digits and ._/@+-")
    return value


def _upstream(value: str) -> str:
    """``unix:/path`` or a loopback ``host:port``: the app is never exposed beyond this machine."""
    if value.startswith("unix:"):
        return "unix:" + _path(value[5:], "--upstream")
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise NginxConfigError("--upstream is unix:/path or a loopback address:port")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise NginxConfigError("--upstream is unix:/path or a loopback address:port") from None
    if not address.is_loopback:
        raise NginxConfigError("--upstream must be on this machine (loopback or a unix socket)")
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _listen(value: str) -> str:
    try:
        address = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        raise NginxConfigError("--listen must be an IP address") from None
    return f"[{address}]" if address.version == 6 else str(address)


def render(options: NginxOptions) -> str:
    """The whole nginx.conf (main context included) for ``options``; raises NginxConfigError."""
    domain = host_name(options.domain)
    if domain is None or ":" in options.domain or domain.startswith("["):
        raise NginxConfigError("--domain must be a DNS host name")
    for port in (options.http_port, options.https_port):
        if not 0 < port < 65536:
            raise NginxConfigError("ports are between 1 and 65535")
    upstream = _upstream(options.upstream)
    listen = _listen(options.listen)
    cert = _path(options.certificate.format(domain=domain), "--ssl-certificate")
    key = _path(options.certificate_key.format(domain=domain), "--ssl-certificate-key")
    chain = options.trusted_certificate
    chain_line = (
        f"    ssl_trusted_certificate {_path(chain.format(domain=domain), '--ssl-trusted-certificate')};\n"
        if chain
        else ""
    )
    if not _SAFE_RESOLVER.fullmatch(options.resolver):
        raise NginxConfigError("--resolver is a space-separated list of IP addresses")
    if options.user is not None and not _SAFE_USER.fullmatch(options.user):
        raise NginxConfigError("--user must be a system user name")
    user_line = f"user {options.user};\n" if options.user else ""
    temp_lines = ""
    if options.temp_dir is not None:
        temp = _path(options.temp_dir, "--temp-dir").rstrip("/")
        temp_lines = "".join(
            f"    {kind}_temp_path {temp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
    https_suffix = "" if options.https_port == 443 else f":{options.https_port}"
    hsts = f"max-age={HSTS_MAX_AGE}; includeSubDomains; preload"
    error_pages = "".join(
        f"        error_page {status} /_bastion_error_{status};\n" for status in _NGINX_ERRORS
    )
    error_locations = "".join(
        f"        location = /_bastion_error_{status} {{\n"
        f"            internal;\n"
        f'            default_type "application/json; charset=utf-8";\n'
        f'            add_header Cache-Control "no-store" always;\n'
        f'            add_header X-Content-Type-Options "nosniff" always;\n'
        f'            add_header Content-Security-Policy "{_ERROR_CSP}" always;\n'
        f'            add_header Strict-Transport-Security "{hsts}" always;\n'
        f'            return {status} \'{{"detail":{{"error":"{code}","message":"{message}",'
        f'"request_id":null}}}}\';\n'
        f"        }}\n"
        for status, (code, message) in _NGINX_ERRORS.items()
    )
    return f"""# Generated by `bastion nginx-config` for {domain}. TLS terminates here; Bastion listens on
# {upstream} and must have TRUSTED_PROXIES=127.0.0.1 (it then believes X-Forwarded-For/Proto from
# this proxy only) and ALLOWED_HOSTS={domain}.
{user_line}worker_processes auto;
pid {_path(options.pid_file, "--pid-file")};
error_log {_path(options.error_log, "--error-log")} warn;

events {{
    worker_connections 1024;
}}

http {{
    server_tokens off;
    charset utf-8;
    default_type application/octet-stream;
    access_log {_path(options.access_log, "--access-log")};
    sendfile on;
    keepalive_timeout 65s;
    client_header_timeout 15s;
    client_body_timeout 30s;
    send_timeout 30s;
    large_client_header_buffers 4 16k;
    client_max_body_size {options.body_bytes};
{temp_lines}
    # Mozilla "intermediate": TLS 1.2 and 1.3, ECDHE + AEAD suites only.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {TLS12_CIPHERS};
    ssl_prefer_server_ciphers off;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_session_timeout 1d;
    ssl_session_cache shared:BastionTLS:10m;
    # Session tickets reuse one key for every session until restart, which breaks forward secrecy.
    ssl_session_tickets off;
    ssl_stapling on;
    ssl_stapling_verify on;
{chain_line}    resolver {options.resolver} valid=300s;
    resolver_timeout 5s;

    upstream bastion {{
        server {upstream};
        keepalive 16;
    }}

    # Requests for any other name are dropped: no response at all, nothing to rebind to.
    server {{
        listen {listen}:{options.http_port} default_server;
        server_name _;
        return 444;
    }}
    server {{
        listen {listen}:{options.https_port} ssl default_server;
        server_name _;
        ssl_reject_handshake on;
    }}

    server {{
        listen {listen}:{options.http_port};
        server_name {domain};
        # The fixed name, never $host: the redirect cannot be pointed elsewhere.
        location / {{
            return 308 https://{domain}{https_suffix}$request_uri;
        }}
    }}

    server {{
        listen {listen}:{options.https_port} ssl;
        server_name {domain};
        ssl_certificate {cert};
        ssl_certificate_key {key};

        # nginx owns HSTS so its own error pages carry it too; Bastion's copy is hidden.
        proxy_hide_header Strict-Transport-Security;
        add_header Strict-Transport-Security "{hsts}" always;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        # Overwritten, not appended: whatever X-Forwarded-For a client sends is dropped here.
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-Host "";
        proxy_read_timeout 120s;
        proxy_redirect off;
{error_pages}
        location ~ {VOICE_CHAT_LOCATION} {{
            client_max_body_size {options.voice_body_bytes};
            proxy_pass http://bastion;
        }}
        location / {{
            proxy_pass http://bastion;
        }}
{error_locations}    }}
}}
"""
