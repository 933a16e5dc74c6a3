# SPDX-License-Identifier: Apache-2.0
"""GET /legal/terms serves the operator's TERMS_FILE as written; 404 when none is published."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.settings import ConfigurationError
from tests.conftest import SettingsFactory, serve_app
from tests.integration.auth.helpers import assert_error

TERMS = "# Terms of use\n\nBe kind. Ünïcode stays as written.\n"


async def test_no_terms_file_is_a_404(make_settings: SettingsFactory) -> None:
    async with serve_app(make_settings()) as (_app, http):
        assert_error(await http.get("/legal/terms"), 404, "not_found")


async def test_the_terms_are_served_as_written_and_edits_show_at_once(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    terms = tmp_path / "terms.md"
    terms.write_text(TERMS, encoding="utf-8")
    async with serve_app(make_settings(TERMS_FILE=str(terms), LICENSE_URL="https://example.org/license")) as (
        _app,
        http,
    ):
        served = await http.get("/legal/terms")
        assert served.status_code == 200
        assert served.headers["content-type"] == "text/markdown; charset=utf-8"
        assert served.text == TERMS
        assert served.headers["x-license"] == "https://example.org/license"
        assert served.headers["x-content-type-options"] == "nosniff"
        terms.write_text(TERMS + "\nUpdated.\n", encoding="utf-8")
        assert (await http.get("/legal/terms")).text.endswith("Updated.\n")
        terms.unlink()
        assert_error(await http.get("/legal/terms"), 404, "not_found")  # gone: none published


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.md", None, "cannot be read"),
        ("terms.pdf", b"%PDF", "must end in"),
        ("big.txt", b"x" * 1_000_001, "at most 1000000 bytes"),
    ],
)
def test_an_unservable_terms_file_is_refused_at_startup(
    make_settings: SettingsFactory, tmp_path: Path, name: str, content: bytes | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=problem):
        make_settings(TERMS_FILE=str(path))
