# SPDX-License-Identifier: Apache-2.0
"""Prompt-injection and jailbreak detectors: weighted rules, the classifier, and encoded payloads.

Each returns scored findings; the pipeline combines them (noisy-OR) into one attack score, so a
weak hint ("from now on you...") only counts when something else agrees with it.
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.guard.base import Category, Finding, ScanContext
from bastion.guard.decoders import PayloadDecoder
from bastion.guard.model import InjectionModel
from bastion.guard.normalize import Normalized, Normalizer
from bastion.guard.rules import RuleSet, noisy_or

#: Weight of text hidden in Unicode tag characters: invisible text has no innocent use in chat.
HIDDEN_TEXT_WEIGHT = 0.6
#: Bidi overrides in a message (Trojan Source): suspicious, not decisive.
BIDI_WEIGHT = 0.3


class RuleDetector:
    """The rules of injection.yaml over every detection view and over text hidden in tags."""

    name = "rules"

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    def detect(self, normalized: Normalized, context: ScanContext) -> list[Finding]:
        findings = self.rules.findings((*normalized.utf8_views(), normalized.hidden.lower()))
        if normalized.hidden:
            findings.append(Finding(Category.invisible_text, HIDDEN_TEXT_WEIGHT, "unicode-tags"))
        if normalized.bidi:
            findings.append(Finding(Category.invisible_text, BIDI_WEIGHT, "bidi-override"))
        return findings


class ModelDetector:
    """The shipped classifier's probability, on the text and on any text hidden in tags."""

    name = "model"

    def __init__(self, model: InjectionModel) -> None:
        self.model = model

    def score(self, normalized: Normalized) -> float:
        score = self.model.score(normalized.lowered)
        if normalized.hidden:
            score = max(score, self.model.score(" ".join(normalized.hidden.lower().split())))
        return score

    def detect(self, normalized: Normalized, context: ScanContext) -> list[Finding]:
        return [Finding(Category.model, self.score(normalized), "model")]


class EncodedPayloadDetector:
    """Decode base64, hex, URL escapes, Morse, ROT13 and reversed text, and scan what comes out."""

    name = "encoded"

    def __init__(
        self,
        normalizer: Normalizer,
        rules: RuleSet,
        model: InjectionModel | None,
        decoder: PayloadDecoder | None = None,
    ) -> None:
        self._normalizer = normalizer
        self._rules = rules
        self._model = model
        self._decoder = decoder or PayloadDecoder()

    def detect(self, normalized: Normalized, context: ScanContext) -> Sequence[Finding]:
        best = 0.0
        for payload in self._decoder.payloads(normalized.clean_bytes(), normalized.lowered):
            inner = self._normalizer.normalize(payload)
            # text someone encoded is not a user's own request: instructions in it count as
            # they would inside a document
            matched = self._rules.match(inner.utf8_views(), assume=self._rules.context_ids)
            scores = [rule.weight for rule in matched]
            if self._model is not None and len(inner.lowered) >= 12 and matched:
                # the model only confirms what a rule saw: decoded noise is not language
                scores.append(self._model.score(inner.lowered))
            best = max(best, noisy_or(scores))
        return [Finding(Category.encoded_payload, best, "decoded")] if best > 0 else []
