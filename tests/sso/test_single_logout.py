"""Single logout against the served gateway: a real local HTTP server stands in for each
application and receives what the specifications promise — an OpenID Connect back-channel
``logout_token`` (verified against the JWKS with joserfc, claims checked per Back-Channel Logout
1.0 §2.4 and §2.6) and a CAS ``logoutRequest`` form field (the SAML read as a CAS client reads
it) — whichever way the session ended. The delivery worker's passes are driven from the test
(``SSO_LOGOUT_WORKER = false``), except where the background thread itself is under test."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from click.testing import CliRunner
from joserfc import jwt
from sqlalchemy import select

from gateway.sso.clients import get_clients
from gateway.sso.logout import BACKCHANNEL_EVENT, get_logout_worker
from gateway.sso.models import LogoutDelivery
from gateway.storage.database import get_database
from gateway.storage.models import AuditRecord
from tests.gateway.conftest import DATA_KEY
from tests.sso.conftest import APP_CALLBACK, Browser, Gateway, query_of
from tests.sso.relying_parties import (
    LogoutReceiver,
    cas_ticket,
    cas_validate,
    closed_port_url,
    csrf_post,
    logout_receiver,
    saml_session_index,
)


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    with logout_receiver() as started:
        yield started


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox.jsonl"


@pytest.fixture
def slo_gateway(
    make_gateway: Callable[..., Gateway], outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> Gateway:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    return make_gateway(SSO_LOGOUT_WORKER=False, NOTIFY_SMS=f"outbox:{outbox}")


@dataclass
class SignedIn:
    browser: Browser
    oidc_client_id: str
    access_token: str
    sid: str
    cas_client_id: str
    cas_service: str
    cas_ticket: str


def sign_in_to_both(gateway: Gateway, receiver: LogoutReceiver, backchannel: str = "") -> SignedIn:
    """One gateway session; an OpenID Connect application and a CAS application sign in."""
    clients = get_clients(gateway.app)
    oidc = clients.add(
        "OIDC 应用",
        protocol="oidc",
        at=gateway.clock.now(),
        redirect_uris=(APP_CALLBACK,),
        backchannel_logout_uri=backchannel or receiver.url + "/backchannel-logout",
        consent="skip",
    )
    service_prefix = receiver.url + "/cas-app"
    cas = clients.add(
        "CAS 应用", protocol="cas", at=gateway.clock.now(), services=(service_prefix,)
    )
    browser = gateway.browser()
    browser.password_login()
    verifier = secrets.token_urlsafe(48)
    answer = browser.get(
        "/oauth/authorize",
        response_type="code",
        client_id=oidc.client.client_id,
        redirect_uri=APP_CALLBACK,
        scope="openid",
        state="s",
        code_challenge=create_s256_code_challenge(verifier),
        code_challenge_method="S256",
    )
    code = query_of(answer.headers["Location"])["code"]
    tokens = requests.post(
        gateway.url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP_CALLBACK,
            "code_verifier": verifier,
        },
        auth=(oidc.client.client_id, oidc.client_secret or ""),
        timeout=10,
    ).json()
    id_token = gateway.verify_id_token(tokens["id_token"], oidc.client.client_id, None)
    service = service_prefix + "/login"
    ticket = cas_ticket(gateway, browser, service)
    assert cas_validate(gateway, service, ticket).user == gateway.account.id
    return SignedIn(
        browser,
        oidc.client.client_id,
        tokens["access_token"],
        id_token["sid"],
        cas.client.client_id,
        service,
        ticket,
    )


def deliver(gateway: Gateway, now: datetime | None = None) -> int:
    return get_logout_worker(gateway.app).run_once(now or gateway.clock.now())


def check_both_told(gateway: Gateway, receiver: LogoutReceiver, signed: SignedIn) -> None:
    """What each application received is what the specifications promise."""
    tokens = receiver.forms("logout_token")
    assert len(tokens) == 1, receiver.received
    posted = [r for r in receiver.received if "logout_token" in r.form][0]
    assert posted.path == "/backchannel-logout"
    assert posted.content_type == "application/x-www-form-urlencoded"
    token = jwt.decode(tokens[0], gateway.jwks(), algorithms=["RS256", "ES256"])
    assert token.header["typ"] == "logout+jwt"
    claims = token.claims
    jwt.JWTClaimsRegistry(
        now=int(gateway.clock.now().timestamp()),
        iss={"essential": True, "value": gateway.url},
        aud={"essential": True, "value": signed.oidc_client_id},
        iat={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    ).validate(claims)
    assert claims["sub"] == gateway.account.id
    assert claims["sid"] == signed.sid
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert "nonce" not in claims  # §2.4: a logout token must not carry one
    requests_ = receiver.forms("logoutRequest")
    assert len(requests_) == 1
    cas_post = [r for r in receiver.received if "logoutRequest" in r.form][0]
    assert cas_post.path == "/cas-app/login"  # the service URL the ticket was issued for
    name_id, session_index = saml_session_index(requests_[0])
    assert session_index == signed.cas_ticket
    assert name_id == gateway.account.id
    # The tokens issued in the session are revoked.
    userinfo = requests.get(
        gateway.url + "/oauth/userinfo",
        headers={"Authorization": f"Bearer {signed.access_token}"},
        timeout=10,
    )
    assert userinfo.status_code == 401


def test_logout_tells_every_application_of_the_session(
    slo_gateway: Gateway, receiver: LogoutReceiver
) -> None:
    signed = sign_in_to_both(slo_gateway, receiver)
    assert csrf_post(signed.browser, "/api/v1/logout", {}).status_code == 200
    assert deliver(slo_gateway) == 2
    check_both_told(slo_gateway, receiver, signed)
    # Told once: another pass, another logout path, nothing more.
    assert deliver(slo_gateway, slo_gateway.clock.now() + timedelta(hours=1)) == 0
    assert len(receiver.received) == 2


def test_the_pulled_key_path_and_cas_logout_tell_them_too(
    slo_gateway: Gateway, receiver: LogoutReceiver
) -> None:
    """Pulling the USB key makes the account page post /api/v1/logout (web/static/js/account.js);
    /cas/logout ends the session the same way."""
    script = Path(__file__).parents[2] / "web" / "static" / "js" / "account.js"
    assert '"/api/v1/logout"' in script.read_text(encoding="utf-8")
    signed = sign_in_to_both(slo_gateway, receiver)
    assert signed.browser.get("/cas/logout").status_code == 302
    deliver(slo_gateway)
    check_both_told(slo_gateway, receiver, signed)


def test_expiry_tells_them(slo_gateway: Gateway, receiver: LogoutReceiver) -> None:
    signed = sign_in_to_both(slo_gateway, receiver)
    slo_gateway.clock.advance(31 * 60)  # past the 30 minutes' idle timeout
    # Any later login request runs the housekeeping, which finds the expired session.
    other = slo_gateway.browser()
    assert other.api("/api/v1/login/challenge", {}).status_code == 200
    assert deliver(slo_gateway) == 2
    check_both_told(slo_gateway, receiver, signed)
    reasons = _reasons(slo_gateway)
    assert reasons == {"expired"}


def test_a_password_reset_tells_them(
    slo_gateway: Gateway, receiver: LogoutReceiver, outbox: Path
) -> None:
    signed = sign_in_to_both(slo_gateway, receiver)
    stranger = slo_gateway.browser()
    sent = stranger.api(
        "/api/v1/codes", {"channel": "sms", "to": "13800138000", "purpose": "reset"}
    )
    assert sent.status_code == 200, sent.text
    code = json.loads(outbox.read_text(encoding="utf-8").splitlines()[-1])["code"]
    reset = stranger.api(
        "/api/v1/password/reset",
        {"phone": "13800138000", "code": code, "new_password": "Gx7-quartz-lantern-2026"},
    )
    assert reset.status_code == 200, reset.text
    deliver(slo_gateway)
    check_both_told(slo_gateway, receiver, signed)
    assert _reasons(slo_gateway) == {"password_reset"}


def test_an_operators_freeze_tells_them(
    slo_gateway: Gateway,
    receiver: LogoutReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.cli import main

    signed = sign_in_to_both(slo_gateway, receiver)
    monkeypatch.chdir(tmp_path)
    env = {
        "CERTGATE_DATABASE_URL": slo_gateway.app.config["DATABASE_URL"],
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": slo_gateway.url,
    }
    result = CliRunner().invoke(
        main,
        ["account", "freeze", "zhangsan", "--reason", "核查中"],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    # The command queued at the system clock; the serving gateway's worker delivers after it.
    slo_gateway.clock.at = max(slo_gateway.clock.now(), datetime.now(UTC)) + timedelta(seconds=1)
    deliver(slo_gateway)
    check_both_told(slo_gateway, receiver, signed)
    assert _reasons(slo_gateway) == {"account_frozen"}


def _reasons(gateway: Gateway) -> set[str | None]:
    with get_database(gateway.app).session() as session:
        return set(session.scalars(select(LogoutDelivery.reason)).all())


def _deliveries(gateway: Gateway) -> list[LogoutDelivery]:
    with get_database(gateway.app).session() as session:
        return list(session.scalars(select(LogoutDelivery).order_by(LogoutDelivery.id)).all())


def test_a_client_that_is_down_is_retried_with_back_off_and_blocks_nothing(
    slo_gateway: Gateway, receiver: LogoutReceiver
) -> None:
    signed = sign_in_to_both(slo_gateway, receiver, backchannel=closed_port_url() + "/bc")
    started = time.monotonic()
    assert csrf_post(signed.browser, "/api/v1/logout", {}).status_code == 200
    assert time.monotonic() - started < 2.0  # the logout only queues
    clock = slo_gateway.clock
    deliver(slo_gateway)
    # The CAS application got its message; the OIDC one is down and waits for the next try.
    assert len(receiver.forms("logoutRequest")) == 1
    down = [d for d in _deliveries(slo_gateway) if d.protocol == "oidc"][0]
    assert (down.state, down.attempts) == ("pending", 1)
    assert down.next_attempt_at == clock.now() + timedelta(seconds=10)
    assert down.last_error is not None and "unreachable" in down.last_error
    waits = []
    for _ in range(4):
        before = clock.now()
        clock.advance(1)
        assert deliver(slo_gateway) == 0  # not yet due
        row = [d for d in _deliveries(slo_gateway) if d.protocol == "oidc"][0]
        clock.at = row.next_attempt_at
        assert deliver(slo_gateway) == 1
        waits.append(row.next_attempt_at - before)
    assert waits == [
        timedelta(seconds=10),
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=30),
    ]
    # After 24 hours it is given up, and says so in the audit trail.
    for _ in range(20):
        row = [d for d in _deliveries(slo_gateway) if d.protocol == "oidc"][0]
        if row.state != "pending":
            break
        clock.at = row.next_attempt_at
        deliver(slo_gateway)
    row = [d for d in _deliveries(slo_gateway) if d.protocol == "oidc"][0]
    assert row.state == "failed"
    assert (
        row.created_at + timedelta(hours=22) <= clock.now() <= row.created_at + timedelta(hours=24)
    )
    with get_database(slo_gateway.app).session() as session:
        outcomes = session.scalars(
            select(AuditRecord.outcome).where(AuditRecord.event == "sso_logout_delivery")
        ).all()
    assert outcomes.count("ok") == 1  # the CAS application
    assert outcomes.count("failed") == row.attempts - 1
    assert outcomes[-1] == "given_up"


def test_a_client_that_answers_an_error_then_recovers_gets_it(
    slo_gateway: Gateway, receiver: LogoutReceiver
) -> None:
    signed = sign_in_to_both(slo_gateway, receiver)
    receiver.status = 503
    assert csrf_post(signed.browser, "/api/v1/logout", {}).status_code == 200
    deliver(slo_gateway)
    assert all(
        d.state == "pending" and d.last_error == "HTTP 503" for d in _deliveries(slo_gateway)
    )
    receiver.status = 200
    receiver.received.clear()
    slo_gateway.clock.advance(10)
    assert deliver(slo_gateway) == 2
    check_both_told(slo_gateway, receiver, signed)
    assert {d.state for d in _deliveries(slo_gateway)} == {"delivered"}


def test_a_slow_client_costs_the_worker_one_short_timeout(
    slo_gateway: Gateway, receiver: LogoutReceiver
) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts connections, never answers
    try:
        port = silent.getsockname()[1]
        signed = sign_in_to_both(slo_gateway, receiver, backchannel=f"http://127.0.0.1:{port}/bc")
        worker = get_logout_worker(slo_gateway.app)
        worker.timeout = 0.5
        assert csrf_post(signed.browser, "/api/v1/logout", {}).status_code == 200
        started = time.monotonic()
        assert deliver(slo_gateway) == 2
        assert time.monotonic() - started < 3.0
    finally:
        silent.close()
    assert len(receiver.forms("logoutRequest")) == 1
    slow = [d for d in _deliveries(slo_gateway) if d.protocol == "oidc"][0]
    assert slow.state == "pending" and slow.last_error == "timed out"


def test_the_background_worker_delivers_and_stops(
    make_gateway: Callable[..., Gateway], receiver: LogoutReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    gateway = make_gateway()
    worker = get_logout_worker(gateway.app)
    try:
        signed = sign_in_to_both(gateway, receiver)
        assert csrf_post(signed.browser, "/api/v1/logout", {}).status_code == 200
        deadline = time.monotonic() + 10
        while len(receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.received) == 2
    finally:
        worker.stop()
    assert worker._thread is not None and not worker._thread.is_alive()
