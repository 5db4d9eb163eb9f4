"""Immutable policy objects: what a trust anchor demands of the certificates that chain to it.

Each trust anchor carries its own ``ValidationPolicy`` (revocation mode, key usages, EKU rules,
maximum depth) and, for the gateway, its identity mapping rule. Builders return new objects
(``policy.with_revocation(RevocationMode.SOFT_FAIL)``), like cryptography's ``PolicyBuilder``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography import x509

from certs.sm2 import DEFAULT_SIGNER_ID, MAXIMUM_SIGNER_ID_BYTES


class RevocationMode(StrEnum):
    """What to do when a certificate's revocation status cannot be established."""

    HARD_FAIL = "hard-fail"  # no fresh status -> revocation_unavailable
    SOFT_FAIL = "soft-fail"  # unavailable is allowed (and logged); revoked is still refused
    OFF = "off"  # revocation is not checked


CLIENT_AUTH_OID = "1.3.6.1.5.5.7.3.2"  # id-kp-clientAuth
# RSA below 1024 bits is factorable by anyone: no policy may accept it.
MINIMUM_RSA_BITS_FLOOR = 1024
# Below this an RSA key is accepted only with a warning (NIST SP 800-131A: 2048 since 2014).
RECOMMENDED_RSA_BITS = 2048

# Names of keyUsage bits as cryptography's x509.KeyUsage attributes spell them.
KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


ANY_POLICY = "2.5.29.32.0"  # anyPolicy (RFC 5280 §4.2.1.4)
_DOTTED_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")


@dataclass(frozen=True)
class PolicyInputs:
    """Certificate-policy inputs of RFC 5280 §6.1.1 (c), (e), (f), (g) for one trust anchor.

    The defaults accept any policy and require none; RFC 5280 path processing then refuses a
    chain for its policies only when a CA in it demands an explicit policy (policyConstraints).
    """

    user_initial_policy_set: frozenset[str] = frozenset({ANY_POLICY})
    initial_explicit_policy: bool = False
    initial_policy_mapping_inhibit: bool = False
    initial_any_policy_inhibit: bool = False

    def __post_init__(self) -> None:
        if not self.user_initial_policy_set:
            raise ValueError("the initial policy set is empty (use anyPolicy for any)")
        for oid in self.user_initial_policy_set:
            if not _DOTTED_OID.fullmatch(oid):
                raise ValueError(f"not a dotted object identifier: {oid!r}")


@dataclass(frozen=True)
class ValidationPolicy:
    """Rules for client certificates under one trust anchor."""

    revocation: RevocationMode = RevocationMode.HARD_FAIL
    # The leaf must assert every one of these keyUsage bits (when it has a keyUsage extension).
    required_key_usage: frozenset[str] = frozenset({"digital_signature"})
    # A leaf with no keyUsage extension at all: RFC 5280 says unrestricted; accepted by default.
    allow_missing_key_usage: bool = True
    # EKU: the leaf must carry clientAuth, or (per these flags) anyExtendedKeyUsage / no EKU.
    allow_any_extended_key_usage: bool = True
    allow_missing_extended_key_usage: bool = True
    # The purpose the leaf's EKU must name (dotted OID); clientAuth for a login gateway.
    extended_key_usage: str = CLIENT_AUTH_OID
    # Longest accepted chain, counting the leaf and the anchor.
    max_depth: int = 8
    # Smallest RSA key a login certificate may have. Old Chinese USB keys carry RSA-1024: an
    # operator may lower this for an anchor that still issues them (down to 1024); such a login
    # is then accepted with a warning. EC keys must be at least 256 bits (P-192/P-224 refused);
    # DSA keys are never accepted (certs.keys).
    minimum_rsa_bits: int = RECOMMENDED_RSA_BITS
    # An OCSP responder URL that overrides the certificates' AIA (None: use AIA).
    ocsp_responder: str | None = None
    # CRL sources (file paths or http(s) URLs) in addition to the certificates' distribution points.
    crl_sources: tuple[str, ...] = ()
    # Follow CRL distribution points and OCSP AIA URLs found in certificates.
    use_distribution_points: bool = True
    use_ocsp: bool = True
    # Certificate policies the chain must satisfy (RFC 5280 §6.1); by default any.
    certificate_policies: PolicyInputs = field(default_factory=PolicyInputs)
    # The SM2 signer ID (GM/T 0009 user ID in Z_A) of SM2-with-SM3 signatures under this anchor:
    # its certificates, CRLs, OCSP responses and login signatures. Chinese CAs use the default.
    sm2_signer_id: bytes = DEFAULT_SIGNER_ID

    def __post_init__(self) -> None:
        unknown = set(self.required_key_usage) - set(KEY_USAGE_BITS)
        if unknown:
            raise ValueError(f"unknown keyUsage bit(s): {', '.join(sorted(unknown))}")
        if not 1 <= self.max_depth <= 32:
            raise ValueError("max_depth must be between 1 and 32")
        if not MINIMUM_RSA_BITS_FLOOR <= self.minimum_rsa_bits <= 16384:
            raise ValueError(f"minimum_rsa_bits must be between {MINIMUM_RSA_BITS_FLOOR} and 16384")
        if not isinstance(self.sm2_signer_id, bytes) or not (
            0 < len(self.sm2_signer_id) <= MAXIMUM_SIGNER_ID_BYTES
        ):
            raise ValueError(f"sm2_signer_id must be 1 to {MAXIMUM_SIGNER_ID_BYTES} bytes")

    def replace(self, **changes: Any) -> ValidationPolicy:
        """A new policy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def with_revocation(self, mode: RevocationMode) -> ValidationPolicy:
        return self.replace(revocation=mode)


@dataclass(frozen=True)
class TrustAnchor:
    """A trusted root (or intermediate) certificate and the policy for chains ending at it."""

    certificate: x509.Certificate
    policy: ValidationPolicy = field(default_factory=ValidationPolicy)
    # Operator-facing name (defaults to the certificate's subject).
    name: str = ""
    # Identity mapping rule for the gateway (``certs.mapping.MappingRule``); opaque here.
    mapping_rule: Any = None

    @property
    def display_name(self) -> str:
        return self.name or self.certificate.subject.rfc4514_string()
