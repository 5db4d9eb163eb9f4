"""The operator console's tables (revision 0012, ``gateway/migrations``): operator accounts,
their sessions, and the queue of real-name level 2 review requests.

They share the gateway's metadata (``gateway.storage.models.Base``), so the check that migrations
match the models covers them. An operator is no account: the people who sign in at ``/login``
never appear here, and an operator's session lives in its own table behind its own cookie.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.models import Base
from gateway.storage.types import UtcDateTime

ADMIN = "admin"
AUDITOR = "auditor"
REVIEWER = "reviewer"
ROLES = (ADMIN, AUDITOR, REVIEWER)

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"


class Operator(Base):
    """A person who runs the platform: a name, a role, a password (argon2id) and a TOTP secret
    (sealed with the data key, opened only to check a code). ``totp_last_step``: the newest
    time step a code was accepted for, so one code signs in once."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OperatorSession(Base):
    """An operator's console session: only the SHA-256 of the cookie's 32 random bytes."""

    __tablename__ = "operator_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class RealNameReview(Base):
    """An account asking for real-name level 2 (checked in person or against documents), and a
    reviewer's decision with its reason."""

    __tablename__ = "real_name_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)
