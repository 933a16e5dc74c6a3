# SPDX-License-Identifier: Apache-2.0
"""The encrypted backup archive: a header, then a stream of AES-256-GCM chunks.

Layout::

    MAGIC (8) | header length (u32) | header (JSON) | header MAC (32) | chunk*
    chunk = ciphertext length (u32) | ciphertext (nonce-less; tag included)

The header names the format version, the key id of DATABASE_ENCRYPTION_KEY the archive is sealed
under, the environment, the kind of database, and the size and SHA-256 of the plaintext. A random
salt in the header makes every archive's keys its own (HKDF from the configured key with a
purpose of its own, "database-backup"), so chunk nonces are a counter: chunk ``i`` uses
``i`` with a final flag (the STREAM construction), which refuses reordered, dropped, repeated and
truncated chunks. The header is authenticated by an HMAC under a second derived key, written when
the dump is complete (the checksum is known only then), so a header edited to name another key id
or checksum is refused before any chunk is read.

Chunks are sealed as the dump streams in, so a large database never sits in memory; the reader
verifies every chunk and, at the end, the plaintext's size and checksum.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.crypto.fields import derive_key

MAGIC = b"BSTNBAK\n"
FORMAT_VERSION = 1
CHUNK_BYTES = 1024 * 1024
TAG_BYTES = 16
MAC_BYTES = 32
MAX_HEADER_BYTES = 4096
_LENGTH = struct.Struct(">I")
_PURPOSE = "database-backup"


class ArchiveRefused(Exception):
    """The archive cannot be trusted or opened with this configuration; the message says why."""


@dataclass(frozen=True, slots=True)
class ArchiveHeader:
    format: int
    key_id: str
    environment: str
    database: str
    created_at: str
    chunk_bytes: int
    salt: str
    size: int
    sha256: str

    def encode(self) -> bytes:
        # Fixed-width size and checksum: the header is rewritten in place once the dump is complete.
        fields = {
            "format": self.format,
            "key_id": self.key_id,
            "environment": self.environment,
            "database": self.database,
            "created_at": self.created_at,
            "chunk_bytes": self.chunk_bytes,
            "salt": self.salt,
            "size": f"{self.size:020d}",
            "sha256": self.sha256,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ArchiveHeader:
        try:
            fields = json.loads(raw)
            return cls(
                format=int(fields["format"]),
                key_id=str(fields["key_id"]),
                environment=str(fields["environment"]),
                database=str(fields["database"]),
                created_at=str(fields["created_at"]),
                chunk_bytes=int(fields["chunk_bytes"]),
                salt=str(fields["salt"]),
                size=int(fields["size"]),
                sha256=str(fields["sha256"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveRefused("the archive header is unreadable: the archive is damaged") from exc


@dataclass(frozen=True, slots=True)
class _Keys:
    chunks: AESGCM
    header: bytes


def _archive_keys(key: bytes, *, salt: str, environment: str) -> _Keys:
    return _Keys(
        chunks=AESGCM(derive_key(key, purpose=f"{_PURPOSE}:chunks:{salt}", environment=environment)),
        header=derive_key(key, purpose=f"{_PURPOSE}:header:{salt}", environment=environment),
    )


def _nonce(index: int, *, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _header_mac(key: bytes, encoded: bytes) -> bytes:
    return hmac.new(key, MAGIC + _LENGTH.pack(len(encoded)) + encoded, hashlib.sha256).digest()


class ArchiveWriter:
    """Seals a byte stream into ``out`` (seekable: the header is completed at the end)."""

    def __init__(
        self,
        out: BinaryIO,
        *,
        keys: Mapping[str, bytes],
        environment: str,
        database: str,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        key_id, key = next(iter(keys.items()))  # the newest key seals, as for stored fields
        self._out = out
        self._header = ArchiveHeader(
            format=FORMAT_VERSION,
            key_id=key_id,
            environment=environment,
            database=database,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            chunk_bytes=chunk_bytes,
            salt=secrets.token_hex(16),
            size=0,
            sha256="0" * 64,
        )
        self._keys = _archive_keys(key, salt=self._header.salt, environment=environment)
        self._start = out.tell()
        self._write_header(self._header)
        self._buffer = bytearray()
        self._index = 0
        self._digest = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> None:
        self._digest.update(data)
        self._size += len(data)
        self._buffer += data
        size = self._header.chunk_bytes
        # Strictly more than one chunk held back: the final chunk is always sealed by ``finish``.
        while len(self._buffer) > size:
            self._seal(bytes(self._buffer[:size]), last=False)
            del self._buffer[:size]

    def finish(self) -> ArchiveHeader:
        """Seal the final chunk and complete the header; returns it."""
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        end = self._out.tell()
        header = dataclasses.replace(self._header, size=self._size, sha256=self._digest.hexdigest())
        self._out.seek(self._start)
        self._write_header(header)
        self._out.seek(end)
        self._out.flush()
        return header

    def _write_header(self, header: ArchiveHeader) -> None:
        encoded = header.encode()
        mac = _header_mac(self._keys.header, encoded)
        self._out.write(MAGIC + _LENGTH.pack(len(encoded)) + encoded + mac)

    def _seal(self, plaintext: bytes, *, last: bool) -> None:
        sealed = self._keys.chunks.encrypt(_nonce(self._index, last=last), plaintext, None)
        self._out.write(_LENGTH.pack(len(sealed)) + sealed)
        self._index += 1


def read_header(source: BinaryIO, *, keys: Mapping[str, bytes], environment: str) -> ArchiveHeader:
    """Read and authenticate the header: a known key id, this environment, an untouched header."""
    if source.read(len(MAGIC)) != MAGIC:
        raise ArchiveRefused("not a Bastion backup archive")
    (length,) = _LENGTH.unpack(_exactly(source, _LENGTH.size, "header"))
    if length > MAX_HEADER_BYTES:
        raise ArchiveRefused("the archive header is unreadable: the archive is damaged")
    encoded = _exactly(source, length, "header")
    mac = _exactly(source, MAC_BYTES, "header")
    header = ArchiveHeader.decode(encoded)
    if header.format != FORMAT_VERSION:
        raise ArchiveRefused(
            f"archive format {header.format} is not supported (this version reads format {FORMAT_VERSION})"
        )
    if header.key_id not in keys:
        raise ArchiveRefused(
            f"the archive is sealed under key id {header.key_id!r}, which DATABASE_ENCRYPTION_KEY does "
            f"not list (configured: {', '.join(repr(k) for k in keys)}); add that key to restore it"
        )
    if header.environment != environment:
        raise ArchiveRefused(
            f"the archive was made in ENVIRONMENT={header.environment!r}, this is {environment!r}: keys "
            "are derived per environment, so its stored values could not be read here"
        )
    archive_keys = _archive_keys(keys[header.key_id], salt=header.salt, environment=environment)
    if not hmac.compare_digest(mac, _header_mac(archive_keys.header, encoded)):
        raise ArchiveRefused(
            f"the archive header failed authentication: DATABASE_ENCRYPTION_KEY's key {header.key_id!r} "
            "is not the one that sealed it, or the archive was altered"
        )
    return header


def plaintext(source: BinaryIO, *, keys: Mapping[str, bytes], environment: str) -> Iterator[bytes]:
    """The archive's plaintext, chunk by chunk, each authenticated before it is yielded.

    Raises ``ArchiveRefused`` on the first chunk that fails, on truncation, on trailing bytes and,
    after the last chunk, when the size or checksum differs from the header's. A consumer that must
    not act on unverified data reads it all once (``verify``) before acting on a second pass.
    """
    header = read_header(source, keys=keys, environment=environment)
    cipher = _archive_keys(keys[header.key_id], salt=header.salt, environment=environment).chunks
    digest = hashlib.sha256()
    size = 0
    index = 0
    while True:
        raw_length = source.read(_LENGTH.size)
        if not raw_length:
            raise ArchiveRefused("the archive ends before its last chunk: it is truncated")
        (length,) = _LENGTH.unpack(_exactly(source, _LENGTH.size - len(raw_length), "chunk", raw_length))
        if length > header.chunk_bytes + TAG_BYTES:
            raise ArchiveRefused(f"chunk {index} is larger than the archive's chunks: the archive is damaged")
        sealed = _exactly(source, length, "chunk")
        chunk, last = _open_chunk(cipher, index, sealed)
        digest.update(chunk)
        size += len(chunk)
        yield chunk
        index += 1
        if last:
            break
    if source.read(1):
        raise ArchiveRefused("the archive has bytes after its last chunk: it was altered")
    if size != header.size or not hmac.compare_digest(digest.hexdigest(), header.sha256):
        raise ArchiveRefused("the archive's content does not match its checksum: it was altered")


def verify(source: BinaryIO, *, keys: Mapping[str, bytes], environment: str) -> ArchiveHeader:
    """Read the whole archive, checking everything, and keep nothing; returns its header."""
    start = source.tell()
    for _ in plaintext(source, keys=keys, environment=environment):
        pass
    source.seek(start)
    return read_header(source, keys=keys, environment=environment)


def _open_chunk(cipher: AESGCM, index: int, sealed: bytes) -> tuple[bytes, bool]:
    for last in (False, True):
        try:
            return cipher.decrypt(_nonce(index, last=last), sealed, None), last
        except InvalidTag:
            continue
    raise ArchiveRefused(f"chunk {index} failed authentication: the archive was altered or damaged")


def _exactly(source: BinaryIO, count: int, what: str, prefix: bytes = b"") -> bytes:
    data = prefix + source.read(count)
    if len(data) != len(prefix) + count:
        raise ArchiveRefused(f"the archive ends inside a {what}: it is truncated")
    return data


def private_file(path: os.PathLike[str] | str) -> BinaryIO:
    """``path`` created (or truncated) for reading and writing, owner-only (0600)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(descriptor, "w+b")
