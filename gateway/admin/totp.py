"""Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): HMAC-SHA1, 6 digits, 30 s.

Written here rather than taken from a library: the lock holds no TOTP library, and the
algorithm is a dozen lines of ``hmac`` that the RFCs' own test vectors check
(tests/admin/test_totp.py). SHA-1, 6 digits and 30 s are what every authenticator app reads
from an ``otpauth://`` URI without further parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from datetime import datetime
from urllib.parse import quote, urlencode

DIGITS = 6
PERIOD = 30  # seconds per time step
SECRET_BYTES = 20  # 160 bits, the HMAC-SHA1 block RFC 4226 recommends
# Steps either side of now that are still accepted: a phone's clock a little off, or a code
# typed just as it changed.
DRIFT_STEPS = 1


def new_secret() -> str:
    """A fresh secret as authenticator apps take it: base32 without padding."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def _key(secret: str) -> bytes:
    padded = secret.upper() + "=" * (-len(secret) % 8)
    return base64.b32decode(padded)


def hotp(key: bytes, counter: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 section 5.3: dynamic truncation of HMAC(key, counter) to ``digits`` digits."""
    mac = hmac.new(key, struct.pack(">Q", counter), getattr(hashlib, digest)).digest()
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def time_step(at: datetime) -> int:
    return int(at.timestamp()) // PERIOD


def code_at(secret: str, at: datetime) -> str:
    """The code an authenticator app shows at ``at`` (tests compute it this way too)."""
    return hotp(_key(secret), time_step(at))


def matching_step(secret: str, code: str, at: datetime, *, after: int = 0) -> int | None:
    """The time step within the drift window whose code is ``code`` and which is newer than
    ``after`` (the last step accepted: a code is good once), else None."""
    if len(code) != DIGITS or not code.isdigit():
        return None
    key = _key(secret)
    now = time_step(at)
    found = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        # Every step is computed and compared in constant time, found or not.
        if hmac.compare_digest(hotp(key, step), code) and step > after and found is None:
            found = step
    return found


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """``otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...`` (the Key Uri Format that
    authenticator apps read from a QR code or a pasted link)."""
    label = quote(f"{issuer}:{account}", safe=":@")
    query = urlencode(
        {"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS,
         "period": PERIOD}
    )  # fmt: skip
    return f"otpauth://totp/{label}?{query}"
