# SPDX-License-Identifier: Apache-2.0
"""Audio upload checks: declared type, extension and magic bytes must agree; names are made safe."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

from bastion.errors import BastionError

# kind -> (declared MIME types, extensions)
AUDIO_KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "wav": (frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"}), frozenset({".wav"})),
    "webm": (frozenset({"audio/webm"}), frozenset({".webm"})),
    "mp3": (frozenset({"audio/mpeg", "audio/mp3"}), frozenset({".mp3"})),
    "mp4": (frozenset({"audio/mp4", "audio/m4a", "audio/x-m4a"}), frozenset({".m4a"})),
    "ogg": (frozenset({"audio/ogg", "audio/opus"}), frozenset({".ogg", ".opus"})),
}


class InvalidAudio(BastionError):
    status_code = 415
    code = "invalid_audio"
    default_message = "The upload is not an accepted audio file"


class EmptyUpload(BastionError):
    status_code = 422
    code = "empty_upload"
    default_message = "The uploaded file is empty"


def sniff(head: bytes) -> str | None:
    """The audio kind the first bytes of a file show, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"OggS":
        return "ogg"
    return None


def safe_filename(raw: str | None, *, kind: str) -> str:
    """A harmless display name: basename only, no control or path characters, bounded length.

    It is passed to the transcription API as a label and never used to build a path.
    """
    name = PureWindowsPath(PurePosixPath(raw or "").name).name
    name = unicodedata.normalize("NFKC", name)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:100]
    default_ext = sorted(AUDIO_KINDS[kind][1])[0]
    if not name.lower().endswith(tuple(AUDIO_KINDS[kind][1])):
        name = f"{name or 'audio'}{default_ext}"
    return name


def check_audio(*, declared_type: str | None, filename: str | None, head: bytes) -> tuple[str, str, str]:
    """Validate an upload; returns (kind, MIME type to forward, safe filename)."""
    mime = (declared_type or "").split(";")[0].strip().lower()
    declared = next((kind for kind, (types, _) in AUDIO_KINDS.items() if mime in types), None)
    if declared is None:
        raise InvalidAudio("Accepted audio types: wav, webm, mp3, m4a, ogg, opus")
    suffix = PurePosixPath(PureWindowsPath(filename or "").name).suffix.lower()
    if suffix and suffix not in AUDIO_KINDS[declared][1]:
        raise InvalidAudio("The file extension does not match the declared audio type")
    if not suffix:
        raise InvalidAudio("The file name needs an audio extension (.wav .webm .mp3 .m4a .ogg .opus)")
    if not head:
        raise EmptyUpload()
    if sniff(head) != declared:
        raise InvalidAudio("The file content does not match the declared audio type")
    return declared, mime, safe_filename(filename, kind=declared)
