"""The OpenID Connect Basic OP profile's rules that can be checked offline, written from
OpenID Connect Core 1.0 (sections 2, 3.1.2, 3.1.3) and Discovery 1.0 (sections 3, 4.3), with an
independent relying party (Authlib's requests client, joserfc) against a really served gateway.

Each test names the rule it checks; the conformance suite's "Basic OP" plan checks the same
rules online."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from sqlalchemy import update

from gateway.sso.models import SsoClient
from gateway.storage.database import get_database
from tests.sso.conftest import APP_CALLBACK, Gateway, query_of

# Discovery 1.0, section 3: REQUIRED members of the provider metadata (token_endpoint is
# required unless only the implicit flow is offered; userinfo_endpoint is RECOMMENDED, and the
# Basic profile's relying parties use it).
DISCOVERY_REQUIRED = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
)


def _code_flow(
    gateway: Gateway,
    *,
    scope: str = "openid profile",
    alg: str | None = None,
    seconds_after_login: int = 0,
    **authorize: str,
) -> tuple[Any, dict[str, Any], dict[str, Any], str]:
    """A whole code flow with PKCE S256 and a nonce: (client, token answer, discovery, nonce)."""
    made = gateway.client(consent="skip")
    if alg is not None:
        with get_database(gateway.app).session() as session:
            session.execute(
                update(SsoClient)
                .where(SsoClient.client_id == made.client.client_id)
                .values(id_token_signed_response_alg=alg)
            )
    discovery = gateway.discovery()
    relying_party = OAuth2Session(
        made.client.client_id,
        made.client_secret,
        scope=scope,
        redirect_uri=APP_CALLBACK,
        code_challenge_method="S256",
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = relying_party.create_authorization_url(
        discovery["authorization_endpoint"], nonce=nonce, code_verifier=verifier, **authorize
    )
    browser = gateway.browser()
    browser.password_login()
    gateway.clock.advance(seconds_after_login)
    answer = browser.get(url)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(APP_CALLBACK + "?") and query_of(location)["state"] == state
    token = relying_party.fetch_token(
        discovery["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    return made, token, discovery, nonce


def _unverified(id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import json

    header, payload, _signature = id_token.split(".")

    def part(text: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return data

    return part(header), part(payload)


def test_discovery_has_the_required_members_and_its_issuer_is_the_url_it_came_from(
    gateway: Gateway,
) -> None:
    """Discovery 1.0 sections 3 and 4.3: required members present; ``issuer`` identical to the
    URL the document was fetched under (less the well-known suffix); code flow offered;
    RS256 among the signing algorithms; endpoints under the issuer."""
    answer = requests.get(gateway.url + "/.well-known/openid-configuration", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    discovery = answer.json()
    missing = [name for name in DISCOVERY_REQUIRED if name not in discovery]
    assert missing == []
    assert discovery["issuer"] == gateway.url
    assert "code" in discovery["response_types_supported"]
    assert "public" in discovery["subject_types_supported"]
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    assert "none" not in discovery["id_token_signing_alg_values_supported"]
    assert "openid" in discovery["scopes_supported"]
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert discovery[name].startswith(gateway.url + "/"), name
    jwks = requests.get(discovery["jwks_uri"], timeout=10).json()
    assert jwks["keys"] and all("d" not in key for key in jwks["keys"])  # public keys only


def test_the_id_token_carries_the_required_claims(gateway: Gateway) -> None:
    """Core 1.0 section 2 and 3.1.3.7: iss (= discovery's issuer), sub (≤ 255 ASCII), aud
    containing the client_id (azp when there are several), exp after iat, iat now, the nonce
    echoed; signed (never alg none) by a key the JWKS publishes."""
    before = int(gateway.clock.now().timestamp())
    made, token, discovery, nonce = _code_flow(gateway)
    header, claims = _unverified(token["id_token"])
    assert header["alg"] != "none" and header["kid"]
    verified = gateway.verify_id_token(token["id_token"], made.client.client_id, nonce)
    assert verified["iss"] == discovery["issuer"]
    assert isinstance(claims["sub"], str) and 0 < len(claims["sub"]) <= 255
    assert claims["sub"].isascii()
    audience = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert made.client.client_id in audience
    if len(audience) > 1:
        assert claims["azp"] == made.client.client_id
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert claims["iat"] == before  # the gateway's clock stands still in these tests
    assert claims["iat"] < claims["exp"] <= claims["iat"] + 24 * 3600
    assert claims["nonce"] == nonce
    # The same token, checked by Authlib's own ID token rules (exp, iat, nonce, at_hash).
    from authlib.oidc.core import CodeIDToken

    authlib_claims = CodeIDToken(
        claims,
        header,
        {"iss": {"values": [gateway.url]}},
        {"nonce": nonce, "client_id": made.client.client_id, "access_token": token["access_token"]},
    )
    authlib_claims.validate(now=claims["iat"])


def test_auth_time_is_present_when_max_age_is_asked(gateway: Gateway) -> None:
    """Core 1.0 section 3.1.2.1: with ``max_age`` the ID token MUST carry ``auth_time``, the
    moment of the login, no later than iat."""
    signed_in = int(gateway.clock.now().timestamp())
    made, token, _discovery, nonce = _code_flow(gateway, seconds_after_login=30, max_age="3600")
    claims = gateway.verify_id_token(token["id_token"], made.client.client_id, nonce)
    assert claims["auth_time"] == signed_in
    assert claims["iat"] == signed_in + 30


def test_at_hash_is_the_left_half_of_the_access_tokens_hash(gateway: Gateway) -> None:
    """Core 1.0 section 3.1.3.6: at_hash = base64url of the left-most half of the hash (the
    one of the ID token's alg: SHA-256 for RS256 and ES256) of the access token's ASCII."""
    made, token, _discovery, nonce = _code_flow(gateway)
    claims = gateway.verify_id_token(token["id_token"], made.client.client_id, nonce)
    digest = hashlib.sha256(token["access_token"].encode("ascii")).digest()
    expected = base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()
    assert claims["at_hash"] == expected


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_every_advertised_signing_algorithm_is_the_one_used_and_verifies(
    gateway: Gateway, alg: str
) -> None:
    """Discovery's ``id_token_signing_alg_values_supported`` = the algorithms really used: a
    client registered for each one gets ID tokens signed with it, by a published key of that
    algorithm (kid in the header)."""
    advertised = gateway.discovery()["id_token_signing_alg_values_supported"]
    assert sorted(advertised) == ["ES256", "RS256"]
    made, token, _discovery, nonce = _code_flow(gateway, alg=alg)
    header, _claims = _unverified(token["id_token"])
    assert header["alg"] == alg
    published = {key["kid"]: key for key in gateway.jwks().as_dict()["keys"]}
    assert header["kid"] in published
    assert published[header["kid"]]["kty"] == {"RS256": "RSA", "ES256": "EC"}[alg]
    decoded = jwt.decode(token["id_token"], gateway.jwks(), algorithms=[alg])
    assert decoded.claims["nonce"] == nonce


def _exchange(gateway: Gateway, made: Any, code: str, verifier: str | None) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK}
    if verifier is not None:
        data["code_verifier"] = verifier
    return requests.post(
        gateway.discovery()["token_endpoint"],
        data=data,
        auth=(made.client.client_id, made.client_secret),
        timeout=10,
    )


def _code(gateway: Gateway, made: Any, challenge_of: str) -> str:
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    browser = gateway.browser()
    browser.password_login()
    answer = browser.get(
        "/oauth/authorize",
        response_type="code",
        client_id=made.client.client_id,
        redirect_uri=APP_CALLBACK,
        scope="openid",
        state="s",
        code_challenge=create_s256_code_challenge(challenge_of),
        code_challenge_method="S256",
    )
    return query_of(answer.headers["Location"])["code"]


def test_a_code_is_refused_the_second_time(gateway: Gateway) -> None:
    """Core 1.0 section 3.1.3.2 (RFC 6749 section 4.1.2): a code is used once; the second
    exchange answers invalid_grant."""
    made = gateway.client(consent="skip")
    verifier = secrets.token_urlsafe(48)
    code = _code(gateway, made, verifier)
    first = _exchange(gateway, made, code, verifier)
    assert first.status_code == 200, first.text
    second = _exchange(gateway, made, code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert "access_token" not in second.json()


def test_a_reused_code_revokes_the_tokens_it_gave(gateway: Gateway) -> None:
    """RFC 6749 section 4.1.2: a code presented twice SHOULD revoke the tokens it gave; the
    first access token then fails at userinfo."""
    made = gateway.client(consent="skip")
    verifier = secrets.token_urlsafe(48)
    code = _code(gateway, made, verifier)
    access_token = _exchange(gateway, made, code, verifier).json()["access_token"]
    _exchange(gateway, made, code, verifier)
    userinfo = requests.get(
        gateway.discovery()["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )
    assert userinfo.status_code == 401


def test_a_pkce_verifier_that_does_not_match_is_refused(gateway: Gateway) -> None:
    """RFC 7636 section 4.6: the verifier must hash to the challenge; a wrong or missing one
    answers invalid_grant / invalid_request and no token."""
    made = gateway.client(consent="skip")
    verifier = secrets.token_urlsafe(48)
    wrong = _exchange(gateway, made, _code(gateway, made, verifier), secrets.token_urlsafe(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    missing = _exchange(gateway, made, _code(gateway, made, verifier), None)
    assert missing.status_code == 400
    assert missing.json()["error"] in ("invalid_grant", "invalid_request")
    right = _exchange(gateway, made, _code(gateway, made, verifier), verifier)
    assert right.status_code == 200 and "id_token" in right.json()


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://evil.example.com/callback", APP_CALLBACK + "/extra", APP_CALLBACK.upper()],
)
def test_a_redirect_uri_not_registered_shows_an_error_page_without_redirecting(
    gateway: Gateway, redirect_uri: str
) -> None:
    """Core 1.0 section 3.1.2.1 and RFC 6749 section 4.1.2.1: the redirect URI must match a
    registered one exactly; otherwise the provider tells the person and does not redirect."""
    made = gateway.client(consent="skip")
    relying_party = OAuth2Session(
        made.client.client_id,
        made.client_secret,
        scope="openid",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    url, _state = relying_party.create_authorization_url(
        gateway.discovery()["authorization_endpoint"],
        nonce=secrets.token_urlsafe(8),
        code_verifier=secrets.token_urlsafe(48),
    )
    browser = gateway.browser()
    browser.password_login()
    answer = browser.get(url)
    assert answer.status_code == 400
    assert "Location" not in answer.headers
    assert answer.headers["Content-Type"].startswith("text/html")
    assert 'data-code="redirect_uri_invalid"' in answer.text


def test_the_token_answer_is_not_cached_and_is_a_bearer_token(gateway: Gateway) -> None:
    """Core 1.0 section 3.1.3.3: the token answer carries token_type Bearer, an id_token, and
    Cache-Control no-store with Pragma no-cache."""
    made = gateway.client(consent="skip")
    verifier = secrets.token_urlsafe(48)
    answer = _exchange(gateway, made, _code(gateway, made, verifier), verifier)
    assert answer.status_code == 200
    assert answer.json()["token_type"].lower() == "bearer"
    assert "id_token" in answer.json()
    assert "no-store" in answer.headers.get("Cache-Control", "")
    assert answer.headers.get("Pragma") == "no-cache"
