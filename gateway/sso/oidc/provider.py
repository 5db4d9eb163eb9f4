"""Authlib's authorization server wired to the gateway: clients from the registry, accounts and
sessions from the gateway, codes and tokens in the SSO tables (hashed), the clock of the app.

Grants: the authorization code flow (with OpenID Connect and PKCE) and refresh tokens, nothing
else. PKCE is S256 only and required of public clients. Refresh tokens are issued only for the
``offline_access`` scope and rotate on every use; a used one presented again revokes its
family.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidRequestError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, current_app, g
from sqlalchemy import bindparam, insert, select, update

from gateway import clock
from gateway.accounts import AccountRecord, account_is_usable, get_accounts
from gateway.sso.clients import RegisteredClient, get_clients
from gateway.sso.keys import get_keys
from gateway.sso.models import (
    OIDC,
    SsoAccessToken,
    SsoAuthorizationCode,
    SsoRefreshToken,
)
from gateway.sso.oidc.claims import OFFLINE_ACCESS, SCOPES, session_claims, user_claims
from gateway.sso.participation import record_participation, session_sid
from gateway.storage.database import get_database
from gateway.storage.prepared import Prepared

EXTENSION = "certgate.sso.oidc"
CODE_TTL = timedelta(seconds=60)
ACCESS_TOKEN_TTL = timedelta(hours=1)
ID_TOKEN_TTL = timedelta(hours=1)
REFRESH_TOKEN_TTL = timedelta(days=30)
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


# The statements of every code flow, built once (gateway/storage/prepared.py): an ORM unit of
# work around each cost several times the statement (bench/bench_sso.py). The rare paths (a
# reused code, refresh-token rotation) keep the ORM.
_INSERT_CODE = Prepared(insert(SsoAuthorizationCode))
# The single-use guarantee: one statement marks the code used only if unused, unexpired and
# this client's, so two exchanges of one code cannot both succeed.
_USE_CODE = Prepared(
    update(SsoAuthorizationCode)
    .where(
        SsoAuthorizationCode.code_hash == bindparam("code_hash"),
        SsoAuthorizationCode.client_id == bindparam("client_id"),
        SsoAuthorizationCode.used_at.is_(None),
        SsoAuthorizationCode.expires_at > bindparam("at"),
    )
    .values(used_at=bindparam("at"))
)
_SELECT_CODE = Prepared(
    select(SsoAuthorizationCode.__table__).where(
        SsoAuthorizationCode.code_hash == bindparam("code_hash")
    )
)
_INSERT_ACCESS_TOKEN = Prepared(insert(SsoAccessToken))
_INSERT_REFRESH_TOKEN = Prepared(insert(SsoRefreshToken))
_SELECT_ACCESS_TOKEN = Prepared(
    select(SsoAccessToken.__table__).where(SsoAccessToken.token_hash == bindparam("token_hash"))
)


def secret_hash(value: str) -> str:
    return hashlib.sha256(value.encode("ascii", "replace")).hexdigest()


def epoch(at: datetime) -> int:
    return int(at.timestamp())


@dataclass(frozen=True)
class SessionGrant:
    """The gateway session an authorization is issued in: who, how, when."""

    gateway_session_id: str
    account: AccountRecord
    acr: str
    amr: tuple[str, ...]
    auth_time: datetime

    @property
    def sid(self) -> str:
        return session_sid(self.gateway_session_id)


@dataclass(frozen=True)
class IssuedCode:
    """An authorization code read back (already consumed), as Authlib's grants ask for it."""

    client_id: str
    account_id: int
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    acr: str
    amr: str
    auth_time: datetime
    gateway_session_id: str
    sid: str

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return epoch(self.auth_time)

    def get_acr(self) -> str:
        return self.acr

    def get_amr(self) -> list[str]:
        return self.amr.split()


@dataclass(frozen=True)
class IssuedRefreshToken:
    client_id: str
    account_id: int
    scope: str
    acr: str
    amr: str
    auth_time: datetime
    gateway_session_id: str
    sid: str
    family_id: str

    def check_client(self, client: RegisteredClient) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope


def _usable_account(account_id: int) -> AccountRecord | None:
    account = get_accounts().record(account_id)
    return account if account is not None and account_is_usable(account) else None


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only (``plain`` refused), required of public clients."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        payload = grant.request.payload.data
        client: RegisteredClient = grant.request.client
        if client.public and not payload.get("code_challenge"):
            raise InvalidRequestError("A public client must send a PKCE 'code_challenge' (S256).")
        if payload.get("code_challenge") and payload.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


def _revoke_after_reuse(connection: Any, code_hash: str, client_id: str, now: datetime) -> None:
    """A code presented again after it was exchanged: someone else holds a copy, so the tokens
    it gave are revoked (RFC 6749 §4.1.2, OAuth 2.0 Security BCP §4.5). The tokens descend
    from the code's client and gateway session (refresh tokens keep both), so every token of
    that client in that session goes."""
    row = _SELECT_CODE.execute(connection, {"code_hash": code_hash}).one_or_none()
    if row is None or row.used_at is None or row.client_id != client_id:
        return
    for table in (SsoAccessToken, SsoRefreshToken):
        connection.execute(
            update(table)
            .where(
                table.client_id == client_id,
                table.gateway_session_id == row.gateway_session_id,
                table.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
    g.certgate_sso_note = "authorization code reused: the tokens it gave revoked"


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def save_authorization_code(self, code: str, request: Any) -> None:
        granted: SessionGrant = request.session_grant
        payload = request.payload.data
        now = clock.now()
        with get_database().connection() as connection:
            _INSERT_CODE.execute(
                connection,
                {
                    "code_hash": secret_hash(code),
                    "client_id": request.client.client_id,
                    "account_id": granted.account.id,
                    "redirect_uri": request.payload.redirect_uri,
                    "scope": request.scope,
                    "nonce": payload.get("nonce"),
                    "code_challenge": payload.get("code_challenge"),
                    "code_challenge_method": payload.get("code_challenge") and "S256",
                    "acr": granted.acr,
                    "amr": " ".join(granted.amr),
                    "auth_time": granted.auth_time,
                    "gateway_session_id": granted.gateway_session_id,
                    "sid": granted.sid,
                    "created_at": now,
                    "expires_at": now + CODE_TTL,
                    "used_at": None,
                },
            )

    def query_authorization_code(self, code: str, client: RegisteredClient) -> IssuedCode | None:
        """Consumes the code (``_USE_CODE``); a code presented again revokes what it gave."""
        now = clock.now()
        code_hash = secret_hash(code)
        database = get_database()
        with database.connection() as connection:
            consumed = _USE_CODE.execute(
                connection,
                {"code_hash": code_hash, "client_id": client.client_id, "at": now},
            )
            if consumed.rowcount != 1:
                _revoke_after_reuse(connection, code_hash, client.client_id, now)
                return None
            row = _SELECT_CODE.execute(connection, {"code_hash": code_hash}).one_or_none()
        return IssuedCode(
            client_id=row.client_id,
            account_id=row.account_id,
            redirect_uri=row.redirect_uri,
            scope=row.scope,
            nonce=row.nonce,
            code_challenge=row.code_challenge,
            code_challenge_method=row.code_challenge_method,
            acr=row.acr,
            amr=row.amr,
            auth_time=row.auth_time,
            gateway_session_id=row.gateway_session_id,
            sid=row.sid,
        )

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        pass  # consumed when read; expired rows are swept with the other short-lived state

    def authenticate_user(self, authorization_code: IssuedCode) -> AccountRecord | None:
        return _usable_account(authorization_code.account_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedRefreshToken | None:
        """Consumes the token (rotation). A token already used is a stolen copy or the
        original after theft: its whole family is revoked and the request refused."""
        now = clock.now()
        token_hash = secret_hash(refresh_token)
        client: RegisteredClient = self.request.client
        with get_database().session() as session:
            row = session.get(SsoRefreshToken, token_hash)
            if row is None or row.client_id != client.client_id:
                return None
            if row.used_at is not None or row.revoked_at is not None:
                session.execute(
                    update(SsoRefreshToken)
                    .where(
                        SsoRefreshToken.family_id == row.family_id,
                        SsoRefreshToken.revoked_at.is_(None),
                    )
                    .values(revoked_at=now)
                )
                g.certgate_sso_note = "refresh token reused: its family revoked"
                return None
            if row.expires_at <= now:
                return None
            consumed = session.execute(
                update(SsoRefreshToken)
                .where(SsoRefreshToken.token_hash == token_hash, SsoRefreshToken.used_at.is_(None))
                .values(used_at=now)
            )
            if not getattr(consumed, "rowcount", 0):
                return None
            return IssuedRefreshToken(
                client_id=row.client_id,
                account_id=row.account_id,
                scope=row.scope,
                acr=row.acr,
                amr=row.amr,
                auth_time=row.auth_time,
                gateway_session_id=row.gateway_session_id,
                sid=row.sid,
                family_id=row.family_id,
            )

    def authenticate_user(self, refresh_token: IssuedRefreshToken) -> AccountRecord | None:
        return _usable_account(refresh_token.account_id)

    def revoke_old_credential(self, refresh_token: IssuedRefreshToken) -> None:
        pass  # consumed when authenticated


class OpenIDConnectCode(OpenIDCode):
    def exists_nonce(self, nonce: str, request: Any) -> bool:
        # A repeated authorization request (the same URL again) must be answered again
        # (DESIGN.md); the relying party checks the nonce it finds in the ID token.
        return False

    def resolve_client_private_key(self, client: RegisteredClient) -> Any:
        return get_keys().signing_key(client.id_token_signed_response_alg)

    def get_encode_header(self, client: RegisteredClient) -> dict[str, str]:
        key = self.resolve_client_private_key(client)
        return {"alg": client.id_token_signed_response_alg, "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client: RegisteredClient) -> dict[str, Any]:
        now = clock.now()
        return {
            "iss": current_app.config["PUBLIC_ORIGIN"],
            "aud": client.client_id,
            "iat": epoch(now),
            "exp": epoch(now + ID_TOKEN_TTL),
        }

    def get_authorization_code_claims(self, authorization_code: Any) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        claims["sid"] = authorization_code.sid
        claims.update(
            session_claims(authorization_code.gateway_session_id, authorization_code.scope)
        )
        return claims

    def generate_user_info(self, user: AccountRecord, scope: str) -> dict[str, Any]:
        return user_claims(user, get_accounts(), scope)


def _generate_bearer_token(
    grant_type: str,
    client: RegisteredClient,
    user: AccountRecord | None = None,
    scope: str | None = None,
    expires_in: int | None = None,
    include_refresh_token: bool = True,
) -> dict[str, Any]:
    token: dict[str, Any] = {
        "token_type": "Bearer",
        "access_token": secrets.token_urlsafe(32),
        "expires_in": int(ACCESS_TOKEN_TTL.total_seconds()),
        "scope": scope or "",
    }
    if include_refresh_token and OFFLINE_ACCESS in (scope or "").split():
        token["refresh_token"] = secrets.token_urlsafe(32)
    return token


def _save_token(token: dict[str, Any], request: Any) -> None:
    """Stores the tokens (hashed) with the session they descend from, and records the client's
    participation in that session for single logout."""
    now = clock.now()
    account: AccountRecord = request.user
    client: RegisteredClient = request.client
    origin = request.authorization_code or request.refresh_token
    family = getattr(origin, "family_id", None) or secrets.token_hex(16)
    shared = {
        "client_id": client.client_id,
        "account_id": account.id,
        "scope": token.get("scope", ""),
        "acr": origin.acr,
        "amr": origin.amr,
        "auth_time": origin.auth_time,
        "gateway_session_id": origin.gateway_session_id,
        "sid": origin.sid,
        "issued_at": now,
    }
    database = get_database()
    # The tokens and the client's participation in the session: one transaction.
    with database.connection() as connection:
        _INSERT_ACCESS_TOKEN.execute(
            connection,
            {
                "token_hash": secret_hash(token["access_token"]),
                "expires_at": now + ACCESS_TOKEN_TTL,
                "revoked_at": None,
                **shared,
            },
        )
        if "refresh_token" in token:
            _INSERT_REFRESH_TOKEN.execute(
                connection,
                {
                    "token_hash": secret_hash(token["refresh_token"]),
                    "family_id": family,
                    "expires_at": now + REFRESH_TOKEN_TTL,
                    "used_at": None,
                    "revoked_at": None,
                    **shared,
                },
            )
        if request.authorization_code is not None:
            record_participation(
                database,
                gateway_session_id=origin.gateway_session_id,
                client_id=client.client_id,
                protocol=OIDC,
                account_public_id=account.public_id,
                at=now,
            )


@dataclass(frozen=True)
class AccessGrant:
    """What a valid access token allows (userinfo)."""

    account: AccountRecord
    client_id: str
    scope: str
    gateway_session_id: str


def access_grant(access_token: str) -> AccessGrant | None:
    now = clock.now()
    with get_database().connection() as connection:
        row = _SELECT_ACCESS_TOKEN.execute(
            connection, {"token_hash": secret_hash(access_token)}
        ).one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    account = _usable_account(row.account_id)
    if account is None:
        return None
    return AccessGrant(account, row.client_id, row.scope, row.gateway_session_id)


def _query_client(client_id: str) -> RegisteredClient | None:
    client = get_clients().get(client_id)
    return client if client is not None and client.protocol == OIDC else None


def init_app(app: Flask) -> AuthorizationServer:
    server = AuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.scopes_supported = set(SCOPES)
    server.register_token_generator("default", _generate_bearer_token)
    server.register_grant(
        AuthorizationCodeGrant,
        [OpenIDConnectCode(require_nonce=False), S256CodeChallenge(required=True)],
    )
    server.register_grant(RefreshTokenGrant)
    app.extensions[EXTENSION] = server
    return server


def get_server(app: Flask | None = None) -> AuthorizationServer:
    return (app or current_app).extensions[EXTENSION]
