# SPDX-License-Identifier: Apache-2.0
"""Scanning work grows linearly with the text, on inputs built to make backtracking matchers explode.

Time is not asserted (bench/guard.py measures it): the characters each matcher and the model are
given are counted, and 100 KB must cost no more than ten times 10 KB, plus a constant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from bastion.guard import Guard, ScanContext
from bastion.guard.model import InjectionModel
from bastion.guard.profanity import ProfanityFilter
from bastion.guard.rules import RuleSet

PATHOLOGICAL = {
    "near-miss override": "ignore the the the all all previous previous ",
    "nested delimiters": "<|<|<| [[[ <!-- <!-- <<< ",
    "letters spaced": "a a a a a a a a a a a a b ",
    "leet soup": "1gn0r3 4 5 7 @ $ ! ",
    "homoglyphs and invisibles": "іgnоrе\u200b\u202e аll\u2060 ",
    "base64-ish": "QUFBQUFBQUFBQUFBQUFB" * 3 + " ",
    "morse-ish": ".- .- .- .- .- .- .- / ",
    "profanity near-miss": "f u c c c c s h i i t a s s e s s ",
    "urls": "javascript javascript: data data: http http:// ",
}


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    match, margin, matches = RuleSet.match, InjectionModel.margin, ProfanityFilter.matches

    def counting_match(self: RuleSet, views: object) -> object:
        views = list(views)  # type: ignore[call-overload]
        counts["rules"] += sum(len(v) for v in views)
        return match(self, views)

    def counting_margin(self: InjectionModel, text: str) -> float:
        counts["model"] += len(text)
        return margin(self, text)

    def counting_matches(self: ProfanityFilter, folded: str) -> list[str]:
        counts["profanity"] += len(folded)
        return matches(self, folded)

    monkeypatch.setattr(RuleSet, "match", counting_match)
    monkeypatch.setattr(InjectionModel, "margin", counting_margin)
    monkeypatch.setattr(ProfanityFilter, "matches", counting_matches)
    yield counts


@pytest.mark.parametrize("unit", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_work_grows_linearly(guard: Guard, work: Counter[str], unit: str) -> None:
    context = ScanContext(field="context")
    small = (unit * (10_000 // len(unit) + 1))[:10_000]
    large = (unit * (100_000 // len(unit) + 1))[:100_000]
    guard.scan_input(small + "!", context)
    small_work = sum(work.values())
    work.clear()
    verdict = guard.scan_input(large + "!", context)
    large_work = sum(work.values())
    assert verdict.action is not None
    assert large_work <= 10 * small_work + 10_000, (small_work, large_work)


def test_output_scan_of_pathological_text_completes(guard: Guard) -> None:
    text = ("sk- " * 5000) + ("![a](http://x/?" * 3000)
    assert guard.scan_output(text).action is not None


def test_stream_work_is_linear(guard: Guard, work: Counter[str]) -> None:
    def run(size: int) -> int:
        work.clear()
        stream = guard.stream()
        for _ in range(size // 10):
            stream.feed("a b c d e ")
        stream.finish()
        return sum(work.values())

    assert run(100_000) <= 11 * run(10_000)
