# SPDX-License-Identifier: Apache-2.0
"""JSON abuse on every body (OWASP API4 and API8): each route of the route table that takes a JSON
body is sent bodies a lenient parser would accept or choke on.

Bastion reads JSON as RFC 8259 says it is exchanged between systems: UTF-8 only, no duplicate
member names (a proxy or WAF that keeps the first of two ``role`` members and Bastion the last
would judge different requests), no NaN or Infinity (nor numbers that only become infinite
when parsed), and no nesting deeper than any of Bastion's schemas could use. All of that is a 400
``malformed_json``; a wrong Content-Type is a 415; a well-formed body of the wrong shape a 422.
Never a 500, and every refusal carries the error shape.
"""

from __future__ import annotations

import json

from tests.conftest import SettingsFactory
from tests.security.helpers import api_routes, assert_error_shape, attacked_app, body_routes

JSON = "application/json"
DEEP = 100_000  # far past the parser's recursion limit, well inside the 1 MB body cap
MALFORMED: dict[str, bytes] = {
    "duplicate keys": b'{"role": "user", "role": "admin", "email": "a@x.example", "email": "b@x.example"}',
    "NaN": b'{"title": NaN, "temperature": NaN}',
    "Infinity": b'{"title": Infinity, "temperature": -Infinity}',
    "overflowing float": b'{"title": 1e999, "temperature": 1e999}',
    "deeply nested arrays": b"[" * DEEP + b"]" * DEEP,
    "deeply nested objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "huge integer": b'{"title": ' + b"9" * 100_000 + b"}",
    "non-UTF-8 bytes": b'{"title": "\xff\xfe\xc0\xaf"}',
    "UTF-16 with BOM": '{"title": "x"}'.encode("utf-16"),
    "UTF-32": '{"title": "x"}'.encode("utf-32-le"),
    "truncated": b'{"title": "x"',
    "trailing data": b'{"title": "x"} {"title": "y"}',
    "empty with a JSON type": b" ",
}
SCALARS = [b"1", b'"x"', b"null", b"true", b"[]", b"[{}]", b"\xef\xbb\xbf1"]
WRONG_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json-patch+json",
    "application/json; charset=utf-16",
    "application/xml",
]


async def test_malformed_json_is_refused_on_every_body_route(make_settings: SettingsFactory) -> None:
    async with attacked_app(make_settings) as attack:
        routes = body_routes(attack.app)
        assert len(routes) > 20  # the route table, not a hand-kept list
        for method, path in routes:
            for case, body in MALFORMED.items():
                response = await attack.send(method, path, body, JSON)
                assert_error_shape(response, (case, method, path))
                assert response.json()["detail"]["error"] == "malformed_json", (case, method, path)


async def test_well_formed_json_of_the_wrong_shape_is_a_clear_4xx(make_settings: SettingsFactory) -> None:
    async with attacked_app(make_settings) as attack:
        table = api_routes(attack.app)
        for method, path in body_routes(attack.app):
            field = table[(method, path)].body_field
            optional = field is not None and not field.field_info.is_required()
            for body in SCALARS:
                response = await attack.send(method, path, body, JSON)
                # null is the absent body of a route whose body is optional (logout's).
                if field is not None and not (body == b"null" and optional):
                    assert_error_shape(response, (body, method, path))
                else:  # the route reads no body: any well-formed one is ignored, never a 500
                    assert response.status_code < 500, (body, method, path, response.text)
            for content_type in WRONG_TYPES:
                response = await attack.send(method, path, b'{"title": "x"}', content_type)
                assert_error_shape(response, (content_type, method, path))
                assert response.status_code == 415, (content_type, method, path)
            # A byte-order mark in front of UTF-8 is refused like any other non-JSON prefix.
            response = await attack.send(method, path, b"\xef\xbb\xbf{}", JSON)
            assert_error_shape(response, ("BOM", method, path))


async def test_many_keys_long_strings_and_long_names_stay_bounded(make_settings: SettingsFactory) -> None:
    """Wide objects and long values within the body cap: 4xx, and the error lists a bounded number
    of fields, each name cut short: the refusal is never a magnified copy of the attack."""
    wide = json.dumps({f"k{i}": i for i in range(60_000)}).encode()
    long_name = json.dumps({"<script>" + "n" * 500_000: 1}).encode()
    long_value = json.dumps({"title": "<script>" + "v" * 800_000, "name": "v" * 800_00}).encode()
    async with attacked_app(make_settings) as attack:
        for method, path in body_routes(attack.app):
            for case, body in (("wide", wide), ("long name", long_name), ("long value", long_value)):
                response = await attack.send(method, path, body, JSON)
                label = (case, method, path)
                assert response.status_code < 500, (*label, response.text[:300])
                if response.status_code >= 400:
                    assert_error_shape(response, label)
                    assert len(response.content) < 20_000, (*label, len(response.content))
                    assert "<script>" not in response.headers.get("content-type", ""), label
