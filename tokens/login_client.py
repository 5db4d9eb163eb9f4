"""A whole challenge login from a script (``certgate agent login``), DESIGN.md "Login protocol v1".

1. ``POST <url>/api/v1/login/challenge`` (the session cookie it sets is kept),
2. sign the login message for the gateway's origin on the token,
3. ``POST <url>/api/v1/login/token`` with certificate, chain, signature and algorithm.

The origin signed for is the origin of ``url`` (or ``origin`` when the gateway sits behind a proxy
with another public origin). A challenge naming any other origin is refused before the token is
touched: like the agent, a script decides for itself which site it signs in to.
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from certs.errors import DEFAULT_LANGUAGE
from tokens.errors import TokenBadRequest, TokenError, TokenFailure
from tokens.login_message import login_message, normalise_origin
from tokens.pkcs11 import TokenCertificate, TokenLibrary

CHALLENGE_PATH = "/api/v1/login/challenge"
TOKEN_PATH = "/api/v1/login/token"
HTTP_TIMEOUT_SECONDS = 30.0


class GatewayRefused(TokenError):
    """The gateway answered ``{"ok": false, "error": code, "message": ...}``; code and text kept."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"HTTP {status} {code}")
        self.gateway_code = code
        self.server_message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.gateway_code}: {self.detail}"

    def message(self, language: str = DEFAULT_LANGUAGE) -> str:
        return self.server_message


class OriginMismatch(TokenError):
    code = "origin_mismatch"
    templates = {
        "zh-CN": "网关给出的来源 {challenge_origin} 与登录地址的来源 {origin} 不一致，已拒绝签名。",
        "en": "The gateway's challenge names origin {challenge_origin}, not {origin}; "
        "nothing was signed.",
    }

    def __init__(self, detail: str = "", *, origin: str, challenge_origin: str) -> None:
        super().__init__(detail, origin=origin, challenge_origin=challenge_origin)


def error_code(error: TokenError) -> str:
    """The stable code to show: the gateway's own for its refusals, the error's otherwise."""
    return error.gateway_code if isinstance(error, GatewayRefused) else error.code


@dataclass(frozen=True)
class LoginResult:
    account: dict[str, Any]
    amr: list[str]
    session_cookies: dict[str, str]
    certificate: TokenCertificate


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


class LoopbackSecureCookiePolicy(http.cookiejar.DefaultCookiePolicy):
    """Send ``Secure`` cookies to http://127.0.0.1 and http://localhost, as browsers do.

    The gateway's cookies are ``Secure`` (DESIGN.md); an integrator's gateway on a laptop is plain
    HTTP on loopback, which browsers count as a secure context and the standard library does not.
    """

    def return_ok_secure(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        host = urlsplit(request.get_full_url()).hostname or ""
        if cookie.secure and request.type == "http" and host in LOOPBACK_HOSTS:
            return True
        return bool(super().return_ok_secure(cookie, request))


class GatewayClient:
    """JSON over HTTP with one cookie jar, so the challenge and the answer share a session."""

    def __init__(self, url: str, origin: str) -> None:
        self.base = url.rstrip("/")
        self.origin = origin
        self.cookies = http.cookiejar.CookieJar(LoopbackSecureCookiePolicy())
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(payload).encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Origin": self.origin,
            },
        )
        try:
            with self._opener.open(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            raise TokenFailure(f"gateway {self.base}: {error}") from error
        try:
            answer = json.loads(raw)
        except ValueError as error:
            raise TokenFailure(f"gateway {self.base}{path}: HTTP {status}, not JSON") from error
        if not isinstance(answer, dict):
            raise TokenFailure(f"gateway {self.base}{path}: HTTP {status}, not a JSON object")
        if status != 200 or answer.get("ok") is False:
            raise GatewayRefused(
                str(answer.get("error", "unavailable")), str(answer.get("message", "")), status
            )
        return answer

    def session_cookies(self) -> dict[str, str]:
        return {cookie.name: cookie.value or "" for cookie in self.cookies}


def choose_certificate(
    library: TokenLibrary, *, token_label: str | None, cert_id: bytes | None
) -> TokenCertificate:
    """The one login certificate that ``--token`` / ``--cert-id`` point at."""
    if cert_id is not None:
        return library.find_certificate(cert_id, token_label=token_label)
    candidates = library.certificates(token_label=token_label)
    if not candidates:
        return library.find_certificate(b"\x00", token_label=token_label)  # raises the right error
    if len(candidates) > 1:
        listed = ", ".join(f"{c.token.label}/{c.cert_id.hex()}" for c in candidates)
        raise TokenBadRequest(
            f"{len(candidates)} certificates: {listed}",
            reason=f"several certificates, choose one with --cert-id: {listed}",
        )
    return candidates[0]


def login(
    url: str,
    library: TokenLibrary,
    pin: str,
    *,
    token_label: str | None = None,
    cert_id: bytes | None = None,
    origin: str | None = None,
    signature_algorithm: str | None = None,
) -> LoginResult:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TokenBadRequest(f"not an http(s) URL: {url}", reason="URL")
    signing_origin = normalise_origin(origin or f"{parts.scheme}://{parts.netloc}")
    entry = choose_certificate(library, token_label=token_label, cert_id=cert_id)
    client = GatewayClient(url, signing_origin)
    challenge = client.post(CHALLENGE_PATH, {})
    challenge_origin = challenge.get("origin")
    if challenge_origin is not None and challenge_origin != signing_origin:
        raise OriginMismatch(
            f"challenge origin {challenge_origin!r}",
            origin=signing_origin,
            challenge_origin=str(challenge_origin),
        )
    challenge_id = challenge.get("challenge_id")
    message = login_message(signing_origin, challenge_id, challenge.get("nonce"))
    signed = library.sign_login(
        entry.cert_id,
        pin,
        message,
        token_label=entry.token.label,
        signature_algorithm=signature_algorithm,
    )
    answer = client.post(TOKEN_PATH, {"challenge_id": challenge_id, **signed.describe()})
    account = answer.get("account")
    return LoginResult(
        account=dict(account) if isinstance(account, dict) else {},
        amr=list(answer.get("amr") or []),
        session_cookies=client.session_cookies(),
        certificate=entry,
    )
