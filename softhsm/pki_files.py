"""Files of a test PKI folder: atomic writes, PEM keys, and OpenSSL ``ca``-format index files.

Every file is replaced atomically (write a temporary file, then rename). Besides keeping readers
(the CRL HTTP server, ``openssl ocsp``) from seeing half-written files, the rename gives the index
file a new inode, which is how a running ``openssl ocsp`` notices that it changed (it compares
inode, mtime and ctime; mtime alone has one-second granularity).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644

# RFC 5280 reason (snake_case, as certs.errors.REVOCATION_REASON_TEXT) -> OpenSSL index spelling.
# OpenSSL's index knows no privilegeWithdrawn / aACompromise: those entries carry no reason there
# (the OCSP answer is "revoked" without a reason; the CRL entry still has the reason code).
OPENSSL_INDEX_REASONS: dict[str, str | None] = {
    "unspecified": "unspecified",
    "key_compromise": "keyCompromise",
    "ca_compromise": "CACompromise",
    "affiliation_changed": "affiliationChanged",
    "superseded": "superseded",
    "cessation_of_operation": "cessationOfOperation",
    "certificate_hold": "certificateHold,holdInstructionReject",
    "privilege_withdrawn": None,
    "aa_compromise": None,
}


def write_atomically(path: Path, content: bytes, mode: int = PUBLIC_FILE_MODE) -> None:
    """Replace ``path`` with ``content`` in one rename, created with ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    """Unencrypted PKCS#8 PEM: this is a test PKI."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificates_pem(certificates: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def serial_hex(serial: int) -> str:
    """Upper-case hex with an even number of digits, as OpenSSL writes serials in its index."""
    digits = f"{serial:X}"
    return digits if len(digits) % 2 == 0 else "0" + digits


def _asn1_time(moment: datetime) -> str:
    """UTCTime before 2050, GeneralizedTime after, as RFC 5280 and OpenSSL's index expect."""
    moment = moment.astimezone(UTC)
    if moment.year < 2050:
        return moment.strftime("%y%m%d%H%M%SZ")
    return moment.strftime("%Y%m%d%H%M%SZ")


@dataclass(frozen=True)
class IndexEntry:
    """One line of an OpenSSL ``ca`` database (index.txt)."""

    serial: int
    not_after: datetime
    subject: str  # OpenSSL one-line form, /C=CN/CN=...
    revoked_at: datetime | None = None
    reason: str | None = None

    def line(self) -> str:
        status = "V" if self.revoked_at is None else "R"
        revocation = ""
        if self.revoked_at is not None:
            revocation = _asn1_time(self.revoked_at)
            openssl_reason = OPENSSL_INDEX_REASONS.get(self.reason or "unspecified")
            if openssl_reason:
                revocation += "," + openssl_reason
        fields = (
            status,
            _asn1_time(self.not_after),
            revocation,
            serial_hex(self.serial),
            "unknown",
            self.subject,
        )
        return "\t".join(fields) + "\n"


def oneline_subject(subject: x509.Name) -> str:
    """The subject as OpenSSL's index writes it (tabs and newlines cannot occur: checked)."""
    parts = []
    for attribute in subject:
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        parts.append(f"/{attribute.rfc4514_attribute_name}={value}")
    return "".join(parts)


def write_openssl_index(path: Path, entries: Iterable[IndexEntry]) -> None:
    """Write index.txt and its .attr file (several valid certificates may share a subject)."""
    write_atomically(Path(f"{path}.attr"), b"unique_subject = no\n")
    write_atomically(path, "".join(entry.line() for entry in entries).encode("utf-8"))
