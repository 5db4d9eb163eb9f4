"""A third-party application that signs people in through CertGate with OpenID Connect.

Authlib's Flask client does the relying party's work: discovery, the authorization code flow
with PKCE (S256) and a nonce, the ID token's signature (against the JWKS), issuer, audience,
expiry, nonce and ``at_hash``, then userinfo. The application shows who signed in and how
(``acr``, ``amr``) and, while a person acts for an enterprise, for whom (``acting_for``: the
enterprise's credit code, name and the person's role), logs out through CertGate's end-session
endpoint when the provider has one (else locally), and ends its sessions when CertGate's
back-channel logout token says the person's gateway session ended (OpenID Connect Back-Channel
Logout 1.0).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Flask, Response, redirect, render_template_string, request, session, url_for
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from werkzeug.wrappers import Response as BaseResponse

from examples.session_store import ServerSideSessions

log = logging.getLogger("examples.oidc_app")

SCOPE = "openid profile certgate.enterprise"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_MAX_AGE = 300  # seconds; older logout tokens are refused (replay window)
CLOCK_LEEWAY = 60


@dataclass(frozen=True)
class OidcAppConfig:
    issuer: str  # CertGate's public origin
    client_id: str
    client_secret: str | None  # None: a public client (PKCE alone)
    public_url: str  # where browsers reach this application, without a trailing slash

    @property
    def redirect_uri(self) -> str:
        return self.public_url + "/callback"

    @property
    def backchannel_logout_uri(self) -> str:
        return self.public_url + "/backchannel-logout"

    @property
    def post_logout_redirect_uri(self) -> str:
        return self.public_url + "/"

    def __repr__(self) -> str:  # the secret never reaches a log line through a repr
        return f"OidcAppConfig(issuer={self.issuer!r}, client_id={self.client_id!r})"


PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>示例应用（OpenID Connect）</title>
<style>body{font-family:sans-serif;max-width:40rem;margin:2rem auto}dt{font-weight:bold}</style>
</head><body>
<h1>示例应用 · OpenID Connect</h1>
{% if error %}<p role="alert" id="error">{{ error }}</p>{% endif %}
{% if user %}
<p id="signed-in">已登录 / Signed in</p>
<dl>
  <dt>名称 name</dt><dd id="account-name">{{ user.name }}</dd>
  <dt>账户类型 account_kind</dt><dd id="account-kind">{{ user.account_kind }}</dd>
  <dt>统一社会信用代码 uscc</dt><dd id="uscc">{{ user.uscc or "—" }}</dd>
  <dt>认证级别 acr</dt><dd id="acr">{{ user.acr }}</dd>
  <dt>认证方式 amr</dt><dd id="amr">{{ user.amr | join(" ") }}</dd>
  <dt>代表企业 acting_for</dt><dd id="acting-for">{% if user.acting_for %}
    <span id="acting-for-name">{{ user.acting_for.name }}</span> ·
    <span id="acting-for-uscc">{{ user.acting_for.uscc }}</span> ·
    <span id="acting-for-role">{{ user.acting_for.role }}</span>{% else %}—{% endif %}</dd>
  <dt>sub</dt><dd id="sub">{{ user.sub }}</dd>
</dl>
<form method="post" action="{{ url_for('logout') }}">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <button type="submit" id="logout">退出 / Sign out</button>
</form>
{% else %}
<p id="signed-out">未登录 / Not signed in</p>
<p><a id="login" href="{{ url_for('login') }}">通过 CertGate 登录 / Sign in with CertGate</a></p>
{% endif %}
</body></html>
"""


class LogoutTokenInvalid(Exception):
    """A back-channel logout token this application must refuse (the reason, no token)."""


class BackChannelLogout:
    """Checks CertGate's logout tokens (Back-Channel Logout 1.0, section 2.6): signature
    against the provider's JWKS, ``iss``, ``aud``, ``iat``, ``jti`` not seen before, the
    back-channel ``events`` member, ``sid`` or ``sub``, and no ``nonce``."""

    def __init__(self, config: OidcAppConfig, provider: Any) -> None:
        self.config = config
        self.provider = provider  # Authlib's registered client: metadata and JWKS
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def _decode(self, logout_token: str) -> Any:
        algorithms = self.provider.load_server_metadata().get(
            "id_token_signing_alg_values_supported", ["RS256"]
        )
        try:
            keys = KeySet.import_key_set(self.provider.fetch_jwk_set())
            try:
                return jwt.decode(logout_token, keys, algorithms=algorithms)
            except InvalidKeyIdError:
                # A key rotated in since the JWKS was fetched.
                keys = KeySet.import_key_set(self.provider.fetch_jwk_set(force=True))
                return jwt.decode(logout_token, keys, algorithms=algorithms)
        except (JoseError, ValueError) as error:
            raise LogoutTokenInvalid(f"signature or format: {type(error).__name__}") from None

    def claims(self, logout_token: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        token = self._decode(logout_token)
        if token.header.get("typ") not in (None, "JWT", "logout+jwt"):
            raise LogoutTokenInvalid("typ")
        claims: dict[str, Any] = dict(token.claims)
        if claims.get("iss") != self.config.issuer:
            raise LogoutTokenInvalid("iss")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.config.client_id not in audiences:
            raise LogoutTokenInvalid("aud")
        issued_at = claims.get("iat")
        if not isinstance(issued_at, int | float) or not (
            now - LOGOUT_TOKEN_MAX_AGE <= issued_at <= now + CLOCK_LEEWAY
        ):
            raise LogoutTokenInvalid("iat")
        expires = claims.get("exp")
        if isinstance(expires, int | float) and expires < now - CLOCK_LEEWAY:
            raise LogoutTokenInvalid("exp")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
            raise LogoutTokenInvalid("events")
        if "nonce" in claims:
            raise LogoutTokenInvalid("nonce")
        if not claims.get("sid") and not claims.get("sub"):
            raise LogoutTokenInvalid("neither sid nor sub")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise LogoutTokenInvalid("jti")
        with self._lock:
            for seen, at in list(self._seen.items()):
                if at < now - LOGOUT_TOKEN_MAX_AGE - CLOCK_LEEWAY:
                    del self._seen[seen]
            if jti in self._seen:
                raise LogoutTokenInvalid("jti replayed")
            self._seen[jti] = now
        return claims


def _user_of(token: dict[str, Any], userinfo: dict[str, Any]) -> dict[str, Any]:
    """What the page shows and single logout needs, from the ID token and userinfo."""
    id_claims = token.get("userinfo") or {}
    return {
        "sub": id_claims.get("sub"),
        "sid": id_claims.get("sid"),
        "name": userinfo.get("name") or id_claims.get("name"),
        "account_kind": userinfo.get("account_kind") or id_claims.get("account_kind"),
        "uscc": userinfo.get("uscc") or id_claims.get("uscc"),
        "acr": id_claims.get("acr"),
        "amr": list(id_claims.get("amr") or []),
        # A person acting for an enterprise (scope certgate.enterprise): uscc, name, role.
        "acting_for": userinfo.get("acting_for") or id_claims.get("acting_for"),
    }


def create_app(config: OidcAppConfig, *, secret_key: str | None = None) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret_key or secrets.token_hex(32)
    app.config["SESSION_COOKIE_SECURE"] = config.public_url.startswith("https:")
    sessions = ServerSideSessions("oidc_app_session")
    app.session_interface = sessions
    oauth = OAuth(app)
    provider = oauth.register(
        "certgate",
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=config.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={
            "scope": SCOPE,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": (
                "client_secret_basic" if config.client_secret else "none"
            ),
        },
    )
    backchannel = BackChannelLogout(config, provider)
    app.extensions["examples.oidc_app"] = {"sessions": sessions, "backchannel": backchannel}

    def page(error: str | None = None, status: int = 200) -> Response:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(16)
        body = render_template_string(
            PAGE, user=session.get("user"), error=error, csrf=session["csrf"]
        )
        return Response(body, status=status, content_type="text/html; charset=utf-8")

    @app.get("/")
    def home() -> Response:
        return page()

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)

    @app.get("/login")
    def login() -> BaseResponse:
        # Authlib makes the state, the nonce and the PKCE verifier and keeps them in the
        # session until the callback.
        response: BaseResponse = provider.authorize_redirect(config.redirect_uri)
        return response

    @app.get("/callback")
    def callback() -> BaseResponse:
        try:
            token = provider.authorize_access_token()
            userinfo = provider.userinfo(token=token)
        except OAuthError as error:
            log.info("sign-in refused by the provider: %s", error.error)
            return page(f"登录未完成 / Sign-in not completed: {error.error}", status=400)
        except (JoseError, ValueError) as error:
            log.warning("ID token refused: %s", type(error).__name__)
            return page("ID token 无效 / The ID token is not valid", status=400)
        user = _user_of(token, dict(userinfo))
        session.clear()
        session["user"] = user
        session["id_token"] = token.get("id_token")
        log.info("signed in: sub %s, acr %s", user["sub"], user["acr"])
        return redirect(url_for("home"))

    @app.post("/logout")
    def logout() -> BaseResponse:
        if not secrets.compare_digest(request.form.get("csrf", ""), session.get("csrf", "")):
            return page("请重试 / Please try again", status=400)
        id_token = session.get("id_token")
        session.clear()
        if provider.load_server_metadata().get("end_session_endpoint") and id_token:
            response: BaseResponse = provider.logout_redirect(
                post_logout_redirect_uri=config.post_logout_redirect_uri,
                id_token_hint=id_token,
                client_id=config.client_id,
            )
            return response
        return redirect(url_for("home"))

    @app.post("/backchannel-logout")
    def backchannel_logout() -> Response:
        logout_token = request.form.get("logout_token", "")
        try:
            claims = backchannel.claims(logout_token)
        except LogoutTokenInvalid as error:
            log.warning("back-channel logout token refused: %s", error)
            response = Response('{"error": "invalid_request"}', status=400)
            response.content_type = "application/json"
            response.headers["Cache-Control"] = "no-store"
            return response
        sid, sub = claims.get("sid"), claims.get("sub")

        def named(data: dict[str, Any]) -> bool:
            user = data.get("user") or {}
            if sid:
                return bool(user.get("sid") == sid and (not sub or user.get("sub") == sub))
            return bool(user.get("sub") == sub)

        ended = sessions.end_where(named)
        log.info("back-channel logout: %d session(s) ended", ended)
        response = Response("", status=200)
        response.headers["Cache-Control"] = "no-store"
        return response

    return app
