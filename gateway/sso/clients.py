"""The client registry: applications allowed to sign people in through the gateway.

A confidential OpenID Connect client gets a secret once, printed by ``certgate client add``;
the database keeps only its HMAC-SHA256 under a sub-key of the data key (the secret is 32
random bytes, so a keyed hash is as strong as a slow password hash and costs microseconds per
token request). Redirect URIs are compared exactly (OAuth 2.0 Security BCP).
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, g, has_request_context
from sqlalchemy import bindparam, delete, select

from gateway.sso.models import (
    CAS,
    CONSENT_ASK,
    CONSENT_MODES,
    CONSENT_SKIP,
    OIDC,
    PROTOCOLS,
    SsoClient,
)
from gateway.storage.database import Database, get_database
from gateway.storage.personal_data import PersonalDataCipher
from gateway.storage.prepared import Prepared

EXTENSION = "certgate.sso.clients"
SECRET_KIND = "sso client secret"
MAX_URIS = 20


class ClientInputError(ValueError):
    """A client definition the registry refuses; the message says which field and why."""


@dataclass(frozen=True)
class RegisteredClient:
    """A client as the provider sees it; also Authlib's ``ClientMixin``."""

    client_id: str
    name: str
    protocol: str
    public: bool
    consent: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    backchannel_logout_uri: str | None
    cas_service_prefixes: tuple[str, ...]
    id_token_signed_response_alg: str
    created_at: datetime
    client_secret_hash: str | None = None
    # Set by the registry: checks a presented secret against ``client_secret_hash``.
    secret_hasher: SecretHasher | None = None

    # --- Authlib ClientMixin ------------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # OpenID Connect requires redirect_uri in every request

    def get_allowed_scope(self, scope: str | None) -> str:
        from gateway.sso.oidc.claims import SCOPES

        if not scope:
            return ""
        return " ".join(s for s in dict.fromkeys(scope.split()) if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.public or self.client_secret_hash is None or self.secret_hasher is None:
            return False
        return self.secret_hasher.matches(client_secret, self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return self.protocol == OIDC and response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return self.protocol == OIDC and grant_type in ("authorization_code", "refresh_token")

    # --- views --------------------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "client_id": self.client_id,
            "name": self.name,
            "protocol": self.protocol,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }
        if self.protocol == OIDC:
            data.update(
                public=self.public,
                consent=self.consent,
                redirect_uris=list(self.redirect_uris),
                post_logout_redirect_uris=list(self.post_logout_redirect_uris),
                backchannel_logout_uri=self.backchannel_logout_uri,
            )
        else:
            data["services"] = list(self.cas_service_prefixes)
        return data


class SecretHasher:
    def __init__(self, cipher: PersonalDataCipher) -> None:
        self._cipher = cipher

    def hash(self, secret: str) -> str:
        return self._cipher.lookup_hash(SECRET_KIND, secret)

    def matches(self, secret: str, stored: str) -> bool:
        return hmac.compare_digest(self.hash(secret).encode(), stored.encode())


@dataclass(frozen=True)
class NewClient:
    client: RegisteredClient
    client_secret: str | None


def check_uri(value: str, field: str, *, allow_http_loopback_only: bool = False) -> str:
    """An absolute https URI (http only for loopback hosts), without a fragment."""
    parts = urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ClientInputError(f"{field}: {value!r} is not an absolute http(s) URI")
    if parts.scheme == "http" and not loopback:
        raise ClientInputError(f"{field}: {value!r} must use https (http only on loopback)")
    if parts.fragment or "#" in value:
        raise ClientInputError(f"{field}: {value!r} must not have a fragment")
    if parts.username or parts.password:
        raise ClientInputError(f"{field}: {value!r} must not carry credentials")
    if len(value) > 2048:
        raise ClientInputError(f"{field}: longer than 2048 characters")
    return value


_SELECT_CLIENT = Prepared(
    select(SsoClient.__table__).where(SsoClient.client_id == bindparam("client_id"))
)
# What a CAS request matches its service against (gateway/sso/cas.py), oldest first.
_SELECT_CAS_CLIENTS = Prepared(
    select(SsoClient.__table__)
    .where(SsoClient.protocol == bindparam("protocol"))
    .order_by(SsoClient.id)
)


class ClientRegistry:
    def __init__(self, database: Database, cipher: PersonalDataCipher) -> None:
        self.database = database
        self.hasher = SecretHasher(cipher)

    def _view(self, row: Any) -> RegisteredClient:
        """A client from its row: an ``SsoClient`` or a row of ``_SELECT_CLIENT``."""
        return RegisteredClient(
            client_id=row.client_id,
            name=row.name,
            protocol=row.protocol,
            public=row.public,
            consent=row.consent,
            redirect_uris=tuple(json.loads(row.redirect_uris)),
            post_logout_redirect_uris=tuple(json.loads(row.post_logout_redirect_uris)),
            backchannel_logout_uri=row.backchannel_logout_uri,
            cas_service_prefixes=tuple(json.loads(row.cas_service_prefixes)),
            id_token_signed_response_alg=row.id_token_signed_response_alg,
            created_at=row.created_at,
            client_secret_hash=row.client_secret_hash,
            secret_hasher=self.hasher,
        )

    def add(
        self,
        name: str,
        *,
        protocol: str,
        at: datetime,
        redirect_uris: tuple[str, ...] = (),
        post_logout_redirect_uris: tuple[str, ...] = (),
        backchannel_logout_uri: str | None = None,
        public: bool = False,
        consent: str = CONSENT_ASK,
        services: tuple[str, ...] = (),
    ) -> NewClient:
        name = name.strip()
        if not 0 < len(name) <= 200:
            raise ClientInputError("NAME: 1 to 200 characters")
        if protocol not in PROTOCOLS:
            raise ClientInputError(f"--protocol: one of {', '.join(PROTOCOLS)}")
        if consent not in CONSENT_MODES:
            raise ClientInputError(f"--consent: one of {', '.join(CONSENT_MODES)}")
        if protocol == OIDC:
            if not redirect_uris:
                raise ClientInputError("--redirect-uri: an OpenID Connect client needs one")
            if services:
                raise ClientInputError("--service: only for --protocol cas")
        else:
            if not services:
                raise ClientInputError("--service: a CAS client needs a service prefix")
            if redirect_uris or post_logout_redirect_uris or backchannel_logout_uri or public:
                raise ClientInputError(
                    "--redirect-uri, --post-logout-redirect-uri, --backchannel-logout-uri and "
                    "--public: only for --protocol oidc"
                )
        for field, values in (
            ("--redirect-uri", redirect_uris),
            ("--post-logout-redirect-uri", post_logout_redirect_uris),
            ("--service", services),
        ):
            if len(values) > MAX_URIS:
                raise ClientInputError(f"{field}: at most {MAX_URIS}")
            for value in values:
                check_uri(value, field)
        if backchannel_logout_uri is not None:
            check_uri(backchannel_logout_uri, "--backchannel-logout-uri")
        client_id = secrets.token_hex(12)  # never starts with "-" (a CLI argument)
        secret = None if (public or protocol == CAS) else secrets.token_urlsafe(32)
        row = SsoClient(
            client_id=client_id,
            name=name,
            protocol=protocol,
            client_secret_hash=self.hasher.hash(secret) if secret else None,
            redirect_uris=json.dumps(list(dict.fromkeys(redirect_uris))),
            post_logout_redirect_uris=json.dumps(list(dict.fromkeys(post_logout_redirect_uris))),
            backchannel_logout_uri=backchannel_logout_uri,
            public=public,
            consent=consent if protocol == OIDC else CONSENT_SKIP,
            cas_service_prefixes=json.dumps(list(dict.fromkeys(services))),
            id_token_signed_response_alg="RS256",
            created_at=at,
        )
        if has_request_context():
            g.pop("certgate_sso_cas_clients", None)
        with self.database.session() as session:
            session.add(row)
            session.flush()
            view = self._view(row)
        return NewClient(view, secret)

    def get(self, client_id: str) -> RegisteredClient | None:
        """The registered client, or None. Within a request a client is read once: an
        authorization or token request asks for it at several steps."""
        if not client_id or len(client_id) > 64:
            return None
        kept: dict[str, RegisteredClient | None] | None = None
        if has_request_context():
            kept = g.setdefault("certgate_sso_clients", {})
            if client_id in kept:
                return kept[client_id]
        with self.database.connection() as connection:
            row = _SELECT_CLIENT.execute(connection, {"client_id": client_id}).one_or_none()
        found = self._view(row) if row is not None else None
        if kept is not None:
            kept[client_id] = found
        return found

    def cas_clients(self) -> tuple[RegisteredClient, ...]:
        """The CAS clients, oldest first; read once per request (a CAS login and a ticket
        validation each match the service more than once)."""
        if has_request_context() and "certgate_sso_cas_clients" in g:
            kept: tuple[RegisteredClient, ...] = g.certgate_sso_cas_clients
            return kept
        with self.database.connection() as connection:
            rows = _SELECT_CAS_CLIENTS.execute(connection, {"protocol": CAS}).rows
        found = tuple(self._view(row) for row in rows)
        if has_request_context():
            g.certgate_sso_cas_clients = found
        return found

    def list(self) -> list[RegisteredClient]:
        with self.database.session() as session:
            rows = session.scalars(select(SsoClient).order_by(SsoClient.id)).all()
            return [self._view(row) for row in rows]

    def remove(self, client_id: str) -> bool:
        """Removes the client and, by cascade, its codes, tokens, consents and tickets."""
        if has_request_context():
            g.pop("certgate_sso_clients", None)
            g.pop("certgate_sso_cas_clients", None)
        with self.database.session() as session:
            removed = session.execute(delete(SsoClient).where(SsoClient.client_id == client_id))
            return bool(getattr(removed, "rowcount", 0))


def init_app(app: Flask) -> ClientRegistry:
    from gateway.accounts import get_accounts

    registry = ClientRegistry(get_database(app), get_accounts(app).cipher)
    app.extensions[EXTENSION] = registry
    return registry


def get_clients(app: Flask | None = None) -> ClientRegistry:
    return (app or current_app).extensions[EXTENSION]
