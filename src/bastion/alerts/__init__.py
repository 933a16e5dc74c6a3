# SPDX-License-Identifier: Apache-2.0
"""Anomaly detection and alerts (docs/alerts.md).

Detectors count failed authentications, rate-limit refusals, server errors, refusals per API key,
prompt-extraction attempts, session creation and token usage, in Redis when REDIS_URL is set so
every instance adds to the same counts, and note administrators signing in from new networks.
An alert goes to the ``alerts`` table (``GET /api/admin/alerts``), the audit log and
ALERT_WEBHOOK_URL.
"""

from __future__ import annotations

from bastion.alerts.detector import AnomalyDetector
from bastion.alerts.rules import AlertKind, Severity
from bastion.alerts.signals import EVENT_KINDS, Signal, SignalKind

__all__ = ["EVENT_KINDS", "AlertKind", "AnomalyDetector", "Severity", "Signal", "SignalKind"]
