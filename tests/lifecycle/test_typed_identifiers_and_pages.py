"""What people type and see: identifiers typed with an IME (full-width digits and letters, the
ideographic space) sign in and register like ASCII ones; the pages' time zone is a setting
checked at start-up; the privacy policy page shows the bundled template (and says so) or the
operator's own text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.accounts import classify_identifier
from gateway.config import ConfigError
from tests.lifecycle.conftest import (
    GOOD_PASSWORD,
    ID_NUMBER,
    PHONE,
    USCC,
    post_json,
    register_person,
    send_code,
    sign_out,
)

FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


def full_width(value: str) -> str:
    """``value`` as a Chinese IME types it: full-width characters, in groups of four with
    ideographic spaces between them."""
    wide = value.translate(FULL_WIDTH)
    return "\u3000".join(wide[i : i + 4] for i in range(0, len(wide), 4))


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (full_width("11010519491231002X"), ("id_card_number", "11010519491231002X")),
        ("110105 1949 1231 002x", ("id_card_number", "11010519491231002X")),
        (
            "９１１１００００６０００３７３４１Ｌ",
            ("unified_social_credit_code", USCC),
        ),
        (full_width("13912345678"), ("phone", "13912345678")),
        ("＋８６ １３９-1234-5678", ("phone", "13912345678")),
        (" ＺｈａｎｇＳａｎ ", ("login_name", "zhangsan")),
    ],
)
def test_typed_identifiers_are_normalised(typed: str, expected: tuple[str, str]) -> None:
    assert classify_identifier(typed) == expected


def test_full_width_identifiers_register_and_sign_in(client: FlaskClient, outbox: Path) -> None:
    # A code asked for a full-width phone number arrives for the number itself.
    code = send_code(client, outbox, full_width(PHONE), "register")
    assert code is not None
    registered = post_json(
        client,
        "/api/v1/register/person",
        {
            "real_name": "李四",
            "id_card_number": full_width(ID_NUMBER),
            "phone": full_width(PHONE),
            "code": code,
            "password": GOOD_PASSWORD,
            "agreement_version": "2026-01",
        },
    )
    assert registered.status_code == 201, registered.get_json()
    sign_out(client)
    # Stored as the ASCII it means: typed either way, the identifiers find the account.
    for typed in (full_width(ID_NUMBER), full_width(PHONE), ID_NUMBER, PHONE):
        login = post_json(
            client, "/api/v1/login/password", {"identifier": typed, "password": GOOD_PASSWORD}
        )
        assert login.status_code == 200, login.get_json()
        sign_out(client)


def test_display_time_zone_reaches_the_pages(make_app: Callable[..., Flask]) -> None:
    page = make_app().test_client().get("/login")
    assert 'data-time-zone="Asia/Shanghai"' in page.get_data(as_text=True)
    page = make_app(DISPLAY_TIME_ZONE="Europe/Berlin").test_client().get("/login")
    assert 'data-time-zone="Europe/Berlin"' in page.get_data(as_text=True)


@pytest.mark.parametrize("value", ["Mars/Olympus", "", "../../etc/passwd", 8])
def test_a_bad_display_time_zone_stops_start_up(
    make_app: Callable[..., Flask], value: object
) -> None:
    with pytest.raises(ConfigError, match="display_time_zone"):
        make_app(DISPLAY_TIME_ZONE=value)


def test_privacy_page_shows_the_template_and_says_so(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    chinese = client.get("/privacy?lang=zh-CN").get_data(as_text=True)
    assert "隐私政策" in chinese and 'id="privacy-template"' in chinese
    assert "口令（PIN）只发送给您电脑上的证书助手" in chinese
    english = client.get("/privacy?lang=en").get_data(as_text=True)
    assert "Privacy policy" in english and 'id="privacy-template"' in english
    login = client.get("/login?lang=zh-CN").get_data(as_text=True)
    assert 'href="/privacy"' in login and "《隐私政策》" in login


def test_privacy_page_shows_the_operators_file(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    policy = tmp_path / "privacy.txt"
    policy.write_text("# 一、总则\n示例平台隐私政策 <b>正文</b>\n", encoding="utf-8")
    page = make_app(PRIVACY_POLICY_FILE=str(policy)).test_client().get("/privacy")
    text = page.get_data(as_text=True)
    assert "<h2>一、总则</h2>" in text
    assert "示例平台隐私政策 &lt;b&gt;正文&lt;/b&gt;" in text
    assert 'id="privacy-template"' not in text
    with pytest.raises(ConfigError, match="privacy_policy_file"):
        make_app(PRIVACY_POLICY_FILE=str(tmp_path / "missing.txt"))


def test_two_people_register_without_login_names(
    client: FlaskClient, outbox: Path, accounts: Any
) -> None:
    # An account made earlier without a login name does not make "no login name" taken.
    accounts.create_person(
        real_name="王五", id_card_number="360426199101010071", at=datetime.now(UTC)
    )
    registered = register_person(client, outbox)
    assert registered.status_code == 201, registered.get_json()
