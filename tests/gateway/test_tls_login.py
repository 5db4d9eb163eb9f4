"""TLS client-certificate login: the certificate comes from a trusted reverse proxy's header."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask

from gateway.accounts import get_accounts
from gateway.audit import get_audit_log
from gateway.clock import FixedClock
from softhsm.pki import IssuedCertificate, TestPki, random_id_card_number
from tests.fixtures_pki import PKI_EPOCH
from tests.gateway.conftest import ORIGIN, TRUSTED_PROXY, pki_anchor_config


def rfc9440_headers(issued: IssuedCertificate) -> dict[str, str]:
    def item(certificate: Any) -> str:
        data = certificate.public_bytes(serialization.Encoding.DER)
        return ":" + base64.b64encode(data).decode() + ":"

    return {
        "Client-Cert": item(issued.certificate),
        "Client-Cert-Chain": ", ".join(item(c) for c in issued.chain[:-1]),
    }


def nginx_headers(issued: IssuedCertificate) -> dict[str, str]:
    pem = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in [issued.certificate, *issued.chain[:-1]]
    )
    return {"X-SSL-Client-Cert": quote(pem.decode(), safe="")}


@pytest.fixture
def tls_app(make_app: Callable[..., Flask], test_pki: TestPki) -> Flask:
    return make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])


@pytest.fixture
def issued(tls_app: Flask, test_pki: TestPki, clock: FixedClock) -> IssuedCertificate:
    number = random_id_card_number()
    get_accounts(tls_app).create_person(real_name="钱七", id_card_number=number, at=clock.now())
    return test_pki.issue("person", "钱七", id_number=number, at=PKI_EPOCH)


def tls_login(app: Flask, headers: dict[str, str], peer: str = TRUSTED_PROXY) -> Any:
    return app.test_client().post(
        "/api/v1/login/tls",
        json={},
        headers={"Origin": ORIGIN, **headers},
        environ_base={"REMOTE_ADDR": peer},
    )


@pytest.mark.parametrize("make_headers", [rfc9440_headers, nginx_headers])
def test_tls_login_through_trusted_proxy(
    tls_app: Flask, issued: IssuedCertificate, make_headers: Callable[..., dict[str, str]]
) -> None:
    response = tls_login(tls_app, make_headers(issued))
    assert response.status_code == 200, response.json
    assert response.json["amr"] == ["x509"]
    assert response.json["account"]["display_name"] == "钱七"


@pytest.mark.parametrize("make_headers", [rfc9440_headers, nginx_headers])
def test_header_from_untrusted_peer_is_ignored_and_audited(
    tls_app: Flask, issued: IssuedCertificate, make_headers: Callable[..., dict[str, str]]
) -> None:
    response = tls_login(tls_app, make_headers(issued), peer="192.0.2.50")
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    events = [(r.event, r.outcome, r.address) for r in get_audit_log(tls_app).records()]
    assert ("tls_header_ignored", "ignored", "192.0.2.50") in events
    assert ("login", "bad_request", "192.0.2.50") in events


@pytest.mark.parametrize(
    "headers",
    [
        {"Client-Cert": "not-a-byte-sequence"},
        {"Client-Cert": ":bm90IGEgY2VydA==:"},
        {"X-SSL-Client-Cert": "-----BEGIN%20CERTIFICATE-----garbage"},
        {},
    ],
)
def test_bad_or_missing_header(tls_app: Flask, headers: dict[str, str]) -> None:
    response = tls_login(tls_app, headers)
    assert response.status_code == 400 and response.json["error"] == "bad_request"


def test_tls_account_not_found(tls_app: Flask, test_pki: TestPki) -> None:
    stranger = test_pki.issue("person", "陌生人", id_number=random_id_card_number(), at=PKI_EPOCH)
    response = tls_login(tls_app, rfc9440_headers(stranger))
    assert response.status_code == 401 and response.json["error"] == "account_not_found"
