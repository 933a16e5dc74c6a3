# SPDX-License-Identifier: Apache-2.0
"""What signing a model reply costs (X-Content-Signature), against rendering the reply itself.

Run: ``.venv/bin/python bench/signatures.py [--rounds 2000]``. For replies of a few sizes it times,
per reply: rendering the JSON body as every reply is rendered (the baseline, measured in the same
run), signing it as ``SignedJSONResponse`` does (SHA-256 of the body, the v1 signing input, Ed25519,
the header value), and verifying it as a client does. Prints microseconds and ratios to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cryptography.hazmat.primitives.asymmetric import ed25519

from bastion.api.responses import UTF8JSONResponse
from bastion.api.signing import ReplySigner
from bastion.crypto import signatures

KID = "content-0123456789abcdef"
SIZES = (300, 4_000, 32_000)  # characters of model text: a short answer, a long one, a very long one


def reply(chars: int) -> dict[str, object]:
    text = ("Let us take this one step at a time — breathe in, hold, let go. " * (chars // 64 + 1))[:chars]
    return {
        "id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "role": "assistant",
        "content": text,
        "status": "complete",
        "created_at": "2027-01-10T09:30:00Z",
        "usage": {"prompt_tokens": 120, "completion_tokens": chars // 4},
    }


def per_call_us(work: Callable[[], object], rounds: int) -> float:
    """Median of five runs of ``rounds`` calls, in microseconds per call."""
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            work()
        runs.append((time.perf_counter() - started) / rounds * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    key = ed25519.Ed25519PrivateKey.generate()
    signer = ReplySigner(KID, key, "3b2a1c0d4e5f60718293a4b5c6d7e8f9", lambda: datetime.now(UTC))
    keys = {KID: key.public_key()}
    print(f"{'reply':>14} {'render µs':>10} {'sign µs':>9} {'verify µs':>10} {'sign/render':>12}")
    for size in SIZES:
        content = reply(size)
        body = bytes(UTF8JSONResponse(content).body)
        header = signer.sign(body).header_value()
        render = per_call_us(lambda content=content: UTF8JSONResponse(content).body, args.rounds)
        sign = per_call_us(lambda body=body: signer.sign(body).header_value(), args.rounds)
        check = per_call_us(
            lambda body=body, header=header: signatures.verify(body, header, keys), args.rounds
        )
        print(f"{len(body):>8} bytes {render:>10.1f} {sign:>9.1f} {check:>10.1f} {sign / render:>11.2f}x")


if __name__ == "__main__":
    main()
