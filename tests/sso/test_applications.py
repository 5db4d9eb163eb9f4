"""The account page's applications: the list, signing out of one application (single logout to
that one only) and withdrawing consent, through the JSON API the page calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from gateway.sso.clients import get_clients
from gateway.sso.logout import get_logout_worker
from tests.sso.conftest import Browser, Gateway
from tests.sso.relying_parties import LogoutReceiver, csrf_post, logout_receiver
from tests.sso.test_single_logout import sign_in_to_both

BASE = "/api/v1/account/applications"


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    with logout_receiver() as started:
        yield started


@pytest.fixture
def slo_gateway(make_gateway: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch) -> Gateway:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    return make_gateway(SSO_LOGOUT_WORKER=False)


def _list(gateway: Gateway, browser: Browser) -> list[dict[str, Any]]:
    response = browser.session.get(gateway.url + BASE, headers=browser.cookie_header(), timeout=10)
    assert response.status_code == 200, response.text
    applications: list[dict[str, Any]] = response.json()["applications"]
    return applications


def test_the_list_sign_out_of_one_and_withdraw_consent(
    slo_gateway: Gateway, receiver: LogoutReceiver
) -> None:
    signed = sign_in_to_both(slo_gateway, receiver)
    # Consent given to a third application, never signed in to.
    asked = get_clients(slo_gateway.app).add(
        "征信查询",
        protocol="oidc",
        at=slo_gateway.clock.now(),
        redirect_uris=("https://credit.example.cn/cb",),
    )
    from gateway.accounts import get_accounts
    from gateway.sso.models import SsoConsent
    from gateway.storage.database import get_database

    account = get_accounts(slo_gateway.app).find(slo_gateway.account.id)
    with get_database(slo_gateway.app).session() as session:
        session.add(
            SsoConsent(
                account_id=account.id,
                client_id=asked.client.client_id,
                scopes="openid profile",
                granted_at=slo_gateway.clock.now(),
            )
        )
    listed = {entry["client_id"]: entry for entry in _list(slo_gateway, signed.browser)}
    assert set(listed) == {signed.oidc_client_id, signed.cas_client_id, asked.client.client_id}
    assert listed[signed.cas_client_id]["protocol"] == "cas"
    assert listed[signed.cas_client_id]["signed_in"] is True
    assert listed[signed.oidc_client_id]["name"] == "OIDC 应用"
    assert listed[asked.client.client_id]["signed_in"] is False
    assert listed[asked.client.client_id]["consent"]["scopes"] == ["openid", "profile"]

    # Signing out of the CAS application tells it alone; the OIDC one keeps its tokens.
    out = csrf_post(signed.browser, f"{BASE}/{signed.cas_client_id}/sign-out", {})
    assert out.status_code == 200 and out.json() == {"ok": True, "messages_queued": 1}
    get_logout_worker(slo_gateway.app).run_once(slo_gateway.clock.now())
    assert len(receiver.forms("logoutRequest")) == 1 and receiver.forms("logout_token") == []
    userinfo = requests.get(
        slo_gateway.url + "/oauth/userinfo",
        headers={"Authorization": f"Bearer {signed.access_token}"},
        timeout=10,
    )
    assert userinfo.status_code == 200
    listed = {entry["client_id"]: entry for entry in _list(slo_gateway, signed.browser)}
    assert listed[signed.cas_client_id]["signed_in"] is False
    assert listed[signed.oidc_client_id]["signed_in"] is True

    # Withdrawing consent: the consent goes and the application is not listed for it.
    withdrawn = csrf_post(signed.browser, f"{BASE}/{asked.client.client_id}/consent/withdraw", {})
    assert withdrawn.status_code == 200, withdrawn.text
    listed = {entry["client_id"]: entry for entry in _list(slo_gateway, signed.browser)}
    assert asked.client.client_id not in listed


def test_an_application_not_used_is_application_unknown(
    slo_gateway: Gateway, receiver: LogoutReceiver
) -> None:
    signed = sign_in_to_both(slo_gateway, receiver)
    other = get_clients(slo_gateway.app).add(
        "别的应用", protocol="cas", at=slo_gateway.clock.now(), services=("https://x.example.cn/",)
    )
    for path in (
        f"{BASE}/{other.client.client_id}/sign-out",
        f"{BASE}/no-such-client/sign-out",
        f"{BASE}/{signed.cas_client_id}/consent/withdraw",  # CAS: no consent to withdraw
    ):
        answer = csrf_post(signed.browser, path, {})
        assert answer.status_code == 404, path
        assert answer.json()["error"] == "application_unknown"
        assert answer.json()["message"]


def test_state_changes_need_the_csrf_token(slo_gateway: Gateway, receiver: LogoutReceiver) -> None:
    signed = sign_in_to_both(slo_gateway, receiver)
    answer = signed.browser.api(f"{BASE}/{signed.cas_client_id}/sign-out", {})
    assert answer.status_code == 400 and answer.json()["error"] == "bad_request"
    assert slo_gateway.browser().session.get(slo_gateway.url + BASE, timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("language", "title"), [("zh-CN", "已使用的应用"), ("en", "Applications you used")]
)
def test_the_account_page_shows_the_applications_section(
    slo_gateway: Gateway, language: str, title: str
) -> None:
    browser = slo_gateway.browser()
    browser.password_login()
    page = browser.session.get(
        slo_gateway.url + "/account",
        params={"lang": language},
        headers=browser.cookie_header(),
        timeout=10,
    )
    assert page.status_code == 200
    assert 'id="applications"' in page.text and title in page.text
    script = browser.session.get(slo_gateway.url + "/assets/js/account.js", timeout=10).text
    assert "/api/v1/account/applications" in script
