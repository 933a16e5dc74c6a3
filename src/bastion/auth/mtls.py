# SPDX-License-Identifier: Apache-2.0
"""Service identities from client certificates: a subject allow-list, and the principal it yields.

MTLS_SERVICE_IDENTITIES lists ``<subject DN>=><service name>`` entries separated by ``;``::

    MTLS_SERVICE_IDENTITIES="CN=billing,O=Example=>billing;CN=reports,O=Example=>reports"

A subject matches an entry when both name exactly the same set of attributes (type and value;
attribute order and the case of attribute types do not matter, values are compared exactly),
so ``CN=billing`` never matches ``CN=billing-evil`` or ``CN=billing,OU=Other``. Only subjects of
certificates the TLS layer has already verified against the configured CA (or that a trusted
proxy vouches for) are looked up here; an unlisted subject gets no identity at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509

from bastion.auth.permissions import scope_permissions
from bastion.auth.principal import AuthMethod, Principal, Role

DistinguishedName = frozenset[tuple[str, str]]
_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
MAX_SUBJECT_LENGTH = 1024
# What a service identity may do: the service role's permissions (health, metrics, /v1).
SERVICE_SCOPES = frozenset({"monitoring", "completions"})


def parse_dn(text: str) -> DistinguishedName:
    """``CN=a,O=b`` (RFC 4514, backslash escapes, ``+`` for multi-valued RDNs) as a set of pairs."""
    if not text or len(text) > MAX_SUBJECT_LENGTH or not text.isprintable():
        raise ValueError("not a distinguished name")
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError("a distinguished name ends in an escape")
            current.append("\\" + escaped)
        elif char in ",+":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    pairs: set[tuple[str, str]] = set()
    for part in parts:
        kind, sep, value = part.partition("=")
        kind = kind.strip().upper()
        if not sep or not kind or not re.fullmatch(r"[A-Z][A-Z0-9-]*|[0-9]+(\.[0-9]+)*", kind):
            raise ValueError("each attribute of a distinguished name is TYPE=value")
        pairs.add((kind, _unescape(value.strip())))
    return frozenset(pairs)


def _unescape(value: str) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped = match.group(1)
        return chr(int(escaped, 16)) if len(escaped) == 2 else escaped

    return re.sub(r"\\([0-9A-Fa-f]{2}|.)", replace, value)


def certificate_subject(pem_or_der: str | bytes) -> str:
    """The RFC 4514 subject of a certificate given as PEM text or DER bytes."""
    if isinstance(pem_or_der, str):
        certificate = x509.load_pem_x509_certificate(pem_or_der.encode("ascii"))
    else:
        certificate = x509.load_der_x509_certificate(pem_or_der)
    return certificate.subject.rfc4514_string()


@dataclass(frozen=True, slots=True)
class ServiceIdentities:
    """The allow-list: which verified subjects are which service."""

    entries: dict[DistinguishedName, str]

    @classmethod
    def parse(cls, raw: str | None) -> ServiceIdentities:
        entries: dict[DistinguishedName, str] = {}
        for item in (raw or "").split(";"):
            item = item.strip()
            if not item:
                continue
            subject, sep, name = item.rpartition("=>")
            name = name.strip()
            if not sep or not _SERVICE_NAME.fullmatch(name):
                raise ValueError("each entry is '<subject DN>=><service name>' (name: a-z, 0-9, . _ -)")
            entries[parse_dn(subject.strip())] = name
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def service_for(self, subject: str) -> str | None:
        try:
            return self.entries.get(parse_dn(subject))
        except ValueError:
            return None


def service_principal(name: str) -> Principal:
    return Principal(
        subject=f"service:{name}",
        role=Role.SERVICE,
        method=AuthMethod.MTLS,
        scopes=scope_permissions(SERVICE_SCOPES),
        # Limits and blocks key on the service, like an API key.
        api_key_id=f"mtls:{name}",
    )
