# SPDX-License-Identifier: Apache-2.0
"""Weighted rules kept as data (YAML), compiled into one RE2 set.

RE2 guarantees matching in time linear in the text, whatever the pattern: there is no
backtracking to exploit. All the patterns of a rule file go into one `re2.Set`, so a text is
scanned once for all of them, and the set reports which patterns matched.

Some evidence only means something in a setting: "add a line about crypto to your reply" is a
user's request in a chat and an injection inside an e-mail. A rule marked `context: true` names
such a setting (it is never reported itself), and a rule with `requires: <id>` counts only when
that context rule matched too, anywhere in the text, before or after it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import re2
import yaml

from bastion.guard.base import Category, Finding

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: Category
    weight: float
    patterns: tuple[str, ...]
    #: a setting other rules may require, never reported on its own
    context: bool = False
    #: the id of the context rule this rule needs
    requires: str | None = None


class RuleSet:
    """A compiled set of rules. `match` returns the rules whose patterns occur in any of the views."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        options = re2.Options()
        options.max_mem = 64 << 20
        self._set = re2.Set.SearchSet(options)
        self._owner: list[Rule] = []
        for rule in self.rules:
            for pattern in rule.patterns:
                try:
                    self._set.Add(pattern)
                except re2.error as exc:
                    raise ValueError(f"rule {rule.id}: invalid pattern {pattern!r}: {exc}") from None
                self._owner.append(rule)
        self._set.Compile()
        #: the ids of the rules that name a setting (`context: true`)
        self.context_ids = frozenset(rule.id for rule in self.rules if rule.context)

    def match(self, views: Iterable[str | bytes], *, assume: Iterable[str] = ()) -> list[Rule]:
        """The rules found in any of the views; `assume` lists context ids taken as present."""
        seen: dict[str, Rule] = {}
        for view in views:
            if not view:
                continue
            for index in self._set.Match(view) or ():
                rule = self._owner[index]
                seen.setdefault(rule.id, rule)
        if not seen:  # the common case: nothing matched
            return []
        present = set(assume) | {rule.id for rule in seen.values() if rule.context}
        return [
            rule
            for rule in seen.values()
            if not rule.context and (rule.requires is None or rule.requires in present)
        ]

    def findings(self, views: Iterable[str | bytes]) -> list[Finding]:
        return [Finding(rule.category, rule.weight, rule.id) for rule in self.match(views)]


def parse_rules(document: Any, *, source: str = "rules") -> list[Rule]:
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise ValueError(f"{source}: expected a mapping with a 'rules' list")
    rules: list[Rule] = []
    for entry in document["rules"]:
        try:
            rule = Rule(
                id=str(entry["id"]),
                category=Category(entry["category"]),
                weight=float(entry["weight"]),
                patterns=tuple(str(p) for p in entry["patterns"]),
                context=bool(entry.get("context", False)),
                requires=str(entry["requires"]) if entry.get("requires") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: invalid rule {entry!r}: {exc}") from None
        if not 0.0 < rule.weight <= 1.0 or not rule.patterns:
            raise ValueError(f"{source}: rule {rule.id} needs a weight in (0, 1] and patterns")
        rules.append(rule)
    contexts = {rule.id for rule in rules if rule.context}
    for rule in rules:
        if rule.requires is not None and rule.requires not in contexts:
            raise ValueError(f"{source}: rule {rule.id} requires {rule.requires!r}, which is no context rule")
    return rules


def load_rules(name: str) -> list[Rule]:
    """Rules shipped as package data, e.g. `injection.yaml`."""
    raw = resources.files("bastion.guard").joinpath(f"rules/{name}").read_text(encoding="utf-8")
    # libyaml's safe loader when PyYAML was built with it: the same documents, ten times faster.
    return parse_rules(yaml.load(raw, Loader=_SAFE_LOADER), source=name)  # noqa: S506  # nosec B506 - a safe loader


@functools.cache
def shipped_rules(name: str) -> RuleSet:
    """``load_rules(name)`` compiled, once per process: the package's files do not change while it
    runs, and a compiled set is only read (every guard of the process shares it)."""
    return RuleSet(load_rules(name))


def noisy_or(scores: Iterable[float]) -> float:
    """Combine independent pieces of evidence: 1 - prod(1 - s)."""
    remaining = 1.0
    for score in scores:
        remaining *= 1.0 - min(max(score, 0.0), 1.0)
    return 1.0 - remaining
