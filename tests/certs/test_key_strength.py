"""Login-certificate key strength per trust anchor: RSA-2048 and P-256 at least by default; an
anchor that still issues RSA-1024 (old Chinese USB keys) may allow it, and the answer says so."""

from __future__ import annotations

import warnings
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from certs.errors import CertificateUntrusted
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from certs.validation import ChainValidator
from tests.certs.chains import AT, EPOCH, Issued, key_usage, make_ca, name

POLICY = ValidationPolicy(revocation=RevocationMode.OFF)


def _leaf_with_key(issuer: Issued, public_key: object) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name("张三 Key Person"))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(4242)
        .not_valid_before(EPOCH)
        .not_valid_after(EPOCH + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(key_usage("digital_signature"), True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    )
    return builder.sign(issuer.key, hashes.SHA256())


def _validate(public_key: object, policy: ValidationPolicy = POLICY):
    root = make_ca("Key Test Root")
    ca = make_ca("Key Test CA", issuer=root, serial=2)
    leaf = _leaf_with_key(ca, public_key)
    validator = ChainValidator([TrustAnchor(root.certificate, policy)])
    return validator.validate(leaf, [ca.certificate], at=AT)


def _rsa(bits: int) -> object:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()


def _dsa() -> object:
    with warnings.catch_warnings():
        # Made only to be refused: pyca/cryptography 51 deprecates DSA.
        warnings.simplefilter("ignore")
        return dsa.generate_private_key(2048).public_key()


def test_rsa_2048_and_p256_are_accepted_without_a_word() -> None:
    assert _validate(_rsa(2048)).warnings == ()
    assert _validate(ec.generate_private_key(ec.SECP256R1()).public_key()).warnings == ()


@pytest.mark.parametrize(
    ("key", "detail"),
    [
        (lambda: _rsa(1024), "RSA key of 1024 bits is below this trust anchor's minimum of 2048"),
        (lambda: ec.generate_private_key(ec.SECP192R1()).public_key(), "EC key of 192 bits"),
        (lambda: ec.generate_private_key(ec.SECP224R1()).public_key(), "EC key of 224 bits"),
        (_dsa, "DSA keys are not accepted"),
    ],
    ids=["rsa-1024", "p-192", "p-224", "dsa"],
)
def test_weak_keys_are_refused_by_default(key, detail: str) -> None:
    with pytest.raises(CertificateUntrusted) as raised:
        _validate(key())
    assert detail in raised.value.detail


def test_an_anchor_may_allow_rsa_1024_and_the_answer_warns() -> None:
    chain = _validate(_rsa(1024), POLICY.replace(minimum_rsa_bits=1024))
    assert chain.warnings == (
        "weak key: RSA-1024 accepted only because this trust anchor allows it "
        "(minimum_rsa_bits = 1024)",
    )


@pytest.mark.parametrize("bits", [512, 1023, 20000])
def test_no_policy_accepts_a_factorable_key_size(bits: int) -> None:
    with pytest.raises(ValueError, match="minimum_rsa_bits"):
        ValidationPolicy(minimum_rsa_bits=bits)
