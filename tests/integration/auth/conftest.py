# SPDX-License-Identifier: Apache-2.0
"""Identity tests run on SQLite and PostgreSQL: ``settings_for(**overrides)`` builds their settings."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.settings import Settings
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import identity_settings


@pytest.fixture
def settings_for(make_settings: SettingsFactory, database_url: str) -> Any:
    def factory(**overrides: Any) -> Settings:
        return identity_settings(make_settings, DATABASE_URL=database_url, **overrides)

    return factory
