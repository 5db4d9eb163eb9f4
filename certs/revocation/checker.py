"""Revocation checking of a validated path: every certificate below the anchor, per anchor policy.

Order of sources for one certificate, and why:

1. **Cached CRLs** (``CrlStore``): local, O(1), no network. A fresh CRL in scope that lists the
   serial means revoked; fresh CRLs covering every reason without listing it mean good.
2. **OCSP** (``OcspClient``), when the policy allows it and a responder is known (the policy's
   ``ocsp_responder`` or the certificate's AIA): used only when no cached CRL gave an answer, so
   logins do not wait on a responder that a fresh CRL already makes unnecessary.
3. **CRL distribution points** fetched now (then cached and refreshed with the other sources).

Revoked from any source wins; a fresh "good" from any source suffices. When none answers, the
status is UNAVAILABLE and the anchor's ``RevocationMode`` decides: ``hard-fail`` raises
``RevocationUnavailable``, ``soft-fail`` lets the login through and records a warning, ``off``
checks nothing.

A CRL is used for a certificate only as RFC 5280 §6.3.3 allows: fresh at ``at``; issued by the
certificate's issuer (or, for an indirect CRL, by the ``cRLIssuer`` its distribution point names);
in the scope of its issuing distribution point (names, user/CA-only, onlySomeReasons); and signed
by a certificate allowed to sign CRLs (keyUsage cRLSign when keyUsage is present) — the
certificate's own issuer, or another certificate with the CRL issuer's name whose own path and
revocation status the path validator confirms (separate CRL-signing keys, indirect CRL issuers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from certs.der import certificate_serial
from certs.errors import CertificateRevoked, RevocationUnavailable
from certs.extensions import extensions
from certs.fetch import Fetcher
from certs.names import CERTIFICATE_MEMO_SIZE, issuer_key, name_key, subject_key
from certs.path import is_ca, key_usage
from certs.policy import RevocationMode, ValidationPolicy
from certs.revocation.crl import (
    ALL_REASONS,
    REASON_NAMES,
    CrlStore,
    IndexedCrl,
    distribution_point_names,
    general_name_key,
)
from certs.revocation.status import RevocationState, RevocationStatus

logger = logging.getLogger("certs.revocation")

# (candidate CRL signer, recursion depth) -> its path validates and it is not revoked.
SignerValidator = Callable[[x509.Certificate, int], bool]

_SHA256 = SHA256()

# Revocation checks of CRL signers nest (a signer's own status needs a CRL); this bounds it.
MAX_SIGNER_DEPTH = 4


class OcspStatusSource(Protocol):
    """What the checker needs of ``certs.revocation.ocsp.OcspClient``."""

    def status(
        self,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        *,
        at: datetime,
        responder_url: str | None = None,
        sm2_signer_id: bytes = ...,
    ) -> RevocationStatus: ...


# Which states each mode refuses with RevocationUnavailable (REVOKED is always refused).
UNACCEPTABLE: Mapping[RevocationMode, frozenset[RevocationState]] = {
    RevocationMode.HARD_FAIL: frozenset({RevocationState.UNAVAILABLE, RevocationState.UNKNOWN}),
    RevocationMode.SOFT_FAIL: frozenset(),
    RevocationMode.OFF: frozenset(),
}


def _extension_value(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> object:
    try:
        return extensions(certificate).get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def distribution_points(certificate: x509.Certificate) -> tuple[x509.DistributionPoint | None, ...]:
    """The certificate's CRL distribution points; (None,) stands for "the issuer's CRL"."""
    value = _extension_value(certificate, ExtensionOID.CRL_DISTRIBUTION_POINTS)
    if isinstance(value, x509.CRLDistributionPoints) and len(value) > 0:
        return tuple(value)
    return (None,)


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def ocsp_urls(certificate: x509.Certificate) -> tuple[str, ...]:
    value = _extension_value(certificate, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if not isinstance(value, x509.AuthorityInformationAccess):
        return ()
    return tuple(
        d.access_location.value
        for d in value
        if d.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    )


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def serial_number(certificate: x509.Certificate) -> int:
    """The serial, negative ones included (see ``certs.der.certificate_serial``)."""
    return certificate_serial(certificate.tbs_certificate_bytes)


def may_sign_crls(certificate: x509.Certificate) -> bool:
    """RFC 5280 §6.3.3 (f): if keyUsage is present, cRLSign must be set."""
    usage = key_usage(certificate)
    return usage is None or usage.crl_sign


def _crl_issuers(point: x509.DistributionPoint | None) -> tuple[x509.Name, ...]:
    if point is None or not point.crl_issuer:
        return ()
    return tuple(n.value for n in point.crl_issuer if isinstance(n, x509.DirectoryName))


def crl_reasons_for(
    crl: IndexedCrl, certificate: x509.Certificate, point: x509.DistributionPoint | None
) -> frozenset[str]:
    """Reasons ``crl`` covers for ``certificate`` via ``point``; empty when out of scope."""
    scope = crl.scope
    if scope.only_attribute:
        return frozenset()
    if scope.only_user or scope.only_ca:
        certificate_is_ca = is_ca(certificate)
        if (scope.only_user and certificate_is_ca) or (scope.only_ca and not certificate_is_ca):
            return frozenset()
    named_issuers = _crl_issuers(point)
    if named_issuers:
        # §6.3.3 (b)(1): a cRLIssuer in the DP needs that issuer's CRL, marked indirect.
        if not scope.indirect or not any(name_key(n) == crl.issuer_key for n in named_issuers):
            return frozenset()
    elif crl.issuer_key != issuer_key(certificate):
        return frozenset()
    if scope.names:
        if point is None:
            return frozenset()
        if point.full_name is not None or point.relative_name is not None:
            base = named_issuers[0] if named_issuers else certificate.issuer
            point_names = distribution_point_names(point.full_name, point.relative_name, base)
        else:
            point_names = frozenset(general_name_key(n) for n in point.crl_issuer or ())
        if not scope.names & point_names:
            return frozenset()
    point_reasons = (
        frozenset(REASON_NAMES[r] for r in point.reasons)
        if point is not None and point.reasons
        else ALL_REASONS
    )
    return scope.reasons & point_reasons


@dataclass
class _Context:
    policy: ValidationPolicy
    at: datetime
    pool: Sequence[x509.Certificate]
    signer_validator: SignerValidator | None
    depth: int
    signer_memo: dict[bytes, bool] = field(default_factory=dict)


class RevocationChecker:
    """Checks a path's revocation status from CRLs (``CrlStore``) and OCSP, per anchor policy."""

    def __init__(
        self,
        *,
        crls: CrlStore | None = None,
        ocsp: OcspStatusSource | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.crls = crls if crls is not None else CrlStore(fetcher=fetcher)
        if fetcher is not None and self.crls.fetcher is None:
            self.crls.fetcher = fetcher
        self.ocsp = ocsp

    def check_chain(
        self,
        certificates: Sequence[x509.Certificate],
        policy: ValidationPolicy,
        *,
        at: datetime,
        untrusted: Sequence[x509.Certificate] = (),
        signer_validator: SignerValidator | None = None,
        depth: int = 0,
    ) -> tuple[RevocationStatus, ...]:
        """Statuses of ``certificates`` (leaf first; the last one is the anchor, not checked).

        Raises ``CertificateRevoked`` if any is revoked (the one nearest the leaf is reported),
        else ``RevocationUnavailable`` when the policy is hard-fail and some status is missing.
        ``untrusted`` and ``signer_validator`` let a CRL signed by a separate key be used.
        """
        below_anchor = len(certificates) - 1
        if policy.revocation is RevocationMode.OFF or below_anchor <= 0:
            return tuple(RevocationStatus(RevocationState.NOT_CHECKED) for _ in range(below_anchor))
        context = _Context(policy, at, (*certificates, *untrusted), signer_validator, depth)
        statuses = tuple(
            self._status(certificates[i], certificates[i + 1], context) for i in range(below_anchor)
        )
        for certificate, status in zip(certificates, statuses, strict=False):
            if status.state is RevocationState.REVOKED:
                assert status.revoked_at is not None
                raise CertificateRevoked(
                    f"{certificate.subject.rfc4514_string()} revoked ({status.source})",
                    reason=status.reason or "unspecified",
                    revoked_at=status.revoked_at,
                )
        refused = UNACCEPTABLE[policy.revocation]
        for certificate, status in zip(certificates, statuses, strict=False):
            if status.state in refused:
                raise RevocationUnavailable(
                    f"{certificate.subject.rfc4514_string()}: {status.detail or status.state}"
                )
            if status.state in (RevocationState.UNAVAILABLE, RevocationState.UNKNOWN):
                logger.warning(
                    "revocation status unavailable (soft-fail) for %s: %s",
                    certificate.subject.rfc4514_string(),
                    status.detail,
                )
        return statuses

    # --- one certificate ----------------------------------------------------------------------

    def _status(
        self, certificate: x509.Certificate, issuer: x509.Certificate, context: _Context
    ) -> RevocationStatus:
        points = distribution_points(certificate)
        status = self._crl_status(certificate, issuer, points, context, fetched=False)
        if status is not None:
            return status
        ocsp = self._ocsp_status(certificate, issuer, context)
        if ocsp is not None and ocsp.state in (RevocationState.GOOD, RevocationState.REVOKED):
            return ocsp
        failures: list[str] = []
        if context.policy.use_distribution_points and self.crls.fetcher is not None:
            fetched = False
            for point in points:
                for general_name in (point.full_name or ()) if point is not None else ():
                    if isinstance(general_name, x509.UniformResourceIdentifier):
                        fetched |= self._fetch_distribution_point(general_name.value, failures)
            if fetched:
                status = self._crl_status(certificate, issuer, points, context, fetched=True)
                if status is not None:
                    return status
        if ocsp is not None and not failures:
            return ocsp  # UNKNOWN or UNAVAILABLE, with the responder's detail
        details = [ocsp.detail] if ocsp is not None and ocsp.detail else []
        details += failures or ["no fresh CRL or OCSP response in scope"]
        return RevocationStatus(
            ocsp.state if ocsp is not None else RevocationState.UNAVAILABLE,
            source=ocsp.source if ocsp is not None else "",
            detail="; ".join(details),
        )

    def _fetch_distribution_point(self, url: str, failures: list[str]) -> bool:
        """Fetch one CRL distribution point now; a failure is noted and answers False.

        The store maps fetch and CRL errors to a noted failure; anything else a fetcher raises
        is caught here too, so no distribution point can turn into anything but an unavailable
        status (the anchor's policy then decides).
        """
        try:
            fetched = bool(self.crls.fetch_distribution_point(url))
        except Exception as exc:  # noqa: BLE001 - a fetcher's failure is an unavailable status
            logger.warning("CRL distribution point %s failed: %r", url, exc)
            failures.append(f"CRL distribution point {url}: {type(exc).__name__}")
            return False
        if not fetched:
            failures.append(self.crls.failure(url) or f"CRL distribution point {url}: no CRL")
        return fetched

    def _ocsp_status(
        self, certificate: x509.Certificate, issuer: x509.Certificate, context: _Context
    ) -> RevocationStatus | None:
        if self.ocsp is None or not context.policy.use_ocsp:
            return None
        url = context.policy.ocsp_responder or next(iter(ocsp_urls(certificate)), None)
        if url is None:
            return None
        try:
            return self.ocsp.status(
                certificate,
                issuer,
                at=context.at,
                responder_url=url,
                sm2_signer_id=context.policy.sm2_signer_id,
            )
        except Exception as exc:  # noqa: BLE001 - a responder's failure is an unavailable status
            logger.warning("OCSP status from %s failed: %r", url, exc)
            return RevocationStatus(
                RevocationState.UNAVAILABLE,
                source="ocsp",
                detail=f"OCSP responder {url}: {type(exc).__name__}",
            )

    def _crl_status(
        self,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        points: tuple[x509.DistributionPoint | None, ...],
        context: _Context,
        *,
        fetched: bool,
    ) -> RevocationStatus | None:
        certificate_issuer = issuer_key(certificate)
        extra = tuple(name_key(n) for p in points for n in _crl_issuers(p))
        serial = serial_number(certificate)
        covered: set[str] = set()
        used: IndexedCrl | None = None
        stale = False
        for crl in self.crls.crls_for(certificate_issuer, extra):
            if not crl.is_fresh(context.at):
                stale = True
                continue
            for point in points:
                reasons = crl_reasons_for(crl, certificate, point)
                if not reasons:
                    continue
                if not self._signer_ok(crl, issuer, context):
                    break
                entry = crl.lookup(certificate_issuer, serial)
                if entry is not None and entry.reason != "remove_from_crl":
                    return RevocationStatus(
                        RevocationState.REVOKED,
                        source="crl",
                        reason=entry.reason,
                        revoked_at=entry.revoked_at,
                        this_update=crl.this_update,
                        next_update=crl.next_update,
                    )
                covered |= reasons
                used = crl
                break
        if used is not None and covered >= ALL_REASONS:
            return RevocationStatus(
                RevocationState.GOOD,
                source="crl",
                this_update=used.this_update,
                next_update=used.next_update,
            )
        if fetched or stale or covered:
            logger.debug(
                "no complete CRL for %s (stale=%s, reasons=%s)",
                certificate.subject.rfc4514_string(),
                stale,
                sorted(covered),
            )
        return None

    def _signer_ok(self, crl: IndexedCrl, issuer: x509.Certificate, context: _Context) -> bool:
        # The certificate's own issuer: its path is the one being validated.
        if subject_key(issuer) == crl.issuer_key and may_sign_crls(issuer):
            if crl.signed_by(issuer, context.policy.sm2_signer_id):
                return True
        if context.signer_validator is None or context.depth >= MAX_SIGNER_DEPTH:
            return False
        # Another certificate named as the CRL issuer (a separate CRL-signing key, an indirect
        # CRL's issuer): accepted only if its own path and revocation status check out.
        for candidate in context.pool:
            if candidate is issuer or subject_key(candidate) != crl.issuer_key:
                continue
            if not may_sign_crls(candidate) or not crl.signed_by(
                candidate, context.policy.sm2_signer_id
            ):
                continue
            key = candidate.fingerprint(_SHA256)
            verdict = context.signer_memo.get(key)
            if verdict is None:
                context.signer_memo[key] = False
                verdict = context.signer_validator(candidate, context.depth + 1)
                context.signer_memo[key] = verdict
            if verdict:
                return True
        return False
