# SPDX-License-Identifier: Apache-2.0
"""The deploy check's vocabulary: checks with stable ids, severities, findings and how they are run.

A check is data (id, severity, one-line fix, when it applies) plus a rule that returns what it found
as messages. The same registry feeds three readers, so each rule is written once:
``Settings.problems()`` (production refuses a finding of a ``refuses`` check), ``Settings.warnings()``
(logged at every start) and ``bastion check`` (every check, in every environment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bastion.rotation.service import SecretStatus
    from bastion.settings import Settings


class Severity(IntEnum):
    """Ordered, so ``--fail-level`` is a comparison."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class Scope(StrEnum):
    """Where a check's findings are said besides ``bastion check``."""

    ALWAYS = "always"  # a warning at every start, in every environment
    PRODUCTION = "production"  # a warning at every start in production
    AUDIT = "audit"  # only in `bastion check` (meaningless as a startup warning)


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule may look at: the settings, and what the command learned beyond them."""

    settings: Settings
    # Every secret's age from the database (`bastion secrets status`); None when not read.
    secret_statuses: Sequence[SecretStatus] | None = None
    workers: int = 1


Rule = Callable[[Context], Iterable[str]]


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    severity: Severity
    fix: str
    rule: Rule
    scope: Scope = Scope.PRODUCTION
    # Production refuses to start on a finding of this check (Settings.problems()).
    refuses: bool = False
    source: str = "config"  # config | database: what the rule reads


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    severity: Severity
    message: str
    fix: str
    source: str = "config"  # config | database | live

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity.label,
            "message": self.message,
            "fix": self.fix,
            "source": self.source,
        }


@dataclass
class Registry:
    checks: list[Check] = field(default_factory=list)

    def add(
        self,
        id: str,
        severity: Severity,
        fix: str,
        *,
        scope: Scope = Scope.PRODUCTION,
        refuses: bool = False,
        source: str = "config",
    ) -> Callable[[Rule], Rule]:
        if any(check.id == id for check in self.checks):
            raise ValueError(f"check id {id!r} is registered twice")

        def register(rule: Rule) -> Rule:
            self.checks.append(Check(id, severity, fix, rule, scope, refuses, source))
            return rule

        return register

    def run(self, context: Context, *, select: Callable[[Check], bool] = lambda _: True) -> list[Finding]:
        found: list[Finding] = []
        for check in self.checks:
            if not select(check):
                continue
            found += [
                Finding(check.id, check.severity, message, check.fix, check.source)
                for message in check.rule(context)
            ]
        return found


def failing(findings: Iterable[Finding], fail_level: Severity | None) -> list[Finding]:
    """The findings at or above ``fail_level`` (none when there is no level)."""
    if fail_level is None:
        return []
    return [finding for finding in findings if finding.severity >= fail_level]
