# SPDX-License-Identifier: Apache-2.0
"""Password policy, usable on its own: ``PasswordPolicy.seed().check(password, email=...)``.

``seed`` (the default) asks for 12+ characters, upper and lower case, a digit and a symbol, and
refuses common passwords, sequences (``abcd``, ``1234``, ``qwer``), repeats (``aaaa``) and the
email's local part. ``nist`` follows NIST SP 800-63B / ASVS 5: length and the common-password list
only (15+ characters, since Bastion accounts have no second factor yet). Every failed rule is
reported, with a 0-5 strength score; the password itself never appears in a result.
"""

from __future__ import annotations

import gzip
import itertools
import string
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources

MAX_PASSWORD_LENGTH = 1024  # characters; longer inputs are refused before hashing (422)
SEED_MIN_LENGTH = 12
NIST_MIN_LENGTH = 15  # ASVS 5 6.2.1: 15 without MFA (8 is allowed only alongside MFA)
RUN_LENGTH = 4  # "abcd", "1234", "aaaa": four in a row fails

# Keyboard rows (US layout) and the alphabet/digits, forwards; runs are checked both ways.
_SEQUENCES = (
    string.ascii_lowercase,
    string.digits + "0",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "1234567890-=",
    "!@#$%^&*()_+",
)


class Rule(StrEnum):
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    NO_UPPER = "no_uppercase"
    NO_LOWER = "no_lowercase"
    NO_DIGIT = "no_digit"
    NO_SPECIAL = "no_special"
    COMMON = "common_password"
    SEQUENCE = "sequential_characters"
    REPEAT = "repeated_characters"
    CONTAINS_EMAIL = "contains_email"


MESSAGES = {
    Rule.TOO_SHORT: "Use at least {min} characters",
    Rule.TOO_LONG: "Use at most {max} characters",
    Rule.NO_UPPER: "Add an uppercase letter",
    Rule.NO_LOWER: "Add a lowercase letter",
    Rule.NO_DIGIT: "Add a digit",
    Rule.NO_SPECIAL: "Add a symbol",
    Rule.COMMON: "This password is too common",
    Rule.SEQUENCE: "Avoid sequences such as abcd, 1234 or qwer",
    Rule.REPEAT: "Avoid repeating a character four or more times",
    Rule.CONTAINS_EMAIL: "Do not include your email name",
}


@dataclass(frozen=True, slots=True)
class PolicyResult:
    failures: tuple[Rule, ...]
    score: int  # 0 (very weak) .. 5 (strong)
    messages: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.failures


def load_common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (see auth/data/PROVENANCE.md), lowercased."""
    raw = resources.files("bastion.auth").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(line for line in gzip.decompress(raw).decode("utf-8").splitlines() if line)


def _has_run(lowered: str) -> bool:
    for sequence in _SEQUENCES:
        for candidate in (sequence, sequence[::-1]):
            for start in range(len(candidate) - RUN_LENGTH + 1):
                if candidate[start : start + RUN_LENGTH] in lowered:
                    return True
    return False


def _has_repeat(password: str) -> bool:
    count = 1
    for previous, current in itertools.pairwise(password):
        count = count + 1 if current == previous else 1
        if count >= RUN_LENGTH:
            return True
    return False


def _local_part(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    local = email.rsplit("@", 1)[0].lower()
    return local if len(local) >= 3 else None


class PasswordPolicy:
    """A named set of password rules. Build once (it loads the common-password list) and reuse."""

    def __init__(
        self,
        name: str = "seed",
        *,
        common_passwords: frozenset[str] | None = None,
        max_length: int = MAX_PASSWORD_LENGTH,
    ) -> None:
        if name not in ("seed", "nist"):
            raise ValueError("password policy is 'seed' or 'nist'")
        self.name = name
        self.min_length = SEED_MIN_LENGTH if name == "seed" else NIST_MIN_LENGTH
        self.max_length = max_length
        self.common = common_passwords if common_passwords is not None else load_common_passwords()

    def check(self, password: str, *, email: str | None = None) -> PolicyResult:
        """Every rule ``password`` breaks (for the account ``email``), and a strength score."""
        failures: list[Rule] = []
        if len(password) < self.min_length:
            failures.append(Rule.TOO_SHORT)
        if len(password) > self.max_length:
            failures.append(Rule.TOO_LONG)
        lowered = password.lower()
        classes = {
            Rule.NO_UPPER: any(c.isupper() for c in password),
            Rule.NO_LOWER: any(c.islower() for c in password),
            Rule.NO_DIGIT: any(c.isdigit() for c in password),
            Rule.NO_SPECIAL: any(not c.isalnum() for c in password),
        }
        if self.name == "seed":
            failures.extend(rule for rule, present in classes.items() if not present)
        if lowered in self.common or lowered.strip(string.digits + string.punctuation) in self.common:
            failures.append(Rule.COMMON)
        if self.name == "seed":
            if _has_run(lowered):
                failures.append(Rule.SEQUENCE)
            if _has_repeat(password):
                failures.append(Rule.REPEAT)
            local = _local_part(email)
            if local is not None and local in lowered:
                failures.append(Rule.CONTAINS_EMAIL)
        score = self._score(password, sum(classes.values()), failures)
        messages = tuple(MESSAGES[rule].format(min=self.min_length, max=self.max_length) for rule in failures)
        return PolicyResult(failures=tuple(failures), score=score, messages=messages)

    def _score(self, password: str, classes: int, failures: list[Rule]) -> int:
        if Rule.COMMON in failures or len(password) < 8:
            return 0
        score = 1
        score += len(password) >= self.min_length
        score += len(password) >= 16
        score += classes >= 3
        score += classes == 4 and len(password) >= 20
        if {Rule.SEQUENCE, Rule.REPEAT, Rule.CONTAINS_EMAIL} & set(failures):
            score = max(1, score - 2)
        return min(score, 5)
