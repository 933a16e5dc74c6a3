# SPDX-License-Identifier: Apache-2.0
"""The shipped classifier: logistic regression over hashed character n-grams.

Features are the character 3-, 4- and 5-grams of the lower-cased, whitespace-folded text, hashed
into 2^18 buckets (the hashing trick: no vocabulary to ship), each counted and divided by the
square root of the number of n-grams. Hashing and scoring are whole-array numpy operations, so a
10 KB text costs a few vectorized passes, not a Python loop per character.

Long texts are scored in windows of `WINDOW` characters (half-overlapping) and the highest window
wins: an instruction hidden in the middle of a long e-mail is not diluted by the rest of it.

The weights are trained by `bastion.guard.train` (`make guard-model`) and shipped as package data
(int8 with one scale, about 200 KB). `load_model()` reads them; the application calls it once.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

BITS = 18
DIMENSION = 1 << BITS
ORDERS = (3, 4, 5)
WINDOW = 1024
STRIDE = WINDOW // 2
MODEL_RESOURCE = "data/injection-model.npz"

_PRIME = np.uint32(0x01000193)
_MIX = np.uint32(0x9E3779B1)
_SEEDS = {n: np.uint32(0x811C9DC5 ^ (n * 0x2545F491)) for n in ORDERS}
_SHIFT = np.uint32(32 - BITS)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


def _codes(text: str) -> npt.NDArray[np.uint32]:
    framed = f" {text} "
    return np.frombuffer(framed.encode("utf-32-le"), dtype=np.uint32)


def ngram_buckets(text: str) -> list[npt.NDArray[np.uint32]]:
    """The bucket of every n-gram, one array per order; element i is the n-gram starting at i."""
    codes = _codes(text)
    out: list[npt.NDArray[np.uint32]] = []
    with np.errstate(over="ignore"):
        rolling = codes
        for n in range(2, max(ORDERS) + 1):
            if len(codes) < n:
                break
            # rolling[i] now covers codes[i : i + n]
            rolling = rolling[:-1] * _PRIME + codes[n - 1 :]
            if n in ORDERS:
                out.append(((rolling ^ _SEEDS[n]) * _MIX) >> _SHIFT)
    return out


def features(text: str) -> tuple[IntArray, npt.NDArray[np.float32]]:
    """Sparse feature vector of a whole text: bucket indices (with repeats) and their values."""
    buckets = ngram_buckets(text)
    if not buckets:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    idx = np.concatenate(buckets).astype(np.int64)
    return idx, np.full(len(idx), 1.0 / np.sqrt(len(idx)), dtype=np.float32)


def windows(text: str) -> list[str]:
    """The spans a text is scored on: itself when short, else half-overlapping windows."""
    if len(text) <= WINDOW:
        return [text]
    starts = range(0, len(text) - STRIDE, STRIDE)
    return [text[s : s + WINDOW] for s in starts]


@dataclass(frozen=True, slots=True)
class InjectionModel:
    weights: FloatArray
    bias: float
    version: str = ""

    def margin(self, text: str) -> float:
        """The log-odds of the highest-scoring window."""
        buckets = ngram_buckets(text)
        if not buckets:
            return self.bias
        if len(text) <= WINDOW:
            total = sum(float(self.weights[b].sum()) for b in buckets)
            count = sum(len(b) for b in buckets)
            return self.bias + total / float(np.sqrt(count))
        # Per-position contribution, then every window's sum from one cumulative sum.
        per_position = np.zeros(len(buckets[0]), dtype=np.float64)
        for b in buckets:
            per_position[: len(b)] += self.weights[b]
        cumulative = np.concatenate(([0.0], np.cumsum(per_position)))
        starts = np.arange(0, len(text) - STRIDE, STRIDE)
        ends = np.minimum(starts + WINDOW, len(per_position))
        sums = cumulative[ends] - cumulative[starts]
        counts = (ends - starts) * len(buckets)
        return self.bias + float(np.max(sums / np.sqrt(counts)))

    def score(self, text: str) -> float:
        """Probability that the text is an injection or jailbreak attempt."""
        margin = min(max(self.margin(text), -30.0), 30.0)
        return float(1.0 / (1.0 + np.exp(-margin)))

    def to_bytes(self) -> bytes:
        scale = float(np.max(np.abs(self.weights))) / 127.0 or 1.0
        quantized = np.round(self.weights / scale).astype(np.int8)
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            weights=quantized,
            scale=np.float32(scale),
            bias=np.float32(self.bias),
            bits=np.int32(BITS),
            version=np.array(self.version),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> InjectionModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            if int(archive["bits"]) != BITS:
                raise ValueError("model was trained for another feature size")
            weights = archive["weights"].astype(np.float32) * np.float32(archive["scale"])
            return cls(weights=weights, bias=float(archive["bias"]), version=str(archive["version"]))


def load_model(path: str | Path | None = None) -> InjectionModel:
    """Load the classifier: the shipped one, or the file at `path`. Call once at startup."""
    if path is not None:
        return InjectionModel.from_bytes(Path(path).read_bytes())
    return InjectionModel.from_bytes(resources.files("bastion.guard").joinpath(MODEL_RESOURCE).read_bytes())
