# SPDX-License-Identifier: Apache-2.0
"""The backup archive format: chunked AES-GCM with an authenticated header, and every way to spoil one."""

from __future__ import annotations

import io
import os
import struct

import pytest

from bastion.backup.archive import MAGIC, ArchiveRefused, ArchiveWriter, plaintext, read_header, verify
from bastion.crypto.material import encryption_key, parse_encryption_keys

KEYS = parse_encryption_keys(encryption_key())
DATA = os.urandom(10_000)
CHUNK = 1000


def sealed(data: bytes = DATA, *, chunk_bytes: int = CHUNK, environment: str = "test") -> bytes:
    out = io.BytesIO()
    writer = ArchiveWriter(
        out, keys=KEYS, environment=environment, database="sqlite", chunk_bytes=chunk_bytes
    )
    for start in range(0, len(data), 777):  # writes that do not line up with chunks
        writer.write(data[start : start + 777])
    writer.finish()
    return out.getvalue()


def opened(archive: bytes, *, keys: dict[str, bytes] = KEYS, environment: str = "test") -> bytes:
    return b"".join(plaintext(io.BytesIO(archive), keys=keys, environment=environment))


def chunk_offsets(archive: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each sealed chunk, length prefix included."""
    (header_length,) = struct.unpack(">I", archive[8:12])
    offset = 12 + header_length + 32
    found = []
    while offset < len(archive):
        (length,) = struct.unpack(">I", archive[offset : offset + 4])
        found.append((offset, 4 + length))
        offset += 4 + length
    return found


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, len(DATA)])
def test_round_trip_at_every_boundary(size: int) -> None:
    archive = sealed(DATA[:size])
    assert opened(archive) == DATA[:size]
    header = verify(io.BytesIO(archive), keys=KEYS, environment="test")
    assert header.size == size and header.key_id == next(iter(KEYS)) and header.format == 1
    assert len(chunk_offsets(archive)) == max(1, -(-size // CHUNK))


def test_the_plaintext_never_appears_in_the_archive() -> None:
    text = b"journal: the knot in my chest loosened " * 100
    assert b"knot in my chest" not in sealed(text)


def test_a_flipped_bit_in_any_chunk_is_refused() -> None:
    archive = sealed()
    for offset, length in chunk_offsets(archive):
        spoiled = bytearray(archive)
        spoiled[offset + length - 1] ^= 1
        with pytest.raises(ArchiveRefused, match="failed authentication"):
            opened(bytes(spoiled))


def test_reordered_dropped_and_truncated_chunks_are_refused() -> None:
    archive = sealed()
    chunks = chunk_offsets(archive)
    head = archive[: chunks[0][0]]
    pieces = [archive[o : o + n] for o, n in chunks]
    swapped = head + pieces[1] + pieces[0] + b"".join(pieces[2:])
    with pytest.raises(ArchiveRefused, match="chunk 0 failed authentication"):
        opened(swapped)
    without_last = head + b"".join(pieces[:-1])
    with pytest.raises(ArchiveRefused, match="truncated"):
        opened(without_last)
    cut = archive[:-7]
    with pytest.raises(ArchiveRefused, match="truncated"):
        opened(cut)
    with pytest.raises(ArchiveRefused, match="after its last chunk"):
        opened(archive + b"x")


def test_an_edited_header_is_refused_before_any_chunk() -> None:
    archive = sealed()
    (header_length,) = struct.unpack(">I", archive[8:12])
    header = archive[12 : 12 + header_length]
    at = header.index(b'"sha256":"') + len(b'"sha256":"')
    other_sum = header[:at] + (b"a" if header[at : at + 1] != b"a" else b"b") + header[at + 1 :]
    edited = archive[:12] + other_sum + archive[12 + header_length :]
    with pytest.raises(ArchiveRefused, match="header failed authentication"):
        read_header(io.BytesIO(edited), keys=KEYS, environment="test")
    with pytest.raises(ArchiveRefused, match="not a Bastion backup archive"):
        opened(b"PGDMP" + archive[5:])
    assert archive.startswith(MAGIC)


def test_wrong_keys_and_environments_are_refused_with_the_reason() -> None:
    archive = sealed()
    (kid,) = KEYS
    same_id_other_key = {kid: os.urandom(32)}
    with pytest.raises(ArchiveRefused, match=f"key {kid!r} is not the one that sealed it"):
        opened(archive, keys=same_id_other_key)
    other = parse_encryption_keys(encryption_key())
    with pytest.raises(ArchiveRefused, match=f"key id {kid!r}, which DATABASE_ENCRYPTION_KEY does not list"):
        opened(archive, keys=other)
    with pytest.raises(ArchiveRefused, match="ENVIRONMENT='test', this is 'production'"):
        opened(archive, environment="production")
    # An older key listed after the newest one still opens what it sealed.
    assert opened(archive, keys={**other, **KEYS}) == DATA
