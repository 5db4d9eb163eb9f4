"""``VerifiedChain``: the only way a certificate reaches account mapping.

Only the path validator makes these (it passes a private token to the constructor), so a
function that accepts a ``VerifiedChain`` knows the chain was validated — the rustls-webpki
``VerifiedPath`` / cryptography ``VerifiedClient`` habit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from certs.policy import TrustAnchor
from certs.revocation.status import RevocationStatus

_VALIDATOR_TOKEN = object()


@dataclass(frozen=True)
class VerifiedChain:
    certificates: tuple[x509.Certificate, ...]  # leaf first, trust anchor's certificate last
    anchor: TrustAnchor
    validated_at: datetime
    # One status per certificate below the anchor, leaf first.
    revocation: tuple[RevocationStatus, ...] = ()
    # Soft-fail notes (revocation unavailable but allowed) for the audit log.
    warnings: tuple[str, ...] = ()
    _token: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._token is not _VALIDATOR_TOKEN:
            raise TypeError("VerifiedChain is made only by the path validator")
        if not self.certificates:
            raise ValueError("a verified chain holds at least one certificate")

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def issuer(self) -> x509.Certificate | None:
        """The certificate that issued the leaf (None when the leaf is itself the anchor)."""
        return self.certificates[1] if len(self.certificates) > 1 else None


def make_verified_chain(
    certificates: tuple[x509.Certificate, ...],
    anchor: TrustAnchor,
    validated_at: datetime,
    revocation: tuple[RevocationStatus, ...] = (),
    warnings: tuple[str, ...] = (),
) -> VerifiedChain:
    """For ``certs.validation`` only: wrap a chain it has validated."""
    return VerifiedChain(
        certificates, anchor, validated_at, revocation, warnings, _token=_VALIDATOR_TOKEN
    )
