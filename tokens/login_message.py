"""The one message a token signs at login (DESIGN.md "Login protocol v1").

::

    certgate-login-v1\\n<origin>\\n<challenge_id>\\n<nonce>\\n

Every field is checked before the bytes are built, so neither a page nor a gateway can smuggle a
newline (and with it a different message) into a signature: the origin must be a serialised web
origin, the challenge id a short token of URL-safe characters, the nonce base64url of 32 bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from tokens.errors import OriginNotAllowed, TokenBadRequest

PREFIX = "certgate-login-v1"
NONCE_BYTES = 32
MAX_CHALLENGE_ID_LENGTH = 128

_CHALLENGE_ID = re.compile(rf"[A-Za-z0-9._~-]{{1,{MAX_CHALLENGE_ID_LENGTH}}}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}=?")
_HOST = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(origin: str) -> str:
    """The serialised form of a web origin (``scheme://host[:port]``), or ``OriginNotAllowed``.

    Scheme and host are lower-cased and a default port is dropped, as browsers serialise them, so an
    allow-list entry written ``https://Example.com:443`` matches the header ``https://example.com``.
    ``null`` and anything with a path, query, fragment or credentials is refused.
    """
    if not origin or any(ord(c) < 0x21 or ord(c) > 0x7E for c in origin):
        raise OriginNotAllowed(f"malformed origin {origin!r}")
    parts = urlsplit(origin)
    try:
        port = parts.port
    except ValueError as error:
        raise OriginNotAllowed(f"malformed origin port {origin!r}") from error
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if (
        scheme not in DEFAULT_PORTS
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or origin.endswith("/")
    ):
        raise OriginNotAllowed(f"not a serialised origin {origin!r}")
    if ":" in host:
        host = f"[{host}]"
    if not _HOST.fullmatch(host):
        raise OriginNotAllowed(f"malformed origin host {origin!r}")
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def check_challenge_id(challenge_id: object) -> str:
    if not isinstance(challenge_id, str) or not _CHALLENGE_ID.fullmatch(challenge_id):
        raise TokenBadRequest("challenge_id malformed", reason="challenge_id")
    return challenge_id


def check_nonce(nonce: object) -> str:
    """The nonce as given, if it is base64url (padded or not) of exactly 32 bytes."""
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise TokenBadRequest("nonce malformed", reason="nonce")
    try:
        raw = base64.urlsafe_b64decode(nonce.rstrip("=") + "=")
    except (binascii.Error, ValueError) as error:
        raise TokenBadRequest("nonce malformed", reason="nonce") from error
    if len(raw) != NONCE_BYTES:
        raise TokenBadRequest("nonce malformed", reason="nonce")
    return nonce


def login_message(origin: str, challenge_id: object, nonce: object) -> bytes:
    """The exact UTF-8 bytes to sign for ``origin`` (already taken from the ``Origin`` header)."""
    serialised = normalise_origin(origin)
    if serialised != origin:
        # The gateway rebuilds the message with its configured origin, byte for byte: sign what the
        # browser sent only when it is already in canonical form.
        raise OriginNotAllowed(f"origin not in serialised form {origin!r}")
    fields = (PREFIX, origin, check_challenge_id(challenge_id), check_nonce(nonce))
    return ("\n".join(fields) + "\n").encode("utf-8")
