"""Enterprise-role fixtures: an app with notices to a development outbox, an enterprise whose
record names its legal representative, and people who sign in with passwords, each in their
own browser (test client)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.accounts import AccountService, AccountView
from gateway.clock import FixedClock
from gateway.roles.roles import get_roles
from tests.gateway.conftest import (  # noqa: F401 - fixtures
    ORIGIN,
    PASSWORD,
    accounts,
    app,
    client,
    clock,
    make_app,
    post_json,
)
from tests.gateway.conftest import base_config as gateway_base_config  # noqa: F401

USCC = "91110000600037341L"
OTHER_USCC = "9144030071526726XG"
REPRESENTATIVE_ID = "360426199101010071"
STAFF_ID = "11010519491231002X"
STAFF_PHONE = "13912345678"


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox.jsonl"


@pytest.fixture
def base_config(
    gateway_base_config: dict[str, Any],  # noqa: F811 - the gateway tests' fixture
    outbox: Path,
) -> dict[str, Any]:
    return {
        **gateway_base_config,
        "NOTIFY_SMS": f"outbox:{outbox}",
        "NOTIFY_EMAIL": f"outbox:{outbox}",
    }


class Browser:
    """One person's browser on the test client: signed in with a password, its CSRF token."""

    def __init__(self, client: FlaskClient) -> None:  # noqa: F811 - not the fixture
        self.client = client
        self.csrf = ""

    def sign_in(self, identifier: str) -> Any:
        answer = post_json(
            self.client, "/api/v1/login/password", {"identifier": identifier, "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.get_json()
        self.csrf = self.get("/api/v1/session").get_json()["csrf_token"]
        return answer.get_json()

    def get(self, path: str, **headers: str) -> Any:
        return self.client.get(path, headers=headers)

    def post(self, path: str, body: Any = None, **headers: str) -> Any:
        return post_json(
            self.client,
            path,
            {} if body is None else body,
            **{"X-CSRF-Token": self.csrf},
            **headers,
        )

    def act_as(self, enterprise_id: str | None) -> Any:
        return self.post("/api/v1/session/act-as", {"enterprise_id": enterprise_id})


@dataclass
class World:
    app: Flask
    clock: FixedClock
    accounts: AccountService
    enterprise: AccountView
    representative: AccountView
    staff: AccountView

    def browser(self, identifier: str | None = None) -> Browser:
        browser = Browser(self.app.test_client())
        if identifier is not None:
            browser.sign_in(identifier)
        return browser

    def audit(self) -> list[Any]:
        from sqlalchemy import select

        from gateway.storage.database import get_database
        from gateway.storage.models import AuditRecord

        with get_database(self.app).session() as session:
            return list(session.scalars(select(AuditRecord).order_by(AuditRecord.id)).all())


@pytest.fixture
def make_person(accounts: AccountService, clock: FixedClock) -> Callable[..., AccountView]:  # noqa: F811
    def make(number: str, login_name: str, **fields: Any) -> AccountView:
        return accounts.create_person(
            real_name=fields.pop("real_name", "李四"),
            id_card_number=number,
            login_name=login_name,
            password=PASSWORD,
            at=clock.now(),
            **fields,
        )

    return make


@pytest.fixture
def world(
    app: Flask,  # noqa: F811
    accounts: AccountService,  # noqa: F811
    clock: FixedClock,  # noqa: F811
    make_person: Callable[..., AccountView],
) -> World:
    enterprise = accounts.create_enterprise(
        unified_social_credit_code=USCC,
        name="示例建设工程有限公司",
        legal_representative="王五",
        login_name="acme",
        password=PASSWORD,
        at=clock.now(),
    )
    get_roles(app).set_legal_representative(
        accounts.find(enterprise.id).id,
        name="王五",
        id_card_number=REPRESENTATIVE_ID,
        at=clock.now(),
    )
    representative = make_person(REPRESENTATIVE_ID, "wangwu", real_name="王五", real_name_level=2)
    staff = make_person(STAFF_ID, "lisi", phone=STAFF_PHONE)
    return World(app, clock, accounts, enterprise, representative, staff)
