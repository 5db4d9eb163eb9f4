"""Fixtures for the account's life: an app whose SMS and e-mail go to a development outbox,
and helpers that read the codes from it as a person reads their phone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from certs.identifiers import id_card_check_character
from tests.gateway.conftest import (  # noqa: F401 - fixtures
    ORIGIN,
    accounts,
    app,
    client,
    clock,
    make_app,
    post_json,
)
from tests.gateway.conftest import base_config as gateway_base_config  # noqa: F401, F811

PHONE = "13912345678"
ID_NUMBER = "11010519491231002X"
USCC = "91110000600037341L"
REPRESENTATIVE_ID = "360426199101010071"
GOOD_PASSWORD = "lantern-orchid-57"


def id_number(first17: str) -> str:
    return first17 + id_card_check_character(first17)


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


def outbox_messages(outbox: Path) -> list[dict[str, Any]]:
    if not outbox.exists():
        return []
    return [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]


def send_code(
    browser: FlaskClient, outbox: Path, to: str, purpose: str, channel: str = "sms"
) -> str | None:
    """Ask for a code and return the one that arrived (None when nothing was sent)."""
    before = len(outbox_messages(outbox))
    response = post_json(
        browser, "/api/v1/codes", {"channel": channel, "to": to, "purpose": purpose}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"ok": True, "resend_after": 60}
    arrived = outbox_messages(outbox)[before:]
    return arrived[-1]["code"] if arrived else None


def person_body(code: str, **overrides: Any) -> dict[str, Any]:
    return {
        "real_name": "李四",
        "id_card_number": ID_NUMBER,
        "phone": PHONE,
        "code": code,
        "password": GOOD_PASSWORD,
        "agreement_version": "2026-01",
        **overrides,
    }


def enterprise_body(code: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "示例建设工程有限公司",
        "uscc": USCC,
        "legal_representative_name": "王五",
        "legal_representative_id_number": REPRESENTATIVE_ID,
        "phone": PHONE,
        "code": code,
        "password": GOOD_PASSWORD,
        "agreement_version": "2026-01",
        **overrides,
    }


def register_person(browser: FlaskClient, outbox: Path, **overrides: Any) -> Any:
    phone = overrides.get("phone", PHONE)
    code = send_code(browser, outbox, phone, "register")
    assert code is not None
    code = overrides.pop("code", code)
    return post_json(browser, "/api/v1/register/person", person_body(code, **overrides))


def sign_out(browser: FlaskClient) -> None:
    """Forget the session cookie, as another browser would not have it."""
    browser.delete_cookie(browser.application.config["SESSION_COOKIE"])
