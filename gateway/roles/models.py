"""The tables of enterprise roles (revision 0013): invitations of staff (经办人), the staff
roles they became, and the sessions acting for an enterprise.

The legal representative needs no table of its own: the enterprise's record holds the
representative's ID-card number as a keyed hash (``legal_representative_ids``, revision 0008),
and a person whose own number has the same hash is the representative (gateway/roles/roles.py).
An invitation names the invitee by a keyed hash of their ID-card number or phone (the same
hashes ``accounts`` keeps), so a person who registers after being invited still finds it; the
number itself is sealed, and opened only to show it masked.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.models import Base
from gateway.storage.types import UtcDateTime

# Invitation states.
PENDING = "pending"
ACCEPTED = "accepted"
DECLINED = "declined"
REPLACED = "replaced"  # a newer invitation of the same person by the same enterprise
INVITATION_STATES = (PENDING, ACCEPTED, DECLINED, REPLACED)
# How a staff role ended before its period (expiry needs no record: valid_until says it).
REVOKED = "revoked"
LEFT = "left"


class StaffInvitation(Base):
    __tablename__ = "staff_invitations"
    __table_args__ = (
        Index("ix_staff_invitations_invitee", "invitee_hash", "state"),
        Index("ix_staff_invitations_enterprise", "enterprise_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # Who invited: the enterprise's own login or its legal representative acting for it.
    invited_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL")
    )
    invitee_kind: Mapped[str] = mapped_column(String(16))  # "id_card_number" | "phone"
    invitee_hash: Mapped[str] = mapped_column(String(64))
    invitee_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime)  # the role's period, if accepted
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)  # last moment to answer
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    answered_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL")
    )


class StaffRole(Base):
    """A person's staff role for an enterprise: one row per pair, renewed by a new accepted
    invitation; current while ``ended_at`` is empty and ``valid_until`` is ahead."""

    __tablename__ = "staff_roles"
    __table_args__ = (
        UniqueConstraint("enterprise_id", "person_id", name="uq_staff_roles_enterprise_person"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime)
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_how: Mapped[str | None] = mapped_column(String(16))  # "revoked" | "left"


class ActingSession(Base):
    """A gateway session acting for an enterprise. Keyed by the session's stored hash (not a
    foreign key: sessions may live outside the database); a row whose session is gone is
    never reached again and is swept."""

    __tablename__ = "acting_sessions"

    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(32))  # "legal_representative" | "staff"
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
