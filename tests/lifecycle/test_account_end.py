"""The account's life, second part: cancellation, operators' decisions with reasons, in-site
messages and security notices, binding a USB key from the account page, unbinding that really
stops a certificate, and real-name level 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from gateway.accounts import get_accounts
from gateway.audit import get_audit_log
from gateway.cli import main
from gateway.clock import FixedClock
from gateway.storage.database import get_database
from gateway.storage.models import Account, AuditRecord
from softhsm.pki import TestPki, random_id_card_number, random_uscc
from tests.fixtures_pki import PKI_EPOCH
from tests.gateway.conftest import DATA_KEY, ORIGIN, pki_anchor_config
from tests.gateway.test_token_login import (
    algorithm_for,
    b64,
    der,
    get_challenge,
    message,
    sign,
    token_login,
)
from tests.lifecycle.conftest import (
    GOOD_PASSWORD,
    ID_NUMBER,
    PHONE,
    outbox_messages,
    post_json,
    register_person,
    send_code,
    sign_out,
)


def csrf_post(browser: FlaskClient, path: str, body: Any) -> Any:
    token = browser.get("/api/v1/session").get_json()["csrf_token"]
    return post_json(browser, path, body, **{"X-CSRF-Token": token})


def notices_to(outbox: Path, phone: str = PHONE) -> list[dict[str, Any]]:
    return [m for m in outbox_messages(outbox) if m["purpose"] == "notice" and m["to"] == phone]


# --- cancellation ---------------------------------------------------------------------------------


def test_cancellation_erases_the_person_and_frees_the_identifiers(
    app: Flask, client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    assert register_person(client, outbox, login_name="lisi2026").status_code == 201
    public_id = client.get("/api/v1/session").get_json()["account"]["id"]

    response = csrf_post(client, "/api/v1/account/cancel", {"confirm": True})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "cancelled"
    assert client.get("/api/v1/session").status_code == 401  # the session ended

    with get_database(app).session() as session:
        row = session.scalars(select(Account).where(Account.public_id == public_id)).one()
        assert row.status == "cancelled"
        for column in (
            "real_name_sealed",
            "id_card_number_sealed",
            "id_card_number_hash",
            "phone_sealed",
            "phone_hash",
            "email",
            "login_name",
            "password_hash",
        ):
            assert getattr(row, column) is None, column
        assert row.display_name == "已注销账户"
        events = session.scalars(
            select(AuditRecord.event).where(AuditRecord.account_public_id == public_id)
        ).all()
    assert "account_cancelled" in events
    assert get_audit_log(app).verify() == []

    # Nobody signs in with the old phone; the same person may register again.
    sign_out(client)
    clock.advance(61)
    assert send_code(client, outbox, PHONE, "login") is None
    clock.advance(61)
    again = register_person(client, outbox, login_name="lisi2026")
    assert again.status_code == 201, again.get_json()
    assert again.get_json()["account"]["id"] != public_id


def test_cancellation_needs_a_recent_login(
    client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    assert register_person(client, outbox).status_code == 201
    clock.advance(6 * 60)
    response = csrf_post(client, "/api/v1/account/cancel", {"confirm": True})
    assert response.status_code == 403
    assert response.get_json()["error"] == "reauthentication_required"
    assert response.get_json()["within_minutes"] == 5
    assert client.get("/api/v1/session").status_code == 200  # nothing happened

    # Signing in again (SMS code) opens the window.
    code = send_code(client, outbox, PHONE, "login")
    assert post_json(client, "/api/v1/login/sms", {"phone": PHONE, "code": code}).status_code == 200
    assert csrf_post(client, "/api/v1/account/cancel", {"confirm": True}).status_code == 200


@pytest.mark.parametrize("body", [{"confirm": False}, {}, {"confirm": "yes"}])
def test_cancellation_needs_confirm_true(client: FlaskClient, outbox: Path, body: Any) -> None:
    assert register_person(client, outbox).status_code == 201
    response = csrf_post(client, "/api/v1/account/cancel", body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_request"
    assert client.get("/api/v1/session").status_code == 200


def test_cancellation_is_allowed_while_consent_is_pending(
    app: Flask, client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    from gateway.lifecycle.agreements import get_agreements

    assert register_person(client, outbox).status_code == 201
    get_agreements(app).publish("2027-01", "新版协议", summary="新增注销条款", at=clock.now())
    assert client.get("/api/v1/account/messages").get_json()["error"] == "consent_required"
    assert csrf_post(client, "/api/v1/account/cancel", {"confirm": True}).status_code == 200


# --- operators ------------------------------------------------------------------------------------


@pytest.fixture
def operator(app: Flask, outbox: Path) -> Callable[..., Any]:
    """``certgate`` on the same database, data key and outbox as ``app``."""
    env = {
        "CERTGATE_DATABASE_URL": app.config["DATABASE_URL"],
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
        "CERTGATE_NOTIFY_SMS": f"outbox:{outbox}",
        "CERTGATE_NOTIFY_EMAIL": f"outbox:{outbox}",
    }

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), env=env)

    return run


@pytest.mark.parametrize(
    ("command", "status", "words"),
    [
        ("suspend", "suspended", "暂停"),
        ("terminate", "terminated", "终止"),
        ("freeze", "frozen", "冻结"),
    ],
)
def test_operator_decision_with_reason_is_recorded_audited_and_notified(
    operator: Callable[..., Any],
    app: Flask,
    client: FlaskClient,
    outbox: Path,
    command: str,
    status: str,
    words: str,
) -> None:
    assert register_person(client, outbox).status_code == 201
    public_id = client.get("/api/v1/session").get_json()["account"]["id"]
    result = operator("account", command, public_id, "--reason", "涉嫌冒用他人身份")
    assert result.exit_code == 0, result.output
    assert f"status={status}" in result.output
    assert client.get("/api/v1/session").status_code == 401  # sessions ended
    sent = notices_to(outbox)
    assert sent and words in sent[-1]["text"] and "涉嫌冒用他人身份" in sent[-1]["text"]
    with get_database(app).session() as session:
        record = session.scalars(
            select(AuditRecord).where(
                AuditRecord.account_public_id == public_id, AuditRecord.event == "account_frozen"
            )
        ).one()
    assert status in (record.detail or "") and "reason" in (record.detail or "")
    assert get_audit_log(app).verify() == []


def test_suspend_needs_a_reason(
    operator: Callable[..., Any], client: FlaskClient, outbox: Path
) -> None:
    assert register_person(client, outbox).status_code == 201
    public_id = client.get("/api/v1/session").get_json()["account"]["id"]
    result = operator("account", "suspend", public_id)
    assert result.exit_code == 2
    assert "--reason" in result.output


# --- messages and notices -------------------------------------------------------------------------


def test_password_change_leaves_a_message_and_an_sms(client: FlaskClient, outbox: Path) -> None:
    assert register_person(client, outbox).status_code == 201
    response = csrf_post(
        client,
        "/api/v1/account/password",
        {"current_password": GOOD_PASSWORD, "new_password": "harbour-violet-93"},
    )
    assert response.status_code == 200, response.get_json()
    listed = client.get("/api/v1/account/messages").get_json()
    assert listed["unread"] == 1
    (entry,) = listed["messages"]
    assert entry["kind"] == "password_changed" and entry["read"] is False
    assert "密码" in entry["title"]
    assert any("密码" in m["text"] for m in notices_to(outbox))
    # No personal data in the notice.
    assert all(ID_NUMBER not in m["text"] and "李四" not in m["text"] for m in notices_to(outbox))

    marked = csrf_post(client, "/api/v1/account/messages/read", {"ids": [entry["id"]]})
    assert marked.get_json() == {"ok": True, "marked": 1}
    assert client.get("/api/v1/account/messages").get_json()["unread"] == 0


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": ["1"]}, {"ids": [True]}])
def test_mark_read_needs_ids_or_all(client: FlaskClient, outbox: Path, body: Any) -> None:
    assert register_person(client, outbox).status_code == 201
    response = csrf_post(client, "/api/v1/account/messages/read", body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_request"


def test_messages_need_a_session(client: FlaskClient) -> None:
    response = client.get("/api/v1/account/messages")
    assert response.status_code == 401
    assert response.get_json()["error"] == "credentials_invalid"


def test_sign_in_from_a_new_device_is_noticed(
    client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    assert register_person(client, outbox).status_code == 201
    sign_out(client)
    clock.advance(61)
    code = send_code(client, outbox, PHONE, "login")
    same = post_json(client, "/api/v1/login/sms", {"phone": PHONE, "code": code})
    assert same.status_code == 200
    assert notices_to(outbox) == []  # the browser that registered: nothing new

    sign_out(client)
    clock.advance(61)
    code = send_code(client, outbox, PHONE, "login")
    other = client.post(
        "/api/v1/login/sms",
        json={"phone": PHONE, "code": code},
        headers={"Origin": ORIGIN, "User-Agent": "Mozilla/5.0 (iPhone) Mobile Safari"},
    )
    assert other.status_code == 200
    (notice,) = notices_to(outbox)
    assert "新的设备" in notice["text"]
    kinds = [m["kind"] for m in client.get("/api/v1/account/messages").get_json()["messages"]]
    assert kinds == ["sign_in_new_source"]


# --- certificates: binding from the account page, unbinding, real-name level 2 -----------------


@pytest.fixture
def pki_app(make_app: Callable[..., Flask], test_pki: TestPki) -> Flask:
    return make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])


def bind_body(client: FlaskClient, issued: Any, **overrides: Any) -> dict[str, Any]:
    challenge = get_challenge(client)
    algorithm = algorithm_for(issued.private_key)
    return {
        "challenge_id": challenge["challenge_id"],
        "certificate": der(issued.certificate),
        "chain": [der(c) for c in issued.chain[:-1]],
        "signature": b64(sign(issued.private_key, algorithm, message(challenge))),
        "signature_algorithm": algorithm,
        **overrides,
    }


def enterprise_session(app: Flask, client: FlaskClient, clock: FixedClock, uscc: str) -> str:
    view = get_accounts(app).create_enterprise(
        unified_social_credit_code=uscc,
        name="示例科技有限公司",
        login_name="shili",
        password=GOOD_PASSWORD,
        at=clock.now(),
    )
    response = post_json(
        client, "/api/v1/login/password", {"identifier": "shili", "password": GOOD_PASSWORD}
    )
    assert response.status_code == 200, response.get_json()
    return view.id


def test_unbinding_stops_a_certificate_that_matches_by_credit_code(
    pki_app: Flask, test_pki: TestPki, clock: FixedClock
) -> None:
    uscc = random_uscc()
    client = pki_app.test_client()
    account_id = enterprise_session(pki_app, client, clock, uscc)
    issued = test_pki.issue("enterprise", "示例科技有限公司", uscc=uscc, at=PKI_EPOCH)

    bound = csrf_post(client, "/api/v1/account/certificates/bind", bind_body(client, issued))
    assert bound.status_code == 200, bound.get_json()
    thumbprint = bound.get_json()["thumbprint"]
    assert bound.get_json()["real_name_level"] == 2  # the CA certificate names the same USCC
    listed = client.get("/api/v1/account/certificates").get_json()["certificates"]
    assert [c["value"] for c in listed] == [thumbprint]

    unbound = csrf_post(
        client, "/api/v1/account/certificates/unbind", {"kind": "sha256", "value": thumbprint}
    )
    assert unbound.status_code == 200
    other_browser = pki_app.test_client()
    refused = token_login(other_browser, issued)
    assert refused.status_code == 401
    assert refused.get_json()["error"] == "account_not_found"

    # Bound again from the account page, it signs in again.
    again = csrf_post(client, "/api/v1/account/certificates/bind", bind_body(client, issued))
    assert again.status_code == 200
    assert token_login(other_browser, issued).get_json()["account"]["id"] == account_id
    kinds = [m["kind"] for m in client.get("/api/v1/account/messages").get_json()["messages"]]
    assert kinds.count("certificate_bound") == 2 and "certificate_unbound" in kinds


def test_a_second_certificate_can_be_bound(
    pki_app: Flask, test_pki: TestPki, clock: FixedClock
) -> None:
    uscc = random_uscc()
    client = pki_app.test_client()
    enterprise_session(pki_app, client, clock, uscc)
    first = test_pki.issue("enterprise", "示例科技有限公司", uscc=uscc, at=PKI_EPOCH)
    second = test_pki.issue(
        "enterprise", "示例科技有限公司", uscc=uscc, key="p256", ca="p256", at=PKI_EPOCH
    )
    for issued in (first, second):
        response = csrf_post(client, "/api/v1/account/certificates/bind", bind_body(client, issued))
        assert response.status_code == 200, response.get_json()
    assert len(client.get("/api/v1/account/certificates").get_json()["certificates"]) == 2


def test_binding_another_accounts_certificate_is_refused(
    pki_app: Flask, test_pki: TestPki, clock: FixedClock
) -> None:
    client = pki_app.test_client()
    enterprise_session(pki_app, client, clock, random_uscc())
    someone = random_id_card_number()
    get_accounts(pki_app).create_person(real_name="赵六", id_card_number=someone, at=clock.now())
    issued = test_pki.issue("person", "赵六", id_number=someone, at=PKI_EPOCH)
    response = csrf_post(client, "/api/v1/account/certificates/bind", bind_body(client, issued))
    assert response.status_code == 409
    assert response.get_json()["error"] == "certificate_bound_elsewhere"
    assert client.get("/api/v1/account/certificates").get_json()["certificates"] == []


def test_binding_needs_a_fresh_signature(
    pki_app: Flask, test_pki: TestPki, clock: FixedClock
) -> None:
    client = pki_app.test_client()
    enterprise_session(pki_app, client, clock, random_uscc())
    issued = test_pki.issue("enterprise", "示例科技有限公司", uscc=random_uscc(), at=PKI_EPOCH)
    body = bind_body(client, issued)
    assert csrf_post(client, "/api/v1/account/certificates/bind", body).status_code == 200
    replay = csrf_post(client, "/api/v1/account/certificates/bind", body)
    assert replay.get_json()["error"] in ("challenge_unknown", "challenge_used")
    forged = bind_body(client, issued, signature=b64(b"\x00" * 256))
    response = csrf_post(client, "/api/v1/account/certificates/bind", forged)
    assert response.get_json()["error"] == "signature_invalid"


def test_operator_sets_real_name_level(
    operator: Callable[..., Any], app: Flask, client: FlaskClient, outbox: Path
) -> None:
    assert register_person(client, outbox).status_code == 201
    public_id = client.get("/api/v1/session").get_json()["account"]["id"]
    result = operator("account", "set-real-name-level", public_id, "2", "--reason", "柜台核验")
    assert result.exit_code == 0, result.output
    assert "real_name_level=2" in result.output
    assert client.get("/api/v1/account").get_json()["account"]["real_name_level"] == 2
    with get_database(app).session() as session:
        detail = session.scalars(
            select(AuditRecord.detail).where(AuditRecord.event == "real_name_level_set")
        ).one()
    assert "1 -> 2" in (detail or "") and "柜台核验" in (detail or "")


def test_development_verifier_says_it_checks_nothing(
    app: Flask, make_app: Callable[..., Flask]
) -> None:
    from gateway.lifecycle.realname import get_identity_verifier

    assert get_identity_verifier(app) is None  # outside development mode: none until plugged in
    verifier = get_identity_verifier(make_app(DEV_MODE=True))
    assert verifier is not None and verifier.development
    answer = verifier.verify_person("李四", ID_NUMBER)
    assert answer.consistent and "no real check" in answer.source
