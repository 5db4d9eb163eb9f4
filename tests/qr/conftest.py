"""QR-code login fixtures: the gateway tests' app, a desktop browser and a signed-in phone, each
a test client with its own cookies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.accounts import AccountService
from tests.gateway.conftest import (  # noqa: F401 - the gateway tests' fixtures
    ORIGIN,
    PASSWORD,
    accounts,
    app,
    base_config,
    client,
    clock,
    make_app,
    post_json,
)

PHONE_LOGIN = "qr-phone-user"


@dataclass
class Phone:
    client: FlaskClient
    csrf: str

    def post(self, path: str, body: Any, **headers: str) -> Any:
        return post_json(self.client, path, body, **{"X-CSRF-Token": self.csrf, **headers})


def sign_in_phone(gateway_app: Flask, login_name: str = PHONE_LOGIN) -> Phone:
    phone = gateway_app.test_client()
    answer = post_json(
        phone, "/api/v1/login/password", {"identifier": login_name, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.get_json()
    return Phone(phone, answer.get_json()["csrf_token"])


@pytest.fixture
def person(accounts: AccountService, clock: Any) -> Any:  # noqa: F811
    return accounts.create_person(
        real_name="张三",
        id_card_number="11010519491231002X",
        login_name=PHONE_LOGIN,
        password=PASSWORD,
        at=clock.now(),
    )


@pytest.fixture
def phone(app: Flask, person: Any) -> Phone:  # noqa: F811
    return sign_in_phone(app)
