"""Property-based input tests over every JSON route of the operator console's API.

The same bodies as the gateway's input tests (tests/gateway/test_fuzz.py: random bytes, random
JSON, deep nesting, the routes' own field names holding nulls, wrong types, huge values, lone
surrogates and NUL), sent by a signed-in admin with the CSRF token, so they reach each route's
parser rather than stopping at the sign-in check. No answer may be a server error; a 400 is
always ``bad_request``. ``CERTGATE_FUZZ_EXAMPLES`` (``make fuzz``) sets the number of bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import FixedClock
from gateway.http import JSON_FIELDS_KEY
from tests.admin.conftest import ORIGIN, Console
from tests.gateway.test_fuzz import BODY_METHODS, FUZZ, Tally, bodies, body_routes

PREFIX = "/admin/api/"
# Routes that end the console session when a body is accepted: the fuzzer signs in again.
SESSION_ENDING = {"/admin/api/logout"}


def test_no_console_route_answers_5xx(
    app: Flask,
    sign_in: Callable[[str], Console],
    clock: FixedClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    routes = [
        (method, path)
        for method, path in body_routes(app, PREFIX)
        if path != "/admin/api/login"  # fuzzed signed out below: a body here signs nobody in
    ]
    assert ("POST", "/admin/api/audit/verify") in routes
    console = [sign_in("admin")]

    def send(method: str, path: str, body: bytes, content_type: str) -> Any:
        return console[0].client.open(
            path,
            method=method,
            data=body,
            headers={
                "Origin": ORIGIN,
                "X-CSRF-Token": console[0].csrf,
                "Content-Type": content_type,
            },
        )

    for method, path in routes:  # each route tells which fields it reads
        if method in BODY_METHODS and path not in SESSION_ENDING:
            send(method, path, b"{}", "application/json")
    learnt = app.extensions.get(JSON_FIELDS_KEY, {})
    endpoints = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    tally = Tally("console")

    @FUZZ
    @given(st.data())
    def one_body(data: st.DataObject) -> None:
        method, path = data.draw(st.sampled_from([*routes, ("POST", "/admin/api/login")]))
        kind, body, content_type = data.draw(bodies(learnt.get(endpoints[path], {})))
        answer = send(method, path, body, content_type)
        tally.bodies[f"{method} {path}"] += 1
        tally.kinds[kind] += 1
        if answer.status_code >= 500:
            tally.server_errors.append((path, answer.status_code, body[:200]))
        assert answer.status_code < 500, (path, body[:200], answer.get_data(as_text=True))
        if answer.status_code == 400:
            assert answer.json["ok"] is False and answer.json["error"] == "bad_request"
        if answer.status_code in (200, 401) and path in SESSION_ENDING | {"/admin/api/login"}:
            # Signed out (or a fuzzed login replaced the session): sign in again, with the
            # authenticator's next code (a code signs in once).
            clock.advance(30)
            console[0] = sign_in("admin")

    try:
        one_body()
    finally:
        tally.report(capsys)
    assert not tally.server_errors
