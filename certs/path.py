"""RFC 5280 §6.1 path building and processing: the engine's own.

``certs.validation`` asks pyca/cryptography's verifier first to find a path fast, then runs
``process_path`` here on the path it found; when the verifier finds none, ``validate_path`` here
builds the candidates and decides, with the same checks. It also validates the signing
certificate of a CRL and turns a rejection into a precise error (expired vs untrusted).
It handles:

* name chaining with RFC 5280 §7.1 name comparison (``certs.names``);
* signatures by RSA (PKCS#1 v1.5 and PSS), ECDSA and Ed25519/Ed448 keys (DSA is refused), and
  SM2-with-SM3 by SM2 keys (``certs.sm2``) with the trust anchor's SM2 signer ID;
* validity of every certificate, the anchor included;
* basicConstraints, pathLenConstraint (self-issued certificates not counted), keyCertSign;
* name constraints of every form (directoryName, rfc822Name, dNSName, URI, iPAddress);
* unknown critical extensions.

It does not process certificate policies (RFC 5280 §6.1.3 (d)-(f)): the gateway's trust model is
the anchor, not a policy OID, and no anchor policy here asks for an explicit policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from certs import sm2
from certs.errors import CertError, CertificateExpired, CertificateNotYetValid, CertificateUntrusted
from certs.extensions import extensions
from certs.keys import public_key, sm2_public_key
from certs.names import (
    CERTIFICATE_MEMO_SIZE,
    NameConstraintViolation,
    Subtrees,
    certificate_names,
    check_name_constraints,
    is_self_issued,
    issuer_key,
    subject_key,
)

# Extensions this engine understands well enough that marking them critical is not a reason to
# reject (RFC 5280 §6.1.4 (o)). Policy extensions are recognised but not enforced (see above).
RECOGNISED_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.INHIBIT_ANY_POLICY,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.FRESHEST_CRL,
    }
)

_DER = Encoding.DER

# How many issuer candidates path building may try before giving up (pathological inputs).
SEARCH_BUDGET = 256


@dataclass(frozen=True)
class Signed:
    """Bytes as signed, the signature over them, and the algorithm's parameters."""

    data: bytes
    signature: bytes
    parameters: object  # padding (RSA), ec.ECDSA (EC) or None (EdDSA, DSA, SM2)
    hash_algorithm: hashes.HashAlgorithm | None
    # The signature algorithm's dotted OID; SM2-with-SM3 is told apart by it alone (pyca/
    # cryptography knows no parameters or hash for it).
    algorithm_oid: str = ""

    @classmethod
    def of_certificate(cls, certificate: x509.Certificate) -> Signed:
        oid = certificate.signature_algorithm_oid.dotted_string
        if oid == sm2.SM2_WITH_SM3_OID:
            return cls(certificate.tbs_certificate_bytes, certificate.signature, None, None, oid)
        return cls(
            certificate.tbs_certificate_bytes,
            certificate.signature,
            certificate.signature_algorithm_parameters,
            certificate.signature_hash_algorithm,
            oid,
        )


def _verify_rsa(key: object, signed: Signed) -> None:
    assert isinstance(key, rsa.RSAPublicKey)
    if signed.hash_algorithm is None or not isinstance(
        signed.parameters, padding.PKCS1v15 | padding.PSS
    ):
        raise InvalidSignature
    key.verify(signed.signature, signed.data, signed.parameters, signed.hash_algorithm)


def _verify_ec(key: object, signed: Signed) -> None:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    if not isinstance(signed.parameters, ec.ECDSA):
        raise InvalidSignature
    key.verify(signed.signature, signed.data, signed.parameters)


def _verify_eddsa(key: object, signed: Signed) -> None:
    assert isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    key.verify(signed.signature, signed.data)


# Signature verification per signer key type (a table, not an if-chain). DSA keys are refused
# before they are loaded (certs.keys), so a DSA-signed certificate or CRL never verifies.
_VERIFIERS: dict[type, Callable[[object, Signed], None]] = {
    rsa.RSAPublicKey: _verify_rsa,
    ec.EllipticCurvePublicKey: _verify_ec,
    ed25519.Ed25519PublicKey: _verify_eddsa,
    ed448.Ed448PublicKey: _verify_eddsa,
}


def _verify_sm2(signed: Signed, signer: x509.Certificate, signer_id: bytes) -> bool:
    key = sm2_public_key(signer)
    if key is None:
        return False  # SM2-with-SM3 made by a key that is not on the SM2 curve
    return key.verify(signed.signature, signed.data, signer_id)


def verify_signed(
    signed: Signed, signer: x509.Certificate, signer_id: bytes = sm2.DEFAULT_SIGNER_ID
) -> bool:
    """``signer``'s key made ``signed.signature`` over ``signed.data``; an SM2-with-SM3 signature
    is checked with ``signer_id`` in Z_A (the trust anchor's SM2 signer ID)."""
    if signed.algorithm_oid == sm2.SM2_WITH_SM3_OID:
        return _verify_sm2(signed, signer, signer_id)
    try:
        key = public_key(signer)
    except (ValueError, UnsupportedAlgorithm):
        return False  # e.g. an SM2 key, which pyca/cryptography cannot use
    for key_type, verify in _VERIFIERS.items():
        if isinstance(key, key_type):
            try:
                verify(key, signed)
            except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
                return False
            return True
    return False


def signature_valid(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    signer_id: bytes = sm2.DEFAULT_SIGNER_ID,
) -> bool:
    """``issuer``'s key made ``certificate``'s signature (names are not compared here)."""
    try:
        signed = Signed.of_certificate(certificate)
    except UnsupportedAlgorithm:  # a signature algorithm no verifier here knows
        return False
    return verify_signed(signed, issuer, signer_id)


def _extension(
    certificate: x509.Certificate, oid: x509.ObjectIdentifier
) -> x509.Extension[x509.ExtensionType] | None:
    # A scan rather than get_extension_for_oid: an absent extension (the common case for SAN,
    # name constraints, ...) would otherwise cost an ExtensionNotFound raised and caught.
    for extension in extensions(certificate):
        if extension.oid == oid:
            return extension
    return None


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def key_usage(certificate: x509.Certificate) -> x509.KeyUsage | None:
    extension = _extension(certificate, ExtensionOID.KEY_USAGE)
    if extension is None:
        return None
    assert isinstance(extension.value, x509.KeyUsage)
    return extension.value


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def basic_constraints(
    certificate: x509.Certificate,
) -> tuple[x509.BasicConstraints, bool] | None:
    """(basicConstraints, critical), or None when the extension is absent."""
    extension = _extension(certificate, ExtensionOID.BASIC_CONSTRAINTS)
    if extension is None:
        return None
    assert isinstance(extension.value, x509.BasicConstraints)
    return extension.value, extension.critical


def is_ca(certificate: x509.Certificate) -> bool:
    constraints = basic_constraints(certificate)
    return constraints is not None and constraints[0].ca


@dataclass(frozen=True)
class Candidate:
    """A trusted certificate path ends here: the anchor's certificate and an opaque tag for it."""

    certificate: x509.Certificate
    tag: object
    # The SM2 signer ID the anchor's CAs sign with (SM2-with-SM3 signatures of the path).
    sm2_signer_id: bytes = sm2.DEFAULT_SIGNER_ID


def _issuer_candidates(
    certificate: x509.Certificate,
    anchors: Sequence[Candidate],
    intermediates: Sequence[x509.Certificate],
) -> Iterator[tuple[x509.Certificate, Candidate | None]]:
    issuer = issuer_key(certificate)
    for anchor in anchors:
        if subject_key(anchor.certificate) == issuer:
            yield anchor.certificate, anchor
    for intermediate in intermediates:
        if subject_key(intermediate) == issuer:
            yield intermediate, None


def build_paths(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[Candidate],
    *,
    max_length: int,
    signer_id: bytes = sm2.DEFAULT_SIGNER_ID,
) -> Iterator[tuple[tuple[x509.Certificate, ...], Candidate]]:
    """Every signature-linked path from ``leaf`` to an anchor, shortest first-found (DFS).

    A leaf that is itself an anchor's certificate is a path of one. SM2-with-SM3 signatures are
    checked with ``signer_id`` (the anchors given share it).
    """
    leaf_der = leaf.public_bytes(_DER)
    for anchor in anchors:
        if anchor.certificate.public_bytes(_DER) == leaf_der:
            yield (leaf,), anchor
    budget = [SEARCH_BUDGET]

    def extend(
        path: tuple[x509.Certificate, ...],
    ) -> Iterator[tuple[tuple[x509.Certificate, ...], Candidate]]:
        # Self-issued intermediates (key rollover) do not count towards the length limit.
        if len(path) - sum(1 for c in path[1:] if is_self_issued(c)) >= max_length:
            return
        for issuer, anchor in _issuer_candidates(path[-1], anchors, intermediates):
            if budget[0] <= 0:
                return
            budget[0] -= 1
            if any(issuer is c or issuer == c for c in path):
                continue  # a cycle
            if not signature_valid(path[-1], issuer, signer_id):
                continue
            if anchor is not None:
                yield (*path, issuer), anchor
            else:
                yield from extend((*path, issuer))

    yield from extend((leaf,))


def check_validity(certificate: x509.Certificate, at: datetime) -> None:
    # Validity is encoded to the second (RFC 5280 §4.1.2.5): compare at that granularity, so a
    # certificate is valid through the whole last second of its notAfter (x509-limbo
    # validity::notafter-fractional).
    at = at.replace(microsecond=0)
    if at < certificate.not_valid_before_utc:
        raise CertificateNotYetValid(
            f"{certificate.subject.rfc4514_string()} is not valid yet",
            not_before=certificate.not_valid_before_utc,
        )
    if at > certificate.not_valid_after_utc:
        raise CertificateExpired(
            f"{certificate.subject.rfc4514_string()} has expired",
            not_after=certificate.not_valid_after_utc,
        )


def _untrusted(certificate: x509.Certificate, why: str) -> CertificateUntrusted:
    return CertificateUntrusted(f"{certificate.subject.rfc4514_string()}: {why}")


def _check_critical_extensions(certificate: x509.Certificate) -> None:
    for extension in extensions(certificate):
        if extension.critical and extension.oid not in RECOGNISED_EXTENSIONS:
            raise _untrusted(
                certificate, f"unknown critical extension {extension.oid.dotted_string}"
            )


def _check_ca(certificate: x509.Certificate) -> int | None:
    """The certificate may issue certificates; returns its pathLenConstraint."""
    if certificate.version != x509.Version.v3:
        raise _untrusted(certificate, "a CA certificate must be X.509 v3")
    constraints = basic_constraints(certificate)
    if constraints is None or not constraints[0].ca:
        raise _untrusted(certificate, "not a CA (basicConstraints cA is not set)")
    # The extension's criticality is not looked at: RFC 5280's path processing checks cA only
    # (§6.1.4 (k), PKITS 4.6.4), and a trust anchor is configured input (§6.1.1 (d)) — production
    # Chinese roots (MCSCA) mark basicConstraints non-critical.
    value = constraints[0]
    usage = key_usage(certificate)
    if usage is not None and not usage.key_cert_sign:
        raise _untrusted(certificate, "keyUsage does not allow signing certificates")
    return value.path_length


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def _name_constraints(
    certificate: x509.Certificate,
) -> tuple[Subtrees | None, Subtrees | None] | None:
    extension = _extension(certificate, ExtensionOID.NAME_CONSTRAINTS)
    if extension is None:
        return None
    value = extension.value
    assert isinstance(value, x509.NameConstraints)
    return (
        Subtrees.from_general_names(value.permitted_subtrees),
        Subtrees.from_general_names(value.excluded_subtrees),
    )


def process_path(path: Sequence[x509.Certificate], at: datetime) -> None:
    """RFC 5280 §6.1.3-6.1.4 over ``path`` (leaf first, the anchor's certificate last).

    Signatures and name chaining were established by ``build_paths``. Raises ``CertError``.
    """
    anchor = path[-1]
    check_validity(anchor, at)
    _check_critical_extensions(anchor)
    if len(path) == 1:
        return
    anchor_path_length = _check_ca(anchor)
    below = len(path) - 1
    max_path_length = below if anchor_path_length is None else min(below, anchor_path_length)
    constraints: list[tuple[Subtrees | None, Subtrees | None]] = []
    anchor_constraints = _name_constraints(anchor)
    if anchor_constraints is not None:
        constraints.append(anchor_constraints)
    for index in range(len(path) - 2, -1, -1):
        certificate = path[index]
        leaf = index == 0
        check_validity(certificate, at)
        _check_critical_extensions(certificate)
        self_issued = is_self_issued(certificate)
        if constraints and (leaf or not self_issued):
            try:
                names = certificate_names(certificate)
                for permitted, excluded in constraints:
                    check_name_constraints(names, permitted, excluded)
            except NameConstraintViolation as exc:
                raise _untrusted(certificate, str(exc)) from None
        if leaf:
            break
        path_length = _check_ca(certificate)
        if not self_issued:
            if max_path_length <= 0:
                raise _untrusted(certificate, "path length constraint exceeded")
            max_path_length -= 1
        if path_length is not None:
            max_path_length = min(max_path_length, path_length)
        own = _name_constraints(certificate)
        if own is not None:
            constraints.append(own)


# Error precedence when every candidate path fails: the most telling error wins (a chain that
# fails only on dates says "expired", not "untrusted").
_PRECEDENCE: dict[type, int] = {
    CertificateUntrusted: 0,
    CertificateNotYetValid: 1,
    CertificateExpired: 2,
}


def validate_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[Candidate],
    *,
    at: datetime,
    max_length: int,
    accept: Callable[[tuple[x509.Certificate, ...], Candidate], None] | None = None,
) -> tuple[tuple[x509.Certificate, ...], Candidate]:
    """The first candidate path that processes cleanly (and that ``accept`` does not refuse).

    Anchors are searched in groups sharing an SM2 signer ID, so that every SM2-with-SM3 signature
    of a path is checked with the ID of the anchor the path ends at.
    """
    by_signer_id: dict[bytes, list[Candidate]] = {}
    for anchor in anchors:
        by_signer_id.setdefault(anchor.sm2_signer_id, []).append(anchor)
    best: CertError | None = None
    paths = (
        found
        for signer_id, group in by_signer_id.items()
        for found in build_paths(
            leaf, intermediates, group, max_length=max_length, signer_id=signer_id
        )
    )
    for path, anchor in paths:
        try:
            process_path(path, at)
            if accept is not None:
                accept(path, anchor)
        except CertError as exc:
            if best is None or _PRECEDENCE.get(type(exc), 3) > _PRECEDENCE.get(type(best), 3):
                best = exc
            continue
        return path, anchor
    if best is not None:
        raise best
    raise CertificateUntrusted("no path to a trusted anchor")


def check_path_name_constraints(path: Sequence[x509.Certificate]) -> None:
    """Only the name-constraint part of ``process_path`` (for paths pyca/cryptography accepted).

    pyca/cryptography never compares a subject DN with directoryName constraints; this does.
    """
    constraints: list[tuple[Subtrees | None, Subtrees | None]] = []
    for index in range(len(path) - 1, -1, -1):
        certificate = path[index]
        if constraints and (index == 0 or not is_self_issued(certificate)):
            try:
                names = certificate_names(certificate)
                for permitted, excluded in constraints:
                    check_name_constraints(names, permitted, excluded)
            except NameConstraintViolation as exc:
                raise _untrusted(certificate, str(exc)) from None
        own = _name_constraints(certificate) if index > 0 else None
        if own is not None:
            constraints.append(own)
