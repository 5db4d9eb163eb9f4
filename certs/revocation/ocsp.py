"""OCSP client (RFC 6960): ask the issuing CA's responder whether a certificate is revoked.

``OcspClient.status(certificate, issuer, at=...)`` returns a ``RevocationStatus`` with
``source="ocsp"``. It never raises for network or responder trouble: anything that prevents a
fresh, authoritative answer becomes ``UNAVAILABLE`` with a ``detail`` naming the cause, and the
revocation checker applies the trust anchor's hard-fail/soft-fail policy to it. In particular a
response is never turned into GOOD unless all of these hold:

* the OCSPResponseStatus is ``successful`` and the body is a BasicOCSPResponse;
* it holds a SingleResponse for exactly our CertID (issuer name hash, issuer key hash, serial);
* it is signed by the issuing CA itself, or by a delegated responder whose certificate is
  included in the response, is signed by that same CA key, carries id-kp-OCSPSigning, allows
  digitalSignature if it has a keyUsage, and is within its validity at ``at`` (RFC 6960 4.2.2.2);
* the ResponderID (byName or byKey) names that signer;
* it has no critical response extension other than the nonce;
* the nonce we sent, if any, is echoed unchanged (a *different* nonce is always refused);
* ``thisUpdate`` is not in the future and ``nextUpdate`` has not passed at ``at`` (both with the
  configured clock skew), and without ``nextUpdate`` ``thisUpdate`` is recent.

Requests carry a SHA-1 CertID: RFC 5019 (the "lightweight" profile CAs' responders implement)
mandates SHA-1 there, and responders index their answers by it. SHA-1 is only a lookup key
here, not a security boundary: the response is bound to the certificate by the serial and by the
CA's signature. Responses whose CertID uses another hash are matched by recomputing it.

Verified answers are cached per CertID (``OcspCache``) until ``nextUpdate``; see the class.
Nothing here reads the clock: the moment of validation is ``at``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from asn1crypto import algos as asn1_algos
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    OCSPExtensionOID,
    SignatureAlgorithmOID,
)

from certs import sm2
from certs.extensions import extensions
from certs.fetch import OCSP_MAX_RESPONSE_BYTES, Fetcher, FetchError, HttpFetcher
from certs.keys import public_key as certificate_public_key
from certs.keys import sm2_public_key
from certs.names import names_equal
from certs.path import signature_valid
from certs.revocation.status import RevocationState, RevocationStatus

__all__ = ["OcspCache", "OcspCertId", "OcspClient", "ocsp_urls"]

SOURCE: Final = "ocsp"
REQUEST_CONTENT_TYPE: Final = "application/ocsp-request"
# RFC 8954: a nonce of 1..32 octets; 32 random octets is the upper bound responders accept.
NONCE_LENGTH: Final = 32
DEFAULT_MAX_AGE_WITHOUT_NEXT_UPDATE: Final = timedelta(minutes=10)

# RFC 5280 CRLReason as cryptography names it -> the engine's snake_case reason names
# (the keys of certs.errors.REVOCATION_REASON_TEXT).
_REASON_NAMES: Final[Mapping[x509.ReasonFlags, str]] = {
    x509.ReasonFlags.unspecified: "unspecified",
    x509.ReasonFlags.key_compromise: "key_compromise",
    x509.ReasonFlags.ca_compromise: "ca_compromise",
    x509.ReasonFlags.affiliation_changed: "affiliation_changed",
    x509.ReasonFlags.superseded: "superseded",
    x509.ReasonFlags.cessation_of_operation: "cessation_of_operation",
    x509.ReasonFlags.certificate_hold: "certificate_hold",
    x509.ReasonFlags.privilege_withdrawn: "privilege_withdrawn",
    x509.ReasonFlags.aa_compromise: "aa_compromise",
    x509.ReasonFlags.remove_from_crl: "remove_from_crl",
}

# Non-successful OCSPResponseStatus values, named as RFC 6960 spells them for the log.
_RESPONSE_STATUS_NAMES: Final[Mapping[ocsp.OCSPResponseStatus, str]] = {
    ocsp.OCSPResponseStatus.MALFORMED_REQUEST: "malformedRequest",
    ocsp.OCSPResponseStatus.INTERNAL_ERROR: "internalError",
    ocsp.OCSPResponseStatus.TRY_LATER: "tryLater",
    ocsp.OCSPResponseStatus.SIG_REQUIRED: "sigRequired",
    ocsp.OCSPResponseStatus.UNAUTHORIZED: "unauthorized",
}

# Signature algorithm OID -> how to verify it. SM2-with-SM3 is not here: pyca/cryptography cannot
# use SM2 keys, so those responses are verified through certs.sm2 (``_verify_sm2_signature``).
# DSA is absent on purpose (withdrawn by FIPS 186-5, deprecated by pyca/cryptography; see
# certs/path.py).
_RSA_PKCS1: Final = "rsa-pkcs1v15"
_RSA_PSS: Final = "rsa-pss"
_ECDSA: Final = "ecdsa"
_ED25519: Final = "ed25519"
_ED448: Final = "ed448"
_SIGNATURE_SCHEMES: Final[Mapping[x509.ObjectIdentifier, str]] = {
    SignatureAlgorithmOID.RSA_WITH_SHA1: _RSA_PKCS1,
    SignatureAlgorithmOID.RSA_WITH_SHA224: _RSA_PKCS1,
    SignatureAlgorithmOID.RSA_WITH_SHA256: _RSA_PKCS1,
    SignatureAlgorithmOID.RSA_WITH_SHA384: _RSA_PKCS1,
    SignatureAlgorithmOID.RSA_WITH_SHA512: _RSA_PKCS1,
    SignatureAlgorithmOID.RSA_WITH_SHA3_224: _RSA_PKCS1,
    SignatureAlgorithmOID.RSA_WITH_SHA3_256: _RSA_PKCS1,
    SignatureAlgorithmOID.RSA_WITH_SHA3_384: _RSA_PKCS1,
    SignatureAlgorithmOID.RSA_WITH_SHA3_512: _RSA_PKCS1,
    SignatureAlgorithmOID.RSASSA_PSS: _RSA_PSS,
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: _ECDSA,
    SignatureAlgorithmOID.ECDSA_WITH_SHA224: _ECDSA,
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: _ECDSA,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: _ECDSA,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: _ECDSA,
    SignatureAlgorithmOID.ECDSA_WITH_SHA3_224: _ECDSA,
    SignatureAlgorithmOID.ECDSA_WITH_SHA3_256: _ECDSA,
    SignatureAlgorithmOID.ECDSA_WITH_SHA3_384: _ECDSA,
    SignatureAlgorithmOID.ECDSA_WITH_SHA3_512: _ECDSA,
    SignatureAlgorithmOID.ED25519: _ED25519,
    SignatureAlgorithmOID.ED448: _ED448,
}
_SCHEME_KEY_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    _RSA_PKCS1: (rsa.RSAPublicKey,),
    _RSA_PSS: (rsa.RSAPublicKey,),
    _ECDSA: (ec.EllipticCurvePublicKey,),
    _ED25519: (ed25519.Ed25519PublicKey,),
    _ED448: (ed448.Ed448PublicKey,),
}
# Hash names as asn1crypto spells them (RSASSA-PSS parameters) -> cryptography hash classes.
_PSS_HASHES: Final[Mapping[str, type[hashes.HashAlgorithm]]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class _Unavailable(Exception):
    """One verification step failed; the message becomes the status ``detail``."""


@dataclass(frozen=True)
class OcspCertId:
    """RFC 6960 CertID, the key of a certificate's OCSP status (and of the cache)."""

    hash_algorithm: str  # e.g. "sha1"
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int

    @classmethod
    def for_certificate(
        cls,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        algorithm: hashes.HashAlgorithm | None = None,
    ) -> OcspCertId:
        """The CertID of ``certificate`` (issued by ``issuer``), hashed with ``algorithm``."""
        # SHA-1 by default: the RFC 5019 CertID (see the module docstring).
        algorithm = algorithm or hashes.SHA1()
        return cls(
            hash_algorithm=algorithm.name,
            # RFC 6960 4.1.1: the DER of the issuer field of the certificate being checked...
            issuer_name_hash=_digest(algorithm, certificate.issuer.public_bytes()),
            # ...and the issuer's subjectPublicKey BIT STRING value (no tag, length, pad bits).
            issuer_key_hash=_digest(algorithm, _subject_public_key_bits(issuer)),
            serial_number=certificate.serial_number,
        )


@dataclass(frozen=True)
class _CacheEntry:
    status: RevocationStatus
    # The status may be served for ``at`` in [valid_from, valid_until]; None: no upper bound.
    valid_from: datetime
    valid_until: datetime | None


class OcspCache:
    """Thread-safe cache of verified OCSP statuses, keyed by CertID, bounded in size.

    An entry is served for a moment ``at`` between the response's ``thisUpdate`` (less the clock
    skew) and its ``nextUpdate`` (plus the skew), or ``thisUpdate + max_age`` when the responder
    gave no ``nextUpdate``. REVOKED is final, so a revoked status is kept past ``nextUpdate``
    (until evicted); ``certificateHold`` is the exception, since a hold can be released.
    Responses verified against a nonce are cached like any other: the nonce proved they were
    fresh when fetched, and from then on they are as good as a nonce-less response with the same
    validity interval. Only verified GOOD/REVOKED/UNKNOWN answers are stored, never failures.
    When full, the least recently used entry is dropped.
    """

    def __init__(self, *, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[OcspCertId, _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, cert_id: OcspCertId, *, at: datetime) -> RevocationStatus | None:
        with self._lock:
            entry = self._entries.get(cert_id)
            if entry is None:
                return None
            if at < entry.valid_from or (entry.valid_until is not None and at > entry.valid_until):
                return None
            self._entries.move_to_end(cert_id)
            return entry.status

    def put(
        self,
        cert_id: OcspCertId,
        status: RevocationStatus,
        *,
        valid_from: datetime,
        valid_until: datetime | None,
    ) -> None:
        entry = _CacheEntry(status, valid_from, valid_until)
        with self._lock:
            current = self._entries.get(cert_id)
            # Never let a later GOOD (e.g. from a lagging responder replica) replace a final
            # REVOKED that is already known.
            if (
                current is not None
                and _is_final_revocation(current.status)
                and not _is_final_revocation(status)
            ):
                return
            self._entries[cert_id] = entry
            self._entries.move_to_end(cert_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def ocsp_urls(certificate: x509.Certificate) -> list[str]:
    """The http(s) OCSP responder URLs in the certificate's authorityInfoAccess, in order."""
    try:
        aia = extensions(certificate).get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return []
    return [
        description.access_location.value
        for description in aia.value
        if description.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(description.access_location, x509.UniformResourceIdentifier)
        and description.access_location.value.lower().startswith(("http://", "https://"))
    ]


class OcspClient:
    """Fetches, verifies and caches OCSP statuses. Safe to share between threads.

    ``timeout`` is one deadline for the whole request (connect, send, headers and body), in
    seconds. ``max_response_bytes`` refuses a larger answer; give the client a fetcher with the
    same limit (``HttpFetcher(max_bytes=OCSP_MAX_RESPONSE_BYTES)``, what ``for_http`` builds) so
    an endless body is cut off while it arrives. ``use_nonce`` adds a random
    nonce to every request. Many CAs' responders pre-sign their answers and omit the nonce
    (RFC 5019); such a response is accepted unless ``require_nonce`` is set, because its
    freshness is still enforced through thisUpdate/nextUpdate. A response carrying a nonce other
    than the one sent is always refused: it is a replay or an answer to someone else.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        *,
        timeout: float = 5.0,
        use_nonce: bool = True,
        clock_skew: timedelta = timedelta(minutes=5),
        cache: OcspCache | None = None,
        max_age_without_next_update: timedelta = DEFAULT_MAX_AGE_WITHOUT_NEXT_UPDATE,
        require_nonce: bool = False,
        max_response_bytes: int = OCSP_MAX_RESPONSE_BYTES,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if clock_skew < timedelta(0) or max_age_without_next_update <= timedelta(0):
            raise ValueError("clock_skew must not be negative, max_age must be positive")
        if require_nonce and not use_nonce:
            raise ValueError("require_nonce needs use_nonce")
        self.fetcher = fetcher
        self.timeout = timeout
        self.use_nonce = use_nonce
        self.require_nonce = require_nonce
        self.clock_skew = clock_skew
        self.cache = cache if cache is not None else OcspCache()
        self.max_age_without_next_update = max_age_without_next_update
        self.max_response_bytes = max_response_bytes

    @classmethod
    def for_http(
        cls, *, timeout: float = 5.0, max_response_bytes: int = OCSP_MAX_RESPONSE_BYTES
    ) -> OcspClient:
        """A client asking responders over HTTP, the size limit applied on the wire."""
        fetcher = HttpFetcher(max_bytes=max_response_bytes)
        return cls(fetcher, timeout=timeout, max_response_bytes=max_response_bytes)

    def status(
        self,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        *,
        at: datetime,
        responder_url: str | None = None,
        sm2_signer_id: bytes = sm2.DEFAULT_SIGNER_ID,
    ) -> RevocationStatus:
        """The OCSP status of ``certificate`` at ``at``.

        ``issuer`` must be the certificate that path validation found to have issued
        ``certificate``: the response is authorised relative to it. ``responder_url`` overrides
        the certificate's AIA (a configured responder). SM2-with-SM3 responses (and delegated
        responder certificates) are verified with ``sm2_signer_id``.
        """
        at = _as_utc(at)
        # RFC 5280 7.1 name comparison: CAs re-encode their own name (PrintableString vs
        # UTF8String, case) often enough that byte equality would refuse real chains.
        if not names_equal(certificate.issuer, issuer.subject):
            return _unavailable(
                "issuer certificate's subject does not match the certificate's issuer"
            )
        cert_id = OcspCertId.for_certificate(certificate, issuer)
        cached = self.cache.get(cert_id, at=at)
        if cached is not None:
            return cached

        if responder_url is None:
            urls = ocsp_urls(certificate)
            if not urls:
                return _unavailable("certificate has no http OCSP URL in authorityInfoAccess")
            responder_url = urls[0]

        nonce = os.urandom(NONCE_LENGTH) if self.use_nonce else None
        # SHA-1 CertID: what RFC 5019 responders index by (see the module docstring).
        builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA1())
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        request_der = builder.build().public_bytes(serialization.Encoding.DER)

        try:
            response_der = self.fetcher.post(
                responder_url,
                request_der,
                content_type=REQUEST_CONTENT_TYPE,
                timeout=self.timeout,
            )
        except FetchError as exc:
            return _unavailable(_describe_fetch_error(responder_url, exc))
        if len(response_der) > self.max_response_bytes:
            return _unavailable(
                f"OCSP responder {responder_url}: response larger than "
                f"{self.max_response_bytes} bytes"
            )

        try:
            status, valid_from, valid_until = self._verify(
                response_der, certificate, issuer, cert_id, nonce, at, sm2_signer_id
            )
        except _Unavailable as exc:
            return _unavailable(f"{responder_url}: {exc}")
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # cryptography/asn1crypto raise these for malformed or unsupported structures deep
            # inside a response; whatever the cause, the response cannot be trusted.
            return _unavailable(f"{responder_url}: malformed OCSP response ({exc})")
        self.cache.put(cert_id, status, valid_from=valid_from, valid_until=valid_until)
        return status

    # -- verification ---------------------------------------------------------------------

    def _verify(
        self,
        response_der: bytes,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        cert_id: OcspCertId,
        nonce: bytes | None,
        at: datetime,
        sm2_signer_id: bytes = sm2.DEFAULT_SIGNER_ID,
    ) -> tuple[RevocationStatus, datetime, datetime | None]:
        """Check one response; returns the status and the interval it may be served for."""
        try:
            response = ocsp.load_der_ocsp_response(response_der)
        except ValueError as exc:
            raise _Unavailable(f"malformed OCSP response ({exc})") from None
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            name = _RESPONSE_STATUS_NAMES.get(response.response_status, "unknown")
            raise _Unavailable(f"responder answered {name} (OCSPResponseStatus)")

        self._check_signature(response, response_der, issuer, at, sm2_signer_id)
        _check_critical_extensions(response)
        self._check_nonce(response, nonce)
        single = _matching_single_response(response, certificate, issuer, cert_id)

        this_update = single.this_update_utc
        next_update = single.next_update_utc
        if this_update > at + self.clock_skew:
            raise _Unavailable(
                f"stale response: thisUpdate {this_update:%Y-%m-%dT%H:%M:%SZ} is in the future"
            )
        if next_update is not None:
            valid_until: datetime | None = next_update + self.clock_skew
            if at > next_update + self.clock_skew:
                raise _Unavailable(
                    f"stale response: nextUpdate {next_update:%Y-%m-%dT%H:%M:%SZ} has passed"
                )
        else:
            # RFC 6960 4.2.2.1: no nextUpdate means newer information is always available, so
            # the answer is only trusted (and cached) for a short while after thisUpdate.
            valid_until = this_update + self.max_age_without_next_update
            if at > valid_until:
                raise _Unavailable(
                    f"stale response: no nextUpdate and thisUpdate {this_update:%Y-%m-%dT%H:%M:%SZ}"
                    f" is older than {self.max_age_without_next_update}"
                )
        valid_from = this_update - self.clock_skew

        if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
            status = RevocationStatus(
                RevocationState.GOOD, SOURCE, this_update=this_update, next_update=next_update
            )
        elif single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
            flag = single.revocation_reason
            status = RevocationStatus(
                RevocationState.REVOKED,
                SOURCE,
                reason=_REASON_NAMES[flag] if flag is not None else "unspecified",
                revoked_at=single.revocation_time_utc,
                this_update=this_update,
                next_update=next_update,
            )
            if _is_final_revocation(status):
                valid_until = None
        else:
            status = RevocationStatus(
                RevocationState.UNKNOWN,
                SOURCE,
                this_update=this_update,
                next_update=next_update,
                detail="responder does not know the certificate (certStatus unknown)",
            )
        return status, valid_from, valid_until

    def _check_nonce(self, response: ocsp.OCSPResponse, nonce: bytes | None) -> None:
        if nonce is None:
            # We sent none: an echoed nonce cannot be ours, and freshness rests on the times.
            return
        try:
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            if self.require_nonce:
                raise _Unavailable("response carries no nonce and a nonce is required") from None
            return
        if echoed != nonce:
            raise _Unavailable("nonce mismatch: the response answers a different request")

    def _check_signature(
        self,
        response: ocsp.OCSPResponse,
        response_der: bytes,
        issuer: x509.Certificate,
        at: datetime,
        sm2_signer_id: bytes = sm2.DEFAULT_SIGNER_ID,
    ) -> None:
        """Find the signer named by the ResponderID, check it is authorised, verify."""
        candidates: list[x509.Certificate] = []
        if _responder_id_matches(response, issuer):
            candidates.append(issuer)
        candidates += [c for c in response.certificates if _responder_id_matches(response, c)]
        if not candidates:
            raise _Unavailable(
                "responder certificate not found: the ResponderID names neither the issuing CA "
                "nor a certificate included in the response"
            )

        refusals: list[str] = []
        for signer in candidates:
            if signer != issuer:
                refusal = _delegated_responder_refusal(signer, issuer, at, sm2_signer_id)
                if refusal is not None:
                    refusals.append(refusal)
                    continue
            if response.signature_algorithm_oid.dotted_string == sm2.SM2_WITH_SM3_OID:
                if _verify_sm2_signature(signer, response, sm2_signer_id):
                    return
                refusals.append("response signature does not verify")
                continue
            try:
                public_key = certificate_public_key(signer)
            except UnsupportedAlgorithm:
                # e.g. an SM2 key, which pyca/cryptography parses but cannot use.
                refusals.append("unsupported responder key algorithm")
                continue
            try:
                _verify_signature(public_key, response, response_der)
            except InvalidSignature:
                refusals.append("response signature does not verify")
                continue
            return
        raise _Unavailable("; ".join(dict.fromkeys(refusals)))


# -- helpers -------------------------------------------------------------------------------------


def _unavailable(detail: str) -> RevocationStatus:
    return RevocationStatus(RevocationState.UNAVAILABLE, SOURCE, detail=detail)


def _as_utc(at: datetime) -> datetime:
    # The engine works in aware UTC datetimes; a naive ``at`` is taken to be UTC.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _is_final_revocation(status: RevocationStatus) -> bool:
    return status.state == RevocationState.REVOKED and status.reason != "certificate_hold"


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


def _subject_public_key_bits(certificate: x509.Certificate) -> bytes:
    # Read from the certificate itself: the key is never loaded (it may be SM2 or DSA).
    der = certificate.public_bytes(serialization.Encoding.DER)
    tbs = asn1_x509.Certificate.load(der)["tbs_certificate"]
    return bytes(tbs["subject_public_key_info"]["public_key"])


def _responder_id_matches(response: ocsp.OCSPResponse, certificate: x509.Certificate) -> bool:
    """Whether the ResponderID (byName or byKey) designates ``certificate``."""
    if response.responder_name is not None:
        return names_equal(response.responder_name, certificate.subject)
    key_hash = response.responder_key_hash
    # RFC 6960 4.2.1: byKey is the SHA-1 of the subjectPublicKey BIT STRING value.
    if key_hash is None:
        return False
    return key_hash == hashlib.sha1(_subject_public_key_bits(certificate)).digest()


def _verify_sm2_signature(
    signer: x509.Certificate, response: ocsp.OCSPResponse, signer_id: bytes
) -> bool:
    key = sm2_public_key(signer)
    data = response.tbs_response_bytes
    return key is not None and key.verify(response.signature, data, signer_id)


def _issued_by(responder: x509.Certificate, issuer: x509.Certificate, signer_id: bytes) -> bool:
    """Signed by the very key that issued the certificate in question (RFC 6960 4.2.2.2): a
    certificate from another CA, even one with the same name, does not qualify."""
    if responder.signature_algorithm_oid.dotted_string == sm2.SM2_WITH_SM3_OID:
        return responder.issuer == issuer.subject and signature_valid(responder, issuer, signer_id)
    try:
        responder.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _delegated_responder_refusal(
    responder: x509.Certificate,
    issuer: x509.Certificate,
    at: datetime,
    sm2_signer_id: bytes = sm2.DEFAULT_SIGNER_ID,
) -> str | None:
    """Why ``responder`` may not answer for ``issuer``'s certificates, or None if it may."""
    subject = responder.subject.rfc4514_string()
    if not _issued_by(responder, issuer, sm2_signer_id):
        return f"delegated responder {subject!r} is not issued by the certificate's issuer"
    try:
        eku = extensions(responder).get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        return f"delegated responder {subject!r} lacks extendedKeyUsage id-kp-OCSPSigning"
    try:
        key_usage = extensions(responder).get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    if key_usage is not None and not key_usage.digital_signature:
        return f"delegated responder {subject!r} keyUsage does not allow digitalSignature"
    if not responder.not_valid_before_utc <= at <= responder.not_valid_after_utc:
        return f"delegated responder {subject!r} is outside its validity period"
    # Its own revocation status is not checked: responders carry id-pkix-ocsp-nocheck and
    # short lifetimes in practice, and checking would recurse (see docs/ocsp.md).
    return None


def _verify_signature(public_key: object, response: ocsp.OCSPResponse, response_der: bytes) -> None:
    """Verify the BasicOCSPResponse signature; raises InvalidSignature or _Unavailable."""
    oid = response.signature_algorithm_oid
    scheme = _SIGNATURE_SCHEMES.get(oid)
    if scheme is None:
        raise _Unavailable(f"unsupported signature algorithm {oid.dotted_string}")
    if not isinstance(public_key, _SCHEME_KEY_TYPES[scheme]):
        raise InvalidSignature  # the key cannot have made a signature of this kind
    signature = response.signature
    data = response.tbs_response_bytes
    if isinstance(public_key, rsa.RSAPublicKey):
        if scheme == _RSA_PSS:
            pss_padding, pss_hash = _pss_parameters(response_der)
            public_key.verify(signature, data, pss_padding, pss_hash)
        else:
            hash_algorithm = _signature_hash(response)
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(_signature_hash(response)))
    elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        public_key.verify(signature, data)


def _signature_hash(response: ocsp.OCSPResponse) -> hashes.HashAlgorithm:
    algorithm = response.signature_hash_algorithm
    if algorithm is None:
        raise _Unavailable("signature algorithm names no hash")
    return algorithm


def _pss_parameters(response_der: bytes) -> tuple[padding.PSS, hashes.HashAlgorithm]:
    """RSASSA-PSS parameters of the response signature (cryptography does not expose them)."""
    basic = asn1_ocsp.OCSPResponse.load(response_der)["response_bytes"]["response"].parsed
    algorithm: asn1_algos.SignedDigestAlgorithm = basic["signature_algorithm"]
    params = algorithm["parameters"]
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    mgf_hash_name = mgf["parameters"]["algorithm"].native
    if mgf["algorithm"].native != "mgf1" or params["trailer_field"].native != "trailer_field_bc":
        raise _Unavailable("unsupported RSASSA-PSS parameters")
    if hash_name not in _PSS_HASHES or mgf_hash_name not in _PSS_HASHES:
        raise _Unavailable(f"unsupported RSASSA-PSS hash {hash_name}/{mgf_hash_name}")
    pss = padding.PSS(
        mgf=padding.MGF1(_PSS_HASHES[mgf_hash_name]()),
        salt_length=int(params["salt_length"].native),
    )
    return pss, _PSS_HASHES[hash_name]()


def _matching_single_response(
    response: ocsp.OCSPResponse,
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    cert_id: OcspCertId,
) -> ocsp.OCSPSingleResponse:
    """The SingleResponse for our CertID, recomputed in whatever hash the responder used."""
    seen = 0
    for single in response.responses:
        seen += 1
        algorithm = single.hash_algorithm
        expected = (
            cert_id
            if algorithm.name == cert_id.hash_algorithm
            else OcspCertId.for_certificate(certificate, issuer, algorithm)
        )
        if (
            single.serial_number == expected.serial_number
            and single.issuer_name_hash == expected.issuer_name_hash
            and single.issuer_key_hash == expected.issuer_key_hash
        ):
            return single
    raise _Unavailable(
        f"certID mismatch: none of the {seen} SingleResponse(s) is for serial "
        f"{cert_id.serial_number:x} of this issuer"
    )


def _check_critical_extensions(response: ocsp.OCSPResponse) -> None:
    # RFC 6960 4.4 / RFC 5280 4.2: a critical extension we do not understand voids the answer.
    for extension in response.extensions:
        if extension.critical and extension.oid != OCSPExtensionOID.NONCE:
            raise _Unavailable(
                f"response has an unrecognised critical extension {extension.oid.dotted_string}"
            )


def _describe_fetch_error(url: str, exc: FetchError) -> str:
    """A precise, log-friendly reason for a failed request, in ``HttpFetcher``'s words
    ("timed out after 5 s", "unreachable: connection refused", "HTTP 503", "not an HTTP
    answer", "response larger than 65536 bytes"); the URL is named once."""
    text = str(exc).removeprefix(f"{url}: ")
    if text.startswith("HTTP "):
        text = f"answered {text}"
    return f"OCSP responder {url}: {text}"
