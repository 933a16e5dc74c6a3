# SPDX-License-Identifier: Apache-2.0
"""The shipped classifier: logistic regression over hashed character n-grams.

Features are the character 3-, 4- and 5-grams of the lower-cased, whitespace-folded text, hashed
into 2^18 buckets (the hashing trick: no vocabulary to ship), each counted and divided by the
square root of the number of n-grams.

Scoring a text is a fixed number of whole-array numpy operations, whatever its length: the code
points become one uint32 array, a rolling polynomial hash gives every n-gram's bucket (all orders
written into one preallocated array), one `take` gathers their weights from the int8 table and
one sum (or, for long texts, one cumulative sum) adds them up. The weights stay int8 in memory
(256 KB, one scale): a float32 table four times the size falls out of the CPU cache between
requests, and the gathers then cost more than all the rest of a scan.

Long texts are scored in windows of `WINDOW` characters (half-overlapping) and the highest window
wins: an instruction hidden in the middle of a long e-mail is not diluted by the rest of it.

The weights are trained by `bastion.guard.train` (`make guard-model`) and shipped as package data.
`load_model()` reads them; the application calls it once.
"""

from __future__ import annotations

import io
import math
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
CodeArray = npt.NDArray[np.uint32]
BucketArray = npt.NDArray[np.intp]


def _codes(text: str) -> CodeArray:
    framed = f" {text} "
    return np.frombuffer(framed.encode("utf-32-le"), dtype=np.uint32)


def hashed_ngrams(text: str) -> tuple[BucketArray, tuple[int, ...]]:
    """The bucket of every n-gram, all orders in one array, and how many there are of each order.

    The first block holds the 3-grams, then the 4-grams, then the 5-grams; within a block,
    element i is the n-gram starting at character i of the framed text.
    """
    codes = _codes(text)
    lengths = tuple(len(codes) - n + 1 for n in ORDERS if len(codes) >= n)
    out = np.empty(sum(lengths), dtype=np.uint32)
    if not lengths:
        return np.zeros(0, dtype=np.intp), lengths
    rolling = codes.copy()
    start = 0
    with np.errstate(over="ignore"):
        for n in range(2, ORDERS[len(lengths) - 1] + 1):
            # in place: rolling[i] now covers codes[i : i + n] (the last n - 1 entries are stale)
            size = len(codes) - n + 1
            np.multiply(rolling[:size], _PRIME, out=rolling[:size])
            np.add(rolling[:size], codes[n - 1 :], out=rolling[:size])
            if n in ORDERS:
                np.bitwise_xor(rolling[:size], _SEEDS[n], out=out[start : start + size])
                start += size
        np.multiply(out, _MIX, out=out)
    # written straight as intp: `take` would otherwise convert the indices in a copy
    buckets = np.empty(len(out), dtype=np.intp)
    np.right_shift(out, _SHIFT, out=buckets, casting="safe")
    return buckets, lengths


def ngram_buckets(text: str) -> list[BucketArray]:
    """The bucket of every n-gram, one array per order; element i is the n-gram starting at i."""
    buckets, lengths = hashed_ngrams(text)
    bounds = np.cumsum((0, *lengths))
    return [buckets[bounds[i] : bounds[i + 1]] for i in range(len(lengths))]


def features(text: str) -> tuple[IntArray, npt.NDArray[np.float32]]:
    """Sparse feature vector of a whole text: bucket indices (with repeats) and their values."""
    buckets, _ = hashed_ngrams(text)
    idx = buckets.astype(np.int64, copy=False)
    value = 1.0 / np.sqrt(len(idx)) if len(idx) else 0.0
    return idx, np.full(len(idx), value, dtype=np.float32)


def windows(text: str) -> list[str]:
    """The spans a text is scored on: itself when short, else half-overlapping windows."""
    if len(text) <= WINDOW:
        return [text]
    starts = range(0, len(text) - STRIDE, STRIDE)
    return [text[s : s + WINDOW] for s in starts]


def quantize(weights: npt.NDArray[np.floating]) -> tuple[npt.NDArray[np.int8], float]:
    """int8 weights and their scale (the form the model ships and scores in)."""
    scale = float(np.max(np.abs(weights))) / 127.0 or 1.0
    return np.round(np.asarray(weights, dtype=np.float64) / scale).astype(np.int8), scale


@dataclass(frozen=True, slots=True)
class InjectionModel:
    quantized: npt.NDArray[np.int8]
    scale: float
    bias: float
    version: str = ""

    @classmethod
    def from_weights(
        cls, weights: npt.NDArray[np.floating], bias: float, version: str = ""
    ) -> InjectionModel:
        quantized, scale = quantize(weights)
        return cls(quantized=quantized, scale=scale, bias=bias, version=version)

    @property
    def weights(self) -> FloatArray:
        return self.quantized.astype(np.float32) * np.float32(self.scale)

    def margin(self, text: str) -> float:
        """The log-odds of the highest-scoring window."""
        buckets, lengths = hashed_ngrams(text)
        if not lengths:
            return self.bias
        gathered = self.quantized.take(buckets)
        if len(text) <= WINDOW:
            total = int(gathered.sum(dtype=np.int64))
            return self.bias + self.scale * total / math.sqrt(len(buckets))
        # Windows are STRIDE-aligned and two strides long. The n-grams of every order starting at
        # a character are added up at that character (one int32 array), so one reshape-sum gives
        # every block's total and a window is two neighbouring blocks.
        blocks_count = -(-lengths[0] // STRIDE) + 1
        at = np.zeros(blocks_count * STRIDE, dtype=np.int32)
        start = 0
        for n in lengths:
            at[:n] += gathered[start : start + n]
            start += n
        blocks = at.reshape(blocks_count, STRIDE).sum(axis=1, dtype=np.int64)
        starts = np.arange(0, len(text) - STRIDE, STRIDE)
        index = starts // STRIDE
        sums = (blocks[index] + blocks[index + 1]).astype(np.float64)
        counts = (np.minimum(starts + WINDOW, lengths[0]) - starts) * len(lengths)
        return self.bias + self.scale * float(np.max(sums / np.sqrt(counts)))

    def score(self, text: str) -> float:
        """Probability that the text is an injection or jailbreak attempt."""
        margin = min(max(self.margin(text), -30.0), 30.0)
        return 1.0 / (1.0 + math.exp(-margin))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            weights=self.quantized,
            scale=np.float32(self.scale),
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
            quantized = np.ascontiguousarray(archive["weights"], dtype=np.int8)
            return cls(
                quantized=quantized,
                scale=float(archive["scale"]),
                bias=float(archive["bias"]),
                version=str(archive["version"]),
            )


def load_model(path: str | Path | None = None) -> InjectionModel:
    """Load the classifier: the shipped one, or the file at `path`. Call once at startup."""
    if path is not None:
        return InjectionModel.from_bytes(Path(path).read_bytes())
    return InjectionModel.from_bytes(resources.files("bastion.guard").joinpath(MODEL_RESOURCE).read_bytes())
