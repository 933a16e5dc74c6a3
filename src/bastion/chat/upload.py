# SPDX-License-Identifier: Apache-2.0
"""Streaming multipart upload of one audio file into a bounded temporary file.

Written on python-multipart's push parser rather than ``request.form()`` so that the audio never
sits in memory or in a framework-owned spool file, its size is capped while it streams, a body
that ends before the closing boundary is refused (not half-accepted), and the temporary file is
always removed — on success, on refusal, and when the client disconnects.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from bastion.errors import BastionError, InvalidField, PayloadTooLarge, UnsupportedMediaType

MAGIC_BYTES = 16
MAX_OTHER_PART_BYTES = 16 * 1024
MAX_PARTS = 8


class MalformedUpload(BastionError):
    status_code = 400
    code = "malformed_multipart"
    default_message = "The multipart body is malformed or truncated"


@dataclass
class Upload:
    path: Path
    filename: str | None
    content_type: str | None
    size: int = 0
    head: bytes = b""


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str | None = None
    filename: str | None = None
    size: int = 0


class _Receiver:
    """Callbacks of the push parser; raises BastionError subclasses to stop a bad upload."""

    def __init__(self, *, field_name: str, max_bytes: int, handle: object, upload: Upload) -> None:
        self.field_name = field_name
        self.max_bytes = max_bytes
        self.handle = handle
        self.upload = upload
        self.part = _Part()
        self.parts = 0
        self.found = False
        self.finished = False
        self._header_field = b""
        self._header_value = b""

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise MalformedUpload("Too many parts in the multipart body")
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers[self._header_field.strip().lower()] = self._header_value.strip()
        self._header_field = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        filename = options.get(b"filename")
        self.part.name = name.decode("utf-8", "replace") if name is not None else None
        self.part.filename = filename.decode("utf-8", "replace") if filename is not None else None
        if self.part.name == self.field_name:
            if self.found:
                raise InvalidField(f"body.{self.field_name}", "too_many", "Send exactly one audio file")
            if self.part.filename is None:
                raise InvalidField(
                    f"body.{self.field_name}", "not_a_file", "The audio must be sent as a file"
                )
            self.found = True
            self.upload.filename = self.part.filename
            content_type = self.part.headers.get(b"content-type")
            self.upload.content_type = content_type.decode("latin-1") if content_type else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        self.part.size += len(chunk)
        if self.part.name != self.field_name or self.part.filename is None:
            if self.part.size > MAX_OTHER_PART_BYTES:
                raise PayloadTooLarge("A form field is too large")
            return
        if self.part.size > self.max_bytes:
            raise PayloadTooLarge(f"Audio is limited to {self.max_bytes // (1024 * 1024)} MB")
        if len(self.upload.head) < MAGIC_BYTES:
            self.upload.head += chunk[: MAGIC_BYTES - len(self.upload.head)]
        self.handle.write(chunk)  # type: ignore[attr-defined]
        self.upload.size = self.part.size

    def on_end(self) -> None:
        self.finished = True


@asynccontextmanager
async def receive_upload(request: Request, *, field_name: str, max_bytes: int) -> AsyncIterator[Upload]:
    """Stream the single file field ``field_name`` to a private temporary file and yield it."""
    mime, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if mime != b"multipart/form-data":
        raise UnsupportedMediaType("Send the audio as multipart/form-data")
    if not boundary or len(boundary) > 200:
        raise MalformedUpload("The multipart boundary is missing or invalid")
    fd, name = tempfile.mkstemp(prefix="bastion-audio-", suffix=".upload")  # created 0600
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            upload = Upload(path=path, filename=None, content_type=None)
            receiver = _Receiver(field_name=field_name, max_bytes=max_bytes, handle=handle, upload=upload)
            parser = MultipartParser(
                boundary,
                callbacks={
                    "on_part_begin": receiver.on_part_begin,
                    "on_part_data": receiver.on_part_data,
                    "on_header_field": receiver.on_header_field,
                    "on_header_value": receiver.on_header_value,
                    "on_header_end": receiver.on_header_end,
                    "on_headers_finished": receiver.on_headers_finished,
                    "on_end": receiver.on_end,
                },
            )
            try:
                async for chunk in request.stream():
                    parser.write(chunk)
            except MultipartParseError as exc:
                raise MalformedUpload() from exc
        if not receiver.finished:
            raise MalformedUpload("The multipart body ended before its closing boundary")
        if not receiver.found:
            raise InvalidField(f"body.{field_name}", "missing", "Field required")
        yield upload
    finally:
        await anyio.Path(path).unlink(missing_ok=True)
