"""The single sign-on tables purged by the gateway's housekeeping (gateway/sso/housekeeping.py),
on a really served gateway whose clock the tests move: what expired long enough ago is gone
after a login request runs the housekeeping, and what still lives keeps working — an access
token at userinfo, a refresh token, a reused code's revocation, a CAS application's single
logout, the account page's applications."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from gateway.sso.clients import NewClient, get_clients
from gateway.sso.models import (
    DELIVERY_DELIVERED,
    DELIVERY_PENDING,
    CasTicket,
    LogoutDelivery,
    SsoAccessToken,
    SsoAuthorizationCode,
    SsoParticipation,
    SsoRefreshToken,
)
from gateway.storage.database import get_database
from tests.sso.conftest import APP_CALLBACK, Browser, Gateway, query_of
from tests.sso.relying_parties import (
    LogoutReceiver,
    cas_ticket,
    cas_validate,
    csrf_post,
    saml_session_index,
)
from tests.sso.test_single_logout import (  # noqa: F401 (the single logout tests' fixtures)
    deliver,
    outbox,
    receiver,
    sign_in_to_both,
    slo_gateway,
)

MINUTE = 60
DAY = 24 * 60 * MINUTE


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()


def _stored(gateway: Gateway, model: Any, key: str) -> bool:
    with get_database(gateway.app).session() as session:
        return session.get(model, _hash(key)) is not None


def _count(gateway: Gateway, model: Any, *where: Any) -> int:
    with get_database(gateway.app).session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _run_housekeeping(gateway: Gateway) -> None:
    """A login request from someone else: it runs the housekeeping (at most every 5 minutes)."""
    answer = gateway.browser().api("/api/v1/login/challenge", {})
    assert answer.status_code == 200, answer.text


def _code(gateway: Gateway, browser: Browser, made: NewClient, scope: str = "openid") -> str:
    answer = browser.get(
        "/oauth/authorize",
        response_type="code",
        client_id=made.client.client_id,
        redirect_uri=APP_CALLBACK,
        scope=scope,
        state="s1",
    )
    assert answer.status_code == 302, answer.text
    return query_of(answer.headers["Location"])["code"]


def _token(gateway: Gateway, made: NewClient, **data: str) -> requests.Response:
    return requests.post(
        gateway.url + "/oauth/token",
        data=data,
        auth=(made.client.client_id, made.client_secret or ""),
        timeout=10,
    )


def _exchange(gateway: Gateway, made: NewClient, code: str) -> requests.Response:
    return _token(
        gateway, made, grant_type="authorization_code", code=code, redirect_uri=APP_CALLBACK
    )


def _refresh(gateway: Gateway, made: NewClient, refresh_token: str) -> requests.Response:
    return _token(gateway, made, grant_type="refresh_token", refresh_token=refresh_token)


def _userinfo(gateway: Gateway, access_token: str) -> int:
    answer = requests.get(
        gateway.url + "/oauth/userinfo",
        headers={"Authorization": "Bearer " + access_token},
        timeout=10,
    )
    return answer.status_code


def test_codes_and_tickets_go_some_minutes_after_expiry_and_live_tokens_keep_working(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="certgate.sso.housekeeping")
    made = gateway.client(consent="skip")
    get_clients(gateway.app).add(
        "工程监管平台",
        protocol="cas",
        at=gateway.clock.now(),
        services=("https://cas.example.cn/",),
    )
    browser = gateway.browser()
    browser.password_login()  # the housekeeping's first run
    exchanged = _code(gateway, browser, made)
    tokens = _exchange(gateway, made, exchanged).json()
    never_exchanged = _code(gateway, browser, made)
    never_validated = cas_ticket(gateway, browser, "https://cas.example.cn/app")
    assert _stored(gateway, SsoAuthorizationCode, exchanged)
    assert _stored(gateway, CasTicket, never_validated)

    gateway.clock.advance(12 * MINUTE)  # past their 60 s and the 10 minutes kept after
    fresh = _code(gateway, browser, made)
    _run_housekeeping(gateway)

    assert not _stored(gateway, SsoAuthorizationCode, exchanged)
    assert not _stored(gateway, SsoAuthorizationCode, never_exchanged)
    assert not _stored(gateway, CasTicket, never_validated)
    # What still lives stays and works.
    assert _stored(gateway, SsoAuthorizationCode, fresh)
    assert _stored(gateway, SsoAccessToken, tokens["access_token"])
    assert _userinfo(gateway, tokens["access_token"]) == 200
    assert _exchange(gateway, made, fresh).status_code == 200

    # The counts are logged, never who they were for.
    logged = [r.getMessage() for r in caplog.records if r.name == "certgate.sso.housekeeping"]
    assert logged == [
        "single sign-on housekeeping removed sso_authorization_codes 2, sso_access_tokens 0, "
        "sso_refresh_tokens 0, cas_tickets 1, logout_deliveries 0, sso_participations 0"
    ]
    for personal in (gateway.account.id, "张三", gateway.id_card_number, "zhangsan"):
        assert personal not in logged[0]


def test_a_code_reused_within_the_minutes_kept_still_revokes_its_tokens(gateway: Gateway) -> None:
    made = gateway.client(consent="skip")
    other = gateway.client("另一个应用", consent="skip")
    browser = gateway.browser()
    browser.password_login()
    expired = _code(gateway, browser, other)  # never exchanged
    gateway.clock.advance(3 * MINUTE)
    code = _code(gateway, browser, made)
    tokens = _exchange(gateway, made, code).json()
    gateway.clock.advance(8 * MINUTE + 2)  # the code expired 7 minutes ago, the other 10 ago
    _run_housekeeping(gateway)
    assert not _stored(gateway, SsoAuthorizationCode, expired)
    assert _stored(gateway, SsoAuthorizationCode, code)

    assert _userinfo(gateway, tokens["access_token"]) == 200
    replayed = _exchange(gateway, made, code)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
    assert _userinfo(gateway, tokens["access_token"]) == 401  # what the code gave, revoked


def test_expired_access_tokens_go_and_refresh_tokens_go_with_their_whole_family(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    # Sessions that outlive the tokens, so nothing here ends by single logout.
    gateway = make_gateway(SESSION_IDLE_TIMEOUT=60 * DAY, SESSION_ABSOLUTE_TIMEOUT=60 * DAY)
    made = gateway.client(consent="skip")
    browser = gateway.browser()
    browser.password_login()
    first = _exchange(gateway, made, _code(gateway, browser, made, "openid offline_access")).json()
    gateway.clock.advance(30 * MINUTE)
    second = _refresh(gateway, made, first["refresh_token"]).json()
    gateway.clock.advance(45 * MINUTE)  # the first access token expired, the second lives
    _run_housekeeping(gateway)

    assert not _stored(gateway, SsoAccessToken, first["access_token"])
    assert _userinfo(gateway, second["access_token"]) == 200
    # The used refresh token stays while its family lives; the live one still refreshes.
    assert _stored(gateway, SsoRefreshToken, first["refresh_token"])
    third = _refresh(gateway, made, second["refresh_token"])
    assert third.status_code == 200, third.text

    # A family whose every token expired leaves nothing (a later login's family stays).
    gateway.clock.advance(31 * DAY)
    browser.password_login()  # runs the housekeeping, and signs in anew
    later = _exchange(gateway, made, _code(gateway, browser, made, "openid offline_access")).json()
    family = [first["refresh_token"], second["refresh_token"], third.json()["refresh_token"]]
    assert [_stored(gateway, SsoRefreshToken, token) for token in family] == [False] * 3
    assert _count(gateway, SsoRefreshToken) == 1 == _count(gateway, SsoAccessToken)
    assert _refresh(gateway, made, later["refresh_token"]).status_code == 200


def test_a_cas_ticket_stays_while_single_logout_needs_it(
    slo_gateway: Gateway,  # noqa: F811 (the fixture imported above)
    receiver: LogoutReceiver,  # noqa: F811
) -> None:
    signed = sign_in_to_both(slo_gateway, receiver)
    # A ticket of another session, never validated: nothing will ever name it.
    other = slo_gateway.browser()
    other.password_login()
    stray = cas_ticket(slo_gateway, other, signed.cas_service)
    slo_gateway.clock.advance(12 * MINUTE)
    _run_housekeeping(slo_gateway)
    assert not _stored(slo_gateway, CasTicket, stray)
    assert _stored(slo_gateway, CasTicket, signed.cas_ticket)

    # The session ends: the CAS application is still told, at the service URL, of its ticket.
    answer = csrf_post(signed.browser, "/api/v1/logout", {})
    assert answer.status_code == 200, answer.text
    assert deliver(slo_gateway) == 2
    told = [r for r in receiver.received if "logoutRequest" in r.form]
    assert [r.path for r in told] == ["/cas-app/login"]
    assert saml_session_index(told[0].form["logoutRequest"])[1] == signed.cas_ticket
    # Told, the ticket is no longer needed.
    slo_gateway.clock.advance(6 * MINUTE)
    _run_housekeeping(slo_gateway)
    assert not _stored(slo_gateway, CasTicket, signed.cas_ticket)


def test_finished_logout_messages_and_older_participations_go_after_seven_days(
    slo_gateway: Gateway,  # noqa: F811 (the fixture imported above)
    receiver: LogoutReceiver,  # noqa: F811
) -> None:
    signed = sign_in_to_both(slo_gateway, receiver)
    first_day = slo_gateway.clock.now()
    assert csrf_post(signed.browser, "/api/v1/logout", {}).status_code == 200
    assert deliver(slo_gateway) == 2
    slo_gateway.clock.advance(DAY)
    # The next day: signed in again to the CAS application only; that session expires unnoticed.
    browser = slo_gateway.browser()
    browser.password_login()
    ticket = cas_ticket(slo_gateway, browser, signed.cas_service)
    assert cas_validate(slo_gateway, signed.cas_service, ticket).failure_code is None
    second_day = slo_gateway.clock.now()
    assert _count(slo_gateway, SsoParticipation) == 3

    slo_gateway.clock.advance(7 * DAY)
    # A login runs the housekeeping: the second session's logout is queued (pending, kept), the
    # first session's delivered messages (8 days old) go, and of its participations the CAS one,
    # superseded by the second day's; the OpenID Connect one is the account's last there.
    person = slo_gateway.browser()
    person.password_login()
    assert _count(slo_gateway, LogoutDelivery, LogoutDelivery.state == DELIVERY_DELIVERED) == 0
    assert _count(slo_gateway, LogoutDelivery, LogoutDelivery.state == DELIVERY_PENDING) == 1
    assert _count(slo_gateway, SsoParticipation) == 2

    # The account page lists both applications, each last used when it was.
    listed = person.get("/api/v1/account/applications").json()["applications"]

    def iso(at: Any) -> str:
        return str(at.isoformat().replace("+00:00", "Z"))

    assert [(a["client_id"], a["last_used_at"], a["signed_in"]) for a in listed] == [
        (signed.cas_client_id, iso(second_day), False),
        (signed.oidc_client_id, iso(first_day), False),
    ]
