# SPDX-License-Identifier: Apache-2.0
"""Rotation of SESSION_SECRET, CSRF_SECRET, API_KEY_SALT and the HS256 SECRET_KEY, with a grace period."""
