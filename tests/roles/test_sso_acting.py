"""``acting_for`` reaches applications: an independent OpenID Connect relying party (Authlib's
requests client, joserfc) and the CAS client of tests/sso, on a really served gateway."""

from __future__ import annotations

import secrets
from typing import Any

import requests
from sqlalchemy import update

from gateway.accounts import get_accounts
from gateway.roles.roles import get_roles
from gateway.storage.database import get_database
from gateway.storage.models import Account
from tests.sso.conftest import Browser, Gateway, gateway, make_gateway  # noqa: F401 - fixtures
from tests.sso.relying_parties import cas_ticket, cas_validate
from tests.sso.test_oidc_flow import sign_in_and_authorize

USCC = "91440300MA5H8REU3K"
NAME = "示例建设工程有限公司"
SCOPE = "openid profile certgate.enterprise"


def _representative(gateway: Gateway) -> str:  # noqa: F811
    """The signed-in person becomes the legal representative (level 2) of a new enterprise."""
    accounts = get_accounts(gateway.app)
    enterprise = accounts.create_enterprise(
        unified_social_credit_code=USCC, name=NAME, at=gateway.clock.now()
    )
    get_roles(gateway.app).set_legal_representative(
        accounts.find(enterprise.id).id,
        name="张三",
        id_card_number=gateway.id_card_number,
        at=gateway.clock.now(),
    )
    with get_database(gateway.app).session() as session:
        session.execute(
            update(Account).where(Account.public_id == gateway.account.id).values(real_name_level=2)
        )
    return enterprise.id


def _act_as(gateway: Gateway, browser: Browser, enterprise_id: str | None) -> Any:  # noqa: F811
    csrf = requests.get(
        gateway.url + "/api/v1/session", headers=browser.cookie_header(), timeout=10
    ).json()["csrf_token"]
    return browser.session.post(
        gateway.url + "/api/v1/session/act-as",
        json={"enterprise_id": enterprise_id},
        headers={"Origin": gateway.url, "X-CSRF-Token": csrf, **browser.cookie_header()},
        timeout=10,
    )


def test_id_token_and_userinfo_carry_acting_for(gateway: Gateway) -> None:  # noqa: F811
    enterprise_id = _representative(gateway)
    made = gateway.client(consent="skip")
    discovery = gateway.discovery()
    browser = gateway.browser()
    browser.password_login()
    assert _act_as(gateway, browser, enterprise_id).status_code == 200

    relying_party = gateway.relying_party(made, scope=SCOPE)
    nonce = secrets.token_urlsafe(16)
    url, _state = relying_party.create_authorization_url(
        discovery["authorization_endpoint"], nonce=nonce
    )
    location = sign_in_and_authorize(gateway, browser, url)
    token = relying_party.fetch_token(discovery["token_endpoint"], authorization_response=location)
    claims = gateway.verify_id_token(token["id_token"], made.client.client_id, nonce)
    expected = {"uscc": USCC, "name": NAME, "role": "legal_representative"}
    assert claims["sub"] == gateway.account.id  # the person, acting for the enterprise
    assert claims["acting_for"] == expected
    assert "uscc" not in claims  # the person's own account has no credit code
    info = relying_party.get(discovery["userinfo_endpoint"]).json()
    assert info["acting_for"] == expected
    assert "acting_for" in discovery["claims_supported"]

    # Switched back: the application's userinfo no longer says so.
    assert _act_as(gateway, browser, None).status_code == 200
    assert "acting_for" not in relying_party.get(discovery["userinfo_endpoint"]).json()


def test_acting_for_needs_the_enterprise_scope(gateway: Gateway) -> None:  # noqa: F811
    enterprise_id = _representative(gateway)
    made = gateway.client(consent="skip")
    discovery = gateway.discovery()
    browser = gateway.browser()
    browser.password_login()
    assert _act_as(gateway, browser, enterprise_id).status_code == 200
    relying_party = gateway.relying_party(made, scope="openid profile")
    url, _state = relying_party.create_authorization_url(discovery["authorization_endpoint"])
    location = sign_in_and_authorize(gateway, browser, url)
    token = relying_party.fetch_token(discovery["token_endpoint"], authorization_response=location)
    claims = gateway.verify_id_token(token["id_token"], made.client.client_id, None)
    assert "acting_for" not in claims


def test_an_ended_role_is_refused_at_the_authorization_endpoint(
    gateway: Gateway,  # noqa: F811
) -> None:
    enterprise_id = _representative(gateway)
    made = gateway.client(consent="skip")
    discovery = gateway.discovery()
    browser = gateway.browser()
    browser.password_login()
    assert _act_as(gateway, browser, enterprise_id).status_code == 200
    # The representative's real-name level drops below 2: the role ends at once.
    with get_database(gateway.app).session() as session:
        session.execute(
            update(Account).where(Account.public_id == gateway.account.id).values(real_name_level=1)
        )
    relying_party = gateway.relying_party(made, scope=SCOPE)
    url, _state = relying_party.create_authorization_url(discovery["authorization_endpoint"])
    page = browser.get(url)
    assert page.status_code == 403
    assert "role_required" in page.text and "切换回个人身份" in page.text


def test_cas_p3_attributes_carry_acting_for(gateway: Gateway) -> None:  # noqa: F811
    from gateway.sso.clients import get_clients

    service = "https://cas-app.example.cn/app/login"
    get_clients(gateway.app).add(
        "工程监管平台",
        protocol="cas",
        at=gateway.clock.now(),
        services=("https://cas-app.example.cn/app",),
    )
    enterprise_id = _representative(gateway)
    browser = gateway.browser()
    browser.password_login()
    assert _act_as(gateway, browser, enterprise_id).status_code == 200
    answer = cas_validate(gateway, service, cas_ticket(gateway, browser, service))
    assert answer.user == gateway.account.id
    assert answer.attributes["acting_for_uscc"] == USCC
    assert answer.attributes["acting_for_name"] == NAME
    assert answer.attributes["acting_for_role"] == "legal_representative"
