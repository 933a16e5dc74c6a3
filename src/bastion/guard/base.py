# SPDX-License-Identifier: Apache-2.0
"""The vocabulary of the guardrails: what a detector sees, what it reports, what a scan decides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from bastion.guard.normalize import Normalized


class Action(StrEnum):
    """What the caller should do with the text: pass it, pass it and mark it, or refuse it."""

    allow = "allow"
    flag = "flag"
    block = "block"


class Direction(StrEnum):
    input = "input"
    output = "output"


class Category(StrEnum):
    # validation
    empty = "empty"
    too_long = "too_long"
    repetition = "repetition"
    # content
    profanity = "profanity"
    unsafe_url = "unsafe_url"
    # prompt injection and jailbreak
    prompt_injection = "prompt_injection"
    jailbreak = "jailbreak"
    instruction_override = "instruction_override"
    role_reassignment = "role_reassignment"
    prompt_extraction = "prompt_extraction"
    fake_delimiter = "fake_delimiter"
    payload_splitting = "payload_splitting"
    encoded_payload = "encoded_payload"
    hidden_instruction = "hidden_instruction"
    invisible_text = "invisible_text"
    model = "model"
    # output
    canary_leak = "canary_leak"
    system_prompt_leak = "system_prompt_leak"
    secret_leak = "secret_leak"  # noqa: S105 - a category name, not a secret
    data_exfiltration = "data_exfiltration"


#: Categories that mean "someone is trying to steer the model": their meaning is set by INJECTION_ACTION.
ATTACK_CATEGORIES = frozenset(
    {
        Category.prompt_injection,
        Category.jailbreak,
        Category.instruction_override,
        Category.role_reassignment,
        Category.prompt_extraction,
        Category.fake_delimiter,
        Category.payload_splitting,
        Category.encoded_payload,
        Category.hidden_instruction,
        Category.invisible_text,
        Category.model,
    }
)


@dataclass(frozen=True, slots=True)
class ScanContext:
    """Where a text comes from: which field (for its length limit) and which direction."""

    field: str = "message"
    direction: Direction = Direction.input


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector's evidence: a category and how sure it is, in [0, 1]."""

    category: Category
    score: float
    rule: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a scan.

    `text` is the normalized text (invisible characters removed, NFKC, dangerous URLs neutralized):
    what the caller should pass on when the action is not `block`.
    """

    action: Action
    score: float
    categories: tuple[Category, ...]
    text: str
    findings: tuple[Finding, ...] = field(default=(), repr=False)

    @property
    def blocked(self) -> bool:
        return self.action is Action.block

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action.value,
            "score": round(self.score, 4),
            "categories": [c.value for c in self.categories],
        }


class Detector(Protocol):
    """A check over a normalized text.

    `normalized.clean` is the text that would be passed on; `normalized.views()` are the detection
    views (lower case, whitespace folded; homoglyphs, leetspeak and spelled-out words folded).
    Detectors are built once and must be safe to call from many requests at once: no state
    between calls.
    """

    name: str

    def detect(self, normalized: Normalized, context: ScanContext) -> Sequence[Finding]: ...
