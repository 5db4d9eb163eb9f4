"""Challenge-signing login (/api/v1/login/token) end to end, with certificates from the test PKI
and software keys signing the same bytes the signing agent signs."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient

from certs.sm2 import Sm2PrivateKey
from gateway.accounts import get_accounts
from gateway.audit import get_audit_log
from gateway.clock import FixedClock
from softhsm.pki import IssuedCertificate, TestPki, random_id_card_number, random_uscc
from tests.fixtures_pki import PKI_EPOCH, PKI_VALIDATION_TIME
from tests.gateway.conftest import ORIGIN, pki_anchor_config, post_json


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def der(certificate: x509.Certificate) -> str:
    return b64(certificate.public_bytes(serialization.Encoding.DER))


def message(challenge: dict[str, str], origin: str = ORIGIN) -> bytes:
    return (
        f"certgate-login-v1\n{origin}\n{challenge['challenge_id']}\n{challenge['nonce']}\n"
    ).encode()


def sign(key: Any, algorithm: str, data: bytes) -> bytes:
    signers: dict[str, Callable[[], bytes]] = {
        "rsa-pkcs1-sha256": lambda: key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
        "rsa-pss-sha256": lambda: key.sign(
            data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
        ),
        "ecdsa-sha256": lambda: key.sign(data, ec.ECDSA(hashes.SHA256())),
        "ecdsa-sha256-raw": lambda: b"".join(
            n.to_bytes(32, "big")
            for n in decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        ),
        "ed25519": lambda: key.sign(data),
        "sm2-sm3": lambda: key.sign(data),
        "sm2-sm3-raw": lambda: b"".join(
            n.to_bytes(32, "big") for n in decode_dss_signature(key.sign(data))
        ),
        # Made with OpenSSL's empty ID, as a signer that forgot the GM/T 0009 default does.
        "sm2-sm3-empty-id": lambda: key.sign(data, b""),
    }
    return signers[algorithm]()


DEFAULT_ALGORITHM = {
    rsa.RSAPrivateKey: "rsa-pkcs1-sha256",
    ec.EllipticCurvePrivateKey: "ecdsa-sha256",
    ed25519.Ed25519PrivateKey: "ed25519",
    Sm2PrivateKey: "sm2-sm3",
}


def algorithm_for(key: Any) -> str:
    return next(v for k, v in DEFAULT_ALGORITHM.items() if isinstance(key, k))


def get_challenge(client: FlaskClient) -> dict[str, str]:
    response = post_json(client, "/api/v1/login/challenge", None)
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def token_login(
    client: FlaskClient,
    issued: IssuedCertificate,
    *,
    challenge: dict[str, str] | None = None,
    algorithm: str | None = None,
    signed: bytes | None = None,
    **overrides: Any,
) -> Any:
    challenge = challenge or get_challenge(client)
    assert issued.private_key is not None
    algorithm = algorithm or algorithm_for(issued.private_key)
    signature = sign(
        issued.private_key, algorithm, signed if signed is not None else message(challenge)
    )
    body = {
        "challenge_id": challenge["challenge_id"],
        "certificate": der(issued.certificate),
        "chain": [der(c) for c in issued.chain[:-1]],
        "signature": b64(signature),
        "signature_algorithm": algorithm.removesuffix("-raw").removesuffix("-empty-id"),
        **overrides,
    }
    headers = overrides.pop("headers", {"Origin": ORIGIN})
    environ = overrides.pop("environ_base", {})
    body.pop("headers", None)
    body.pop("environ_base", None)
    return client.post("/api/v1/login/token", json=body, headers=headers, environ_base=environ)


@pytest.fixture
def token_app(make_app: Callable[..., Flask], test_pki: TestPki) -> Flask:
    return make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])


@pytest.fixture
def token_client(token_app: Flask) -> FlaskClient:
    return token_app.test_client()


def person_with_account(
    pki: TestPki, app: Flask, clock: FixedClock, **issue: Any
) -> tuple[IssuedCertificate, Any]:
    number = random_id_card_number()
    issued = pki.issue("person", "王五", id_number=number, at=PKI_EPOCH, **issue)
    view = get_accounts(app).create_person(real_name="王五", id_card_number=number, at=clock.now())
    return issued, view


# --- the challenge ------------------------------------------------------------------------------


def test_challenge_shape_and_cookie(client: FlaskClient, clock: FixedClock) -> None:
    response = post_json(client, "/api/v1/login/challenge", None)
    body = response.json
    assert set(body) == {"challenge_id", "nonce", "origin", "expires_at"}
    assert body["origin"] == ORIGIN
    assert len(base64.urlsafe_b64decode(body["nonce"] + "=")) == 32
    assert body["expires_at"] == (clock.now() + timedelta(seconds=120)).isoformat().replace(
        "+00:00", "Z"
    )
    cookie = next(
        c
        for c in response.headers.getlist("Set-Cookie")
        if c.startswith("__Host-certgate_prelogin=")
    )
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert get_challenge(client)["challenge_id"] != body["challenge_id"]


# --- successful logins ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "ca", "algorithm"),
    [
        ("rsa2048", "rsa", "rsa-pkcs1-sha256"),
        ("rsa2048", "rsa", "rsa-pss-sha256"),
        ("p256", "p256", "ecdsa-sha256"),
        ("p256", "p256", "ecdsa-sha256-raw"),
        ("ed25519", "rsa", "ed25519"),
        ("sm2", "sm2", "sm2-sm3"),
        ("sm2", "sm2", "sm2-sm3-raw"),
        ("sm2", "rsa", "sm2-sm3"),  # an SM2 key under an RSA CA
        ("rsa2048", "sm2", "rsa-pkcs1-sha256"),  # an RSA key under the SM2 CA
    ],
)
def test_person_signs_in_with_each_algorithm(
    token_app: Flask, test_pki: TestPki, clock: FixedClock, key: str, ca: str, algorithm: str
) -> None:
    issued, view = person_with_account(test_pki, token_app, clock, key=key, ca=ca)
    client = token_app.test_client()
    response = token_login(client, issued, algorithm=algorithm)
    assert response.status_code == 200, response.json
    assert response.json["account"] == {"id": view.id, "kind": "person", "display_name": "王五"}
    # The test anchor is not configured hardware_keys: a software-held key (tests/gateway/
    # test_assurance.py covers the anchor setting).
    assert response.json["amr"] == ["swk", "pin"]
    session = client.get("/api/v1/session").json
    assert session["amr"] == ["swk", "pin"] and session["account"]["id"] == view.id


def test_enterprise_signs_in_by_credit_code(
    token_app: Flask, test_pki: TestPki, clock: FixedClock
) -> None:
    code = random_uscc()
    issued = test_pki.issue("enterprise", "示例建设有限公司", uscc=code, at=PKI_EPOCH)
    view = get_accounts(token_app).create_enterprise(
        unified_social_credit_code=code, name="示例建设有限公司", at=clock.now()
    )
    response = token_login(token_app.test_client(), issued)
    assert response.status_code == 200, response.json
    assert response.json["account"]["uscc"] == code and response.json["account"]["id"] == view.id
    records = get_audit_log(token_app).records()
    assert records[-1].outcome == "ok" and records[-1].method == "token"
    assert (
        records[-1].certificate_thumbprint == issued.certificate.fingerprint(hashes.SHA256()).hex()
    )
    assert records[-1].account_public_id == view.id


def test_explicit_binding_signs_in(token_app: Flask, test_pki: TestPki, clock: FixedClock) -> None:
    issued = test_pki.issue("person", "赵六", id_number=random_id_card_number(), at=PKI_EPOCH)
    accounts = get_accounts(token_app)
    view = accounts.create_person(
        real_name="赵六", id_card_number=random_id_card_number(), at=clock.now()
    )
    accounts.bind(
        view.id, "sha256", issued.certificate.fingerprint(hashes.SHA256()).hex(), at=clock.now()
    )
    response = token_login(token_app.test_client(), issued)
    assert response.status_code == 200 and response.json["account"]["id"] == view.id


# --- refusals ---------------------------------------------------------------------------------


def test_challenge_unknown(token_app: Flask, test_pki: TestPki, clock: FixedClock) -> None:
    issued, _ = person_with_account(test_pki, token_app, clock)
    client = token_app.test_client()
    challenge = get_challenge(client)
    forged = {**challenge, "challenge_id": "A" * 24}
    response = token_login(client, issued, challenge=forged)
    assert response.status_code == 401 and response.json["error"] == "challenge_unknown"
    # A challenge is bound to the pre-login cookie of the browser that asked for it.
    other = token_app.test_client()
    response = token_login(other, issued, challenge=challenge)
    assert response.json["error"] == "challenge_unknown"
    # ... and stays usable by that browser.
    assert token_login(client, issued, challenge=challenge).status_code == 200


def test_challenge_used(token_app: Flask, test_pki: TestPki, clock: FixedClock) -> None:
    issued, _ = person_with_account(test_pki, token_app, clock)
    client = token_app.test_client()
    challenge = get_challenge(client)
    assert token_login(client, issued, challenge=challenge).status_code == 200
    response = token_login(client, issued, challenge=challenge)
    assert response.status_code == 401 and response.json["error"] == "challenge_used"


def test_failed_attempt_uses_up_the_challenge(
    token_app: Flask, test_pki: TestPki, clock: FixedClock
) -> None:
    issued, _ = person_with_account(test_pki, token_app, clock)
    client = token_app.test_client()
    challenge = get_challenge(client)
    bad = token_login(client, issued, challenge=challenge, signed=b"something else")
    assert bad.json["error"] == "signature_invalid"
    assert token_login(client, issued, challenge=challenge).json["error"] == "challenge_used"


def test_challenge_expired(token_app: Flask, test_pki: TestPki, clock: FixedClock) -> None:
    issued, _ = person_with_account(test_pki, token_app, clock)
    client = token_app.test_client()
    challenge = get_challenge(client)
    clock.advance(120)
    response = token_login(client, issued, challenge=challenge)
    assert response.status_code == 401 and response.json["error"] == "challenge_expired"


def test_challenge_still_valid_just_before_expiry(
    token_app: Flask, test_pki: TestPki, clock: FixedClock
) -> None:
    issued, _ = person_with_account(test_pki, token_app, clock)
    client = token_app.test_client()
    challenge = get_challenge(client)
    clock.advance(119)
    assert token_login(client, issued, challenge=challenge).status_code == 200


@pytest.mark.parametrize("signed_origin", ["https://evil.example", "http://login.example.cn"])
def test_signature_for_another_origin_is_invalid(
    token_app: Flask, test_pki: TestPki, clock: FixedClock, signed_origin: str
) -> None:
    issued, _ = person_with_account(test_pki, token_app, clock)
    client = token_app.test_client()
    challenge = get_challenge(client)
    response = token_login(
        client, issued, challenge=challenge, signed=message(challenge, signed_origin)
    )
    assert response.status_code == 401 and response.json["error"] == "signature_invalid"


@pytest.mark.parametrize(
    ("key", "ca", "signed_as", "claimed"),
    [
        ("rsa2048", "rsa", "rsa-pkcs1-sha256", "rsa-pss-sha256"),
        ("rsa2048", "rsa", "rsa-pss-sha256", "rsa-pkcs1-sha256"),
        ("p256", "p256", "ecdsa-sha256", "rsa-pkcs1-sha256"),
        ("rsa2048", "rsa", "rsa-pkcs1-sha256", "ed25519"),
    ],
)
def test_signature_invalid_for_wrong_algorithm(
    token_app: Flask,
    test_pki: TestPki,
    clock: FixedClock,
    key: str,
    ca: str,
    signed_as: str,
    claimed: str,
) -> None:
    issued, _ = person_with_account(test_pki, token_app, clock, key=key, ca=ca)
    response = token_login(
        token_app.test_client(), issued, algorithm=signed_as, signature_algorithm=claimed
    )
    assert response.status_code == 401 and response.json["error"] == "signature_invalid"


@pytest.mark.parametrize(
    ("key", "ca", "signed_as", "claimed"),
    [
        ("rsa2048", "rsa", "rsa-pkcs1-sha256", "sm2-sm3"),  # sm2-sm3 claimed for an RSA key
        ("sm2", "sm2", "sm2-sm3", "ecdsa-sha256"),  # an SM2 key claimed as ECDSA
        ("sm2", "sm2", "sm2-sm3-empty-id", "sm2-sm3"),  # signed with another signer ID
    ],
)
def test_sm2_signature_mismatches_are_invalid(
    token_app: Flask, test_pki: TestPki, clock: FixedClock, key: str, ca: str, signed_as: str,
    claimed: str,
) -> None:  # fmt: skip
    issued, _ = person_with_account(test_pki, token_app, clock, key=key, ca=ca)
    response = token_login(
        token_app.test_client(), issued, algorithm=signed_as, signature_algorithm=claimed
    )
    assert response.status_code == 401 and response.json["error"] == "signature_invalid"


def test_sm2_login_uses_the_anchors_signer_id(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    """An anchor configured with another SM2 signer ID: the login signature made with it
    verifies, and the chain (signed with the standard ID) then does not."""
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki, sm2_signer_id="ALICE123@YAHOO.COM")])
    issued, _ = person_with_account(test_pki, app, clock, key="sm2", ca="sm2")
    assert isinstance(issued.private_key, Sm2PrivateKey)
    client = app.test_client()
    challenge = get_challenge(client)
    signature = issued.private_key.sign(message(challenge), b"ALICE123@YAHOO.COM")
    response = token_login(
        client, issued, challenge=challenge, signature=b64(signature), signature_algorithm="sm2-sm3"
    )
    assert response.status_code == 401 and response.json["error"] == "certificate_untrusted"
    response = token_login(app.test_client(), issued)  # the standard ID: not this anchor's
    assert response.status_code == 401 and response.json["error"] == "signature_invalid"


def test_origin_mismatch(token_app: Flask, test_pki: TestPki, clock: FixedClock) -> None:
    issued, _ = person_with_account(test_pki, token_app, clock)
    client = token_app.test_client()
    response = token_login(client, issued, headers={"Origin": "https://evil.example"})
    assert response.status_code == 401 and response.json["error"] == "origin_mismatch"
    response = token_login(client, issued, origin="https://evil.example")
    assert response.status_code == 401 and response.json["error"] == "origin_mismatch"


def test_certificate_usage_invalid(token_app: Flask, test_pki: TestPki, clock: FixedClock) -> None:
    issued, _ = person_with_account(test_pki, token_app, clock, key_usage=("key_encipherment",))
    response = token_login(token_app.test_client(), issued)
    assert response.status_code == 401 and response.json["error"] == "certificate_usage_invalid"


def test_account_not_found(token_app: Flask, test_pki: TestPki) -> None:
    issued = test_pki.issue("person", "无账户", id_number=random_id_card_number(), at=PKI_EPOCH)
    response = token_login(token_app.test_client(), issued)
    assert response.status_code == 401 and response.json["error"] == "account_not_found"


def test_account_ambiguous(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    app = make_app(
        TRUST_ANCHORS=[pki_anchor_config(test_pki, mapping={"lookups": ["person: email"]})]
    )
    accounts = get_accounts(app)
    for _ in range(2):
        accounts.create_person(
            real_name="同名",
            id_card_number=random_id_card_number(),
            email="shared@example.cn",
            at=clock.now(),
        )
    authority = test_pki.authority("rsa")
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "同名"),
                    x509.NameAttribute(NameOID.EMAIL_ADDRESS, "shared@example.cn"),
                ]
            )
        )
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(PKI_EPOCH)
        .not_valid_after(PKI_EPOCH + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.private_key.public_key()),
            critical=False,
        )
        .sign(authority.private_key, hashes.SHA256())
    )
    issued = IssuedCertificate(certificate, key, test_pki.chain("rsa"), *([None] * 3))  # type: ignore[arg-type]
    response = token_login(app.test_client(), issued)
    assert response.status_code == 409 and response.json["error"] == "account_ambiguous"


def test_certificate_untrusted(token_app: Flask) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(PKI_EPOCH)
        .not_valid_after(PKI_EPOCH + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    issued = IssuedCertificate(certificate, key, [], *([None] * 3))  # type: ignore[arg-type]
    response = token_login(token_app.test_client(), issued)
    assert response.status_code == 401 and response.json["error"] == "certificate_untrusted"


def test_certificate_expired(token_app: Flask, test_pki: TestPki, clock: FixedClock) -> None:
    issued, _ = person_with_account(
        test_pki, token_app, clock, valid_days=1, not_before=PKI_EPOCH - timedelta(days=10)
    )
    response = token_login(token_app.test_client(), issued)
    assert response.status_code == 401 and response.json["error"] == "certificate_expired"


def test_certificate_not_yet_valid(token_app: Flask, test_pki: TestPki, clock: FixedClock) -> None:
    issued, _ = person_with_account(
        test_pki, token_app, clock, not_before=PKI_VALIDATION_TIME + timedelta(days=3)
    )
    response = token_login(token_app.test_client(), issued)
    assert response.status_code == 401
    assert response.json["error"] == "certificate_not_yet_valid"


def test_certificate_revoked(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    number = random_id_card_number()
    issued = test_pki.issue("person", "吊销", id_number=number, at=PKI_EPOCH)
    test_pki.revoke(issued.serial, reason="key_compromise", at=PKI_EPOCH + timedelta(hours=12))
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])  # loads the new CRL
    get_accounts(app).create_person(real_name="吊销", id_card_number=number, at=clock.now())
    response = token_login(
        app.test_client(), issued, headers={"Origin": ORIGIN, "Accept-Language": "en"}
    )
    assert response.status_code == 401 and response.json["error"] == "certificate_revoked"
    assert "key compromise" in response.json["message"]


def test_revocation_unavailable(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    # Hard-fail, no CRL files, and the PKI's CRL and OCSP servers are not running.
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki, crl=[])])
    issued, _ = person_with_account(test_pki, app, clock)
    response = token_login(app.test_client(), issued)
    assert response.status_code == 401 and response.json["error"] == "revocation_unavailable"


def test_soft_fail_lets_the_login_through(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki, crl=[], revocation="soft-fail")])
    issued, _ = person_with_account(test_pki, app, clock)
    assert token_login(app.test_client(), issued).status_code == 200


def test_no_trust_anchors_is_unavailable(app: Flask, test_pki: TestPki, clock: FixedClock) -> None:
    issued, _ = person_with_account(test_pki, app, clock)
    response = token_login(app.test_client(), issued)
    assert response.status_code == 503 and response.json["error"] == "unavailable"


@pytest.mark.parametrize("status", ["frozen", "terminated"])
def test_token_account_disabled(
    token_app: Flask, test_pki: TestPki, clock: FixedClock, status: str
) -> None:
    issued, view = person_with_account(test_pki, token_app, clock)
    get_accounts(token_app).set_status(view.id, status, at=clock.now())
    response = token_login(token_app.test_client(), issued)
    assert response.status_code == 403 and response.json["error"] == "account_disabled"


def test_a_password_lock_does_not_stop_the_key(
    token_app: Flask, test_pki: TestPki, clock: FixedClock
) -> None:
    # locked_until is the password lock: the key holder still signs in (tests/gateway/
    # test_lockout.py).
    issued, view = person_with_account(test_pki, token_app, clock)
    accounts = get_accounts(token_app)
    accounts.lock(
        accounts.find(view.id).id, until=clock.now() + timedelta(minutes=5), at=clock.now()
    )
    response = token_login(token_app.test_client(), issued)
    assert response.status_code == 200, response.json


def test_bad_signatures_count_against_the_address_only(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)], ADDRESS_ATTEMPT_LIMIT=8)
    issued, _ = person_with_account(test_pki, app, clock)
    attacker = app.test_client()
    codes = [token_login(attacker, issued, signed=b"x").json["error"] for _ in range(9)]
    assert codes == ["signature_invalid"] * 8 + ["rate_limited"]
    # Certificates are public: the holder, elsewhere, is not locked out by someone else's junk.
    holder = app.test_client()
    response = token_login(holder, issued, environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert response.status_code == 200, response.json


def test_key_holder_attempts_are_limited_per_certificate(
    token_app: Flask, test_pki: TestPki
) -> None:
    stranger = test_pki.issue("person", "无账户", id_number=random_id_card_number(), at=PKI_EPOCH)
    client = token_app.test_client()
    limit = token_app.config["ACCOUNT_ATTEMPT_LIMIT"]
    codes = [token_login(client, stranger).json["error"] for _ in range(limit + 1)]
    assert codes == ["account_not_found"] * limit + ["rate_limited"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"certificate": "not base64!"},
        {"certificate": b64(b"not a certificate")},
        {"signature": 12},
        {"chain": "not a list"},
        {"chain": [b64(b"junk")]},
        {"signature_algorithm": "md5-rsa"},
        {"challenge_id": ""},
    ],
)
def test_token_bad_request(
    token_app: Flask, test_pki: TestPki, clock: FixedClock, overrides: dict[str, Any]
) -> None:
    issued, _ = person_with_account(test_pki, token_app, clock)
    response = token_login(token_app.test_client(), issued, **overrides)
    assert response.status_code == 400 and response.json["error"] == "bad_request"


def test_refusals_keep_personal_data_out_of_logs_and_trail(
    make_app: Callable[..., Flask],
    test_pki: TestPki,
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    number = random_id_card_number()
    issued = test_pki.issue(
        "person", "隐私测试", id_number=number, at=PKI_EPOCH, identity_in="both"
    )
    test_pki.revoke(issued.serial, at=PKI_EPOCH + timedelta(hours=12))
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])
    with caplog.at_level("DEBUG"):
        assert token_login(app.test_client(), issued).json["error"] == "certificate_revoked"
        stranger = test_pki.issue(
            "person", "隐私测试", id_number=number, at=PKI_EPOCH, identity_in="both"
        )
        assert token_login(app.test_client(), stranger).json["error"] == "account_not_found"
    trail = " ".join(str(vars(r)) for r in get_audit_log(app).records())
    for secret in (number, "隐私测试"):
        assert secret not in caplog.text and secret not in trail


def test_configured_intermediates_complete_a_bare_certificate(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    with_intermediates = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])
    issued, _ = person_with_account(test_pki, with_intermediates, clock)
    assert token_login(with_intermediates.test_client(), issued, chain=[]).status_code == 200

    entry = pki_anchor_config(test_pki)
    del entry["intermediates"]
    root_only = make_app(TRUST_ANCHORS=[entry])
    issued, _ = person_with_account(test_pki, root_only, clock)
    response = token_login(root_only.test_client(), issued, chain=[])
    assert response.json["error"] == "certificate_untrusted"
    assert token_login(root_only.test_client(), issued).status_code == 200  # chain sent


def test_crls_from_urls(
    make_app: Callable[..., Flask], test_pki: TestPki, running_pki: Any, clock: FixedClock
) -> None:
    urls = [running_pki.crl_url(ca) for ca in ("rsa", "root")]
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki, crl=urls)])
    issued, _ = person_with_account(test_pki, app, clock)
    assert token_login(app.test_client(), issued).status_code == 200


def test_unreachable_crl_url_does_not_stop_start_up(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki, crl=["http://127.0.0.1:9/x.crl"])])
    issued, _ = person_with_account(test_pki, app, clock)
    response = token_login(app.test_client(), issued)
    assert response.json["error"] == "revocation_unavailable"
