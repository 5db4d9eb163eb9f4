"""A small gateway for CLI-login tests: DESIGN.md "Login protocol v1", challenge and verification.

It is faithful where the client can tell: challenges bound to a session cookie (``HttpOnly``,
``SameSite=Lax``, ``Secure``, as DESIGN.md sets them), single use, 120 s
life on an injected clock; the message rebuilt from the server's own origin; the signature verified
with cryptography for every DESIGN.md algorithm but SM2; the certificate mapped to an account by its
SHA-256 thumbprint; the DESIGN.md error codes and statuses. No chain validation (the certificate
engine's business, tested in tests/certs).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from flask import Flask, Response, jsonify, make_response, request
from werkzeug.serving import make_server

CHALLENGE_LIFETIME = timedelta(seconds=120)
CHALLENGE_COOKIE = "certgate_pre"
SESSION_COOKIE = "certgate_session"

STATUS: Mapping[str, int] = {
    "bad_request": 400,
    "challenge_unknown": 401,
    "challenge_expired": 401,
    "challenge_used": 401,
    "signature_invalid": 401,
    "account_not_found": 401,
}


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _verify_rsa_pkcs1(key: Any, signature: bytes, message: bytes) -> None:
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("signature_invalid")
    key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def _verify_rsa_pss(key: Any, signature: bytes, message: bytes) -> None:
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("signature_invalid")
    key.verify(
        signature,
        message,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def _verify_ecdsa(key: Any, signature: bytes, message: bytes) -> None:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Refused("signature_invalid")
    size = (key.curve.key_size + 7) // 8
    if len(signature) == 2 * size and signature[0] != 0x30:  # raw r||s is allowed too
        signature = encode_dss_signature(
            int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        )
    key.verify(signature, message, ec.ECDSA(hashes.SHA256()))


def _verify_ed25519(key: Any, signature: bytes, message: bytes) -> None:
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise Refused("signature_invalid")
    key.verify(signature, message)


VERIFIERS: Mapping[str, Callable[[Any, bytes, bytes], None]] = {
    "rsa-pkcs1-sha256": _verify_rsa_pkcs1,
    "rsa-pss-sha256": _verify_rsa_pss,
    "ecdsa-sha256": _verify_ecdsa,
    "ed25519": _verify_ed25519,
}


@dataclass
class Challenge:
    challenge_id: str
    nonce: str
    binding: str
    expires_at: datetime
    used: bool = False


@dataclass
class LoginGateway:
    """State of the test gateway; ``accounts`` maps certificate SHA-256 thumbprints to accounts."""

    origin: str = ""
    accounts: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    challenges: dict[str, Challenge] = field(default_factory=dict)
    verified_messages: list[bytes] = field(default_factory=list)

    def bind(self, certificate: x509.Certificate, account: dict[str, Any]) -> None:
        self.accounts[certificate.fingerprint(hashes.SHA256())] = account

    def app(self) -> Flask:
        app = Flask("test-login-gateway")

        @app.errorhandler(Refused)
        def refused(error: Refused) -> Response:
            response = jsonify({"ok": False, "error": error.code, "message": error.code})
            response.status_code = STATUS[error.code]
            return response

        @app.post("/api/v1/login/challenge")
        def challenge() -> Response:
            binding = request.cookies.get(CHALLENGE_COOKIE) or secrets.token_urlsafe(16)
            issued = Challenge(
                challenge_id=secrets.token_urlsafe(16),
                nonce=base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode(),
                binding=binding,
                expires_at=self.now() + CHALLENGE_LIFETIME,
            )
            self.challenges[issued.challenge_id] = issued
            response = make_response(
                jsonify(
                    {
                        "challenge_id": issued.challenge_id,
                        "nonce": issued.nonce,
                        "origin": self.origin,
                        "expires_at": issued.expires_at.isoformat(),
                    }
                )
            )
            response.set_cookie(
                CHALLENGE_COOKIE, binding, httponly=True, samesite="Lax", secure=True
            )
            return response

        @app.post("/api/v1/login/token")
        def token() -> Response:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise Refused("bad_request")
            issued = self.challenges.get(str(body.get("challenge_id")))
            if issued is None or issued.binding != request.cookies.get(CHALLENGE_COOKIE):
                raise Refused("challenge_unknown")
            if issued.used:
                raise Refused("challenge_used")
            issued.used = True
            if self.now() >= issued.expires_at:
                raise Refused("challenge_expired")
            try:
                certificate = x509.load_der_x509_certificate(
                    base64.b64decode(body["certificate"], validate=True)
                )
                signature = base64.b64decode(body["signature"], validate=True)
                verify = VERIFIERS[body["signature_algorithm"]]
            except (KeyError, TypeError, ValueError, binascii.Error):
                raise Refused("bad_request") from None
            message = (
                f"certgate-login-v1\n{self.origin}\n{issued.challenge_id}\n{issued.nonce}\n"
            ).encode()
            try:
                verify(certificate.public_key(), signature, message)
            except InvalidSignature:
                raise Refused("signature_invalid") from None
            self.verified_messages.append(message)
            account = self.accounts.get(certificate.fingerprint(hashes.SHA256()))
            if account is None:
                raise Refused("account_not_found")
            response = jsonify({"ok": True, "account": account, "amr": ["hwk", "pin"]})
            response.set_cookie(
                SESSION_COOKIE,
                secrets.token_urlsafe(24),
                httponly=True,
                samesite="Lax",
                secure=True,
            )
            return response

        return app


@contextmanager
def serve_login_gateway(gateway: LoginGateway) -> Iterator[str]:
    """Serve ``gateway`` on a free loopback port; yields its URL (also its origin)."""
    server = make_server("127.0.0.1", 0, gateway.app(), threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    gateway.origin = gateway.origin or url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
