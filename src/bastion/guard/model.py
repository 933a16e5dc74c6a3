# SPDX-License-Identifier: Apache-2.0
"""The shipped classifier: logistic regression over hashed character n-grams.

Features are the character 3-, 4- and 5-grams of the lower-cased, whitespace-folded text, hashed
into 2^18 buckets (the hashing trick: no vocabulary to ship), each counted and divided by the
square root of the number of n-grams.

Scoring a text is a fixed number of whole-array numpy operations, whatever its length. A text
that fits one window (most chat messages) takes about ten: its code points are viewed as a matrix
with one row per starting character and five columns, one matrix product with the powers of the
hash's multiplier gives every 3-, 4- and 5-gram's rolling hash at once, and one `take` and one sum
add up their weights; at a few dozen characters numpy's cost per call, not the arithmetic, is
what a scan pays. Longer texts are hashed one order at a time (a rolling polynomial hash, in
buffers reused from order to order, which keeps a long text's arrays few and small), one `take`
per order gathers its weights and one array of per-character totals adds them up. Both give the
same buckets: the hash is the same polynomial modulo 2^32. The weights stay int8 in memory
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
from collections.abc import Iterator
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
#: The rolling hash of an n-gram is sum(code[k] * PRIME^(n-1-k)) modulo 2^32: column j of this
#: matrix holds those powers for order ORDERS[j], so a row of five code points times it gives the
#: 3-, 4- and 5-gram starting there (uint32 arithmetic wraps as the rolling hash does).
_POWERS = np.array(
    [[pow(int(_PRIME), n - 1 - k, 1 << 32) if k < n else 0 for n in ORDERS] for k in range(ORDERS[-1])],
    dtype=np.uint32,
)
_SEED_ROW = np.array([_SEEDS[n] for n in ORDERS], dtype=np.uint32)
#: Past its end a text is padded with this many zero code points, so that every row is whole.
_PAD = ORDERS[-1] - ORDERS[0]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
CodeArray = npt.NDArray[np.uint32]
BucketArray = npt.NDArray[np.intp]


def _codes(text: str) -> CodeArray:
    framed = f" {text} "
    return np.frombuffer(framed.encode("utf-32-le"), dtype=np.uint32)


def _buckets_by_order(codes: CodeArray) -> Iterator[BucketArray]:
    """Every n-gram's bucket, one order at a time; element i is the n-gram starting at i.

    The buffers are reused from one order to the next (a consumer uses each array before asking
    for the next): scoring then touches a few arrays the size of the text, not one per order,
    and leaves the CPU caches to the rule matcher's automaton.
    """
    rolling = codes.copy()
    mixed = np.empty(len(codes), dtype=np.uint32)
    # written straight as intp: `take` would otherwise convert the indices in a copy
    buckets = np.empty(len(codes), dtype=np.intp)
    for n in range(2, ORDERS[-1] + 1):
        size = len(codes) - n + 1
        if size <= 0:
            return
        # in place: rolling[i] now covers codes[i : i + n] (the last n - 1 entries are stale);
        # unsigned array arithmetic wraps around silently
        np.multiply(rolling[:size], _PRIME, out=rolling[:size])
        np.add(rolling[:size], codes[n - 1 :], out=rolling[:size])
        if n in ORDERS:
            np.bitwise_xor(rolling[:size], _SEEDS[n], out=mixed[:size])
            np.multiply(mixed[:size], _MIX, out=mixed[:size])
            np.right_shift(mixed[:size], _SHIFT, out=buckets[:size], casting="safe")
            yield buckets[:size]


def _window_total(text: str, quantized: npt.NDArray[np.int8]) -> tuple[int, int]:
    """The sum of the weights of every n-gram of a non-empty text, and their number: the same
    buckets as `_buckets_by_order`, in a few numpy calls (ORDERS being 3, 4 and 5)."""
    codes = np.frombuffer(f" {text} {chr(0) * _PAD}".encode("utf-32-le"), dtype=np.uint32)
    rows = len(text)  # one per 3-gram: the framed text has two characters more
    grams = np.ndarray((rows, ORDERS[-1]), dtype=np.uint32, buffer=codes, strides=(4, 4))
    hashes = grams @ _POWERS
    hashes ^= _SEED_ROW
    hashes *= _MIX
    hashes >>= _SHIFT
    gathered = quantized.take(hashes)
    # n-grams that reach into the padding: the last row's 4- and 5-gram, the row before's 5-gram
    padded = int(gathered[-1, 1]) + int(gathered[-1, 2]) + (int(gathered[-2, 2]) if rows > 1 else 0)
    return int(gathered.sum(dtype=np.int64)) - padded, max(3 * rows - 3, 1)


def hashed_ngrams(text: str) -> tuple[BucketArray, tuple[int, ...]]:
    """The bucket of every n-gram, all orders in one array, and how many there are of each order.

    The first block holds the 3-grams, then the 4-grams, then the 5-grams; within a block,
    element i is the n-gram starting at character i of the framed text.
    """
    blocks = [order.copy() for order in _buckets_by_order(_codes(text))]
    if not blocks:
        return np.zeros(0, dtype=np.intp), ()
    return np.concatenate(blocks), tuple(len(block) for block in blocks)


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
        if len(text) <= WINDOW:
            if not text:
                return self.bias
            total, count = _window_total(text, self.quantized)
            return self.bias + self.scale * total / math.sqrt(count)
        codes = _codes(text)
        grams = len(codes) - ORDERS[0] + 1
        # Windows are STRIDE-aligned and two strides long. The weights of the n-grams of every
        # order starting at a character are added up at that character (one int32 array), so one
        # reshape-sum gives every block's total and a window is two neighbouring blocks.
        blocks_count = -(-grams // STRIDE) + 1
        at = np.zeros(blocks_count * STRIDE, dtype=np.int32)
        orders = 0
        for buckets in _buckets_by_order(codes):
            gathered = self.quantized.take(buckets)
            at[: len(gathered)] += gathered
            orders += 1
        blocks = at.reshape(blocks_count, STRIDE).sum(axis=1, dtype=np.int64).tolist()
        best = -math.inf
        # a handful of windows: plain Python beats numpy's per-call cost here
        for start in range(0, len(text) - STRIDE, STRIDE):
            block = start // STRIDE
            n = (min(start + WINDOW, grams) - start) * orders
            best = max(best, (blocks[block] + blocks[block + 1]) / math.sqrt(n))
        return self.bias + self.scale * best

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
