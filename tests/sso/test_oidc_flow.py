"""The OpenID Connect provider against an independent relying party (Authlib's requests client
and joserfc), on a really served gateway: the whole code flow, PKCE, redirect URIs, codes,
prompt, max_age, acr_values step-up, consent, refresh rotation and key rotation."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import select

from gateway.audit import get_audit_log
from gateway.sso.models import SsoParticipation
from gateway.sso.participation import participations
from gateway.storage.database import get_database
from tests.sso.conftest import APP_CALLBACK, Gateway, query_of

LOA_1 = "urn:certgate:loa:1"
LOA_4 = "urn:certgate:loa:4"


def sign_in_and_authorize(gateway: Gateway, browser: Any, url: str) -> str:
    """Follow an authorization URL as a person does: login page, password, back, consent;
    the Location the gateway finally sends the browser to."""
    answer = browser.get(url)
    if answer.status_code == 302 and answer.headers["Location"].startswith("/login?"):
        login = answer.headers["Location"]
        page = browser.get(login)
        assert page.status_code == 200
        browser.password_login()
        answer = browser.get(query_of(login)["next"])
    if answer.status_code == 200 and 'id="consent-allow"' in answer.text:
        csrf = answer.text.split('name="csrf_token" value="')[1].split('"')[0]
        action = answer.text.split('<form method="post" action="')[1].split('"')[0]
        answer = browser.post_form(
            action.replace("&amp;", "&"), {"csrf_token": csrf, "decision": "allow"}
        )
    assert answer.status_code == 302, answer.text
    return str(answer.headers["Location"])


def test_full_code_flow_with_an_independent_relying_party(gateway: Gateway) -> None:
    made = gateway.client()
    discovery = gateway.discovery()
    assert discovery["issuer"] == gateway.url
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    relying_party = gateway.relying_party(made, scope="openid profile phone")
    nonce = secrets.token_urlsafe(16)
    url, state = relying_party.create_authorization_url(
        discovery["authorization_endpoint"], nonce=nonce
    )
    browser = gateway.browser()
    # No session: the login page, which returns to this very request.
    first = browser.get(url)
    assert first.status_code == 302
    login = first.headers["Location"]
    assert login.startswith("/login?next=%2Foauth%2Fauthorize%3F")
    page = browser.get(login)
    assert 'data-next="/oauth/authorize?' in page.text
    browser.password_login()
    consent = browser.get(query_of(login)["next"])
    assert consent.status_code == 200 and "示例应用" in consent.text
    assert 'data-scope="phone"' in consent.text
    location = sign_in_and_authorize(gateway, browser, url)
    assert location.startswith(APP_CALLBACK + "?") and query_of(location)["state"] == state

    token = relying_party.fetch_token(discovery["token_endpoint"], authorization_response=location)
    assert "refresh_token" not in token  # no offline_access asked
    claims = gateway.verify_id_token(token["id_token"], made.client.client_id, nonce)
    assert claims["sub"] == gateway.account.id
    assert claims["amr"] == ["pwd"] and claims["acr"] == LOA_1
    assert claims["auth_time"] == int(gateway.clock.now().timestamp())
    assert len(claims["sid"]) == 32
    assert claims["name"] == "张三" and claims["account_kind"] == "person"
    assert claims["real_name_level"] == 0
    assert "phone_number" not in claims  # the phone is not verified at real-name level 0

    info = relying_party.get(discovery["userinfo_endpoint"]).json()
    assert info["sub"] == gateway.account.id and info["name"] == "张三"
    assert "uscc" not in info

    # Consent remembered: the same URL again goes straight back with a fresh code.
    again = browser.get(url)
    assert again.status_code == 302 and "code=" in again.headers["Location"]
    assert query_of(again.headers["Location"])["code"] != query_of(location)["code"]

    # The client is recorded in the gateway session for single logout.
    database = get_database(gateway.app)
    with database.session() as session:
        rows = session.scalars(select(SsoParticipation)).all()
    assert [(r.client_id, r.protocol, r.sid) for r in rows] == [
        (made.client.client_id, "oidc", claims["sid"])
    ]
    assert (
        participations(database, rows[0].gateway_session_id)[0].account_public_id == claims["sub"]
    )
    events = {(r.event, r.outcome) for r in get_audit_log(gateway.app).records()}
    assert {("sso_authorize", "login_required"), ("sso_authorize", "consent_asked")} <= events
    assert {("sso_authorize", "ok"), ("sso_token", "ok"), ("sso_userinfo", "ok")} <= events


def test_client_secret_post_and_a_wrong_secret(gateway: Gateway) -> None:
    made = gateway.client(consent="skip")
    discovery = gateway.discovery()
    relying_party = gateway.relying_party(made, token_endpoint_auth_method="client_secret_post")
    url, _state = relying_party.create_authorization_url(discovery["authorization_endpoint"])
    location = sign_in_and_authorize(gateway, gateway.browser(), url)
    code = query_of(location)["code"]
    wrong = requests.post(
        discovery["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP_CALLBACK,
            "client_id": made.client.client_id,
            "client_secret": "not-the-secret",
        },
        timeout=10,
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    token = relying_party.fetch_token(discovery["token_endpoint"], authorization_response=location)
    assert "id_token" in token


def _token_request(gateway: Gateway, made: Any, code: str, **extra: str) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK}
    data.update(extra)
    auth = (made.client.client_id, made.client_secret) if made.client_secret else None
    if auth is None:
        data["client_id"] = made.client.client_id
    return requests.post(gateway.discovery()["token_endpoint"], data=data, auth=auth, timeout=10)


def _authorize(gateway: Gateway, browser: Any, made: Any, **params: str) -> requests.Response:
    query = {
        "response_type": "code",
        "client_id": made.client.client_id,
        "redirect_uri": APP_CALLBACK,
        "scope": "openid",
        "state": "s1",
        **params,
    }
    return browser.get("/oauth/authorize", **query)


def test_public_clients_must_use_pkce_s256(gateway: Gateway) -> None:
    made = gateway.client(public=True, consent="skip")
    assert made.client_secret is None
    browser = gateway.browser()
    browser.password_login()
    verifier = secrets.token_urlsafe(48)
    # Without PKCE, or with plain: an OAuth error sent back to the (registered) redirect URI.
    for params in ({}, {"code_challenge": verifier, "code_challenge_method": "plain"}):
        refused = _authorize(gateway, browser, made, **params)
        assert refused.status_code == 302
        assert query_of(refused.headers["Location"])["error"] == "invalid_request"
        assert query_of(refused.headers["Location"])["state"] == "s1"
    challenge = create_s256_code_challenge(verifier)
    granted = _authorize(
        gateway, browser, made, code_challenge=challenge, code_challenge_method="S256"
    )
    code = query_of(granted.headers["Location"])["code"]
    assert _token_request(gateway, made, code).json()["error"] == "invalid_request"
    granted = _authorize(
        gateway, browser, made, code_challenge=challenge, code_challenge_method="S256"
    )
    code = query_of(granted.headers["Location"])["code"]
    wrong = _token_request(gateway, made, code, code_verifier=secrets.token_urlsafe(48))
    assert wrong.json()["error"] == "invalid_grant"
    granted = _authorize(
        gateway, browser, made, code_challenge=challenge, code_challenge_method="S256"
    )
    code = query_of(granted.headers["Location"])["code"]
    answer = _token_request(gateway, made, code, code_verifier=verifier)
    assert answer.status_code == 200, answer.text
    claims = gateway.verify_id_token(answer.json()["id_token"], made.client.client_id, None)
    assert claims["sub"] == gateway.account.id


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"redirect_uri": "https://evil.example.com/callback"}, "redirect_uri_invalid"),
        ({"redirect_uri": APP_CALLBACK + "/"}, "redirect_uri_invalid"),
        ({"redirect_uri": APP_CALLBACK + "?x=1"}, "redirect_uri_invalid"),
        ({"redirect_uri": ""}, "redirect_uri_invalid"),
        ({"client_id": "no-such-client"}, "client_unknown"),
    ],
)
def test_a_wrong_client_or_redirect_uri_gets_an_error_page_never_a_redirect(
    gateway: Gateway, params: dict[str, str], code: str
) -> None:
    made = gateway.client()
    browser = gateway.browser()
    browser.password_login()
    answer = _authorize(gateway, browser, made, **params)
    assert answer.status_code == 400
    assert "Location" not in answer.headers
    assert f'data-code="{code}"' in answer.text
    assert answer.headers["Content-Type"].startswith("text/html")
    outcomes = [
        r.outcome for r in get_audit_log(gateway.app).records() if r.event == "sso_authorize"
    ]
    assert code in outcomes


def test_a_code_is_single_use_and_lives_60_seconds(gateway: Gateway) -> None:
    made = gateway.client(consent="skip")
    browser = gateway.browser()
    browser.password_login()
    code = query_of(_authorize(gateway, browser, made).headers["Location"])["code"]
    assert _token_request(gateway, made, code).status_code == 200
    reused = _token_request(gateway, made, code)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    code = query_of(_authorize(gateway, browser, made).headers["Location"])["code"]
    gateway.clock.advance(61)
    expired = _token_request(gateway, made, code)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"

    # Bound to its redirect URI and to its client.
    other = gateway.client("另一个应用", consent="skip")
    browser.password_login()
    code = query_of(_authorize(gateway, browser, made).headers["Location"])["code"]
    assert _token_request(gateway, other, code).json()["error"] == "invalid_grant"
    code = query_of(_authorize(gateway, browser, made).headers["Location"])["code"]
    data = {"redirect_uri": "https://app.example.cn/other"}
    assert _token_request(gateway, made, code, **data).json()["error"] == "invalid_grant"


def test_prompt_none_without_a_session_answers_login_required(gateway: Gateway) -> None:
    made = gateway.client(consent="skip")
    answer = _authorize(gateway, gateway.browser(), made, prompt="none")
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(APP_CALLBACK + "?")
    assert query_of(location) == {"error": "login_required", "state": "s1"}


def test_prompt_none_without_consent_answers_consent_required(gateway: Gateway) -> None:
    made = gateway.client()
    browser = gateway.browser()
    browser.password_login()
    answer = _authorize(gateway, browser, made, prompt="none")
    assert query_of(answer.headers["Location"])["error"] == "consent_required"


def test_prompt_login_and_max_age_ask_for_a_fresh_login(gateway: Gateway) -> None:
    made = gateway.client(consent="skip")
    browser = gateway.browser()
    browser.password_login()
    first_login = int(gateway.clock.now().timestamp())
    gateway.clock.advance(120)
    assert "code=" in _authorize(gateway, browser, made, max_age="600").headers["Location"]
    stale = _authorize(gateway, browser, made, max_age="60")
    assert stale.headers["Location"].startswith("/login?next=")
    browser.password_login()
    back = browser.get(query_of(stale.headers["Location"])["next"])
    code = query_of(back.headers["Location"])["code"]
    token = _token_request(gateway, made, code).json()
    claims = gateway.verify_id_token(token["id_token"], made.client.client_id, None)
    assert claims["auth_time"] == first_login + 120

    forced = _authorize(gateway, browser, made, prompt="login")
    login = forced.headers["Location"]
    assert login.startswith("/login?next=")
    assert "prompt" not in query_of(query_of(login)["next"])
    browser.password_login()
    assert "code=" in browser.get(query_of(login)["next"]).headers["Location"]


def test_consent_denied_sends_access_denied(gateway: Gateway) -> None:
    made = gateway.client()
    browser = gateway.browser()
    browser.password_login()
    page = _authorize(gateway, browser, made)
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    action = page.text.split('<form method="post" action="')[1].split('"')[0].replace("&amp;", "&")
    forged = browser.post_form(action, {"csrf_token": "forged", "decision": "allow"})
    assert forged.status_code == 400 and "Location" not in forged.headers
    denied = browser.post_form(action, {"csrf_token": csrf, "decision": "deny"})
    answer = query_of(denied.headers["Location"])
    assert (answer["error"], answer["state"]) == ("access_denied", "s1")
    # Nothing remembered: asked again.
    assert 'id="consent-allow"' in _authorize(gateway, browser, made).text


def test_refresh_tokens_rotate_and_a_reused_one_revokes_its_family(gateway: Gateway) -> None:
    made = gateway.client(consent="skip")
    discovery = gateway.discovery()
    relying_party = gateway.relying_party(made, scope="openid offline_access")
    url, _state = relying_party.create_authorization_url(discovery["authorization_endpoint"])
    location = sign_in_and_authorize(gateway, gateway.browser(), url)
    token = relying_party.fetch_token(discovery["token_endpoint"], authorization_response=location)
    first = token["refresh_token"]
    renewed = relying_party.refresh_token(discovery["token_endpoint"], refresh_token=first)
    second = renewed["refresh_token"]
    assert second != first and renewed["access_token"] != token["access_token"]
    assert relying_party.get(discovery["userinfo_endpoint"]).status_code == 200
    answer = requests.post(
        discovery["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": first},
        auth=(made.client.client_id, made.client_secret),
        timeout=10,
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    # The reuse revoked the family: the newest refresh token is refused too.
    answer = requests.post(
        discovery["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": second},
        auth=(made.client.client_id, made.client_secret),
        timeout=10,
    )
    assert answer.json()["error"] == "invalid_grant"


def test_userinfo_refuses_a_missing_or_unknown_token(gateway: Gateway) -> None:
    userinfo = gateway.discovery()["userinfo_endpoint"]
    for headers in ({}, {"Authorization": "Bearer " + secrets.token_urlsafe(32)}):
        answer = requests.get(userinfo, headers=headers, timeout=10)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_enterprise_scope_releases_credit_code_and_name(gateway: Gateway) -> None:
    from gateway.accounts import get_accounts

    get_accounts(gateway.app).create_enterprise(
        unified_social_credit_code="91440300MA5H8REU3K",
        name="示例建设工程有限公司",
        login_name="demo-ent",
        password="correct horse battery",
        at=gateway.clock.now(),
    )
    made = gateway.client(consent="skip")
    browser = gateway.browser()
    browser.password_login("demo-ent")
    code = query_of(
        _authorize(gateway, browser, made, scope="openid profile certgate.enterprise").headers[
            "Location"
        ]
    )["code"]
    token = _token_request(gateway, made, code).json()
    claims = gateway.verify_id_token(token["id_token"], made.client.client_id, None)
    assert claims["uscc"] == "91440300MA5H8REU3K"
    assert claims["enterprise_name"] == "示例建设工程有限公司"
    assert claims["account_kind"] == "enterprise"
