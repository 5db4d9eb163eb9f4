"""Path validation of client certificates to configured trust anchors (RFC 5280).

Two engines, one verdict:

1. **pyca/cryptography's ``x509.verification`` client verifier** runs first: it is fast (tens of
   µs warm), builds paths robustly and enforces the Web PKI profile's structural rules (AKI/SKI,
   key sizes, explicit curves, malformed extensions, ...). It is configured for client
   certificates: the leaf's subjectAltName, extendedKeyUsage, keyUsage and basicConstraints are
   left to this module (most Chinese client certificates have no SAN; EKU/KU are per-anchor policy;
   RFC 5280 lets a CA certificate be an end entity, PKITS 4.6.8).
2. **The engine's own RFC 5280 processing** (``certs.path``) decides when pyca/cryptography
   rejects a chain for a reason RFC 5280 does not share (``RFC5280_PERMITS``): names that match
   only under RFC 5280 §7.1 comparison, validity dates in GeneralizedTime, directoryName and URI
   name constraints (which pyca/cryptography refuses), a non-critical basicConstraints on an
   intermediate, self-issued certificates in pathLenConstraint counting. For any other rejection
   pyca/cryptography's verdict stands; the own engine then only makes the error precise
   (``certificate_expired`` rather than ``certificate_untrusted``).

On top of either, this module adds what pyca/cryptography does not check: the leaf's keyUsage
(digitalSignature by default) and extendedKeyUsage per anchor policy (clientAuth; anyEKU and no EKU
as the policy allows), subject-DN name constraints, RFC 5280 §4 profile rules (key identifiers,
positive serial, SAN criticality), the anchor policy's maximum depth, and revocation of every
certificate below the anchor (``certs.revocation``).

SM2-with-SM3 chains (and mixed RSA/SM2 chains): pyca/cryptography cannot use SM2 keys, so its
verifier finds no path and the engine's own path builder decides, with every check above; SM2
signatures are checked through ``certs.sm2`` with the anchor policy's ``sm2_signer_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from certs.chain import VerifiedChain, make_verified_chain
from certs.errors import CertError, CertificateUntrusted, CertificateUsageInvalid
from certs.extensions import extension
from certs.keys import is_rsa, is_sm2, refused_key_algorithm, sm2_public_key
from certs.names import CERTIFICATE_MEMO_SIZE, is_self_issued
from certs.path import (
    Candidate,
    is_ca,
    key_usage,
    process_path,
    validate_path,
)
from certs.policies import process_policies
from certs.policy import RECOMMENDED_RSA_BITS, TrustAnchor, ValidationPolicy
from certs.revocation.checker import RevocationChecker, SignerValidator, serial_number
from certs.revocation.status import RevocationState, RevocationStatus

_DER = Encoding.DER
# What pyca/cryptography raises on lazily parsed, malformed extensions (ValueError covers its
# parse errors; TypeError its refusal of impossible values such as a bad IP constraint).
MALFORMED = (
    ValueError,
    TypeError,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
_EKU_NAMES = {
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth",
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth",
}
_ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
MINIMUM_CA_RSA_BITS = 2048


def _ca_eku_validator(purpose: str) -> Callable[..., None]:
    """A CA's EKU, when present, must allow the anchor policy's purpose (or anyEKU)."""

    def validate(_policy: object, _certificate: x509.Certificate, value: object) -> None:
        if isinstance(value, x509.ExtendedKeyUsage):
            purposes = {oid.dotted_string for oid in value}
            if purpose not in purposes and _ANY_EKU.dotted_string not in purposes:
                raise ValueError("CA extendedKeyUsage does not allow the required purpose")

    return validate


def _ca_key_usage(_policy: object, _certificate: x509.Certificate, value: object) -> None:
    """A CA's keyUsage, when present, must allow certificate signing (RFC 5280 §6.1.4 (n))."""
    if isinstance(value, x509.KeyUsage) and not value.key_cert_sign:
        raise ValueError("CA keyUsage does not allow keyCertSign")


def _ca_basic_constraints(_policy: object, _certificate: x509.Certificate, value: object) -> None:
    """An issuing certificate must assert cA (RFC 5280 §6.1.4 (k)), critical or not."""
    if not (isinstance(value, x509.BasicConstraints) and value.ca):
        raise ValueError("issuer's basicConstraints does not assert cA")


def _client_extension_policies(
    policy: ValidationPolicy,
) -> tuple[verification.ExtensionPolicy, verification.ExtensionPolicy]:
    """(CA policy, EE policy): Web PKI defaults, with the leaf checks this module does itself.

    A CA's EKU is checked against the anchor policy's purpose rather than the client verifier's
    fixed clientAuth, and policyConstraints must be critical (RFC 5280 §4.2.1.11).
    """
    agnostic = verification.Criticality.AGNOSTIC
    ca_policy = (
        verification.ExtensionPolicy.webpki_defaults_ca()
        .may_be_present(
            x509.ExtendedKeyUsage, agnostic, _ca_eku_validator(policy.extended_key_usage)
        )
        # Policy extensions are processed by the engine (certs.policies) whatever their
        # criticality: RFC 5280 path processing does not look at it (PKITS 4.9, 4.10). The
        # verifier does not know policyMappings at all: a chain with a critical one is left to
        # the engine's own path builder, which runs the same checks.
        .may_be_present(x509.PolicyConstraints, agnostic, None)
        .may_be_present(x509.InhibitAnyPolicy, agnostic, None)
        # RFC 5280 §4.2.1.3 / §6.1.4 (n): keyUsage restricts a CA only when present (x509-limbo
        # crl::issuer-no-keyusage-extension); the Web PKI's "must be present" is not a login rule.
        .may_be_present(x509.KeyUsage, agnostic, _ca_key_usage)
        # RFC 5280 §6.1.4 (k) looks at cA only, never at the extension's criticality (PKITS
        # 4.6.4: a non-critical basicConstraints on an intermediate is valid).
        .require_present(x509.BasicConstraints, agnostic, _ca_basic_constraints)
    )
    ee_policy = (
        verification.ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, agnostic, None)
        .may_be_present(x509.ExtendedKeyUsage, agnostic, None)
        .may_be_present(x509.KeyUsage, agnostic, None)
        .may_be_present(x509.BasicConstraints, agnostic, None)
    )
    return ca_policy, ee_policy


def utc(at: datetime) -> datetime:
    """``at`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass(frozen=True)
class _AnchorGroup:
    """Anchors sharing one policy share one pyca/cryptography store."""

    policy: ValidationPolicy
    store: verification.Store
    ca_policy: verification.ExtensionPolicy
    ee_policy: verification.ExtensionPolicy


class ChainValidator:
    """Validates client certificate chains against trust anchors, each with its own policy."""

    def __init__(
        self, anchors: Sequence[TrustAnchor], *, revocation: RevocationChecker | None = None
    ) -> None:
        if not anchors:
            raise ValueError("at least one trust anchor is needed")
        self.anchors = tuple(anchors)
        self.revocation = revocation if revocation is not None else RevocationChecker()
        by_policy: dict[ValidationPolicy, list[TrustAnchor]] = {}
        for anchor in self.anchors:
            by_policy.setdefault(anchor.policy, []).append(anchor)
        self._groups = tuple(
            _AnchorGroup(
                policy,
                verification.Store([a.certificate for a in group]),
                *_client_extension_policies(policy),
            )
            for policy, group in by_policy.items()
        )
        # Certificates hash and compare by their DER.
        self._by_certificate = {a.certificate: a for a in self.anchors}
        self._candidates = tuple(
            Candidate(a.certificate, a, a.policy.sm2_signer_id) for a in self.anchors
        )
        self._max_length = max(a.policy.max_depth for a in self.anchors)

    # --- public API ---------------------------------------------------------------------------

    def validate(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        at: datetime,
    ) -> VerifiedChain:
        """Validate ``leaf`` at ``at``; raises a ``CertError`` subclass with the reason."""
        at = utc(at)
        try:
            return self._validate(leaf, list(intermediates), at)
        except MALFORMED as exc:
            # Extensions pyca/cryptography parses lazily can still be malformed (duplicates,
            # bad encodings): such a certificate is untrusted, never a crash.
            raise CertificateUntrusted(f"malformed certificate: {exc}") from exc

    def _validate(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate], at: datetime
    ) -> VerifiedChain:
        for group in self._groups:
            try:
                verified = self._verifier(group, at).verify(leaf, intermediates)
            except verification.VerificationError:
                # Its reason is not read: whatever it was, the engine's own path building below
                # decides, with every check of its own.
                continue
            path = tuple(verified.chain)
            # The path pyca/cryptography found is held to the engine's own RFC 5280 processing
            # too (the stricter of the two decides); its signatures are already verified.
            process_path(path, at)
            return self._finish(path, self._by_certificate[path[-1]], intermediates, at)
        return self._validate_own(leaf, intermediates, at)

    # --- internals ----------------------------------------------------------------------------

    def _verifier(self, group: _AnchorGroup, at: datetime) -> verification.ClientVerifier:
        # pyca/cryptography counts intermediates; the policy counts leaf and anchor too.
        return (
            verification.PolicyBuilder()
            .store(group.store)
            .time(at)
            .max_chain_depth(max(group.policy.max_depth - 2, 0))
            .extension_policies(ca_policy=group.ca_policy, ee_policy=group.ee_policy)
            .build_client_verifier()
        )

    def _validate_own(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], at: datetime
    ) -> VerifiedChain:
        """The engine's own path building, when pyca/cryptography's verifier found no path.

        Every candidate path gets the same checks as a path the verifier found: RFC 5280
        processing in ``process_path``, then ``_finish`` (profile, CA purposes, leaf usage,
        depth, revocation). A path is accepted only when all of them pass; otherwise the most
        telling error of all candidates is raised (expired rather than untrusted).
        """
        results: list[VerifiedChain] = []

        def accept(path: tuple[x509.Certificate, ...], candidate: Candidate) -> None:
            assert isinstance(candidate.tag, TrustAnchor)
            results.append(self._finish(path, candidate.tag, intermediates, at))

        validate_path(
            leaf, intermediates, self._candidates, at=at, max_length=self._max_length, accept=accept
        )
        return results[-1]

    def _finish(
        self,
        path: tuple[x509.Certificate, ...],
        anchor: TrustAnchor,
        untrusted: Sequence[x509.Certificate],
        at: datetime,
    ) -> VerifiedChain:
        policy = anchor.policy
        if path_depth(path) > policy.max_depth:
            raise CertificateUntrusted(
                f"chain of {len(path)} certificates exceeds the anchor's maximum {policy.max_depth}"
            )
        check_profile(path)
        check_ca_purposes(path, policy)
        process_policies(path, policy.certificate_policies)
        check_usage(path[0], policy)
        statuses = self.revocation.check_chain(
            path,
            policy,
            at=at,
            untrusted=(*untrusted, *(a.certificate for a in self.anchors)),
            signer_validator=self._signer_validator(anchor, untrusted, at),
        )
        # Checked after revocation so that a revoked certificate is reported as revoked.
        if serial_number(path[0]) <= 0:
            raise CertificateUntrusted("serial number is not positive (RFC 5280 §4.1.2.2)")
        warnings = tuple(
            f"revocation {s.state} for {c.subject.rfc4514_string()}: {s.detail}"
            for c, s in zip(path, statuses, strict=False)
            if s.state in (RevocationState.UNAVAILABLE, RevocationState.UNKNOWN)
        ) + check_leaf_key(path[0], policy)
        return make_verified_chain(path, anchor, at, statuses, warnings)

    def _signer_validator(
        self, anchor: TrustAnchor, untrusted: Sequence[x509.Certificate], at: datetime
    ) -> SignerValidator:
        """A CRL signer other than the certificate's issuer must itself validate to ``anchor``
        (RFC 5280 §6.3.3 (f)) and not be revoked."""
        candidates = (Candidate(anchor.certificate, anchor, anchor.policy.sm2_signer_id),)
        pool = (*untrusted, *(a.certificate for a in self.anchors))

        in_progress: set[bytes] = set()

        def signer_valid(signer: x509.Certificate, depth: int) -> bool:
            key = signer.public_bytes(_DER)
            if key in in_progress:
                # The signer's status is being checked with a CRL it signed itself (a CRL
                # issuer's certificate is in the scope of its own CRL, PKITS 4.14.30). Its path
                # was validated before its revocation check began, so that CRL's signature is
                # trustworthy; a listing of the signer in it still revokes.
                return True
            try:
                path, _ = validate_path(
                    signer, untrusted, candidates, at=at, max_length=anchor.policy.max_depth
                )
                in_progress.add(key)
                self.revocation.check_chain(
                    path,
                    anchor.policy,
                    at=at,
                    untrusted=pool,
                    signer_validator=signer_valid,
                    depth=depth,
                )
            except CertError:
                return False
            finally:
                in_progress.discard(key)
            return True

        return signer_valid


def path_depth(path: Sequence[x509.Certificate]) -> int:
    """Certificates counted against the depth limit: self-issued intermediates do not count
    (as for pathLenConstraint, RFC 5280 §6.1.4 (l))."""
    return len(path) - sum(1 for c in path[1:-1] if is_self_issued(c))


def _extension_or_none(
    certificate: x509.Certificate, oid: x509.ObjectIdentifier
) -> x509.Extension[x509.ExtensionType] | None:
    # Through certs.extensions: also the extensions pyca/cryptography refuses as not DER.
    return extension(certificate, oid)


def _missing_ski(certificate: x509.Certificate) -> str | None:
    if _extension_or_none(certificate, ExtensionOID.SUBJECT_KEY_IDENTIFIER) is None:
        return "CA certificate without subjectKeyIdentifier (RFC 5280 §4.2.1.2)"
    return None


def _missing_aki(certificate: x509.Certificate) -> str | None:
    if _extension_or_none(certificate, ExtensionOID.AUTHORITY_KEY_IDENTIFIER) is None:
        return "no authorityKeyIdentifier (RFC 5280 §4.2.1.1)"
    return None


def _anchor_aki(certificate: x509.Certificate) -> str | None:
    """A self-signed anchor's AKI, if any, names only its own key. An anchor is configured input
    (RFC 5280 §6.1.1 (d) takes only its name and key), so one without AKI is accepted even when
    it is not self-signed (a cross-signed root, x509-limbo cve-2024-0567)."""
    aki = _extension_or_none(certificate, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if aki is None or not is_self_issued(certificate):
        return None
    value = aki.value
    ski = _extension_or_none(certificate, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    assert isinstance(value, x509.AuthorityKeyIdentifier)
    if (
        value.key_identifier is None
        or value.authority_cert_issuer is not None
        or value.authority_cert_serial_number is not None
        or (
            ski is not None
            and isinstance(ski.value, x509.SubjectKeyIdentifier)
            and value.key_identifier != ski.value.digest
        )
    ):
        return "trust anchor's authorityKeyIdentifier is not its own key identifier"
    return None


def _rsa_key(certificate: x509.Certificate) -> rsa.RSAPublicKey | None:
    # Only RSA keys are loaded here: SM2 and DSA keys never reach pyca/cryptography.
    if not is_rsa(certificate):
        return None
    key = certificate.public_key()
    return key if isinstance(key, rsa.RSAPublicKey) else None


def _rsa_modulus(certificate: x509.Certificate) -> str | None:
    key = _rsa_key(certificate)
    if key is not None and key.key_size % 8 != 0:
        return "RSA modulus is not a whole number of bytes"
    return None


def _ca_key_strength(certificate: x509.Certificate) -> str | None:
    """The minimum pyca/cryptography's verifier applies, kept when the own engine decides."""
    key = _rsa_key(certificate)
    if key is not None and key.key_size < MINIMUM_CA_RSA_BITS:
        return f"CA RSA key shorter than {MINIMUM_CA_RSA_BITS} bits"
    return None


_KEY_IDENTIFIERS = {
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER: "authorityKeyIdentifier",
    ExtensionOID.SUBJECT_KEY_IDENTIFIER: "subjectKeyIdentifier",
}


def _critical_key_identifiers(certificate: x509.Certificate) -> str | None:
    for oid, name in _KEY_IDENTIFIERS.items():
        extension = _extension_or_none(certificate, oid)
        if extension is not None and extension.critical:
            return f"{name} must not be critical (RFC 5280 §4.2.1.1, §4.2.1.2)"
    return None


# RFC 5280 §4.1.2.2: serial numbers are at most 20 octets (DER, sign octet included).
MAXIMUM_SERIAL_OCTETS = 20


def _serial_length(certificate: x509.Certificate) -> str | None:
    serial = abs(serial_number(certificate))
    if serial.bit_length() // 8 + 1 > MAXIMUM_SERIAL_OCTETS:
        return f"serial number longer than {MAXIMUM_SERIAL_OCTETS} octets (RFC 5280 §4.1.2.2)"
    return None


def _ca_subject(certificate: x509.Certificate) -> str | None:
    if len(certificate.subject) == 0:
        return "a CA certificate must have a non-empty subject (RFC 5280 §4.1.2.6)"
    return None


def _end_entity_name_constraints(certificate: x509.Certificate) -> str | None:
    if is_ca(certificate):
        return None
    if _extension_or_none(certificate, ExtensionOID.NAME_CONSTRAINTS) is not None:
        return "nameConstraints in an end-entity certificate (RFC 5280 §4.2.1.10)"
    return None


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def _key_parameters(certificate: x509.Certificate) -> asn1_keys.PublicKeyInfo:
    der = certificate.public_bytes(_DER)
    return asn1_x509.Certificate.load(der)["tbs_certificate"]["subject_public_key_info"]


def _named_curve(certificate: x509.Certificate) -> str | None:
    """An EC key names its curve; explicit curve parameters are refused (RFC 5480 §2.1.1)."""
    info = _key_parameters(certificate)
    if info["algorithm"]["algorithm"].native != "ec":
        return None
    if info["algorithm"]["parameters"].name != "named":
        return "EC key with explicit curve parameters (RFC 5480 §2.1.1: namedCurve only)"
    return None


# Smallest EC key a CA may have: P-192 and other sub-224-bit curves are refused.
MINIMUM_CA_EC_BITS = 224


def _ca_ec_strength(certificate: x509.Certificate) -> str | None:
    info = _key_parameters(certificate)
    if info["algorithm"]["algorithm"].native != "ec" or _named_curve(certificate):
        return None
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None  # SM2 and curves pyca/cryptography cannot load are judged elsewhere
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MINIMUM_CA_EC_BITS:
        return f"CA EC key smaller than {MINIMUM_CA_EC_BITS} bits ({key.curve.name})"
    return None


def _san_criticality(certificate: x509.Certificate) -> str | None:
    san = _extension_or_none(certificate, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    empty_subject = len(certificate.subject) == 0
    if empty_subject and (san is None or not san.critical):
        return "an empty subject needs a critical subjectAltName (RFC 5280 §4.2.1.6)"
    if not empty_subject and san is not None and san.critical:
        return "subjectAltName is critical although the subject is not empty"
    return None


# Certificate-profile rules (RFC 5280 §4) per position in the path, checked on every accepted
# path whichever engine accepted it: pyca/cryptography's verifier leaves these to the issuing CA.
PROFILE_CHECKS: Mapping[str, tuple[Callable[[x509.Certificate], str | None], ...]] = {
    "leaf": (
        _missing_aki,
        _critical_key_identifiers,
        _serial_length,
        _named_curve,
        _end_entity_name_constraints,
        _rsa_modulus,
        _san_criticality,
    ),
    "intermediate": (
        _missing_ski,
        _missing_aki,
        _critical_key_identifiers,
        _serial_length,
        _ca_subject,
        _named_curve,
        _rsa_modulus,
        _ca_key_strength,
        _ca_ec_strength,
    ),
    "anchor": (
        _missing_ski,
        _anchor_aki,
        _critical_key_identifiers,
        _ca_subject,
        _named_curve,
        _rsa_modulus,
        _ca_key_strength,
        _ca_ec_strength,
    ),
}


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def _profile_problem(certificate: x509.Certificate, role: str) -> str | None:
    """Memoised per (certificate, role): CA certificates recur in every login's path."""
    for check in PROFILE_CHECKS[role]:
        problem = check(certificate)
        if problem is not None:
            return problem
    return None


def check_profile(path: Sequence[x509.Certificate]) -> None:
    last = len(path) - 1
    for index, certificate in enumerate(path):
        roles: tuple[str, ...] = ("leaf",) if index == 0 else ()
        roles += ("anchor",) if index == last else ("intermediate",) if index else ()
        for role in roles:
            problem = _profile_problem(certificate, role)
            if problem is not None:
                raise CertificateUntrusted(f"{certificate.subject.rfc4514_string()}: {problem}")


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def extended_key_usages(certificate: x509.Certificate) -> frozenset[str] | None:
    """The EKU purposes (dotted OIDs), or None when the extension is absent."""
    extension = _extension_or_none(certificate, ExtensionOID.EXTENDED_KEY_USAGE)
    if extension is None:
        return None
    assert isinstance(extension.value, x509.ExtendedKeyUsage)
    return frozenset(oid.dotted_string for oid in extension.value)


def check_ca_purposes(path: Sequence[x509.Certificate], policy: ValidationPolicy) -> None:
    """Every CA certificate of the path whose extendedKeyUsage is present must allow the anchor
    policy's purpose (or anyExtendedKeyUsage): a CA restricted to other purposes cannot vouch for
    a login certificate, whichever path builder found the path."""
    for certificate in path[1:]:
        purposes = extended_key_usages(certificate)
        if purposes is None:
            continue
        if policy.extended_key_usage not in purposes and _ANY_EKU.dotted_string not in purposes:
            wanted = _EKU_NAMES.get(policy.extended_key_usage, policy.extended_key_usage)
            raise CertificateUntrusted(
                f"{certificate.subject.rfc4514_string()}: CA extendedKeyUsage does not allow "
                f"{wanted}"
            )


# Smallest EC key a login certificate may have (P-256): P-192 and P-224 are refused.
MINIMUM_LEAF_EC_BITS = 256


def check_leaf_key(leaf: x509.Certificate, policy: ValidationPolicy) -> tuple[str, ...]:
    """The login certificate's key is strong enough for the anchor's policy; returns warnings
    (an RSA key the operator allowed below the recommended size). Raises ``CertificateUntrusted``.
    """
    refused = refused_key_algorithm(leaf)
    if refused is not None:
        raise CertificateUntrusted(f"{leaf.subject.rfc4514_string()}: {refused}")
    info = _key_parameters(leaf)
    if info["algorithm"]["algorithm"].native == "rsa":
        key = _rsa_key(leaf)
        bits = key.key_size if key is not None else 0
        if bits < policy.minimum_rsa_bits:
            raise CertificateUntrusted(
                f"RSA key of {bits} bits is below this trust anchor's minimum of "
                f"{policy.minimum_rsa_bits}"
            )
        if bits < RECOMMENDED_RSA_BITS:
            return (
                f"weak key: RSA-{bits} accepted only because this trust anchor allows it "
                f"(minimum_rsa_bits = {policy.minimum_rsa_bits})",
            )
    elif is_sm2(leaf):
        if sm2_public_key(leaf) is None:
            raise CertificateUntrusted(
                f"{leaf.subject.rfc4514_string()}: the SM2 public key is not a point of the curve"
            )
    elif info["algorithm"]["algorithm"].native == "ec" and not _named_curve(leaf):
        try:
            key_size = leaf.public_key().curve.key_size  # type: ignore[union-attr]
        except (ValueError, UnsupportedAlgorithm, AttributeError):
            return ()  # SM2 and other curves pyca/cryptography cannot load are judged elsewhere
        if key_size < MINIMUM_LEAF_EC_BITS:
            raise CertificateUntrusted(
                f"EC key of {key_size} bits is below the minimum of {MINIMUM_LEAF_EC_BITS}"
            )
    return ()


def check_usage(leaf: x509.Certificate, policy: ValidationPolicy) -> None:
    """keyUsage and extendedKeyUsage of the leaf, per policy (``certificate_usage_invalid``)."""
    usage = key_usage(leaf)
    if usage is None:
        if not policy.allow_missing_key_usage:
            raise CertificateUsageInvalid("the certificate has no keyUsage extension")
    else:
        missing = [bit for bit in sorted(policy.required_key_usage) if not getattr(usage, bit)]
        if missing:
            raise CertificateUsageInvalid(f"keyUsage lacks {', '.join(missing)}")
        if usage.key_cert_sign and not is_ca(leaf):
            # RFC 5280 §4.2.1.3: keyCertSign only with basicConstraints cA.
            raise CertificateUsageInvalid("keyUsage keyCertSign without basicConstraints cA")
    purposes = extended_key_usages(leaf)
    if purposes is None:
        if not policy.allow_missing_extended_key_usage:
            raise CertificateUsageInvalid("the certificate has no extendedKeyUsage")
        return
    if policy.extended_key_usage in purposes:
        return
    if policy.allow_any_extended_key_usage and _ANY_EKU.dotted_string in purposes:
        return
    wanted = _EKU_NAMES.get(policy.extended_key_usage, policy.extended_key_usage)
    raise CertificateUsageInvalid(f"extendedKeyUsage does not include {wanted}")


__all__ = ["ChainValidator", "check_ca_purposes", "check_usage", "utc", "RevocationStatus"]
