# SPDX-License-Identifier: Apache-2.0
"""Logging, redaction and (later) metrics and anomaly detection."""
