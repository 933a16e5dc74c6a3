# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bastion.guard import Guard, GuardConfig, InjectionModel, load_model

DATA = Path(__file__).resolve().parents[2] / "data" / "guard"


def cases(name: str) -> list[dict[str, Any]]:
    with (DATA / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="session")
def model() -> InjectionModel:
    return load_model()


@pytest.fixture(scope="session")
def guard(model: InjectionModel) -> Guard:
    return Guard(GuardConfig(canary="bst-canary-0123456789abcdef"), model=model)
