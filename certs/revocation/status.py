"""The outcome of one revocation check of one certificate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class RevocationState(StrEnum):
    GOOD = "good"  # a fresh CRL or OCSP response says not revoked
    REVOKED = "revoked"
    UNKNOWN = "unknown"  # OCSP "unknown": the responder does not know the certificate
    UNAVAILABLE = "unavailable"  # no fresh, authoritative status could be had
    NOT_CHECKED = "not_checked"  # revocation mode "off"


@dataclass(frozen=True)
class RevocationStatus:
    state: RevocationState
    source: str = ""  # "crl", "ocsp" or "" (not checked)
    reason: str | None = None  # RFC 5280 CRLReason name, e.g. "key_compromise"
    revoked_at: datetime | None = None
    this_update: datetime | None = None
    next_update: datetime | None = None
    # Why the status is unavailable/unknown, for the operator's log (never personal data).
    detail: str = ""
