"""SQLAlchemy models. The schema itself is created by the Alembic migrations in
``gateway/migrations``; these classes must agree with them (a test compares the two)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from gateway.storage.types import UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Account kinds and states (the agreements: operators freeze, suspend or terminate; people cancel).
PERSON = "person"
ENTERPRISE = "enterprise"
ACCOUNT_KINDS = (PERSON, ENTERPRISE)
ACTIVE = "active"
ACCOUNT_STATES = ("active", "frozen", "suspended", "terminated", "cancelled")
# Real-name verification levels: 0 none, 1 identity details checked against an authority,
# 2 verified in person or with a CA certificate, 3 verified with face recognition.
REAL_NAME_LEVELS = (0, 1, 2, 3)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    login_name: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Enterprise: its name (public register data). Person: empty; the real name is sealed
    # (revision 0004), so the database never holds a person's name in clear.
    display_name: Mapped[str] = mapped_column(String(200))
    # Person: real name, ID-card number and phone (sealed; the two numbers also as keyed hash),
    # e-mail.
    real_name_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    id_card_number_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    id_card_number_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    phone_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    # Enterprise: unified social credit code (public register data), name, legal representative.
    unified_social_credit_code: Mapped[str | None] = mapped_column(String(18), unique=True)
    legal_representative_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # a name
    real_name_level: Mapped[int] = mapped_column(Integer, default=0)
    agreement_version: Mapped[str | None] = mapped_column(String(32))
    agreement_consented_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    bindings: Mapped[list[CertificateBinding]] = relationship(
        back_populates="account", cascade="all, delete-orphan", lazy="selectin"
    )


class CertificateBinding(Base):
    """An explicit certificate binding: SHA-256 thumbprint, or issuer DN + serial."""

    __tablename__ = "certificate_bindings"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_certificate_bindings_kind_value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # "thumbprint" | "issuer_serial"
    value: Mapped[str] = mapped_column(String(1024))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    account: Mapped[Account] = relationship(back_populates="bindings")


class CertificateDetails(Base):
    """What the account page shows of a certificate that was bound or used to sign in.

    Bindings hold only a thumbprint or issuer+serial; these rows keep the subject, issuer and
    expiry across restarts. The subject is sealed like other personal data (Chinese CAs put names
    and ID-card numbers in it); the issuer is a CA's name and stays readable.
    """

    __tablename__ = "certificate_details"

    thumbprint: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256, hex
    issuer_serial: Mapped[str] = mapped_column(String(1024), index=True)  # canonical form
    subject_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    issuer: Mapped[str] = mapped_column(Text)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TrustAnchorRecord(Base):
    """A trust anchor added with ``certgate trust add``, with its policy and mapping rule."""

    __tablename__ = "trust_anchors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(1024))
    certificate_pem: Mapped[str] = mapped_column(Text)
    revocation_mode: Mapped[str] = mapped_column(String(16))
    crl_sources: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    ocsp_responder: Mapped[str | None] = mapped_column(String(1024))
    mapping_rule: Mapped[str | None] = mapped_column(Text)  # JSON object
    # CA certificates below the anchor offered for path building (PEM bundle), revision 0002.
    intermediates_pem: Mapped[str | None] = mapped_column(Text)
    # The CA issues keys on hardware tokens only (amr "hwk"), revision 0004.
    hardware_keys: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Challenge(Base):
    __tablename__ = "challenges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    binding_hash: Mapped[str] = mapped_column(String(64))  # hash of the pre-login cookie
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LoginSession(Base):
    __tablename__ = "sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the cookie
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    amr: Mapped[str] = mapped_column(String(64))  # space-separated RFC 8176 values
    acr: Mapped[str] = mapped_column(String(64))  # urn:certgate:loa:N, revision 0004
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AttemptCounter(Base):
    """Login attempts counted against one limit key (an address, a password subject, a
    certificate): the current rate-limit window, the failure streak and a lock; revision 0005.

    One row per key, changed by single upserts, so checking a limit and counting the attempt
    are one atomic statement (gateway/stores.py ``SqlAttemptStore``)."""

    __tablename__ = "attempt_counters"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)  # the failure streak
    first_failure_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditRecord(Base):
    """Append-only; each record's ``chain_hash`` covers its fields and the previous chain hash."""

    __tablename__ = "audit_records"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    event: Mapped[str] = mapped_column(String(64))
    method: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(64))  # "ok" or a stable error code
    account_public_id: Mapped[str | None] = mapped_column(String(36))
    certificate_thumbprint: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    previous_hash: Mapped[str] = mapped_column(String(64))
    chain_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the last record's id and hash and the number of records, sealed with a MAC
    (revision 0006), so a deleted tail is detected too (gateway/audit.py)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    last_hash: Mapped[str] = mapped_column(String(64))
    record_count: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    head_mac: Mapped[str] = mapped_column(String(64))


class AuditGenesis(Base):
    """One row written with the trail (revision 0006): while it stands, a missing head row is
    reported even when every record is gone too. ``genesis_mac`` is empty only between a
    migration run without the data key and the gateway's first start."""

    __tablename__ = "audit_genesis"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    genesis_mac: Mapped[str | None] = mapped_column(String(64))


# The capabilities' tables live in their packages and share this metadata, so every revision
# and the schema checks see them: the account's life (codes, agreement versions, consents),
# QR-code login tickets, single sign-on.
import gateway.admin.models  # noqa: E402, F401
import gateway.lifecycle.models  # noqa: E402, F401
import gateway.qr.models  # noqa: E402, F401
import gateway.roles.models  # noqa: E402, F401
import gateway.sso.models  # noqa: E402, F401
