"""TLS client-certificate login: the certificate comes from a trusted reverse proxy's header, in
the one form and header configured (``tls_client_cert_form`` / ``tls_client_cert_header``)."""

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
from gateway.config import ConfigError
from gateway.proxy import CLIENT_CERTIFICATE_HEADERS
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


RFC9440_FORM = {"TLS_CLIENT_CERT_FORM": "rfc9440"}


@pytest.fixture
def tls_app(make_app: Callable[..., Flask], test_pki: TestPki) -> Flask:
    return make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])


@pytest.fixture
def rfc9440_app(make_app: Callable[..., Flask], test_pki: TestPki) -> Flask:
    return make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)], **RFC9440_FORM)


@pytest.fixture
def issued(tls_app: Flask, test_pki: TestPki, clock: FixedClock) -> IssuedCertificate:
    return _holder(tls_app, test_pki, clock)


def _holder(app: Flask, test_pki: TestPki, clock: FixedClock) -> IssuedCertificate:
    """A certificate whose subject has an account in ``app``."""
    number = random_id_card_number()
    get_accounts(app).create_person(real_name="钱七", id_card_number=number, at=clock.now())
    return test_pki.issue("person", "钱七", id_number=number, at=PKI_EPOCH)


@pytest.fixture
def stranger(test_pki: TestPki) -> IssuedCertificate:
    """A valid certificate of the same PKI whose subject has no account."""
    return test_pki.issue("person", "陌生人", id_number=random_id_card_number(), at=PKI_EPOCH)


def tls_login(app: Flask, headers: dict[str, str], peer: str = TRUSTED_PROXY) -> Any:
    return app.test_client().post(
        "/api/v1/login/tls",
        json={},
        headers={"Origin": ORIGIN, **headers},
        environ_base={"REMOTE_ADDR": peer},
    )


def ignored_headers(app: Flask) -> list[tuple[str, str, str | None]]:
    """(outcome, address, detail) of each ``tls_header_ignored`` audit record."""
    return [
        (r.outcome, r.address, r.detail)
        for r in get_audit_log(app).records()
        if r.event == "tls_header_ignored"
    ]


def login_outcomes(app: Flask) -> list[str]:
    return [r.outcome for r in get_audit_log(app).records() if r.event == "login"]


@pytest.mark.parametrize(
    ("settings", "make_headers"),
    [({}, nginx_headers), (RFC9440_FORM, rfc9440_headers)],
    ids=["escaped-pem", "rfc9440"],
)
def test_tls_login_through_trusted_proxy(
    make_app: Callable[..., Flask],
    test_pki: TestPki,
    clock: FixedClock,
    settings: dict[str, str],
    make_headers: Callable[..., dict[str, str]],
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)], **settings)
    holder = _holder(app, test_pki, clock)
    response = tls_login(app, make_headers(holder))
    assert response.status_code == 200, response.json
    assert response.json["amr"] == ["x509"]
    assert response.json["account"]["display_name"] == "钱七"
    assert ignored_headers(app) == []


def test_nginx_form_ignores_a_client_cert_header_from_the_trusted_proxy(
    tls_app: Flask, issued: IssuedCertificate
) -> None:
    # A proxy that sets only X-SSL-Client-Cert passes a client's own Client-Cert on unchanged:
    # someone without a client certificate sends a known account's (public) certificate.
    response = tls_login(tls_app, rfc9440_headers(issued))
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    assert response.headers.getlist("Set-Cookie") == []  # no session
    assert ignored_headers(tls_app) == [
        (
            "ignored",
            TRUSTED_PROXY,
            "client certificate header Client-Cert, Client-Cert-Chain from a trusted proxy "
            "(believed: X-SSL-Client-Cert from a trusted proxy)",
        )
    ]
    assert login_outcomes(tls_app) == ["bad_request"]


def test_nginx_form_believes_its_header_over_a_forged_client_cert(
    tls_app: Flask, issued: IssuedCertificate, stranger: IssuedCertificate
) -> None:
    # The proxy verified the stranger's certificate; the stranger also forges the holder's
    # Client-Cert. The login is the stranger's (no account), never the holder's.
    response = tls_login(tls_app, {**nginx_headers(stranger), **rfc9440_headers(issued)})
    assert response.status_code == 401 and response.json["error"] == "account_not_found"
    assert [(o, a) for o, a, _ in ignored_headers(tls_app)] == [("ignored", TRUSTED_PROXY)]


def test_rfc9440_form_ignores_the_nginx_header(
    rfc9440_app: Flask, test_pki: TestPki, clock: FixedClock, stranger: IssuedCertificate
) -> None:
    holder = _holder(rfc9440_app, test_pki, clock)
    response = tls_login(rfc9440_app, nginx_headers(holder))
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    response = tls_login(rfc9440_app, {**rfc9440_headers(stranger), **nginx_headers(holder)})
    assert response.status_code == 401 and response.json["error"] == "account_not_found"
    details = [d for _, _, d in ignored_headers(rfc9440_app)]
    assert (
        details
        == [
            "client certificate header X-SSL-Client-Cert from a trusted proxy "
            "(believed: Client-Cert, Client-Cert-Chain from a trusted proxy)"
        ]
        * 2
    )
    assert login_outcomes(rfc9440_app) == ["bad_request", "account_not_found"]


def test_configured_header_name_is_the_only_one_read(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)], TLS_CLIENT_CERT_HEADER="X-Verified")
    holder = _holder(app, test_pki, clock)
    escaped = nginx_headers(holder)["X-SSL-Client-Cert"]
    response = tls_login(app, {"X-SSL-Client-Cert": escaped})
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    response = tls_login(app, {"X-Verified": escaped})
    assert response.status_code == 200, response.json
    assert [d for _, _, d in ignored_headers(app)] == [
        "client certificate header X-SSL-Client-Cert from a trusted proxy "
        "(believed: X-Verified from a trusted proxy)"
    ]


@pytest.mark.parametrize("header", sorted(CLIENT_CERTIFICATE_HEADERS))
@pytest.mark.parametrize("settings", [{}, RFC9440_FORM], ids=["escaped-pem", "rfc9440"])
def test_every_other_certificate_header_is_audited(
    make_app: Callable[..., Flask], test_pki: TestPki, settings: dict[str, str], header: str
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)], **settings)
    believed = {"X-SSL-Client-Cert"} if not settings else {"Client-Cert", "Client-Cert-Chain"}
    response = tls_login(app, {header: "MIIB"})
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    if header in believed:
        assert ignored_headers(app) == []  # read (and found malformed), not ignored
    else:
        [(outcome, _, detail)] = ignored_headers(app)
        assert outcome == "ignored" and detail is not None
        assert detail.startswith(f"client certificate header {header} from a trusted proxy")


@pytest.mark.parametrize("make_headers", [rfc9440_headers, nginx_headers])
@pytest.mark.parametrize("settings", [{}, RFC9440_FORM], ids=["escaped-pem", "rfc9440"])
def test_header_from_untrusted_peer_is_ignored_and_audited(
    make_app: Callable[..., Flask],
    test_pki: TestPki,
    clock: FixedClock,
    settings: dict[str, str],
    make_headers: Callable[..., dict[str, str]],
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)], **settings)
    holder = _holder(app, test_pki, clock)
    response = tls_login(app, make_headers(holder), peer="192.0.2.50")
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    [(outcome, address, detail)] = ignored_headers(app)
    assert (outcome, address) == ("ignored", "192.0.2.50")
    assert detail is not None and "from an untrusted peer" in detail
    assert ", ".join(make_headers(holder)) in detail
    assert login_outcomes(app) == ["bad_request"]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"TLS_CLIENT_CERT_FORM": "pem"}, "tls_client_cert_form"),
        ({"TLS_CLIENT_CERT_FORM": "rfc9440", "TLS_CLIENT_CERT_HEADER": "X-SSL-Client-Cert"},
         "tls_client_cert_header"),
        ({"TLS_CLIENT_CERT_HEADER": "Client-Cert"}, "tls_client_cert_header"),
        ({"TLS_CLIENT_CERT_HEADER": "X_SSL_Client_Cert"}, "tls_client_cert_header"),
        ({"TLS_CLIENT_CERT_HEADER": ""}, "tls_client_cert_header"),
    ],
)  # fmt: skip
def test_certificate_header_settings_are_checked_at_start_up(
    make_app: Callable[..., Flask], settings: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError, match=f"create_app\\(config=...\\): {field}: "):
        make_app(**settings)


@pytest.mark.parametrize(
    ("settings", "headers"),
    [
        (RFC9440_FORM, {"Client-Cert": "not-a-byte-sequence"}),
        (RFC9440_FORM, {"Client-Cert": ":bm90IGEgY2VydA==:"}),
        (RFC9440_FORM, {}),
        ({}, {"X-SSL-Client-Cert": "-----BEGIN%20CERTIFICATE-----garbage"}),
        ({}, {}),
    ],
)
def test_bad_or_missing_header(
    make_app: Callable[..., Flask],
    test_pki: TestPki,
    settings: dict[str, str],
    headers: dict[str, str],
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)], **settings)
    response = tls_login(app, headers)
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    assert ignored_headers(app) == []


def test_tls_account_not_found(tls_app: Flask, stranger: IssuedCertificate) -> None:
    response = tls_login(tls_app, nginx_headers(stranger))
    assert response.status_code == 401 and response.json["error"] == "account_not_found"
