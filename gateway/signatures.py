"""Verification of the login signature: one entry per DESIGN.md ``signature_algorithm``.

The message is rebuilt here from the gateway's own configured public origin; the client never
chooses the origin a signature is checked against.

``sm2-sm3`` is a DER ``SEQUENCE {r, s}`` (a token's raw r||s is accepted too, as for ECDSA) made
with the SM2 signer ID of the trust anchors (``sm2_signer_id``, by default 1234567812345678). The
signature is checked before the chain, so before the anchor is known: it must verify with the ID
of one of the configured anchors (one ID unless an operator configured several).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from certs import sm2
from certs.errors import BadRequest, SignatureInvalid
from certs.keys import is_sm2, sm2_public_key
from certs.keys import public_key as certificate_public_key
from gateway.engine import certificate_algorithms, get_engine

LOGIN_MESSAGE_PREFIX = "certgate-login-v1"
PSS_SALT_LENGTH = 32


def login_message(origin: str, challenge_id: str, nonce: str) -> bytes:
    return f"{LOGIN_MESSAGE_PREFIX}\n{origin}\n{challenge_id}\n{nonce}\n".encode()


class SignatureAlgorithmUnsupported(BadRequest):
    templates = {
        "zh-CN": "暂不支持签名算法 {algorithm}，请使用 RSA、ECDSA 或 Ed25519 证书。",
        "en": "The signature algorithm {algorithm} is not supported yet; use an RSA, ECDSA or "
        "Ed25519 certificate.",
    }


def _rsa_pkcs1(key: object, signature: bytes, message: bytes) -> None:
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def _rsa_pss(key: object, signature: bytes, message: bytes) -> None:
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(
        signature,
        message,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH),
        hashes.SHA256(),
    )


def _ecdsa(key: object, signature: bytes, message: bytes) -> None:
    """DER first; a PKCS#11 token's raw r||s (exactly twice the field size) as a fallback."""
    assert isinstance(key, ec.EllipticCurvePublicKey)
    size = (key.curve.key_size + 7) // 8
    candidates = [signature]
    if len(signature) == 2 * size:
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        candidates.append(encode_dss_signature(r, s))
    for candidate in candidates:
        try:
            key.verify(candidate, message, ec.ECDSA(hashes.SHA256()))
            return
        except InvalidSignature:
            continue
    raise InvalidSignature()


def _ed25519(key: object, signature: bytes, message: bytes) -> None:
    assert isinstance(key, ed25519.Ed25519PublicKey)
    key.verify(signature, message)


# algorithm -> (public key type it needs, verifier)
VERIFIERS: Mapping[str, tuple[type, Callable[[object, bytes, bytes], None]]] = {
    "rsa-pkcs1-sha256": (rsa.RSAPublicKey, _rsa_pkcs1),
    "rsa-pss-sha256": (rsa.RSAPublicKey, _rsa_pss),
    "ecdsa-sha256": (ec.EllipticCurvePublicKey, _ecdsa),
    "ed25519": (ed25519.Ed25519PublicKey, _ed25519),
}
SM2_SM3 = "sm2-sm3"
# Named by DESIGN.md but not verifiable on this machine (no OpenSSL 3 libcrypto for SM2).
NOT_YET_SUPPORTED = frozenset() if sm2.available() else frozenset({SM2_SM3})
ALGORITHMS = frozenset(VERIFIERS) | {SM2_SM3}
SM2_SIGNATURE_BYTES = 64  # raw r||s of a 256-bit curve


def configured_sm2_signer_ids() -> tuple[bytes, ...]:
    """The SM2 signer IDs of the gateway's trust anchors (the default when there are none)."""
    anchors = get_engine().anchors
    found = tuple(dict.fromkeys(anchor.policy.sm2_signer_id for anchor in anchors))
    return found or (sm2.DEFAULT_SIGNER_ID,)


def _verify_sm2(
    certificate: x509.Certificate,
    signature: bytes,
    message: bytes,
    signer_ids: Sequence[bytes],
) -> None:
    if not is_sm2(certificate):
        raise SignatureInvalid("sm2-sm3 does not fit the certificate's key")
    key = sm2_public_key(certificate)
    if key is None:
        raise SignatureInvalid("the certificate's SM2 key is not a point of the curve")
    candidates = [signature]
    if len(signature) == SM2_SIGNATURE_BYTES:
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        candidates.append(encode_dss_signature(r, s))
    for signer_id in signer_ids:
        if any(key.verify(candidate, message, signer_id) for candidate in candidates):
            return
    raise SignatureInvalid("sm2-sm3 signature does not verify")


def verify_login_signature(
    certificate: x509.Certificate,
    algorithm: str,
    signature: bytes,
    message: bytes,
    *,
    sm2_signer_ids: Sequence[bytes] | None = None,
) -> None:
    """Raise ``SignatureInvalid`` unless ``signature`` over ``message`` verifies with the
    certificate's public key under ``algorithm`` (``sm2-sm3``: with one of ``sm2_signer_ids``,
    by default the configured anchors')."""
    if algorithm in NOT_YET_SUPPORTED:
        raise SignatureAlgorithmUnsupported(f"{algorithm} not supported", algorithm=algorithm)
    if algorithm == SM2_SM3:
        ids = configured_sm2_signer_ids() if sm2_signer_ids is None else tuple(sm2_signer_ids)
        _verify_sm2(certificate, signature, message, ids)
        return
    if algorithm not in VERIFIERS:
        raise BadRequest(f"unknown signature_algorithm {algorithm!r}")
    key_type, verify = VERIFIERS[algorithm]
    if is_sm2(certificate):
        raise SignatureInvalid(f"{algorithm} does not fit an SM2 key (use sm2-sm3)")
    try:
        key = certificate_public_key(certificate)
    except (UnsupportedAlgorithm, ValueError):
        # Name the certificate's key algorithm (SM2, DSA), not the one the client claimed.
        named = certificate_algorithms(certificate)
        raise SignatureAlgorithmUnsupported(
            "certificate key type not supported", algorithm=named[-1] if named else algorithm
        ) from None
    if not isinstance(key, key_type):
        raise SignatureInvalid(f"{algorithm} does not fit a {type(key).__name__}")
    try:
        verify(key, signature, message)
    except (InvalidSignature, ValueError):
        raise SignatureInvalid(f"{algorithm} signature does not verify") from None
