# SPDX-License-Identifier: Apache-2.0
"""`bastion verify-signature` and `bastion keys rotate-content-signing`: signed model replies.

Verification takes a response saved with ``curl -i`` (status line, headers, body), or a body file
with the header value, and the public keys from a JWKS (URL or file) or from the configured
database. It prints ``valid`` with the key id and time (exit 0), or the reason it is not (exit 1);
a command that cannot run (no file, no keys) exits 2.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from cryptography.hazmat.primitives.asymmetric import ed25519

from bastion.audit.events import AuditEvent
from bastion.cli.common import settings_or_exit
from bastion.cli.users import keys_app, rotate_audited
from bastion.crypto.content_keys import RotationConflict, published_keys, rotate_content_key
from bastion.crypto.fields import FieldCipher
from bastion.crypto.signatures import (
    HEADER,
    SignatureInvalid,
    Verified,
    content_keys_of,
    split_stream,
    verify,
)
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.types import utcnow

JWKS_TIMEOUT_SECONDS = 10.0
MAX_SAVED_BYTES = 64 * 1024 * 1024


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@dataclass(frozen=True, slots=True)
class SavedResponse:
    status: int
    headers: dict[str, str]  # lower-case names; the last value of a repeated header
    body: bytes


def parse_saved_response(raw: bytes) -> SavedResponse:
    """A response as ``curl -i`` saves it; interim (1xx) and redirect heads before it are skipped."""
    rest = raw
    while True:
        if not rest.startswith(b"HTTP/"):
            raise ValueError("not a response saved with curl -i (no status line)")
        end = rest.find(b"\r\n\r\n")
        skip = 4
        if end < 0:
            end, skip = rest.find(b"\n\n"), 2
        if end < 0:
            raise ValueError("the saved response has no end of headers")
        head, body = rest[:end].decode("latin-1"), rest[end + skip :]
        lines = head.replace("\r\n", "\n").split("\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError) as exc:
            raise ValueError("the saved response has a malformed status line") from exc
        if (status < 200 or 300 <= status < 400) and body.startswith(b"HTTP/"):
            rest = body  # curl -i -L, or a 100 Continue: the answer that matters comes next
            continue
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return SavedResponse(status, headers, body)


def verify_saved(
    saved: SavedResponse, keys: dict[str, ed25519.Ed25519PublicKey], *, signature: str | None = None
) -> Verified:
    """Verify a saved reply: by its header, or (a stream) by its closing signature event."""
    request_id = saved.headers.get("x-request-id")
    value = signature or saved.headers.get(HEADER.lower())
    if value is not None:
        return verify(saved.body, value, keys, request_id=request_id)
    signed, value = split_stream(saved.body)
    return verify(signed, value, keys, request_id=request_id)


def _load_jwks(source: str) -> dict[str, ed25519.Ed25519PublicKey]:
    data: Any
    try:
        if source.startswith(("https://", "http://")):
            response = httpx.get(source, timeout=JWKS_TIMEOUT_SECONDS, follow_redirects=False)
            response.raise_for_status()
            data = response.json()
        else:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        return content_keys_of(data)
    except (OSError, httpx.HTTPError, ValueError, AttributeError) as exc:
        _fail(f"cannot read the JWKS from {source}: {exc}")


def _database_keys() -> dict[str, ed25519.Ed25519PublicKey]:
    settings = settings_or_exit()

    async def read() -> dict[str, ed25519.Ed25519PublicKey]:
        engine = create_engine(settings.database_url.get_secret_value())
        try:
            return await published_keys(create_sessionmaker(engine), utcnow())
        finally:
            await engine.dispose()

    try:
        return asyncio.run(read())
    except Exception as exc:  # the database unreachable or not migrated: one line, no traceback
        _fail(f"cannot read the content keys from the database: {type(exc).__name__}")


def verify_signature(
    response: Annotated[
        Path | None, typer.Argument(help="A response saved with `curl -i` (headers and body).")
    ] = None,
    body: Annotated[Path | None, typer.Option(help="The body alone, exactly as received.")] = None,
    signature: Annotated[
        str | None, typer.Option(help=f"The {HEADER} value (with --body; a stream carries its own).")
    ] = None,
    request_id: Annotated[
        str | None, typer.Option(help="The response's X-Request-ID, which the signature must name.")
    ] = None,
    jwks: Annotated[
        str | None,
        typer.Option(help="JWKS URL or file (default: the keys in the configured database)."),
    ] = None,
) -> None:
    """Check the signature of a saved model reply: prints `valid ...` (exit 0) or why not (exit 1).

    Example: bastion verify-signature reply.http --jwks https://chat.example.org/.well-known/jwks.json
    """
    path = response or body
    if path is None or (response is not None and body is not None):
        _fail("give a saved response, or --body (with --signature for a JSON reply)")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SAVED_BYTES + 1)
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    if len(raw) > MAX_SAVED_BYTES:
        _fail(f"{path} is larger than {MAX_SAVED_BYTES} bytes")
    try:
        saved = parse_saved_response(raw) if response is not None else SavedResponse(200, {}, raw)
    except ValueError as exc:
        _fail(str(exc))
    if request_id is not None:
        saved.headers["x-request-id"] = request_id
    keys = _load_jwks(jwks) if jwks is not None else _database_keys()
    try:
        verified = verify_saved(saved, keys, signature=signature)
    except SignatureInvalid as exc:
        typer.echo(f"invalid ({exc.reason}): {exc}")
        raise typer.Exit(1) from None
    signed_at = datetime.fromtimestamp(verified.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    typer.echo(
        f"valid: key {verified.kid}, signed {signed_at} (t={verified.time}), request {verified.request_id}"
    )


@keys_app.command("rotate-content-signing")
def rotate_content_signing(
    grace_days: Annotated[
        int | None,
        typer.Option(
            min=0, max=3650, help="How long the previous key still verifies (CONTENT_KEY_GRACE_DAYS)."
        ),
    ] = None,
) -> None:
    """Add a new content-signing key for model replies; the previous one stays published for the grace.

    Example: bastion keys rotate-content-signing --grace-days 30
    """
    settings = settings_or_exit()
    days = settings.content_key_grace_days if grace_days is None else grace_days

    cipher = FieldCipher.for_settings(settings)
    try:
        kid = rotate_audited(
            settings,
            lambda sessionmaker: rotate_content_key(sessionmaker, cipher, grace=timedelta(days=days)),
            event=AuditEvent.CONTENT_SIGNING_KEY_ROTATED,
            target_type="content_signing_key",
            details={"algorithm": "EdDSA", "grace_days": days},
        )
    except (RotationConflict, ValueError) as exc:
        _fail(str(exc), 1)
    typer.echo(f"new content-signing key {kid}; running instances sign with it within a minute")
