"""Certificates' public keys, and the key algorithms the engine refuses outright.

DSA is refused: FIPS 186-5 withdrew it for signatures, no CA that issues login certificates uses
it, and pyca/cryptography deprecates it (from version 51 merely loading a DSA key warns). The key
algorithm is read from the certificate's SubjectPublicKeyInfo OID *before* the key is loaded, so
a refused key is never handed to the library at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import PublicKeyAlgorithmOID

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


def is_rsa(certificate: x509.Certificate) -> bool:
    return certificate.public_key_algorithm_oid == PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5
