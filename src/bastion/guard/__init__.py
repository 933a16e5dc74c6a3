# SPDX-License-Identifier: Apache-2.0
"""Guardrails: input validation, prompt-injection and jailbreak detection, output screening.

No web or database dependency. Build a `Guard` once from a `GuardConfig` (it compiles the rules
and loads the shipped classifier), then call `scan_input`, `scan_output`, `sanitize_context` or
`stream()` from any number of requests.
"""

from __future__ import annotations

from bastion.guard.base import Action, Category, Detector, Direction, Finding, ScanContext, Verdict
from bastion.guard.guard import FencedContext, Guard, GuardConfig
from bastion.guard.model import InjectionModel, load_model
from bastion.guard.output import StreamScanner, canary_instruction, new_canary

__all__ = [
    "Action",
    "Category",
    "Detector",
    "Direction",
    "FencedContext",
    "Finding",
    "Guard",
    "GuardConfig",
    "InjectionModel",
    "ScanContext",
    "StreamScanner",
    "Verdict",
    "canary_instruction",
    "load_model",
    "new_canary",
]
