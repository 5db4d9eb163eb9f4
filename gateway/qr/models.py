"""The table of QR-code login tickets (revision 0009, ``gateway/migrations``).

It shares the gateway's metadata (``gateway.storage.models.Base``), so the check that migrations
match the models covers it. The two secrets a ticket involves are stored as their SHA-256 only:
the scan code printed in the QR code, and the secret kept in the requesting browser's cookie
(each 32 random bytes, so a hash is as good as the value is secret). The ticket id itself is no
secret: it names the ticket to the browser that asked for it and to the phone that scanned it,
and neither can do anything with it without its own secret (the cookie, the phone's session).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.models import Base
from gateway.storage.types import UtcDateTime


class QrLoginTicket(Base):
    """One QR-code login: asked for by a browser, scanned and decided on by a signed-in phone.

    ``state`` is "waiting", "scanned", "confirmed" or "cancelled"; "expired" is not stored, it
    is any ticket read at or after ``expires_at``. ``redeemed_at``: when the confirmed login
    became the requesting browser's session (once)."""

    __tablename__ = "qr_login_tickets"
    __table_args__ = (Index("ix_qr_login_tickets_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    scan_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    # What the phone shows before the person confirms: the requesting address and browser.
    address: Mapped[str] = mapped_column(String(64))
    browser: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Set by the scan: the phone's account and (hashed again) its session, which alone may
    # then confirm or cancel.
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True
    )
    scanner_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    scanned_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    redeemed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
