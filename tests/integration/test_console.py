# SPDX-License-Identifier: Apache-2.0
"""The admin console as served: strict CSP, assets from the package, text readable without script.

The browser tests (tests/e2e/test_console_browser.py) run the pages; these check what a browser
is sent: one nonced module script and nothing inline, no third-party origin anywhere in the
assets, every input labelled, every page's text in its HTML, and the package data that ships it.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import httpx

from bastion.console import PAGES

STATIC = resources.files("bastion.console").joinpath("static")
ROOT = Path(__file__).resolve().parents[2]


class Page(HTMLParser):
    """The parts of a page the checks look at."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_code: list[str] = []
        self.fields: list[str] = []
        self.labels: set[str] = set()
        self.text: list[str] = []
        self.h1: list[str] = []
        self._in_h1 = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in found:
            if name == "style" or name.startswith("on"):
                self.inline_code.append(f"{tag} {name}")
        if tag == "style":
            self.inline_code.append("style element")
        if tag == "script":
            self.scripts.append(found)
            self._in_script = True
        if tag in ("input", "select", "textarea") and found.get("type") != "hidden":
            self.fields.append(str(found.get("id")))
        if tag == "label" and found.get("for"):
            self.labels.add(str(found["for"]))
        self._in_h1 = self._in_h1 or tag == "h1"

    def handle_endtag(self, tag: str) -> None:
        self._in_h1 = self._in_h1 and tag != "h1"
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_code.append("inline script")
        if self._in_h1:
            self.h1.append(data.strip())
        self.text.append(data)


async def test_every_page_runs_only_its_nonced_module_and_reads_without_script(
    client: httpx.AsyncClient,
) -> None:
    for name, title in PAGES.items():
        response = await client.get(f"/admin/{name}")
        assert response.status_code == 200, name
        csp = response.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "default-src 'none'" in csp
        assert response.headers["cache-control"] == "no-store"
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce is not None
        page = Page()
        page.feed(response.text)
        assert page.scripts == [
            {"type": "module", "nonce": nonce.group(1), "src": "/admin/static/console.js"}
        ], name
        assert page.inline_code == [], name
        assert set(page.fields) <= page.labels, (name, set(page.fields) - page.labels)
        # What the page is for is in its HTML, not written by a script.
        assert page.h1 == [title], name
        text = " ".join(" ".join(page.text).split())
        assert len(text) > 200 and "Sign in with an administrator account" in text, name
        assert 'aria-current="page"' in response.text and f'data-page="{name}"' in response.text
    first, second = [(await client.get("/admin/audit")).headers["content-security-policy"] for _ in range(2)]
    assert first != second  # a fresh nonce for every answer


async def test_assets_are_served_with_their_types_and_name_no_other_origin(client: httpx.AsyncClient) -> None:
    files = [entry for entry in STATIC.iterdir() if entry.is_file() and entry.name != "shell.html"]
    assert {entry.name.rsplit(".", 1)[1] for entry in files} == {"js", "css", "svg"}
    for entry in files:
        response = await client.get(f"/admin/static/{entry.name}")
        assert response.status_code == 200, entry.name
        assert response.content == entry.read_bytes()
        assert response.headers["x-content-type-options"] == "nosniff"
        expected = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}[
            entry.name.rsplit(".")[1]
        ]
        assert response.headers["content-type"].startswith(expected), entry.name
        body = response.text
        # No CDN, no font or script host: only this origin (the SVG namespace is a name, not a fetch).
        origins = set(re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", body)) - {"http://www.w3.org"}
        assert origins == set(), (entry.name, origins)
        # Data becomes text nodes only: no markup is ever parsed from a string.
        for sink in ("innerHTML =", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in body, (entry.name, sink)
    for missing in ("nothing.js", "shell.html", "pages", "..%2Fpages.py", "console.js.map"):
        assert (await client.get(f"/admin/static/{missing}")).status_code == 404, missing


def test_the_package_data_ships_every_console_file() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    source = ROOT / "src" / "bastion"
    console_files = [p.relative_to(source).as_posix() for p in (source / "console" / "static").rglob("*")]
    for path in (f for f in console_files if (source / f).is_file()):
        assert any(fnmatch.fnmatch(path, pattern) for pattern in patterns["bastion"]), path
