# SPDX-License-Identifier: Apache-2.0
"""Nothing reflected unescaped (OWASP API8): attacker text sent in the path, the query, headers and
JSON member names of every route comes back, if at all, only inside a JSON error body (as
JSON-escaped text that round-trips exactly), never in a response header and never as HTML.
"""

from __future__ import annotations

import re

from tests.conftest import SettingsFactory
from tests.security.helpers import api_routes, assert_error_shape, attacked_app

MARKER = '</script><script>alert("x")</script>\\"\u2028'
HEADER_MARKER = "<script>alert(1)</script>"


async def test_attacker_text_is_never_reflected_raw(make_settings: SettingsFactory) -> None:
    async with attacked_app(make_settings) as attack:
        for method, path in sorted(api_routes(attack.app)):
            url = re.sub(r"\{\w+\}", MARKER.replace("/", "%2F"), path)
            body = {MARKER: MARKER} if method in ("POST", "PUT", "PATCH") else None
            response = await attack.http.request(
                method,
                url,
                params={"limit": MARKER, "after": MARKER, "before": MARKER},
                json=body,
                headers={
                    **attack.admin,
                    "X-Request-ID": HEADER_MARKER,
                    "Origin": "https://evil.example/" + HEADER_MARKER,
                    "X-Forwarded-Host": HEADER_MARKER,
                },
            )
            attack.http.cookies.clear()
            label = (method, path, response.status_code)
            assert response.status_code < 500, (*label, response.text[:300])
            for name, value in response.headers.items():
                assert "<script" not in value and "evil.example" not in value, (*label, name)
            if response.status_code >= 400:
                assert_error_shape(response, label)
                assert response.headers["x-content-type-options"] == "nosniff"
                # Whatever names the attacker's text does so as JSON: parsed back, it is the same text.
                for field in response.json()["detail"].get("fields", []):
                    if "script" in field["field"]:
                        assert MARKER in field["field"] or len(field["field"]) == 200, (*label, field)
        missing = await attack.http.get("/no/" + MARKER.replace("/", "%2F"), headers=attack.admin)
        assert_error_shape(missing, "404")
        assert "<script" not in missing.text
