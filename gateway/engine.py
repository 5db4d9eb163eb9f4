"""The certificate engine as the gateway uses it: the configured anchors, a path validator and a
revocation checker (CRLs refreshed in the background, OCSP), built once at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from flask import Flask, current_app

from certs.chain import VerifiedChain
from certs.errors import CertificateUsageInvalid
from certs.extensions import key_usage
from certs.fetch import HttpFetcher
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
    ) -> None:
        self.anchors = tuple(anchors)
        self.intermediates = tuple(intermediates)
        # Thumbprints of the configured intermediates, computed once: hashing each one again on
        # every login showed up in the login profile (bench/bench_login.py).
        self._intermediate_prints = tuple(c.fingerprint(_SHA256) for c in self.intermediates)
        self.crls: CrlStore | None = None
        self.validator: ChainValidator | None = None
        if self.anchors:
            self.crls = load_crls(self.anchors)
            if start_background:
                self.crls.start()
            fetcher = HttpFetcher()
            self.crls.fetcher = self.crls.fetcher or fetcher
            revocation = RevocationChecker(
                crls=self.crls, ocsp=OcspClient(fetcher), fetcher=fetcher
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
        return self.validator.validate(leaf, offered, at=at)

    def close(self) -> None:
        if self.crls is not None:
            self.crls.stop()


def load_crls(anchors: Sequence[TrustAnchor]) -> CrlStore:
    """Every anchor's CRL sources. Files are read now (a bad one stops start-up); URLs are
    fetched now too, but one that fails only logs a warning (the background refresh retries it,
    and hard-fail anchors refuse logins meanwhile)."""
    crls = CrlStore(fetcher=HttpFetcher())
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


def init_app(app: Flask, trust: TrustConfiguration) -> CertificateEngine:
    engine = CertificateEngine(
        trust.anchors,
        intermediates=trust.intermediates,
        # Tests run on a fixed clock and read CRL files once; a server refreshes them.
        start_background=app.config.get("CLOCK") is None,
    )
    app.extensions[EXTENSION] = engine
    return engine


def get_engine(app: Flask | None = None) -> CertificateEngine:
    return (app or current_app).extensions[EXTENSION]
