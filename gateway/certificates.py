"""Certificate details the account page shows: subject, issuer and expiry of bound or used
certificates, kept in the database so they survive a restart.

Written when an operator binds a certificate file and the first time a certificate signs in
(per process, a bounded set of thumbprints already recorded keeps this off the login hot path).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from certs.identity import canonical_dn, issuer_serial_key, serial_hex
from gateway.storage.database import Database
from gateway.storage.models import CertificateDetails
from gateway.storage.personal_data import PersonalDataCipher

EXTENSION = "certgate.certificates"
SUBJECT_COLUMN = "certificate_details.subject"
RECORDED_MEMORY = 10_000


@dataclass(frozen=True)
class CertificateSummary:
    thumbprint: str
    subject: str
    issuer: str
    not_after: datetime


class CertificateCatalogue:
    def __init__(self, database: Database, cipher: PersonalDataCipher) -> None:
        self.database = database
        self.cipher = cipher
        self._recorded: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def _already_recorded(self, thumbprint: str) -> bool:
        with self._lock:
            if thumbprint in self._recorded:
                self._recorded.move_to_end(thumbprint)
                return True
        return False

    def _remember(self, thumbprint: str) -> None:
        with self._lock:
            self._recorded[thumbprint] = None
            while len(self._recorded) > RECORDED_MEMORY:
                self._recorded.popitem(last=False)

    def record(
        self, certificate: x509.Certificate, *, at: datetime, thumbprint: str | None = None
    ) -> None:
        """Keep ``certificate``'s details (once; later calls for it cost a set lookup).
        ``thumbprint``: its SHA-256 thumbprint, when the caller has it already."""
        thumbprint = thumbprint or certificate.fingerprint(hashes.SHA256()).hex()
        if self._already_recorded(thumbprint):
            return
        row = CertificateDetails(
            thumbprint=thumbprint,
            issuer_serial=issuer_serial_key(
                canonical_dn(certificate.issuer), serial_hex(certificate.serial_number)
            ),
            subject_sealed=self.cipher.seal(SUBJECT_COLUMN, certificate.subject.rfc4514_string()),
            issuer=certificate.issuer.rfc4514_string(),
            not_after=certificate.not_valid_after_utc,
            recorded_at=at,
        )
        try:
            with self.database.session() as session:
                if session.get(CertificateDetails, thumbprint) is None:
                    session.add(row)
        except IntegrityError:
            pass  # another thread or process recorded it first: the same certificate, same row
        self._remember(thumbprint)

    def _summary(self, row: CertificateDetails | None) -> CertificateSummary | None:
        if row is None:
            return None
        return CertificateSummary(
            thumbprint=row.thumbprint,
            subject=self.cipher.open(SUBJECT_COLUMN, row.subject_sealed),
            issuer=row.issuer,
            not_after=row.not_after,
        )

    def by_thumbprint(self, thumbprint: str) -> CertificateSummary | None:
        with self.database.session() as session:
            return self._summary(session.get(CertificateDetails, thumbprint))

    def by_issuer_serial(self, issuer_serial: str) -> CertificateSummary | None:
        with self.database.session() as session:
            row = session.scalars(
                select(CertificateDetails)
                .where(CertificateDetails.issuer_serial == issuer_serial)
                .order_by(CertificateDetails.recorded_at.desc())
                .limit(1)
            ).first()
            return self._summary(row)


def init_app(app: Flask, database: Database, cipher: PersonalDataCipher) -> None:
    app.extensions[EXTENSION] = CertificateCatalogue(database, cipher)


def get_certificates(app: Flask | None = None) -> CertificateCatalogue:
    catalogue: CertificateCatalogue = (app or current_app).extensions[EXTENSION]
    return catalogue
