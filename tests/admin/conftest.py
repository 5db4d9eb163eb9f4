"""Operator console fixtures: the gateway tests' app with a fixed clock, operators of each role
made through the operator service, and a console client that signs in with password and TOTP
(the code computed from the operator's otpauth:// URI, as an authenticator app does)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.admin import totp
from gateway.admin.operators import get_operators
from gateway.clock import FixedClock
from tests.gateway.conftest import (  # noqa: F401 - fixtures
    ORIGIN,
    accounts,
    app,
    base_config,
    client,
    clock,
    make_app,
    post_json,
)

OPERATOR_PASSWORD = "operator-lantern-2026"


@dataclass
class Console:
    """A browser signed in to the console: its client and CSRF token."""

    client: FlaskClient
    csrf: str
    name: str

    def get(self, path: str) -> Any:
        return self.client.get(f"/admin/api{path}", headers={"Origin": ORIGIN})

    def post(self, path: str, body: Any = None, *, csrf: bool = True, **headers: str) -> Any:
        sent = {"Origin": ORIGIN, **({"X-CSRF-Token": self.csrf} if csrf else {}), **headers}
        return self.client.post(f"/admin/api{path}", json=body or {}, headers=sent)


def secret_of(totp_uri: str) -> str:
    return parse_qs(urlsplit(totp_uri).query)["secret"][0]


def make_operator(gateway: Flask, moment: FixedClock, name: str, role: str) -> str:
    """The operator's TOTP secret."""
    made = get_operators(gateway).create(name, role, OPERATOR_PASSWORD, at=moment.now())
    return secret_of(made.totp_uri)


def operator_login(
    browser: FlaskClient, name: str, secret: str, moment: FixedClock, **overrides: Any
) -> Any:
    """Password and the authenticator app's code of the moment."""
    code = totp.code_at(secret, moment.now())
    body = {"name": name, "password": OPERATOR_PASSWORD, "totp": code, **overrides}
    return browser.post("/admin/api/login", json=body, headers={"Origin": ORIGIN})


@pytest.fixture
def sign_in(app: Flask, clock: FixedClock) -> Callable[[str], Console]:  # noqa: F811
    """An operator of the given role, signed in (each gets its own name and browser)."""
    made: dict[str, str] = {}

    def signed_in(role: str) -> Console:
        name = f"{role}{len(made)}"
        made[name] = make_operator(app, clock, name, role)
        browser = app.test_client()
        response = operator_login(browser, name, made[name], clock)
        assert response.status_code == 200, response.json
        return Console(browser, response.json["csrf_token"], name)

    return signed_in
