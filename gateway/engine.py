"""The certificate engine as the gateway uses it: the configured anchors, a path validator and a
revocation checker (CRLs refreshed in the background, OCSP), built once at start-up.

Revocation fetches are bounded (``certs.fetch``): one deadline each (``OCSP_TIMEOUT`` for a
responder, ``CRL_FETCH_TIMEOUT`` for a CRL download) and a size limit fitting the kind (OCSP
64 KiB; CRLs ``crl_max_bytes``, 32 MiB by default). A certificate signed with, or holding a key
of, an algorithm the engine cannot verify (SM2 without OpenSSL 3) or refuses (DSA) is refused as
``certificate_untrusted`` with a message naming the algorithm (``explain_unsupported``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Flask, current_app

from certs import sm2
from certs.chain import VerifiedChain
from certs.errors import CertificateUntrusted, CertificateUsageInvalid
from certs.extensions import key_usage
from certs.fetch import CRL_MAX_BYTES, HttpFetcher
from certs.policy import TrustAnchor
from certs.revocation.checker import RevocationChecker
from certs.revocation.crl import CrlStore
from certs.revocation.ocsp import OcspClient
from certs.validation import ChainValidator
from gateway.config import ConfigError
from gateway.errors import Unavailable
from gateway.trust import TrustConfiguration

EXTENSION = "certgate.engine"
log = logging.getLogger("certgate.gateway")
_SHA256 = hashes.SHA256()

OCSP_TIMEOUT: Final = 5.0  # seconds, one deadline per OCSP request
CRL_FETCH_TIMEOUT: Final = 10.0  # seconds, one deadline per CRL download

# Signature, key and curve OIDs of certificates the engine cannot verify (SM2 where no OpenSSL 3
# libcrypto is found, certs/sm2.py) or refuses (DSA, certs/keys.py) -> the name a person knows.
_SM2_ALGORITHMS: Final[Mapping[str, str]] = {
    "1.2.156.10197.1.501": "SM2-with-SM3",
    "1.2.156.10197.1.301": "SM2",
}
UNSUPPORTED_ALGORITHMS: Final[Mapping[str, str]] = {
    **({} if sm2.available() else _SM2_ALGORITHMS),
    "1.2.840.10040.4.1": "DSA",
    "1.2.840.10040.4.3": "DSA",
    "2.16.840.1.101.3.4.3.1": "DSA",
    "2.16.840.1.101.3.4.3.2": "DSA",
}
_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
# How far up the presented certificates the issuer of an unsupported signature is looked for.
_MAX_ISSUER_STEPS = 8


class CertificateAlgorithmUnsupported(CertificateUntrusted):
    """``certificate_untrusted``, saying which algorithm the engine cannot use."""

    templates = {
        "zh-CN": "证书不受信任：暂不支持证书所用的算法 {algorithm}（请使用 RSA 或 ECDSA 证书）。",
        "en": "The certificate is not trusted: its algorithm {algorithm} is not supported "
        "(use an RSA or ECDSA certificate).",
    }

    def __init__(self, detail: str = "", *, algorithm: str) -> None:
        super().__init__(detail, algorithm=algorithm)
        self.algorithm = algorithm


def certificate_algorithms(certificate: x509.Certificate) -> tuple[str, ...]:
    """The unsupported algorithms ``certificate`` uses: its signature's, its key's, its curve's."""
    oids = [certificate.signature_algorithm_oid.dotted_string]
    spki: Any = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))[
        "tbs_certificate"
    ]["subject_public_key_info"]["algorithm"]
    oids.append(spki["algorithm"].dotted)
    if spki["algorithm"].dotted == _EC_PUBLIC_KEY and spki["parameters"].name == "named":
        oids.append(spki["parameters"].chosen.dotted)
    return tuple(
        dict.fromkeys(UNSUPPORTED_ALGORITHMS[o] for o in oids if o in UNSUPPORTED_ALGORITHMS)
    )


def unsupported_algorithm(leaf: x509.Certificate, others: Iterable[x509.Certificate]) -> str | None:
    """The first unsupported algorithm on the way from ``leaf`` up through ``others`` (found
    by issuer name): the leaf's own signature and key, then each issuer's."""
    by_subject: dict[bytes, x509.Certificate] = {}
    for certificate in others:
        by_subject.setdefault(certificate.subject.public_bytes(), certificate)
    current: x509.Certificate | None = leaf
    seen: set[bytes] = set()
    for _ in range(_MAX_ISSUER_STEPS):
        if current is None:
            break
        found = certificate_algorithms(current)
        if found:
            return found[0]
        seen.add(current.fingerprint(_SHA256))
        issuer = by_subject.get(current.issuer.public_bytes())
        current = None if issuer is None or issuer.fingerprint(_SHA256) in seen else issuer
    return None


def explain_unsupported(
    error: CertificateUntrusted, leaf: x509.Certificate, others: Iterable[x509.Certificate]
) -> CertificateUntrusted:
    """``error``, or the same refusal naming the algorithm when one on the chain is unsupported."""
    if isinstance(error, CertificateAlgorithmUnsupported):
        return error
    try:
        algorithm = unsupported_algorithm(leaf, others)
    except ValueError:  # a certificate asn1crypto cannot read: the engine's verdict stands
        return error
    if algorithm is None:
        return error
    return CertificateAlgorithmUnsupported(
        f"{algorithm} is not supported: {error.detail}", algorithm=algorithm
    )


def check_signing_key_usage(certificate: x509.Certificate) -> None:
    """A login signature needs ``digitalSignature`` when the leaf restricts its key usage."""
    usage = key_usage(certificate)  # read as certs reads it, DER quirks of Chinese CAs included
    if usage is None:
        return
    if not usage.digital_signature:
        raise CertificateUsageInvalid("leaf keyUsage lacks digitalSignature")


class CertificateEngine:
    def __init__(
        self,
        anchors: Sequence[TrustAnchor],
        *,
        intermediates: Sequence[x509.Certificate] = (),
        start_background: bool = False,
        crl_max_bytes: int = CRL_MAX_BYTES,
        ocsp: OcspClient | None = None,
    ) -> None:
        self.anchors = tuple(anchors)
        self.intermediates = tuple(intermediates)
        # Thumbprints of the configured intermediates, computed once: hashing each one again on
        # every login showed up in the login profile (bench/bench_login.py).
        self._intermediate_prints = tuple(c.fingerprint(_SHA256) for c in self.intermediates)
        self.crls: CrlStore | None = None
        self.validator: ChainValidator | None = None
        if self.anchors:
            self.crls = load_crls(self.anchors, crl_max_bytes=crl_max_bytes)
            if start_background:
                self.crls.start()
            revocation = RevocationChecker(
                crls=self.crls, ocsp=ocsp or OcspClient.for_http(timeout=OCSP_TIMEOUT)
            )
            self.validator = ChainValidator(self.anchors, revocation=revocation)

    def validate(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], *, at: datetime
    ) -> VerifiedChain:
        """The client's chain, completed with the configured intermediates, to an anchor."""
        if self.validator is None:
            raise Unavailable("no trust anchors are configured")
        offered = list(intermediates)
        known = {c.fingerprint(_SHA256) for c in offered}
        offered += [
            c
            for c, thumbprint in zip(self.intermediates, self._intermediate_prints, strict=True)
            if thumbprint not in known
        ]
        try:
            return self.validator.validate(leaf, offered, at=at)
        except CertificateUntrusted as error:
            anchors = (a.certificate for a in self.anchors)
            raise explain_unsupported(error, leaf, (*offered, *anchors)) from error

    def close(self) -> None:
        if self.crls is not None:
            self.crls.stop()


def load_crls(anchors: Sequence[TrustAnchor], *, crl_max_bytes: int = CRL_MAX_BYTES) -> CrlStore:
    """Every anchor's CRL sources. Files are read now (a bad one stops start-up); URLs are
    fetched now too, but one that fails only logs a warning (the background refresh retries it,
    and hard-fail anchors refuse logins meanwhile). Every download, configured or from a
    certificate's distribution point, has one deadline and at most ``crl_max_bytes``."""
    crls = CrlStore(
        fetcher=HttpFetcher(max_bytes=crl_max_bytes),
        fetch_timeout=CRL_FETCH_TIMEOUT,
        max_bytes=crl_max_bytes,
    )
    urls: list[str] = []
    for anchor in anchors:
        for n, source in enumerate(anchor.policy.crl_sources):
            if source.startswith(("http://", "https://")):
                urls.append(source)
                continue
            try:
                crls.add_source(source, load=True)
            except Exception as exc:  # noqa: BLE001 - CrlInvalid, OSError, FetchError
                raise ConfigError(
                    f"trust anchor {anchor.display_name!r}: crl[{n}] {source!r}: {exc}"
                ) from None
    for url in urls:
        try:
            crls.add_source(url, load=True)
        except Exception as exc:  # noqa: BLE001 - the refresh thread retries
            crls.add_source(url)
            log.warning("CRL %s not loaded at start-up: %s", url, exc)
    return crls


def crl_max_bytes_setting(app: Flask) -> int:
    """``crl_max_bytes``: the largest CRL the gateway downloads (checked at start-up)."""
    value = app.config.get("CRL_MAX_BYTES", CRL_MAX_BYTES)
    if isinstance(value, str) and value.isdigit():
        value = int(value)  # from a CERTGATE_CRL_MAX_BYTES environment variable
    if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
        source = app.config.get("CONFIG_SOURCE", {}).get("CRL_MAX_BYTES", "configuration")
        raise ConfigError(f"{source}: crl_max_bytes must be a number of bytes, at least 1024")
    return value


def init_app(
    app: Flask, trust: TrustConfiguration, *, ocsp: OcspClient | None = None
) -> CertificateEngine:
    """``ocsp``: the client asking responders (with the cache the processes share, when the
    state store is Redis); by default one with this process's own cache."""
    engine = CertificateEngine(
        trust.anchors,
        intermediates=trust.intermediates,
        crl_max_bytes=crl_max_bytes_setting(app),
        # Tests run on a fixed clock and read CRL files once; a server refreshes them.
        start_background=app.config.get("CLOCK") is None,
        ocsp=ocsp,
    )
    app.extensions[EXTENSION] = engine
    return engine


def get_engine(app: Flask | None = None) -> CertificateEngine:
    return (app or current_app).extensions[EXTENSION]
