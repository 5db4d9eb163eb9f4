"""Certificates' public keys, and the key algorithms the engine refuses outright.

DSA is refused: FIPS 186-5 withdrew it for signatures, no CA that issues login certificates uses
it, and pyca/cryptography deprecates it (from version 51 merely loading a DSA key warns). The key
algorithm is read from the certificate's SubjectPublicKeyInfo OID *before* the key is loaded, so
a refused key is never handed to the library at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Final

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import PublicKeyAlgorithmOID

from certs import sm2
from certs.names import CERTIFICATE_MEMO_SIZE

REFUSED_KEY_ALGORITHMS: Final[Mapping[x509.ObjectIdentifier, str]] = {
    PublicKeyAlgorithmOID.DSA: "DSA keys are not accepted (withdrawn by FIPS 186-5)",
}


def refused_key_algorithm(certificate: x509.Certificate) -> str | None:
    """Why the certificate's key algorithm is refused, or None when it is not."""
    return REFUSED_KEY_ALGORITHMS.get(certificate.public_key_algorithm_oid)


def public_key(certificate: x509.Certificate) -> CertificatePublicKeyTypes:
    """The certificate's public key; ``UnsupportedAlgorithm`` for a refused algorithm (DSA) as
    for one pyca/cryptography cannot use (SM2)."""
    reason = refused_key_algorithm(certificate)
    if reason is not None:
        raise UnsupportedAlgorithm(reason)
    return certificate.public_key()


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def subject_public_key_info(certificate: x509.Certificate) -> bytes:
    """The certificate's SubjectPublicKeyInfo DER, read without loading the key."""
    der = certificate.public_bytes(Encoding.DER)
    tbs = asn1_x509.Certificate.load(der)["tbs_certificate"]
    return bytes(tbs["subject_public_key_info"].dump())


def is_sm2(certificate: x509.Certificate) -> bool:
    """The key is on the SM2 curve (id-ecPublicKey with curve 1.2.156.10197.1.301)."""
    if certificate.public_key_algorithm_oid != PublicKeyAlgorithmOID.EC_PUBLIC_KEY:
        return False
    return subject_public_key_info(certificate).startswith(b"\x30\x59" + sm2.SM2_SPKI_ALGORITHM)


def sm2_public_key(certificate: x509.Certificate) -> sm2.Sm2PublicKey | None:
    """The certificate's SM2 key (pyca/cryptography cannot use it), or None for another key."""
    if not is_sm2(certificate):
        return None
    try:
        return sm2.Sm2PublicKey.from_spki(subject_public_key_info(certificate))
    except (ValueError, sm2.Sm2Unavailable):
        return None


def is_rsa(certificate: x509.Certificate) -> bool:
    return certificate.public_key_algorithm_oid == PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5
