"""Registration, SMS login, password reset and change, password rules, agreements and the
consent gate."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from gateway.clock import FixedClock
from gateway.lifecycle.agreements import get_agreements
from tests.lifecycle.conftest import (
    GOOD_PASSWORD,
    ID_NUMBER,
    ORIGIN,
    PHONE,
    USCC,
    enterprise_body,
    id_number,
    person_body,
    post_json,
    register_person,
    send_code,
    sign_out,
)


def session_of(client: FlaskClient) -> Any:
    return client.get("/api/v1/session")


# --- registration ---------------------------------------------------------------------------------


def test_registration_makes_an_account_and_a_session(client: FlaskClient, outbox: Path) -> None:
    answer = register_person(client, outbox, login_name="lisi", email="li@example.cn")
    assert answer.status_code == 201
    body = answer.get_json()
    assert body["account"]["kind"] == "person"
    assert body["account"]["display_name"] == "李四"
    assert body["account"]["real_name_level"] == 1
    assert body["amr"] == ["sms"] and body["acr"] == "urn:certgate:loa:2"
    session = session_of(client)
    assert (
        session.status_code == 200 and session.get_json()["account"]["id"] == body["account"]["id"]
    )
    # The password set at registration signs in.
    sign_out(client)
    login = post_json(
        client, "/api/v1/login/password", {"identifier": "lisi", "password": GOOD_PASSWORD}
    )
    assert login.status_code == 200


def test_personal_data_of_a_registration_is_sealed(
    app: Flask, client: FlaskClient, outbox: Path
) -> None:
    register_person(client, outbox)
    with app.extensions["certgate.database"].engine.connect() as connection:
        dumped = repr(connection.exec_driver_sql("SELECT * FROM accounts").fetchall())
    for value in (ID_NUMBER, PHONE, "李四"):
        assert value not in dumped


def test_enterprise_registration(app: Flask, client: FlaskClient, outbox: Path) -> None:
    code = send_code(client, outbox, PHONE, "register")
    answer = post_json(client, "/api/v1/register/enterprise", enterprise_body(code))
    assert answer.status_code == 201
    account = answer.get_json()["account"]
    assert account["kind"] == "enterprise" and account["uscc"] == USCC
    assert account["real_name_level"] == 1
    with app.extensions["certgate.database"].engine.connect() as connection:
        dumped = repr(
            connection.exec_driver_sql("SELECT * FROM legal_representative_ids").fetchall()
        )
    assert "360426199101010071" not in dumped and dumped != "[]"


def test_an_id_number_with_an_unknown_region_starts_at_level_zero(
    client: FlaskClient, outbox: Path
) -> None:
    answer = register_person(client, outbox, id_card_number=id_number("99010519491231001"))
    assert answer.status_code == 201
    assert answer.get_json()["account"]["real_name_level"] == 0


@pytest.mark.parametrize(
    ("overrides", "status", "error", "extra"),
    [
        (
            {"id_card_number": "110105194912310021"},
            422,
            "identifier_invalid",
            {"field": "id_card_number"},
        ),
        ({"login_name": "13800138000"}, 422, "identifier_invalid", {"field": "login_name"}),
        ({"email": "nope"}, 422, "identifier_invalid", {"field": "email"}),
        ({"password": "short1"}, 422, "password_weak", {"reason": "too_short"}),
        ({"password": "qwertyuiop"}, 422, "password_weak", {"reason": "common"}),
        ({"password": "aaaaaaaaaaaa"}, 422, "password_weak", {"reason": "common"}),
        ({"password": f"my{PHONE}pw"}, 422, "password_weak", {"reason": "personal"}),
        ({"password": f"x{ID_NUMBER.lower()}"}, 422, "password_weak", {"reason": "personal"}),
        ({"agreement_version": "2020-01"}, 409, "agreement_outdated", {"version": "2026-01"}),
        ({"code": "000000x"}, 400, "bad_request", {}),
        ({"code": "000000"}, 401, "code_invalid", {}),
        ({"real_name": "  "}, 400, "bad_request", {}),
    ],
)
def test_person_registration_refusals(
    client: FlaskClient, outbox: Path, overrides: dict, status: int, error: str, extra: dict
) -> None:
    answer = register_person(client, outbox, **overrides)
    assert answer.status_code == status, answer.get_json()
    body = answer.get_json()
    assert body["error"] == error
    for key, value in extra.items():
        assert body[key] == value


def test_password_weak_message_in_both_languages(client: FlaskClient, outbox: Path) -> None:
    code = send_code(client, outbox, PHONE, "register")
    for language, text in (("zh-CN", "至少需要 10 个字符"), ("en", "at least 10 characters")):
        answer = client.post(
            "/api/v1/register/person",
            json=person_body(code, password="short"),
            headers={"Origin": ORIGIN, "Accept-Language": language},
        )
        assert text in answer.get_json()["message"]


def test_a_taken_identifier_is_told_only_with_a_right_code(
    client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    register_person(client, outbox)
    sign_out(client)
    clock.advance(60)
    other_phone = "13600000000"
    # Without the phone's code, nobody learns the ID-card number is registered.
    wrong = post_json(client, "/api/v1/register/person", person_body("123456", phone=other_phone))
    assert wrong.get_json()["error"] == "code_invalid"
    answer = register_person(client, outbox, phone=other_phone)
    assert answer.status_code == 409
    assert answer.get_json() | {"message": ""} == {
        "ok": False,
        "error": "identifier_taken",
        "field": "id_card_number",
        "message": "",
    }


def test_enterprise_refusals(client: FlaskClient, outbox: Path, clock: FixedClock) -> None:
    code = send_code(client, outbox, PHONE, "register")
    bad = post_json(
        client, "/api/v1/register/enterprise", enterprise_body(code, uscc="91110000600037341A")
    )
    assert (bad.status_code, bad.get_json()["field"]) == (422, "uscc")
    bad = post_json(
        client,
        "/api/v1/register/enterprise",
        enterprise_body(code, legal_representative_id_number="360426199101010072"),
    )
    assert bad.get_json()["field"] == "legal_representative_id_number"
    # The code survived the refusals above and makes the account now.
    assert (
        post_json(client, "/api/v1/register/enterprise", enterprise_body(code)).status_code == 201
    )
    sign_out(client)
    clock.advance(60)
    again = send_code(client, outbox, "13600000000", "register")
    taken = post_json(
        client, "/api/v1/register/enterprise", enterprise_body(again, phone="13600000000")
    )
    assert (taken.status_code, taken.get_json()["field"]) == (409, "uscc")


# --- SMS login, reset, change ---------------------------------------------------------------------


def test_sms_login(client: FlaskClient, outbox: Path, clock: FixedClock) -> None:
    register_person(client, outbox)
    sign_out(client)
    clock.advance(60)
    code = send_code(client, outbox, PHONE, "login")
    answer = post_json(client, "/api/v1/login/sms", {"phone": PHONE, "code": code})
    assert answer.status_code == 200
    assert answer.get_json()["amr"] == ["sms"]
    assert session_of(client).get_json()["acr"] == "urn:certgate:loa:2"


def test_sms_login_of_a_frozen_account(
    client: FlaskClient, outbox: Path, clock: FixedClock, accounts: Any
) -> None:
    account_id = register_person(client, outbox).get_json()["account"]["id"]
    accounts.set_status(account_id, "frozen", at=clock.now())
    clock.advance(60)
    code = send_code(client, outbox, PHONE, "login")
    answer = post_json(client, "/api/v1/login/sms", {"phone": PHONE, "code": code})
    assert (answer.status_code, answer.get_json()["error"]) == (403, "account_disabled")


def test_reset_sets_the_password_and_ends_every_session(
    make_app, outbox: Path, clock: FixedClock
) -> None:
    app = make_app()
    first, second = app.test_client(), app.test_client()
    register_person(first, outbox)
    clock.advance(60)
    assert (
        post_json(
            second, "/api/v1/login/password", {"identifier": PHONE, "password": GOOD_PASSWORD}
        ).status_code
        == 200
    )
    code = send_code(second, outbox, PHONE, "reset")
    weak = post_json(
        second,
        "/api/v1/password/reset",
        {"phone": PHONE, "code": code, "new_password": "password1"},
    )
    assert weak.get_json()["error"] == "password_weak"
    answer = post_json(
        second,
        "/api/v1/password/reset",
        {"phone": PHONE, "code": code, "new_password": "a-new-quiet-river"},
    )
    assert answer.status_code == 200 and answer.get_json()["sessions_ended"] == 2
    assert session_of(first).status_code == 401
    assert session_of(second).status_code == 401
    old = post_json(
        first, "/api/v1/login/password", {"identifier": PHONE, "password": GOOD_PASSWORD}
    )
    assert old.get_json()["error"] == "credentials_invalid"
    new = post_json(
        first, "/api/v1/login/password", {"identifier": PHONE, "password": "a-new-quiet-river"}
    )
    assert new.status_code == 200
    reused = post_json(
        second,
        "/api/v1/password/reset",
        {"phone": PHONE, "code": code, "new_password": "another-long-one"},
    )
    assert reused.get_json()["error"] == "code_expired"


def test_reset_for_a_phone_without_account(client: FlaskClient, outbox: Path) -> None:
    assert send_code(client, outbox, "13700000000", "reset") is None
    answer = post_json(
        client,
        "/api/v1/password/reset",
        {"phone": "13700000000", "code": "123456", "new_password": "a-new-quiet-river"},
    )
    assert (answer.status_code, answer.get_json()["error"]) == (401, "code_invalid")


def test_password_change(make_app, outbox: Path, clock: FixedClock) -> None:
    app = make_app()
    client, other = app.test_client(), app.test_client()
    csrf = register_person(client, outbox).get_json()["csrf_token"]
    post_json(other, "/api/v1/login/password", {"identifier": PHONE, "password": GOOD_PASSWORD})
    path = "/api/v1/account/password"
    no_csrf = post_json(client, path, {"current_password": GOOD_PASSWORD, "new_password": "x"})
    assert no_csrf.get_json()["error"] == "bad_request"
    wrong = post_json(
        client,
        path,
        {"current_password": "not-it-at-all", "new_password": "a-new-quiet-river"},
        **{"X-CSRF-Token": csrf},
    )
    assert (wrong.status_code, wrong.get_json()["error"]) == (401, "credentials_invalid")
    weak = post_json(
        client,
        path,
        {"current_password": GOOD_PASSWORD, "new_password": "1234567890"},
        **{"X-CSRF-Token": csrf},
    )
    assert weak.get_json()["reason"] == "common"
    done = post_json(
        client,
        path,
        {"current_password": GOOD_PASSWORD, "new_password": "a-new-quiet-river"},
        **{"X-CSRF-Token": csrf},
    )
    assert done.status_code == 200 and done.get_json()["other_sessions_ended"] == 1
    assert session_of(client).status_code == 200
    assert session_of(other).status_code == 401
    assert (
        post_json(client, path, {"current_password": "x", "new_password": "y"}).status_code == 400
    )
    sign_out(client)
    anonymous = post_json(client, path, {"current_password": "x", "new_password": "y"})
    assert (anonymous.status_code, anonymous.get_json()["error"]) == (401, "credentials_invalid")


def test_no_secret_reaches_the_log(
    client: FlaskClient, outbox: Path, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    register_person(client, outbox, password=f"x{PHONE}x")
    clock.advance(60)
    register_person(client, outbox)
    clock.advance(60)
    code = send_code(client, outbox, PHONE, "reset")
    post_json(
        client,
        "/api/v1/password/reset",
        {"phone": PHONE, "code": code, "new_password": "a-new-quiet-river"},
    )
    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (PHONE, ID_NUMBER, GOOD_PASSWORD, "a-new-quiet-river", code, "李四"):
        assert secret not in text


# --- agreements and the consent gate --------------------------------------------------------------


def publish(app: Flask, version: str, summary: str = "更新了个人信息保护条款") -> None:
    get_agreements(app).publish(
        version, "用户服务协议全文", summary=summary, at=app.extensions["certgate.clock"].now()
    )


def test_publish_command(
    make_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_config
) -> None:
    # The group itself: a stale certgate.egg-info in a source tree may hide new entry points.
    from gateway.lifecycle.commands import agreement as main

    text = tmp_path / "agreement.txt"
    text.write_text("用户服务协议 2027-01", encoding="utf-8")
    env = {
        "CERTGATE_DATABASE_URL": base_config["DATABASE_URL"],
        "CERTGATE_DATA_KEY": base_config["DATA_KEY"],
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
    }
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["publish", "2027-01", "--file", str(text), "--summary", "新增注销条款"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    again = runner.invoke(main, ["publish", "2027-01", "--file", str(text)], env=env)
    assert again.exit_code == 2 and "already published" in again.output
    listed = runner.invoke(main, ["list"], env=env)
    assert "2027-01" in listed.output and "新增注销条款" in listed.output
    client = make_app().test_client()
    assert client.get("/api/v1/agreement").get_json()["version"] == "2027-01"


def test_consent_gate(app: Flask, client: FlaskClient, outbox: Path) -> None:
    register_person(client, outbox)
    publish(app, "2027-01")
    sign_out(client)
    login = post_json(
        client, "/api/v1/login/password", {"identifier": PHONE, "password": GOOD_PASSWORD}
    )
    assert login.status_code == 200
    body = login.get_json()
    assert body["consent_required"] == {"version": "2027-01", "summary": "更新了个人信息保护条款"}
    csrf = {"X-CSRF-Token": body["csrf_token"]}
    # Anything else is refused, wherever the route lives; pages go to the consent page.
    refused = client.get("/api/v1/account")
    assert (refused.status_code, refused.get_json()["error"]) == (403, "consent_required")
    assert refused.get_json()["version"] == "2027-01"
    assert client.get("/api/v1/account/sessions").status_code == 403
    change = post_json(
        client, "/api/v1/account/password", {"current_password": "a", "new_password": "b"}, **csrf
    )
    assert change.get_json()["error"] == "consent_required"
    page = client.get("/account")
    assert page.status_code == 302 and page.headers["Location"].startswith("/consent?next=/account")
    # Reading the agreement and consenting are allowed.
    assert client.get("/api/v1/agreement").get_json()["text"] == "用户服务协议全文"
    assert client.get("/agreement").status_code == 200
    assert client.get("/consent").status_code == 200
    old = post_json(client, "/api/v1/account/consent", {"version": "2026-01"}, **csrf)
    assert (old.status_code, old.get_json()["error"]) == (409, "agreement_outdated")
    assert (
        post_json(client, "/api/v1/account/consent", {"version": "2027-01"}, **csrf).status_code
        == 200
    )
    assert client.get("/api/v1/account").status_code == 200
    history = client.get("/api/v1/account/consents").get_json()["consents"]
    assert [(entry["version"], entry["how"]) for entry in history] == [
        ("2027-01", "account"),
        ("2026-01", "registration"),
    ]
    sign_out(client)
    again = post_json(
        client, "/api/v1/login/password", {"identifier": PHONE, "password": GOOD_PASSWORD}
    )
    assert "consent_required" not in again.get_json()


def test_sms_login_answer_names_the_pending_agreement(
    app: Flask, client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    register_person(client, outbox)
    publish(app, "2027-01")
    clock.advance(60)
    code = send_code(client, outbox, PHONE, "login")
    answer = post_json(client, "/api/v1/login/sms", {"phone": PHONE, "code": code})
    assert answer.get_json()["consent_required"]["version"] == "2027-01"


def test_registration_needs_the_published_version(
    app: Flask, client: FlaskClient, outbox: Path
) -> None:
    publish(app, "2027-01", summary="")
    answer = register_person(client, outbox)
    assert answer.get_json()["error"] == "agreement_outdated"
