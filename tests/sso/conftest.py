"""Single sign-on fixtures: the gateway served on a real port (waitress), a browser that keeps
the gateway's cookies, and an independent relying party (Authlib's requests client, joserfc)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet

from gateway.accounts import get_accounts
from gateway.clock import FixedClock
from gateway.sso.clients import NewClient, get_clients
from softhsm.pki import random_id_card_number
from tests.gateway.conftest import (  # noqa: F401 (the gateway tests' fixtures)
    PASSWORD,
    accounts,
    app,
    base_config,
    client,
    clock,
    make_app,
)
from tests.gateway.serving import ServedApp, serving

APP_CALLBACK = "https://app.example.cn/callback"


@dataclass
class Gateway:
    served: ServedApp
    app: Flask
    clock: FixedClock
    account: Any  # AccountView of the person who signs in
    id_card_number: str

    @property
    def url(self) -> str:
        return self.served.url

    def client(self, name: str = "示例应用", **options: Any) -> NewClient:
        options.setdefault("redirect_uris", (APP_CALLBACK,))
        return get_clients(self.app).add(name, protocol="oidc", at=self.clock.now(), **options)

    def browser(self) -> Browser:
        return Browser(self.url)

    def discovery(self) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/.well-known/openid-configuration", timeout=10)
        assert answer.status_code == 200
        return answer.json()  # type: ignore[no-any-return]

    def jwks(self) -> KeySet:
        answer = requests.get(self.discovery()["jwks_uri"], timeout=10)
        return KeySet.import_key_set(answer.json())

    def relying_party(self, made: NewClient, scope: str = "openid profile", **kw: Any) -> Any:
        return OAuth2Session(
            made.client.client_id,
            made.client_secret,
            scope=scope,
            redirect_uri=APP_CALLBACK,
            **kw,
        )

    def verify_id_token(self, id_token: str, client_id: str, nonce: str | None) -> dict[str, Any]:
        """What a relying party checks: signature against the JWKS, issuer, audience, nonce,
        expiry (at the gateway's clock)."""
        token = jwt.decode(id_token, self.jwks(), algorithms=["RS256", "ES256"])
        registry = jwt.JWTClaimsRegistry(
            now=int(self.clock.now().timestamp()),
            iss={"essential": True, "value": self.url},
            aud={"essential": True, "value": client_id},
            exp={"essential": True},
            sub={"essential": True},
            **({"nonce": {"essential": True, "value": nonce}} if nonce else {}),
        )
        registry.validate(token.claims)
        return {"header": token.header, **token.claims}


class Browser:
    """A person's browser: keeps the gateway's cookies and sends the Secure ones over loopback
    http, as browsers do (requests' cookie jar would hold them back), and never follows
    redirects by itself."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.session = requests.Session()

    def cookie_header(self) -> dict[str, str]:
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        return {"Cookie": cookies} if cookies else {}

    def get(self, url: str, **params: Any) -> requests.Response:
        if url.startswith("/"):
            url = self.origin + url
        return self.session.get(
            url,
            params=params or None,
            headers=self.cookie_header(),
            allow_redirects=False,
            timeout=10,
        )

    def post_form(self, url: str, data: dict[str, str]) -> requests.Response:
        if url.startswith("/"):
            url = self.origin + url
        return self.session.post(
            url, data=data, headers=self.cookie_header(), allow_redirects=False, timeout=10
        )

    def api(self, path: str, body: Any) -> requests.Response:
        return self.session.post(
            self.origin + path,
            json=body,
            headers={"Origin": self.origin, **self.cookie_header()},
            timeout=10,
        )

    def password_login(self, identifier: str = "zhangsan") -> requests.Response:
        answer = self.api(
            "/api/v1/login/password", {"identifier": identifier, "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        return answer


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def make_gateway(
    make_app: Callable[..., Flask],  # noqa: F811 (the gateway tests' fixture)
    clock: FixedClock,  # noqa: F811
) -> Iterator[Callable[..., Gateway]]:
    servers = ExitStack()

    def make(**overrides: Any) -> Gateway:
        served = servers.enter_context(serving(threads=4))
        flask_app = make_app(PUBLIC_ORIGIN=served.url, **overrides)
        served.app = flask_app
        served.start()
        number = random_id_card_number()
        account = get_accounts(flask_app).create_person(
            real_name="张三",
            id_card_number=number,
            login_name="zhangsan",
            phone="13800138000",
            password=PASSWORD,
            at=clock.now(),
        )
        return Gateway(served, flask_app, clock, account, number)

    with servers:  # the servers stop on the way out; make_app then closes their apps
        yield make


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch) -> Gateway:
    # The relying party talks to the gateway over loopback http in tests.
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    return make_gateway()
