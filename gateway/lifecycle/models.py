"""The tables of the account's life: verification codes, agreement versions, consents (revision
0008); in-site messages, certificates unbound from an account, the devices and addresses an
account signed in from, and operators' status decisions with their reasons (revision 0010).

Created by revisions 0008 and 0010 (``gateway/migrations``); they share the gateway's metadata
(``gateway.storage.models.Base``), so the check that migrations match the models covers them.
A code is stored as an HMAC under a sub-key of the data key (six digits are guessed in a
million tries, so a plain hash would not hide them); a destination (phone, e-mail) as a keyed
hash, so the table holds no personal data in clear.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.models import Base
from gateway.storage.types import UtcDateTime


class VerificationCode(Base):
    """One code sent (or, for a destination with no account, recorded as if sent)."""

    __tablename__ = "verification_codes"
    __table_args__ = (Index("ix_verification_codes_destination", "destination_hash", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))  # "sms" | "email"
    purpose: Mapped[str] = mapped_column(String(16))  # register | login | reset | verify
    destination_hash: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    failed_tries: Mapped[int] = mapped_column(Integer, default=0)
    # Set when the code was used, voided by its wrong tries, or replaced by a newer code.
    spent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AgreementVersion(Base):
    """A service agreement version published with ``certgate agreement publish``."""

    __tablename__ = "agreement_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    summary: Mapped[str | None] = mapped_column(Text)  # what changed, shown when asking again
    text: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AgreementConsent(Base):
    """Every consent an account gave, kept (the account's row holds only the newest)."""

    __tablename__ = "agreement_consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[str] = mapped_column(String(32))
    consented_at: Mapped[datetime] = mapped_column(UtcDateTime)
    how: Mapped[str] = mapped_column(String(16))  # "registration" | "login" | "account"


class LegalRepresentativeId(Base):
    """The ID-card number of an enterprise's legal representative, given at registration:
    sealed, and as a keyed hash so the representative can later be recognised."""

    __tablename__ = "legal_representative_ids"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    id_card_number_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    id_card_number_hash: Mapped[str] = mapped_column(String(64), index=True)


class AccountMessage(Base):
    """An in-site message (站内信) to an account: security notices and operators' decisions.
    The text names no personal data (no name, number or phone), so it needs no sealing."""

    __tablename__ = "account_messages"
    __table_args__ = (Index("ix_account_messages_account", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # notices.NOTICE_KINDS
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RefusedCertificate(Base):
    """A certificate unbound from an account: it no longer signs in to that account, also when
    a lookup (credit code, ID-card number, e-mail) would find the account. Binding it again
    removes the row."""

    __tablename__ = "refused_certificates"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    thumbprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    refused_at: Mapped[datetime] = mapped_column(UtcDateTime)


class KnownSignInSource(Base):
    """A device (browser) or address an account signed in from, as a keyed hash: a sign-in from
    one not seen before is a security notice."""

    __tablename__ = "known_sign_in_sources"
    __table_args__ = (
        UniqueConstraint("account_id", "kind", "value_hash", name="uq_known_sign_in_sources"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # "device" | "address"
    value_hash: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AccountStatusChange(Base):
    """An operator's decision on an account (freeze, suspend, terminate, reactivate) and why."""

    __tablename__ = "account_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
