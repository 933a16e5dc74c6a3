# SPDX-License-Identifier: Apache-2.0
"""`bastion verify-signature` on replies saved with `curl -i` from a real server process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bastion.crypto import signatures
from tests.e2e.conftest import bastion_server, run_bastion
from tests.e2e.test_openai_sdk import access_token

pytestmark = pytest.mark.e2e


def curl(url: str, path: str, token: str, body: dict[str, object], out: Path) -> Path:
    """What a client developer does to keep a reply: ``curl -i`` (status, headers, body) to a file."""
    subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            "-N",
            "-X",
            "POST",
            f"{url}{path}",
            "-H",
            f"Authorization: Bearer {token}",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            json.dumps(body),
            "-o",
            str(out),
        ],
        check=True,
        timeout=30,
    )
    return out


def tampered(saved: Path, at_end: int = 3) -> Path:
    """The same file with one byte of the body changed (``at_end`` bytes before its end)."""
    raw = bytearray(saved.read_bytes())
    raw[-at_end] ^= 0x01
    out = saved.with_suffix(".tampered")
    out.write_bytes(bytes(raw))
    return out


def test_saved_replies_verify_and_tampered_ones_do_not(workdir: Path) -> None:
    with bastion_server(workdir) as (url, _log):
        token = access_token(url, "keeper@example.com")
        jwks_url = f"{url}/.well-known/jwks.json"
        prompt = {"model": "m", "messages": [{"role": "user", "content": "I slept badly."}]}
        reply = curl(url, "/v1/chat/completions", token, prompt, workdir / "reply.txt")
        stream = curl(url, "/v1/chat/completions", token, {**prompt, "stream": True}, workdir / "stream.txt")
        session = subprocess.run(
            [
                "curl",
                "-sS",
                "-X",
                "POST",
                f"{url}/api/sessions",
                "-H",
                f"Authorization: Bearer {token}",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "{}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        session_id = json.loads(session.stdout)["id"]
        chat = curl(
            url,
            f"/api/sessions/{session_id}/messages",
            token,
            {"content": "hi", "stream": True},
            workdir / "sse.txt",
        )
        (workdir / "jwks.json").write_text(
            subprocess.run(
                ["curl", "-sS", jwks_url], check=True, capture_output=True, text=True, timeout=30
            ).stdout
        )

        by_file = run_bastion(
            "verify-signature", str(reply), "--jwks", str(workdir / "jwks.json"), cwd=workdir
        )
        assert by_file.returncode == 0, by_file.stdout
        for saved in (reply, stream, chat):
            by_url = run_bastion("verify-signature", str(saved), "--jwks", jwks_url, cwd=workdir)
            assert by_url.returncode == 0, (saved.name, by_url.stdout, by_url.stderr)
            assert by_url.stdout.startswith("valid: key content-"), by_url.stdout
            # No --jwks: the keys in the configured database (the server's, in the same directory).
            by_database = run_bastion("verify-signature", str(saved), cwd=workdir)
            assert by_database.returncode == 0 and by_database.stdout == by_url.stdout, by_database.stderr

        bad = run_bastion("verify-signature", str(tampered(reply)), "--jwks", jwks_url, cwd=workdir)
        assert bad.returncode == 1 and bad.stdout.startswith("invalid (digest_mismatch)"), bad.stdout
        # In a stream, a byte of the content (not of the closing signature event) changed.
        raw = stream.read_bytes()
        changed = stream.with_suffix(".changed")
        at = raw.index(b'"content"')
        changed.write_bytes(raw[:at] + raw[at:].replace(b"slept", b"slepT", 1))
        bad_stream = run_bastion("verify-signature", str(changed), "--jwks", jwks_url, cwd=workdir)
        assert bad_stream.returncode == 1 and "digest_mismatch" in bad_stream.stdout, bad_stream.stdout

        # The body alone, with the header value and request id given on the command line.
        head, body = reply.read_bytes().split(b"\r\n\r\n", 1)
        headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
        by_name = {name.lower(): value for name, value in headers.items()}
        (workdir / "body.json").write_bytes(body)
        value = by_name[signatures.HEADER.lower()]
        args = ["verify-signature", "--body", str(workdir / "body.json"), "--jwks", jwks_url]
        ok = run_bastion(*args, "--signature", value, "--request-id", by_name["x-request-id"], cwd=workdir)
        assert ok.returncode == 0, ok.stdout
        other_request = run_bastion(
            *args, "--signature", value, "--request-id", "another-request-1", cwd=workdir
        )
        assert other_request.returncode == 1 and "request_id_mismatch" in other_request.stdout
        forged_time = value.replace(";t=", ";t=1", 1)
        assert "bad_signature" in run_bastion(*args, "--signature", forged_time, cwd=workdir).stdout
        assert "malformed" in run_bastion(*args, "--signature", "v2;kid=x", cwd=workdir).stdout
        (workdir / "empty.json").write_text('{"keys": []}')
        unknown = run_bastion(
            "verify-signature", str(reply), "--jwks", str(workdir / "empty.json"), cwd=workdir
        )
        assert unknown.returncode == 1 and "unknown_key" in unknown.stdout
        missing = run_bastion(
            "verify-signature", str(workdir / "nothing.txt"), "--jwks", jwks_url, cwd=workdir
        )
        assert missing.returncode == 2 and "cannot read" in missing.stderr

        # After a rotation the old reply still verifies: its key is in its grace period.
        rotated = run_bastion("keys", "rotate-content-signing", cwd=workdir)
        assert rotated.returncode == 0, rotated.stderr
        new_kid = rotated.stdout.split()[3].rstrip(";")
        after = run_bastion("verify-signature", str(reply), cwd=workdir)
        assert after.returncode == 0, after.stdout
        assert new_kid.startswith("content-") and new_kid not in after.stdout
