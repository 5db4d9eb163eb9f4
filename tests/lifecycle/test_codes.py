"""POST /api/v1/codes and the life of a code: single use, 5 minutes, 5 wrong tries, limits."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from gateway.clock import FixedClock
from tests.lifecycle.conftest import (
    GOOD_PASSWORD,
    PHONE,
    outbox_messages,
    post_json,
    register_person,
    send_code,
)


def sms_login(client: FlaskClient, code: str, phone: str = PHONE) -> object:
    return post_json(client, "/api/v1/login/sms", {"phone": phone, "code": code})


def test_the_outbox_holds_one_json_line_per_message(client: FlaskClient, outbox: Path) -> None:
    code = send_code(client, outbox, "Someone@Example.CN", "verify", channel="email")
    [message] = outbox_messages(outbox)
    assert message == {
        "channel": "email",
        "to": "someone@example.cn",
        "purpose": "verify",
        "code": code,
        "text": message["text"],
        "sent_at": "2026-01-02T00:00:00Z",
    }
    assert code is not None and len(code) == 6 and code.isdigit()
    assert code in message["text"]


def test_the_answer_is_the_same_with_or_without_an_account(
    client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    # No account has this phone: the same answer, and no message goes out.
    assert send_code(client, outbox, "13700000000", "login") is None
    clock.advance(60)
    assert send_code(client, outbox, "13700000000", "reset") is None
    register_person(client, outbox)
    clock.advance(60)
    assert send_code(client, outbox, PHONE, "reset") is not None


def test_a_code_is_single_use(client: FlaskClient, outbox: Path, clock: FixedClock) -> None:
    register_person(client, outbox)
    clock.advance(60)
    code = send_code(client, outbox, PHONE, "login")
    assert code is not None
    assert sms_login(client, code).status_code == 200
    again = sms_login(client, code)
    assert again.status_code == 401
    assert again.get_json()["error"] == "code_expired"


def test_a_code_expires_after_five_minutes(
    client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    register_person(client, outbox)
    clock.advance(60)
    code = send_code(client, outbox, PHONE, "login")
    assert code is not None
    clock.advance(300)
    answer = sms_login(client, code)
    assert answer.status_code == 401
    assert answer.get_json()["error"] == "code_expired"


def test_five_wrong_tries_void_the_code(
    client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    register_person(client, outbox)
    clock.advance(60)
    code = send_code(client, outbox, PHONE, "login")
    assert code is not None
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    errors = [sms_login(client, wrong).get_json()["error"] for _ in range(5)]
    assert errors == ["code_invalid"] * 4 + ["code_expired"]
    assert sms_login(client, code).get_json()["error"] == "code_expired"


def test_a_code_is_bound_to_its_purpose_and_destination(
    client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    register_person(client, outbox)
    clock.advance(60)
    reset_code = send_code(client, outbox, PHONE, "reset")
    assert reset_code is not None
    answer = sms_login(client, reset_code)
    assert answer.status_code == 401 and answer.get_json()["error"] == "code_invalid"
    answer = sms_login(client, reset_code, phone="13700000000")
    assert answer.get_json()["error"] == "code_invalid"


def test_one_code_per_destination_per_resend_interval(
    client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    send_code(client, outbox, PHONE, "register")
    again = post_json(
        client, "/api/v1/codes", {"channel": "sms", "to": PHONE, "purpose": "register"}
    )
    assert again.status_code == 429
    assert again.get_json()["error"] == "rate_limited"
    assert again.headers["Retry-After"] == "60"
    clock.advance(60)
    assert send_code(client, outbox, PHONE, "register") is not None


def test_a_new_code_replaces_the_old_one(
    client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    register_person(client, outbox)
    clock.advance(60)
    first = send_code(client, outbox, PHONE, "login")
    clock.advance(60)
    second = send_code(client, outbox, PHONE, "login")
    assert first is not None and second is not None
    if first != second:
        assert sms_login(client, first).get_json()["error"] == "code_invalid"
    assert sms_login(client, second).status_code == 200


def test_daily_limit_per_destination(make_app, outbox: Path, clock: FixedClock) -> None:
    client = make_app(CODE_DAILY_LIMIT=3, CODE_ADDRESS_LIMIT=100).test_client()
    for _ in range(3):
        assert send_code(client, outbox, PHONE, "register") is not None
        clock.advance(61)
    refused = post_json(
        client, "/api/v1/codes", {"channel": "sms", "to": PHONE, "purpose": "register"}
    )
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 23 * 3600
    clock.advance(24 * 3600)
    assert send_code(client, outbox, PHONE, "register") is not None


def test_limit_per_client_address(make_app, outbox: Path) -> None:
    client = make_app(CODE_ADDRESS_LIMIT=2).test_client()
    send_code(client, outbox, "13700000001", "register")
    send_code(client, outbox, "13700000002", "register")
    refused = post_json(
        client, "/api/v1/codes", {"channel": "sms", "to": "13700000003", "purpose": "register"}
    )
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "rate_limited"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"channel": "fax", "to": PHONE, "purpose": "login"}, 400, "bad_request"),
        ({"channel": "sms", "to": PHONE, "purpose": "spam"}, 400, "bad_request"),
        ({"channel": "sms", "to": "12345", "purpose": "login"}, 422, "identifier_invalid"),
        ({"channel": "email", "to": "not-mail", "purpose": "verify"}, 422, "identifier_invalid"),
        ({"channel": "sms", "to": None, "purpose": "login"}, 400, "bad_request"),
    ],
)
def test_bad_code_requests(client: FlaskClient, body: dict, status: int, error: str) -> None:
    answer = post_json(client, "/api/v1/codes", body)
    assert answer.status_code == status
    assert answer.get_json()["error"] == error


def test_a_channel_without_a_sender_is_unavailable(make_app) -> None:
    client = make_app(NOTIFY_EMAIL=None).test_client()
    answer = post_json(
        client, "/api/v1/codes", {"channel": "email", "to": "a@example.cn", "purpose": "verify"}
    )
    assert answer.status_code == 503
    assert answer.get_json()["error"] == "unavailable"


def test_codes_are_stored_hashed(client: FlaskClient, outbox: Path, app) -> None:
    code = send_code(client, outbox, PHONE, "register")
    database = app.extensions["certgate.database"]
    with database.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT * FROM verification_codes").fetchall()
    dumped = repr(rows)
    assert code not in dumped and PHONE not in dumped


def test_the_outbox_is_announced_once_and_codes_never_logged(
    make_app, outbox: Path, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_app().test_client()
    announced = [r for r in caplog.records if "DEVELOPMENT OUTBOX" in r.getMessage()]
    assert len(announced) == 1
    code = register_person(client, outbox) and outbox_messages(outbox)[-1]["code"]
    clock.advance(60)
    login = send_code(client, outbox, PHONE, "login")
    sms_login(client, "000000" if login != "000000" else "111111")
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (code, login, PHONE, GOOD_PASSWORD, "11010519491231002X"):
        assert secret not in text
