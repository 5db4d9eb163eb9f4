"""Encryption of personal data at rest (ID-card number, phone) and keyed hashes for lookup.

One 32-byte data key (``CERTGATE_DATA_KEY``) is expanded with HKDF into independent sub-keys:
AES-256-GCM for the values, HMAC-SHA256 for the lookup hashes, and HMAC-SHA256 for the audit
chain. The column name is the AES-GCM associated data, so a ciphertext copied into another column
does not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12


def _derive(data_key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(data_key)


class PersonalDataCipher:
    """Seals and opens personal data; computes the lookup hashes that stand in for it in queries."""

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise ValueError("the data key is 32 bytes")
        self._aead = AESGCM(_derive(data_key, b"certgate personal-data aes-256-gcm v1"))
        self._lookup_key = _derive(data_key, b"certgate personal-data lookup hmac v1")
        self.audit_key = _derive(data_key, b"certgate audit-chain hmac v1")

    def seal(self, column: str, value: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), column.encode("ascii"))
        return FORMAT_VERSION + nonce + sealed

    def open(self, column: str, blob: bytes) -> str:
        if not blob or blob[:1] != FORMAT_VERSION:
            raise ValueError("unknown personal-data format")
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, column.encode("ascii")).decode("utf-8")
        except InvalidTag:
            raise ValueError("personal data does not decrypt with this data key") from None

    def lookup_hash(self, kind: str, value: str) -> str:
        """HMAC-SHA256 of a normalised value, namespaced by kind; hex."""
        message = kind.encode("ascii") + b"\x00" + value.encode("utf-8")
        return hmac.new(self._lookup_key, message, hashlib.sha256).hexdigest()
