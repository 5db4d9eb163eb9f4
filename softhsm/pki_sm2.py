"""SM2 in the test PKI: certificates and CRLs signed SM2-with-SM3, and SM2 subject keys.

pyca/cryptography's builders cannot sign with an SM2 key nor take one as the subject key. The
builders still make everything else (names, extensions, validity): a draft is signed with a
throw-away P-256 key, then its TBS gets the SM2 subject key and the SM2-with-SM3 algorithm
identifier (asn1crypto) and is signed again — with SM2 (``certs.sm2``, signer ID
1234567812345678 unless told otherwise) or, for an SM2 key under an RSA or EC issuer (a mixed
chain), with the issuer's own key.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache

from asn1crypto import algos as asn1_algos
from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from certs.der import encode_tlv
from certs.sm2 import (
    DEFAULT_SIGNER_ID,
    SM2_WITH_SM3_ALGORITHM,
    Sm2PrivateKey,
    Sm2PublicKey,
)

PrivateKey = CertificateIssuerPrivateKeyTypes | Sm2PrivateKey
PublicKey = CertificatePublicKeyTypes | Sm2PublicKey

_SEQUENCE = 0x30
_BIT_STRING = 0x03
_PEM_LABEL = "PRIVATE KEY"
_PEM_BODY = re.compile(rb"-----BEGIN PRIVATE KEY-----(.+?)-----END PRIVATE KEY-----", re.S)


@lru_cache(maxsize=1)
def _draft_key() -> ec.EllipticCurvePrivateKey:
    """Signs drafts whose signature is replaced at once; never leaves this module."""
    return ec.generate_private_key(ec.SECP256R1())


def public_key_of(private_key: PrivateKey) -> PublicKey:
    return private_key.public_key()


def key_identifier(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    """RFC 5280 §4.2.1.2 method (1), for SM2 keys as for the others."""
    if isinstance(public_key, Sm2PublicKey):
        return x509.SubjectKeyIdentifier(public_key.key_identifier())
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def _signature_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _sign_bytes(key: CertificateIssuerPrivateKeyTypes, data: bytes) -> bytes:
    """What ``builder.sign(key, SHA-256)`` puts in the signature, for a re-signed TBS."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise TypeError(f"cannot sign with {type(key).__name__}")


def _assemble(tbs_der: bytes, algorithm_der: bytes, signature: bytes) -> bytes:
    body = tbs_der + algorithm_der + encode_tlv(_BIT_STRING, b"\x00" + signature)
    return encode_tlv(_SEQUENCE, body)


def sign_certificate(
    builder: x509.CertificateBuilder,
    public_key: PublicKey,
    issuer_key: PrivateKey,
    *,
    signer_id: bytes = DEFAULT_SIGNER_ID,
) -> x509.Certificate:
    """``builder`` (everything but the public key) for ``public_key``, signed by ``issuer_key``."""
    sm2_subject = isinstance(public_key, Sm2PublicKey)
    if not sm2_subject and not isinstance(issuer_key, Sm2PrivateKey):
        assert not isinstance(public_key, Sm2PublicKey)
        return builder.public_key(public_key).sign(issuer_key, _signature_hash(issuer_key))
    draft_key = _draft_key()
    draft_public = draft_key.public_key() if isinstance(public_key, Sm2PublicKey) else public_key
    if isinstance(issuer_key, Sm2PrivateKey):
        draft = builder.public_key(draft_public).sign(draft_key, hashes.SHA256())
    else:
        draft = builder.public_key(draft_public).sign(issuer_key, _signature_hash(issuer_key))
    parsed = asn1_x509.Certificate.load(draft.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"]
    if isinstance(public_key, Sm2PublicKey):
        tbs["subject_public_key_info"] = asn1_keys.PublicKeyInfo.load(public_key.spki)
    if isinstance(issuer_key, Sm2PrivateKey):
        tbs["signature"] = asn1_algos.SignedDigestAlgorithm.load(SM2_WITH_SM3_ALGORITHM)
        tbs_der = tbs.dump()
        signature = issuer_key.sign(tbs_der, signer_id)
    else:
        tbs_der = tbs.dump()
        signature = _sign_bytes(issuer_key, tbs_der)
    algorithm_der = tbs["signature"].dump()
    return x509.load_der_x509_certificate(_assemble(tbs_der, algorithm_der, signature))


def sign_crl(
    builder: x509.CertificateRevocationListBuilder,
    issuer_key: PrivateKey,
    *,
    signer_id: bytes = DEFAULT_SIGNER_ID,
) -> x509.CertificateRevocationList:
    if not isinstance(issuer_key, Sm2PrivateKey):
        return builder.sign(issuer_key, _signature_hash(issuer_key))
    draft = builder.sign(_draft_key(), hashes.SHA256())
    parsed = asn1_crl.CertificateList.load(draft.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_cert_list"]
    tbs["signature"] = asn1_algos.SignedDigestAlgorithm.load(SM2_WITH_SM3_ALGORITHM)
    tbs_der = tbs.dump()
    signature = issuer_key.sign(tbs_der, signer_id)
    return x509.load_der_x509_crl(_assemble(tbs_der, SM2_WITH_SM3_ALGORITHM, signature))


def sm2_private_key_pem(key: Sm2PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM, which ``openssl`` reads too (``openssl ocsp -rkey``)."""
    body = base64.encodebytes(key.pkcs8_der()).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    label = _PEM_LABEL.encode()
    armoured = [b"-----BEGIN " + label + b"-----", *lines, b"-----END " + label + b"-----"]
    return b"\n".join(armoured) + b"\n"


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of any test PKI key, SM2 included."""
    if isinstance(key, Sm2PrivateKey):
        return sm2_private_key_pem(key)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_pem(pem: bytes) -> PrivateKey:
    """An RSA, EC, Ed25519 or SM2 private key from unencrypted PEM (SM2 is tried first:
    pyca/cryptography refuses the SM2 curve)."""
    match = _PEM_BODY.search(pem)
    if match is not None:
        try:
            return Sm2PrivateKey.from_der(base64.b64decode(b"".join(match.group(1).split())))
        except ValueError:
            pass  # not SM2
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError(f"unexpected private key type {type(key).__name__}")
    return key
