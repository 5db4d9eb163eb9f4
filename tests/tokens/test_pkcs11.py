"""PKCS#11 access on real SoftHSM tokens: listing, flags, signing per key type, errors."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.fixtures_softhsm import MakeSoftHsmToken, SoftHsmCredential
from tokens.errors import TokenError
from tokens.login_message import login_message
from tokens.pkcs11 import (
    ALGORITHMS_BY_KEY_TYPE,
    DEFAULT_MODULE_PATHS,
    SIGNING_METHODS,
    SOFTHSM_MODULE,
    KeyType,
    TokenLibrary,
    default_module_paths,
    key_type_of,
    raw_to_der,
    signing_method,
)

ORIGIN = "https://login.example.test"
NONCE = base64.urlsafe_b64encode(bytes(range(1, 33))).rstrip(b"=").decode()
MESSAGE = login_message(ORIGIN, "challenge-1", NONCE)


def verify(certificate: x509.Certificate, algorithm: str, signature: bytes, message: bytes) -> None:
    """Raises InvalidSignature unless ``signature`` is the DESIGN.md signature over ``message``."""
    key = certificate.public_key()
    if algorithm == "rsa-pkcs1-sha256":
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    elif algorithm == "rsa-pss-sha256":
        assert isinstance(key, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        key.verify(signature, message, pss, hashes.SHA256())
    elif algorithm == "ecdsa-sha256":
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert signature[0] == 0x30, "DER, not raw r||s"
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    elif algorithm == "ed25519":
        assert isinstance(key, ed25519.Ed25519PublicKey)
        key.verify(signature, message)
    else:
        raise AssertionError(algorithm)


def test_default_module_is_softhsm_here() -> None:
    assert default_module_paths("linux") == [SOFTHSM_MODULE]
    assert default_module_paths("plan9") == []
    assert all(paths for paths in DEFAULT_MODULE_PATHS.values())


def test_lists_tokens_with_pin_flags(
    token_library: TokenLibrary, rsa_token: SoftHsmCredential
) -> None:
    (token,) = [t for t in token_library.tokens() if t.label == rsa_token.token_label]
    assert token.slot_id == rsa_token.slot_id
    assert token.manufacturer == "SoftHSM project"
    assert (token.pin.count_low, token.pin.final_try, token.pin.locked) == (False, False, False)
    described = token.describe()
    assert described["token_label"] == rsa_token.token_label
    assert described["pin_locked"] is False
    assert any(slot.token == token for slot in token_library.slots())


def test_lists_certificates_with_their_keys(
    token_library: TokenLibrary, any_token: SoftHsmCredential
) -> None:
    module = token_library.modules[0]
    (token,) = [t for t in token_library.tokens() if t.label == any_token.token_label]
    (public,) = [c for c in module.certificates(token) if not c.is_ca]
    assert public.cert_id == any_token.cert_id
    assert public.certificate == any_token.provisioned.certificate
    assert public.has_private_key is None  # private objects are not visible without the PIN
    (logged_in,) = [c for c in module.certificates(token, any_token.pin) if not c.is_ca]
    assert logged_in.has_private_key is True


def test_certificate_entry_has_the_design_fields(
    token_library: TokenLibrary, p256_token: SoftHsmCredential
) -> None:
    (entry,) = token_library.certificates(token_label=p256_token.token_label)
    described = entry.describe()
    certificate = p256_token.provisioned.certificate
    assert described == {
        "token_label": p256_token.token_label,
        "cert_id": p256_token.cert_id.hex(),
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": format(certificate.serial_number, "x"),
        "not_after": described["not_after"],
        "key_type": "ec-p256",
        "certificate": base64.b64encode(entry.der).decode(),
    }
    assert described["not_after"].endswith("Z")
    assert "91440300MA5H8REU3K" in described["subject"]


@pytest.mark.parametrize(
    ("fixture", "key_type", "algorithm"),
    [
        ("rsa_token", KeyType.RSA, None),
        ("rsa_token", KeyType.RSA, "rsa-pkcs1-sha256"),
        ("rsa_token", KeyType.RSA, "rsa-pss-sha256"),
        ("p256_token", KeyType.EC_P256, None),
        ("ed25519_token", KeyType.ED25519, None),
    ],
)
def test_signature_verifies_for_each_key_type(
    request: pytest.FixtureRequest,
    token_library: TokenLibrary,
    fixture: str,
    key_type: KeyType,
    algorithm: str | None,
) -> None:
    credential: SoftHsmCredential = request.getfixturevalue(fixture)
    signed = token_library.sign_login(
        credential.cert_id, credential.pin, MESSAGE, signature_algorithm=algorithm
    )
    certificate = x509.load_der_x509_certificate(signed.certificate)
    assert certificate == credential.provisioned.certificate
    assert token_library.find_certificate(credential.cert_id).key_type is key_type
    verify(certificate, signed.signature_algorithm, signed.signature, MESSAGE)
    if algorithm is not None:
        assert signed.signature_algorithm == algorithm


def test_chain_holds_no_trust_anchor(
    token_library: TokenLibrary, rsa_token: SoftHsmCredential
) -> None:
    signed = token_library.sign_login(rsa_token.cert_id, rsa_token.pin, MESSAGE)
    for der in signed.chain:
        issuer = x509.load_der_x509_certificate(der)
        assert issuer.subject != issuer.issuer


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("wrong_pin", "pin_incorrect"),
        ("short_pin", "pin_incorrect"),
        ("long_pin", "pin_incorrect"),
        ("unknown_cert_id", "certificate_not_found"),
        ("unknown_token_label", "token_not_present"),
        ("pss_on_ec_key", "bad_request"),
        ("ecdsa_on_rsa_key", "bad_request"),
    ],
)
def test_sign_errors(
    token_library: TokenLibrary,
    rsa_token: SoftHsmCredential,
    p256_token: SoftHsmCredential,
    case: str,
    code: str,
) -> None:
    cert_id, pin, label, algorithm = rsa_token.cert_id, rsa_token.pin, None, None
    if case == "wrong_pin":
        pin = "wrongPIN"
    elif case == "short_pin":
        pin = "Zq"
    elif case == "long_pin":
        pin = "Zq" * 150
    elif case == "unknown_cert_id":
        cert_id = bytes.fromhex("00ff00ff")
    elif case == "unknown_token_label":
        label = "no-such-token"
    elif case == "pss_on_ec_key":
        cert_id, pin, algorithm = p256_token.cert_id, p256_token.pin, "rsa-pss-sha256"
    elif case == "ecdsa_on_rsa_key":
        algorithm = "ecdsa-sha256"
    with pytest.raises(TokenError) as raised:
        token_library.sign_login(
            cert_id, pin, MESSAGE, token_label=label, signature_algorithm=algorithm
        )
    assert raised.value.code == code
    assert pin not in str(raised.value) or pin == rsa_token.pin


def test_wrong_pin_then_right_pin_still_signs(
    token_library: TokenLibrary, p256_token: SoftHsmCredential
) -> None:
    with pytest.raises(TokenError):
        token_library.sign_login(p256_token.cert_id, "000000", MESSAGE)
    signed = token_library.sign_login(p256_token.cert_id, p256_token.pin, MESSAGE)
    verify(p256_token.provisioned.certificate, "ecdsa-sha256", signed.signature, MESSAGE)


def test_deleted_token_is_not_present(
    token_library: TokenLibrary, make_softhsm_token: MakeSoftHsmToken
) -> None:
    credential = make_softhsm_token(key="p256")
    entry = token_library.find_certificate(credential.cert_id)
    credential.kit.delete_token(credential.token_label)
    with pytest.raises(TokenError) as raised:
        token_library.modules[0].sign(
            entry, credential.pin, MESSAGE, SIGNING_METHODS["ecdsa-sha256"]
        )
    assert raised.value.code == "token_not_present"
    with pytest.raises(TokenError) as raised:
        token_library.sign_login(credential.cert_id, credential.pin, MESSAGE)
    assert raised.value.code in ("certificate_not_found", "token_not_present")
    with pytest.raises(TokenError) as raised:
        token_library.sign_login(
            credential.cert_id, credential.pin, MESSAGE, token_label=credential.token_label
        )
    assert raised.value.code == "token_not_present"


@pytest.mark.parametrize(
    ("modules", "code"),
    [
        (["/nonexistent/libpkcs11.so"], "unavailable"),
        (["/etc/hostname"], "unavailable"),
    ],
)
def test_module_that_cannot_load(modules: list[str], code: str) -> None:
    with pytest.raises(TokenError) as raised:
        TokenLibrary(modules)
    assert raised.value.code == code


def test_concurrent_signatures_on_one_token_are_serialised(
    token_library: TokenLibrary, p256_token: SoftHsmCredential
) -> None:
    results: list[bytes] = []
    failures: list[BaseException] = []

    def sign() -> None:
        try:
            signed = token_library.sign_login(p256_token.cert_id, p256_token.pin, MESSAGE)
            results.append(signed.signature)
        except BaseException as error:  # collected, asserted below
            failures.append(error)

    threads = [threading.Thread(target=sign) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(results) == 8
    for signature in results:
        verify(p256_token.provisioned.certificate, "ecdsa-sha256", signature, MESSAGE)


def test_softhsm_module_path_exists() -> None:
    assert Path(SOFTHSM_MODULE).is_file()


def _self_signed(private_key: Any) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "key type probe")])
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    edwards = (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)
    algorithm = None if isinstance(private_key, edwards) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(1)
        .not_valid_before(moment)
        .not_valid_after(moment + timedelta(days=1))
        .sign(private_key, algorithm)
    )


@pytest.mark.parametrize(
    ("private_key", "key_type", "algorithms"),
    [
        (
            rsa.generate_private_key(65537, 2048),
            KeyType.RSA,
            ("rsa-pkcs1-sha256", "rsa-pss-sha256"),
        ),  # noqa: E501
        (ec.generate_private_key(ec.SECP256R1()), KeyType.EC_P256, ("ecdsa-sha256",)),
        (ec.generate_private_key(ec.SECP384R1()), KeyType.EC_P384, ("ecdsa-sha256",)),
        (ec.generate_private_key(ec.SECP521R1()), KeyType.UNSUPPORTED, ()),
        (ed25519.Ed25519PrivateKey.generate(), KeyType.ED25519, ("ed25519",)),
        (ed448.Ed448PrivateKey.generate(), KeyType.UNSUPPORTED, ()),
    ],
)
def test_key_type_and_its_signature_algorithms(
    private_key: Any, key_type: KeyType, algorithms: tuple[str, ...]
) -> None:
    assert key_type_of(_self_signed(private_key)) is key_type
    assert ALGORITHMS_BY_KEY_TYPE[key_type] == algorithms
    if not algorithms:
        with pytest.raises(TokenError) as raised:
            signing_method(key_type)
        assert raised.value.code == "bad_request"
    else:
        assert signing_method(key_type).algorithm == algorithms[0]


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_raw_ecdsa_becomes_der(curve: ec.EllipticCurve) -> None:
    # CKM_ECDSA answers r||s, each as long as the curve order; the gateway takes DER.
    private_key = ec.generate_private_key(curve)
    r, s = decode_dss_signature(private_key.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))
    size = (curve.key_size + 7) // 8
    der = raw_to_der(r.to_bytes(size, "big") + s.to_bytes(size, "big"))
    private_key.public_key().verify(der, MESSAGE, ec.ECDSA(hashes.SHA256()))
