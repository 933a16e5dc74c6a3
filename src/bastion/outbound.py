# SPDX-License-Identifier: Apache-2.0
"""Where a setting may point Bastion's outbound connections (OWASP API7, server-side request forgery).

Settings name the model provider (LLM_BASE_URL), the alert receiver (ALERT_WEBHOOK_URL), audit
collectors (AUDIT_LOG_SINK), the error tracker (SENTRY_DSN) and the mail relay (SMTP_HOST). Each
may legitimately be on this host or a private network (a local model server, a relay), so
loopback and private addresses stay allowed; what none of them can be is a cloud instance's
metadata service, which hands out the machine's credentials to whoever asks from inside it:
link-local addresses (169.254.0.0/16, fe80::/10, written in any form the resolver accepts,
``2852039166`` or ``0xa9.0xfe.0xa9.0xfe`` included), AWS's fd00:ec2::254 and the metadata host
names. Credentials do not belong in these URLs either: each has its own secret setting, and a
URL is what ends up in a log line or an error message.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"}
)
METADATA_NETWORKS = (ipaddress.ip_network("fd00:ec2::254/128"),)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` denotes by itself (no DNS), in any spelling the resolver accepts."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        try:  # inet_aton also reads 2852039166, 0251.0376.0251.0376 and 169.254.43518
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_metadata_host(host: str) -> bool:
    """Whether ``host`` is an instance metadata service: never a destination for Bastion."""
    name = host.rstrip(".").lower()
    if name in METADATA_HOSTS:
        return True
    address = _address(name)
    return address is not None and (
        address.is_link_local or any(address in network for network in METADATA_NETWORKS)
    )


def url_problems(name: str, url: str, *, credentials: bool = False) -> list[str]:
    """What is wrong with ``url`` as the destination setting ``name`` names; never echoes it.

    ``credentials``: user info is part of the format (a Sentry DSN's public key).
    """
    try:
        parsed = urlsplit(url)
        host = parsed.hostname
        parsed.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return [f"{name} must be an absolute http(s) URL"]
    if parsed.scheme not in ("http", "https") or not host:
        return [f"{name} must be an absolute http(s) URL"]
    problems = []
    if not credentials and (parsed.username is not None or parsed.password is not None):
        problems.append(f"{name} must not carry credentials (user:password@); use its own secret setting")
    if is_metadata_host(host):
        problems.append(f"{name} points at a link-local or cloud metadata address; refused")
    return problems


def host_problems(name: str, host: str) -> list[str]:
    """A bare host name or address (SMTP_HOST): no scheme, port, path, user info or spaces."""
    if not host or (any(c in host for c in "/@:?#\\ \t\r\n") and not _is_bracketless_ipv6(host)):
        return [f"{name} must be a bare host name or address (the port is a setting of its own)"]
    if is_metadata_host(host):
        return [f"{name} points at a link-local or cloud metadata address; refused"]
    return []


def _is_bracketless_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host.split("%", 1)[0]), ipaddress.IPv6Address)
    except ValueError:
        return False
