# SPDX-License-Identifier: Apache-2.0
"""Train the shipped injection classifier from the evaluation data (`make guard-model`).

    python -m bastion.guard.train --data data/guard-eval data/guard-bastion \
        --out src/bastion/guard/data/injection-model.npz
    python -m bastion.guard.train --cross-validate   # grouped by source, tuning sources only

The data is split by `source` (the repository and file an item came from): the model is trained,
and its threshold chosen, on the tuning sources only; the held-out sources below are never seen
here and are what bench/guard.py reports on. Training is deterministic (full-batch Adam from zero
weights, fixed window order), so the same data gives the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bastion.guard.model import DIMENSION, InjectionModel, features, windows
from bastion.guard.normalize import Normalizer

#: Sources held out from training and tuning, chosen by repository and file before any tuning.
HELD_OUT_SOURCES = (
    "NVIDIA/garak/",
    "protectai/llm-guard/",
    "clinc/oos-eval/",
    "yizhongw/self-instruct/human_eval/",
    "leolee99/PIGuard/datasets/NotInject_two.json",
    "leolee99/PIGuard/datasets/NotInject_three.json",
    "microsoft/BIPIA/benchmark/text_attack_test.json",
    "microsoft/BIPIA/benchmark/email/test.jsonl",
    "JailbreakBench/artifacts/attack-artifacts/PAIR/black_box/gpt-4-0125-preview.json",
    "JailbreakBench/artifacts/attack-artifacts/GCG/transfer/",
    "lakeraai/dsec-gandalf/analysis/attack_classification/labels/indirect.yaml",
    "lakeraai/dsec-gandalf/analysis/attack_classification/labels/output_fiction.yaml",
    "lakeraai/dsec-gandalf/analysis/attack_classification/labels/partial.yaml",
    "bastion/wellness/held-out",
)

#: Largest share of benign texts the model alone may flag, measured out of fold (see `train`).
TARGET_BENIGN_RATE = 0.02


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str
    source: str
    file: str

    @property
    def attack(self) -> bool:
        return self.label != "benign"

    @property
    def origin(self) -> str:
        """The source without its '#fragment' (the file the item came from)."""
        return self.source.split("#", 1)[0]

    @property
    def held_out(self) -> bool:
        return self.origin.startswith(HELD_OUT_SOURCES)


def load_examples(*directories: Path) -> list[Example]:
    examples: list[Example] = []
    for path in sorted(p for directory in directories for p in directory.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    item = json.loads(line)
                    examples.append(Example(item["text"], item["label"], item["source"], path.stem))
    return examples


def _instances(
    examples: Sequence[Example], normalizer: Normalizer
) -> tuple[list[str], npt.NDArray[np.float64]]:
    texts: list[str] = []
    labels: list[float] = []
    for example in examples:
        view = normalizer.normalize(example.text).lowered
        for span in windows(view):
            texts.append(span)
            labels.append(1.0 if example.attack else 0.0)
    return texts, np.asarray(labels)


def _design(
    texts: Iterable[str],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The sparse design matrix as (row, column, value) triples, one per distinct feature of a row.

    A feature that occurs k times in a text is one entry of value k/sqrt(n): the same product
    as k entries, with fewer entries for every pass of the optimizer to read.
    """
    rows: list[npt.NDArray[np.int64]] = []
    cols: list[npt.NDArray[np.int64]] = []
    vals: list[npt.NDArray[np.float64]] = []
    for row, text in enumerate(texts):
        idx, val = features(text)
        distinct, counts = np.unique(idx, return_counts=True)
        rows.append(np.full(len(distinct), row, dtype=np.int64))
        cols.append(distinct)
        vals.append(counts.astype(np.float64) * (float(val[0]) if len(val) else 0.0))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def fit(
    texts: Sequence[str],
    labels: npt.NDArray[np.float64],
    *,
    epochs: int = 400,
    learning_rate: float = 0.05,
    l2: float = 3e-5,
) -> tuple[npt.NDArray[np.float32], float]:
    """Class-balanced L2 logistic regression, full-batch Adam on the sparse design."""
    rows, cols, vals = _design(texts)
    m = len(texts)
    positives = max(float(labels.sum()), 1.0)
    negatives = max(m - positives, 1.0)
    sample_weight = np.where(labels > 0.5, 0.5 / positives, 0.5 / negatives)
    w = np.zeros(DIMENSION, dtype=np.float64)
    b = 0.0
    first = np.zeros(DIMENSION + 1)
    second = np.zeros(DIMENSION + 1)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, epochs + 1):
        margins = np.bincount(rows, weights=w[cols] * vals, minlength=m) + b
        p = 1.0 / (1.0 + np.exp(-np.clip(margins, -30, 30)))
        residual = (p - labels) * sample_weight
        grad_w = np.bincount(cols, weights=residual[rows] * vals, minlength=DIMENSION) + l2 * w
        grad = np.append(grad_w, residual.sum())
        first = beta1 * first + (1 - beta1) * grad
        second = beta2 * second + (1 - beta2) * grad * grad
        update = learning_rate * (first / (1 - beta1**step)) / (np.sqrt(second / (1 - beta2**step)) + eps)
        w -= update[:-1]
        b -= float(update[-1])
    return w.astype(np.float32), b


def bias_shift(benign_margins: Sequence[float], rate: float) -> float:
    """How much to lower the bias so that at most `rate` of these margins stay above 0."""
    margins = np.sort(np.asarray(benign_margins))
    allowed = int(np.floor(rate * len(margins)))
    cut = float(margins[len(margins) - allowed - 1]) if allowed < len(margins) else float(margins[-1])
    return cut + 1e-3 if cut > 0 else 0.0


def out_of_fold_benign_margins(examples: Sequence[Example], normalizer: Normalizer) -> list[float]:
    """Benign margins from models that never saw the benign text's source.

    A model scores its own training texts far too well: calibrating on them would set a
    threshold that only holds for texts it has memorized. Leave one source out: each benign
    source is scored by a model trained on every other tuning source, as a new source would be.
    """
    margins: list[float] = []
    for origin in sorted({e.origin for e in examples if not e.attack}):
        texts, labels = _instances([e for e in examples if e.origin != origin], normalizer)
        weights, bias = fit(texts, labels)
        model = InjectionModel.from_weights(weights, bias)
        margins += [
            model.margin(normalizer.normalize(e.text).lowered)
            for e in examples
            if e.origin == origin and not e.attack
        ]
    return margins


def train(*directories: Path) -> InjectionModel:
    normalizer = Normalizer()
    examples = [e for e in load_examples(*directories) if not e.held_out]
    texts, labels = _instances(examples, normalizer)
    weights, bias = fit(texts, labels)
    digest = hashlib.sha256("\n".join(e.text for e in examples).encode("utf-8")).hexdigest()[:16]
    shift = bias_shift(out_of_fold_benign_margins(examples, normalizer), TARGET_BENIGN_RATE)
    return InjectionModel.from_weights(weights, bias - shift, version=f"hash18-ngram345-{digest}")


#: Folds of `cross_validate`: tuning sources are dealt out to them in the order of their digest.
FOLDS = 5


def _fold(origin: str) -> int:
    return int(hashlib.sha256(origin.encode("utf-8")).hexdigest(), 16)


def cross_validate(*directories: Path, folds: int = FOLDS, l2: float = 3e-5) -> dict[str, float]:
    """The whole detector (rules and classifier) on tuning sources a model never saw.

    The tuning sources are dealt out to `folds` folds; each fold's texts are scored by a model
    trained on the other folds, calibrated as `train` calibrates (at `TARGET_BENIGN_RATE` of
    these out-of-fold benign margins) and combined with the rules by noisy-OR, as the guard
    combines them. Held-out sources are not read. Returns recall per attack label and the
    false-positive rate per benign kind, for the combined detector and for the rules alone.
    """
    from bastion.guard.guard import Guard, GuardConfig
    from bastion.guard.rules import noisy_or

    normalizer = Normalizer()
    examples = [e for e in load_examples(*directories) if not e.held_out]
    origins = sorted({e.origin for e in examples}, key=_fold)
    fold_of = {origin: i % folds for i, origin in enumerate(origins)}
    margins: dict[int, float] = {}
    for fold in range(folds):
        texts, labels = _instances([e for e in examples if fold_of[e.origin] != fold], normalizer)
        weights, bias = fit(texts, labels, l2=l2)
        model = InjectionModel.from_weights(weights, bias)
        for i, e in enumerate(examples):
            if fold_of[e.origin] == fold:
                margins[i] = model.margin(normalizer.normalize(e.text).lowered)
    shift = bias_shift([margins[i] for i, e in enumerate(examples) if not e.attack], TARGET_BENIGN_RATE)
    rules = Guard(GuardConfig(use_model=False, profanity_filter=False))
    hits: dict[str, list[tuple[bool, bool]]] = {}
    for i, e in enumerate(examples):
        rule_score = rules.attack_score(e.text)
        model_score = 1.0 / (1.0 + math.exp(-min(max(margins[i] - shift, -30.0), 30.0)))
        combined = noisy_or((rule_score, model_score)) >= 0.5
        kind = e.label if e.attack else ("tricky" if e.file.startswith("benign_tricky") else "benign")
        hits.setdefault(kind, []).append((combined, rule_score >= 0.5))
    figures: dict[str, float] = {}
    for kind, pairs in sorted(hits.items()):
        figures[kind] = sum(c for c, _ in pairs) / len(pairs)
        figures[f"{kind} (rules only)"] = sum(r for _, r in pairs) / len(pairs)
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--data", type=Path, nargs="+", default=[Path("data/guard-eval"), Path("data/guard-bastion")]
    )
    parser.add_argument("--out", type=Path, default=Path("src/bastion/guard/data/injection-model.npz"))
    parser.add_argument(
        "--cross-validate", action="store_true", help="print grouped cross-validation figures, write nothing"
    )
    args = parser.parse_args(argv)
    if args.cross_validate:
        for name, value in cross_validate(*args.data).items():
            metric = "FPR" if name.startswith(("benign", "tricky")) else "recall"
            print(f"{name:28} {metric:6} {value:.3f}")
        return
    model = train(*args.data)
    data = model.to_bytes()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data) // 1024} KB, {model.version})")


if __name__ == "__main__":
    main()
