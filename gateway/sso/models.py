"""The tables of single sign-on: clients, what they were given, and what single logout needs.

Created by revision 0007 (``gateway/migrations``); they share the gateway's metadata
(``gateway.storage.models.Base``), so the check that migrations match the models covers them.
Every token, code and ticket is stored as its SHA-256 only (they are 32 random bytes, so a
hash is as good as the value is secret); client secrets as an HMAC keyed by the data key.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.models import Base
from gateway.storage.types import UtcDateTime

OIDC = "oidc"
CAS = "cas"
PROTOCOLS = (OIDC, CAS)
CONSENT_ASK = "ask"
CONSENT_SKIP = "skip"
CONSENT_MODES = (CONSENT_ASK, CONSENT_SKIP)
KEY_ACTIVE = "active"
KEY_RETIRED = "retired"
DELIVERY_PENDING = "pending"
DELIVERY_DELIVERED = "delivered"
DELIVERY_FAILED = "failed"

_CLIENT_FK = "sso_clients.client_id"


class SsoClient(Base):
    """An application that signs people in through the gateway (OpenID Connect or CAS)."""

    __tablename__ = "sso_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    protocol: Mapped[str] = mapped_column(String(8))  # "oidc" | "cas"
    # HMAC-SHA256 of the secret under a sub-key of the data key; None for public clients and CAS.
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    redirect_uris: Mapped[str] = mapped_column(Text, default="[]")  # JSON list, exact match
    post_logout_redirect_uris: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2048))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    consent: Mapped[str] = mapped_column(String(8), default=CONSENT_ASK)  # "ask" | "skip"
    cas_service_prefixes: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(8), default="RS256")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SsoAuthorizationCode(Base):
    """An authorization code: single-use, 60 s, bound to its client, redirect URI, PKCE
    challenge and the gateway session it was issued in."""

    __tablename__ = "sso_authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey(_CLIENT_FK, ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(512))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[str] = mapped_column(String(64))  # space-separated RFC 8176 values
    auth_time: Mapped[datetime] = mapped_column(UtcDateTime)
    gateway_session_id: Mapped[str] = mapped_column(String(64))  # sessions.id_hash
    sid: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class _Grant:
    """What access and refresh tokens both carry: who, for which client, in which session."""

    client_id: Mapped[str] = mapped_column(ForeignKey(_CLIENT_FK, ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(Text)
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[str] = mapped_column(String(64))
    auth_time: Mapped[datetime] = mapped_column(UtcDateTime)
    gateway_session_id: Mapped[str] = mapped_column(String(64), index=True)
    sid: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SsoAccessToken(_Grant, Base):
    __tablename__ = "sso_access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)


class SsoRefreshToken(_Grant, Base):
    """A refresh token (scope ``offline_access``). Each use replaces it (``used_at``); a used
    one presented again revokes its whole family, since one of the two holders stole it."""

    __tablename__ = "sso_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SsoConsent(Base):
    """What an account allowed a client to receive."""

    __tablename__ = "sso_consents"
    __table_args__ = (
        UniqueConstraint("account_id", "client_id", name="uq_sso_consents_account_id_client_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(ForeignKey(_CLIENT_FK, ondelete="CASCADE"), index=True)
    scopes: Mapped[str] = mapped_column(Text)  # space-separated
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SsoSigningKey(Base):
    """A key that signs ID tokens (and logout tokens). The private key is sealed with the data
    key like personal data; a retired key stays published until ``not_after``, when the last
    token it signed has expired."""

    __tablename__ = "sso_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(8))  # "RS256" | "ES256"
    public_jwk: Mapped[str] = mapped_column(Text)  # JSON
    private_key_sealed: Mapped[bytes] = mapped_column(LargeBinary)  # PEM, sealed
    status: Mapped[str] = mapped_column(String(8))  # "active" | "retired"
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SsoParticipation(Base):
    """A client that received tokens or a ticket in a gateway session: whom single logout
    tells when that session ends."""

    __tablename__ = "sso_participations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gateway_session_id: Mapped[str] = mapped_column(String(64), index=True)  # sessions.id_hash
    client_id: Mapped[str] = mapped_column(ForeignKey(_CLIENT_FK, ondelete="CASCADE"), index=True)
    protocol: Mapped[str] = mapped_column(String(8))
    # The ``sub`` of a logout token; indexed (revision 0014) for the account's applications.
    account_public_id: Mapped[str] = mapped_column(String(36), index=True)
    sid: Mapped[str] = mapped_column(String(64))
    # CAS: the service ticket the client validated (its SessionIndex in a LogoutRequest).
    cas_ticket: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Set when the session ended (or the person signed out of this client) and the logout
    # message was queued (revision 0011): each participation is told once. Indexed (revision
    # 0014) for the housekeeping (gateway/sso/housekeeping.py).
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class CasTicket(Base):
    """A CAS service ticket ``ST-…``: single-use, 60 s, for one service URL."""

    __tablename__ = "cas_tickets"

    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey(_CLIENT_FK, ondelete="CASCADE"), index=True)
    service: Mapped[str] = mapped_column(Text)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    gateway_session_id: Mapped[str] = mapped_column(String(64))
    acr: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Issued right after a login made for it (revision 0011): what renew=true validation asks
    # for, and the p3 attribute isFromNewLogin.
    from_new_login: Mapped[bool] = mapped_column(Boolean, default=False)


class LogoutDelivery(Base):
    """One logout message to one client, retried with back-off until delivered or given up."""

    __tablename__ = "logout_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey(_CLIENT_FK, ondelete="CASCADE"), index=True)
    protocol: Mapped[str] = mapped_column(String(8))
    # OIDC: the logout token's claims (JSON), signed afresh at each attempt; CAS: the SAML
    # LogoutRequest.
    payload: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    state: Mapped[str] = mapped_column(String(16), default=DELIVERY_PENDING)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Revision 0011: where the message goes (the back-channel logout URI, or the CAS service
    # URL), whose session it ends, and why (logout, expired, account_frozen, ...).
    url: Mapped[str | None] = mapped_column(String(2048))
    account_public_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(String(32))
