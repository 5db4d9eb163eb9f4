"""QR-code login through its API: every state the browser hears, every error code, the secret
cookie that alone redeems a ticket, single use across threads, long polls and server-sent
events, limits and the audit trail."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway import ConfigError, create_app
from gateway.accounts import AccountService, get_accounts
from gateway.audit import get_audit_log
from gateway.clock import FixedClock
from tests.qr.conftest import ORIGIN, Phone, post_json, sign_in_phone

SESSION_COOKIE = "__Host-certgate_session"
QR_COOKIE = "__Host-certgate_qr"
CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/142.0.0.0 Safari/537.36"
)


def set_cookies(response: Any) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}


def new_ticket(browser: FlaskClient) -> dict[str, Any]:
    answer = browser.post("/api/v1/login/qr", headers={"Origin": ORIGIN, "User-Agent": CHROME_UA})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def state(browser: FlaskClient, ticket: str, query: str = "") -> Any:
    return browser.get(f"/api/v1/login/qr/{ticket}{query}")


def session_of(browser: FlaskClient) -> Any:
    return browser.get("/api/v1/session")


def scanned(phone: Phone, payload: str) -> dict[str, Any]:
    answer = phone.post("/api/v1/mobile/qr/scan", {"qr_payload": payload})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_scan_confirm_signs_in_the_requesting_browser_once(
    app: Flask, client: FlaskClient, phone: Phone, person: Any, clock: FixedClock
) -> None:
    created = client.post("/api/v1/login/qr", headers={"Origin": ORIGIN, "User-Agent": CHROME_UA})
    assert created.status_code == 201
    body = created.get_json()
    cookie = set_cookies(created)[QR_COOKIE]
    assert "HttpOnly" in cookie and "Secure" in cookie and "Path=/" in cookie
    assert body["qr_payload"].startswith(f"{ORIGIN}/m/#qr=")
    assert body["ticket"] not in body["qr_payload"]  # the QR code does not name the ticket
    assert body["qr_image"].startswith("data:image/svg+xml")
    assert state(client, body["ticket"]).get_json()["state"] == "waiting"

    shown = scanned(phone, body["qr_payload"])
    assert shown["ticket"] == body["ticket"]
    assert shown["site"] == ORIGIN
    assert shown["address"] == "127.0.0.1"
    assert shown["browser"] == "Chrome 142 · Windows"
    assert shown["requested_at"] == clock.now().isoformat().replace("+00:00", "Z")
    assert state(client, body["ticket"]).get_json()["state"] == "scanned"
    assert session_of(client).status_code == 401

    confirmed = phone.post("/api/v1/mobile/qr/confirm", {"ticket": body["ticket"]})
    assert confirmed.get_json() == {"ok": True, "state": "confirmed"}
    answer = state(client, body["ticket"])
    assert answer.status_code == 200
    result = answer.get_json()
    assert result["state"] == "confirmed"
    assert result["amr"] == ["mca"] and result["acr"] == "urn:certgate:loa:1"
    assert result["account"]["id"] == person.id
    assert SESSION_COOKIE in set_cookies(answer)
    who = session_of(client).get_json()
    assert who["account"]["id"] == person.id
    assert who["amr"] == ["mca"] and who["acr"] == "urn:certgate:loa:1"

    again = state(client, body["ticket"])
    assert again.status_code == 409
    assert again.get_json()["error"] == "qr_ticket_used"
    assert SESSION_COOKIE not in set_cookies(again)


def test_someone_who_saw_the_qr_code_or_the_ticket_gets_nothing(
    app: Flask, client: FlaskClient, phone: Phone
) -> None:
    body = new_ticket(client)
    onlooker = app.test_client()
    for query in ("", "?wait=1"):
        answer = state(onlooker, body["ticket"], query)
        assert answer.status_code == 404
        assert answer.get_json()["error"] == "qr_ticket_unknown"
    # The onlooker has a secret cookie of its own (its own ticket): still not this ticket's.
    new_ticket(onlooker)
    scanned(phone, body["qr_payload"])
    phone.post("/api/v1/mobile/qr/confirm", {"ticket": body["ticket"]})
    answer = state(onlooker, body["ticket"])
    assert answer.get_json()["error"] == "qr_ticket_unknown"
    assert SESSION_COOKIE not in set_cookies(answer)
    assert session_of(onlooker).status_code == 401
    assert state(client, body["ticket"]).status_code == 200  # the browser that asked still can


def test_cancel_reaches_the_browser_and_nothing_more_can_happen(
    client: FlaskClient, phone: Phone
) -> None:
    body = new_ticket(client)
    scanned(phone, body["qr_payload"])
    cancelled = phone.post("/api/v1/mobile/qr/cancel", {"ticket": body["ticket"]})
    assert cancelled.get_json() == {"ok": True, "state": "cancelled"}
    assert state(client, body["ticket"]).get_json()["state"] == "cancelled"
    for step in ("confirm", "cancel"):
        answer = phone.post(f"/api/v1/mobile/qr/{step}", {"ticket": body["ticket"]})
        assert (answer.status_code, answer.get_json()["error"]) == (409, "qr_ticket_used")
    assert session_of(client).status_code == 401


def test_expiry(client: FlaskClient, phone: Phone, clock: FixedClock) -> None:
    body = new_ticket(client)
    clock.advance(119)
    assert state(client, body["ticket"]).get_json()["state"] == "waiting"
    clock.advance(1)  # qr_ttl, 120 s by default
    assert state(client, body["ticket"]).get_json()["state"] == "expired"
    answer = phone.post("/api/v1/mobile/qr/scan", {"qr_payload": body["qr_payload"]})
    assert (answer.status_code, answer.get_json()["error"]) == (410, "qr_ticket_expired")

    # Scanned and confirmed in time, but the browser asks too late: no login.
    late = new_ticket(client)
    scanned(phone, late["qr_payload"])
    clock.advance(60)
    phone.post("/api/v1/mobile/qr/confirm", {"ticket": late["ticket"]})
    clock.advance(60)
    answer = state(client, late["ticket"])
    assert answer.get_json()["state"] == "expired"
    assert SESSION_COOKIE not in set_cookies(answer)
    # And a phone deciding too late is told so.
    slow = new_ticket(client)
    scanned(phone, slow["qr_payload"])
    clock.advance(120)
    answer = phone.post("/api/v1/mobile/qr/confirm", {"ticket": slow["ticket"]})
    assert (answer.status_code, answer.get_json()["error"]) == (410, "qr_ticket_expired")


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("https://evil.example/m/#qr=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "other site"),
        (f"{ORIGIN}/m/#qr=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "no such code"),
        ("certgate-qr-anything", "not a payload"),
    ],
)
def test_scan_of_a_foreign_or_unknown_code(phone: Phone, payload: str, why: str) -> None:
    answer = phone.post("/api/v1/mobile/qr/scan", {"qr_payload": payload})
    assert (answer.status_code, answer.get_json()["error"]) == (404, "qr_ticket_unknown"), why


def test_scanned_once_and_decided_only_by_the_session_that_scanned(
    app: Flask, client: FlaskClient, phone: Phone, accounts: AccountService, clock: FixedClock
) -> None:
    accounts.create_person(
        real_name="李四",
        id_card_number="360426199101010071",
        login_name="other-phone",
        password="correct horse battery",
        at=clock.now(),
    )
    other = sign_in_phone(app, "other-phone")
    body = new_ticket(client)
    # Before anyone scans, no phone may decide.
    answer = phone.post("/api/v1/mobile/qr/confirm", {"ticket": body["ticket"]})
    assert (answer.status_code, answer.get_json()["error"]) == (404, "qr_ticket_unknown")
    scanned(phone, body["qr_payload"])
    for who in (phone, other):
        answer = who.post("/api/v1/mobile/qr/scan", {"qr_payload": body["qr_payload"]})
        assert (answer.status_code, answer.get_json()["error"]) == (409, "qr_ticket_used")
    answer = other.post("/api/v1/mobile/qr/confirm", {"ticket": body["ticket"]})
    assert (answer.status_code, answer.get_json()["error"]) == (404, "qr_ticket_unknown")
    assert state(client, body["ticket"]).get_json()["state"] == "scanned"


def test_phone_routes_need_a_session_and_its_csrf_token(
    app: Flask, client: FlaskClient, phone: Phone
) -> None:
    body = new_ticket(client)
    stranger = app.test_client()
    answer = post_json(stranger, "/api/v1/mobile/qr/scan", {"qr_payload": body["qr_payload"]})
    assert (answer.status_code, answer.get_json()["error"]) == (401, "credentials_invalid")
    answer = post_json(phone.client, "/api/v1/mobile/qr/scan", {"qr_payload": body["qr_payload"]})
    assert (answer.status_code, answer.get_json()["error"]) == (400, "bad_request")
    answer = phone.post(
        "/api/v1/mobile/qr/scan", {"qr_payload": body["qr_payload"]}, Origin="https://evil.example"
    )
    assert (answer.status_code, answer.get_json()["error"]) == (401, "origin_mismatch")
    assert state(client, body["ticket"]).get_json()["state"] == "waiting"


def test_a_frozen_account_is_not_signed_in(
    app: Flask, client: FlaskClient, phone: Phone, person: Any, clock: FixedClock
) -> None:
    body = new_ticket(client)
    scanned(phone, body["qr_payload"])
    phone.post("/api/v1/mobile/qr/confirm", {"ticket": body["ticket"]})
    get_accounts(app).set_status(person.id, "frozen", at=clock.now())
    answer = state(client, body["ticket"])
    assert (answer.status_code, answer.get_json()["error"]) == (403, "account_disabled")
    assert session_of(client).status_code == 401


def test_tickets_are_limited_per_address(make_app: Any) -> None:
    app = make_app(QR_ADDRESS_LIMIT=2)
    browser = app.test_client()
    new_ticket(browser)
    new_ticket(browser)
    answer = browser.post("/api/v1/login/qr", headers={"Origin": ORIGIN})
    assert (answer.status_code, answer.get_json()["error"]) == (429, "rate_limited")
    assert int(answer.headers["Retry-After"]) > 0


@pytest.mark.parametrize("query", ["?wait=31", "?wait=-1", "?wait=x", "?since=done"])
def test_bad_poll_parameters(client: FlaskClient, query: str) -> None:
    body = new_ticket(client)
    answer = state(client, body["ticket"], query)
    assert (answer.status_code, answer.get_json()["error"]) == (400, "bad_request")


def test_long_poll_answers_when_the_phone_scans(client: FlaskClient, phone: Phone) -> None:
    body = new_ticket(client)
    timer = threading.Timer(0.3, scanned, (phone, body["qr_payload"]))
    started = time.monotonic()
    timer.start()
    try:
        answer = state(client, body["ticket"], "?wait=20&since=waiting")
    finally:
        timer.join()
    assert answer.get_json()["state"] == "scanned"
    assert time.monotonic() - started < 5
    # Nothing changes: the answer comes when the wait is over.
    started = time.monotonic()
    assert state(client, body["ticket"], "?wait=1&since=scanned").get_json()["state"] == "scanned"
    assert time.monotonic() - started >= 1


def test_server_sent_events_follow_the_ticket(client: FlaskClient, phone: Phone) -> None:
    body = new_ticket(client)
    answer = client.get(
        f"/api/v1/login/qr/{body['ticket']}",
        headers={"Accept": "text/event-stream"},
        buffered=False,
    )
    assert answer.mimetype == "text/event-stream"
    events: list[str] = []

    def phone_acts() -> None:
        scanned(phone, body["qr_payload"])
        time.sleep(0.3)
        phone.post("/api/v1/mobile/qr/confirm", {"ticket": body["ticket"]})

    timer = threading.Timer(0.3, phone_acts)
    timer.start()
    try:
        for chunk in answer.response:
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            if text.startswith("event: state"):
                events.append(json.loads(text.split("data: ", 1)[1])["state"])
    finally:
        timer.join()
        answer.close()
    assert events == ["waiting", "scanned", "confirmed"]
    # The stream cannot set a cookie: the JSON answer that follows starts the session.
    assert session_of(client).status_code == 401
    assert state(client, body["ticket"]).get_json()["amr"] == ["mca"]
    assert session_of(client).status_code == 200


def test_one_session_when_two_answers_race(app: Flask, client: FlaskClient, phone: Phone) -> None:
    body = new_ticket(client)
    scanned(phone, body["qr_payload"])
    phone.post("/api/v1/mobile/qr/confirm", {"ticket": body["ticket"]})
    secret = client.get_cookie(QR_COOKIE)
    assert secret is not None
    tabs = [app.test_client() for _ in range(4)]
    for tab in tabs:
        tab.set_cookie(QR_COOKIE, secret.value)
    codes: list[int] = []
    barrier = threading.Barrier(len(tabs))

    def ask(tab: FlaskClient) -> None:
        barrier.wait()
        codes.append(state(tab, body["ticket"]).status_code)

    threads = [threading.Thread(target=ask, args=(tab,)) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200, 409, 409, 409]


def test_every_state_change_is_audited(app: Flask, client: FlaskClient, phone: Phone) -> None:
    first = new_ticket(client)
    scanned(phone, first["qr_payload"])
    phone.post("/api/v1/mobile/qr/confirm", {"ticket": first["ticket"]})
    state(client, first["ticket"])
    second = new_ticket(client)
    scanned(phone, second["qr_payload"])
    phone.post("/api/v1/mobile/qr/cancel", {"ticket": second["ticket"]})
    records = [
        (r.event, r.method, r.outcome) for r in get_audit_log(app).records() if r.method == "qr"
    ]
    assert records == [
        ("qr_login", "qr", "waiting"),
        ("qr_login", "qr", "scanned"),
        ("qr_login", "qr", "confirmed"),
        ("login", "qr", "ok"),
        ("qr_login", "qr", "waiting"),
        ("qr_login", "qr", "scanned"),
        ("qr_login", "qr", "cancelled"),
    ]
    assert get_audit_log(app).verify() == []


@pytest.mark.parametrize("ttl", [0, 301, "120"])
def test_qr_ttl_is_checked_at_start_up(base_config: dict[str, Any], ttl: Any) -> None:
    with pytest.raises(ConfigError, match="qr_ttl"):
        create_app({**base_config, "QR_TTL": ttl})


def test_an_sso_client_asking_for_a_usb_key_sends_a_scan_session_to_the_key_login(
    app: Flask, client: FlaskClient, phone: Phone, person: Any, clock: FixedClock
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from gateway.sso.clients import get_clients

    callback = "https://app.example.cn/callback"
    made = get_clients(app).add(
        "示例应用", protocol="oidc", at=clock.now(), redirect_uris=(callback,), consent="skip"
    )
    body = new_ticket(client)
    scanned(phone, body["qr_payload"])
    phone.post("/api/v1/mobile/qr/confirm", {"ticket": body["ticket"]})
    assert state(client, body["ticket"]).get_json()["acr"] == "urn:certgate:loa:1"

    def authorize(**extra: str) -> Any:
        query = {"response_type": "code", "client_id": made.client.client_id,
                 "redirect_uri": callback, "scope": "openid", "state": "s1",
                 "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                 "code_challenge_method": "S256", **extra}  # fmt: skip
        return client.get("/oauth/authorize", query_string=query)

    # A client that asks for nothing more gets its code from the scan session ...
    assert "code=" in authorize().headers["Location"]
    # ... one that asks for a hardware key with PIN sends the person to sign in again.
    stepped = authorize(acr_values="urn:certgate:loa:4")
    assert stepped.status_code == 302
    login = stepped.headers["Location"]
    assert login.startswith("/login?")
    assert parse_qs(urlsplit(login).query)["acr"] == ["urn:certgate:loa:4"]
