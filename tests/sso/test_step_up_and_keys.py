"""``acr_values`` step-up to the USB key (loa:4) on a really served gateway, and signing-key
rotation seen by a relying party."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.sso.keys import get_keys
from softhsm.pki import TestPki
from tests.fixtures_pki import PKI_EPOCH
from tests.gateway.conftest import pki_anchor_config
from tests.gateway.test_token_login import algorithm_for, b64, der, message, sign
from tests.sso.conftest import Gateway, query_of
from tests.sso.test_oidc_flow import _authorize, _token_request

LOA_4 = "urn:certgate:loa:4"


def usb_key_login(gateway: Gateway, browser: Any, issued: Any) -> Any:
    challenge = browser.api("/api/v1/login/challenge", {}).json()
    algorithm = algorithm_for(issued.private_key)
    signature = sign(issued.private_key, algorithm, message(challenge, origin=gateway.url))
    answer = browser.api(
        "/api/v1/login/token",
        {
            "challenge_id": challenge["challenge_id"],
            "certificate": der(issued.certificate),
            "chain": [der(c) for c in issued.chain[:-1]],
            "signature": b64(signature),
            "signature_algorithm": algorithm.removesuffix("-raw"),
        },
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_acr_values_loa4_makes_a_password_session_sign_in_again_with_the_usb_key(
    make_gateway: Callable[..., Gateway], test_pki: TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = make_gateway(TRUST_ANCHORS=[pki_anchor_config(test_pki, hardware_keys=True)])
    issued = test_pki.issue("person", "张三", id_number=gateway.id_card_number, at=PKI_EPOCH)
    made = gateway.client(consent="skip")
    browser = gateway.browser()
    browser.password_login()
    # A password session is enough for a client that asks for nothing more.
    assert "code=" in _authorize(gateway, browser, made).headers["Location"]
    stepped = _authorize(gateway, browser, made, acr_values=LOA_4)
    login = stepped.headers["Location"]
    assert login.startswith("/login?") and query_of(login)["acr"] == LOA_4
    page = browser.get(login)
    assert 'id="next-notice"' in page.text and "USB Key" in page.text
    # Signing in with the password again does not reach the level: back to the login.
    browser.password_login()
    again = browser.get(query_of(login)["next"])
    assert again.headers["Location"].startswith("/login?")
    assert usb_key_login(gateway, browser, issued)["acr"] == LOA_4
    back = browser.get(query_of(login)["next"])
    code = query_of(back.headers["Location"])["code"]
    token = _token_request(gateway, made, code).json()
    claims = gateway.verify_id_token(token["id_token"], made.client.client_id, None)
    assert claims["acr"] == LOA_4 and claims["amr"] == ["hwk", "pin", "mfa"]
    assert claims["sub"] == gateway.account.id
    # prompt=none cannot step up: login_required to the client.
    browser.password_login()
    none = _authorize(gateway, browser, made, acr_values=LOA_4, prompt="none")
    assert query_of(none.headers["Location"])["error"] == "login_required"


def test_rotated_keys_stay_published_until_their_tokens_expire(gateway: Gateway) -> None:
    made = gateway.client(consent="skip")
    browser = gateway.browser()
    browser.password_login()
    code = query_of(_authorize(gateway, browser, made).headers["Location"])["code"]
    before = _token_request(gateway, made, code).json()["id_token"]
    old_kids = {key.kid for key in gateway.jwks()}
    assert {key.key_type for key in gateway.jwks()} == {"RSA", "EC"}

    # What `certgate keys rotate` does (its command is tested in test_client_commands.py), at
    # the served gateway's clock.
    rotated = get_keys(gateway.app).rotate(gateway.clock.now())
    answer = {"retired": list(rotated.retired), "new": list(rotated.new)}
    assert set(answer["retired"]) == old_kids and len(answer["new"]) == 2

    published = {key.kid for key in gateway.jwks()}
    assert published == old_kids | set(answer["new"])
    # A token signed just before the rotation still verifies against the published keys.
    old_claims = gateway.verify_id_token(before, made.client.client_id, None)
    assert old_claims["header"]["kid"] in old_kids
    code = query_of(_authorize(gateway, browser, made).headers["Location"])["code"]
    after = _token_request(gateway, made, code).json()["id_token"]
    new_claims = gateway.verify_id_token(after, made.client.client_id, None)
    assert new_claims["header"]["kid"] in answer["new"]
    # Once its tokens have expired, the retired key is no longer published.
    gateway.clock.advance(2 * 3600 + 1)
    assert {key.kid for key in gateway.jwks()} == set(answer["new"])
