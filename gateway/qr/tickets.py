"""QR login tickets: where they live, how their state moves, and how a browser waits for it.

Tickets live in the database (table ``qr_login_tickets``, revision 0009) whatever
``state_store`` says, because a QR login spans several requests from different devices on
different worker threads: the browser's, the phone's scan, the phone's confirmation, the
browser's wait. Each move is one conditional ``UPDATE`` (``WHERE state = <the state it leaves>
AND expires_at > now``), so across threads and processes exactly one scan, one decision and one
redemption win; the losers read the row again and are told why. A QR login is rare next to
the page views around it, so the few writes cost nothing that matters (a challenge login,
which runs at load, keeps its state in memory by default instead). A shared store such as Redis
can replace ``SqlQrTicketStore`` for scale-out behind the same narrow interface.

Waiting browsers (server-sent events, long polls) are woken at once by a change made in this
process (a condition variable), and read the row again at least every ``RECHECK_SECONDS`` for a
change made by another process or for the clock passing the expiry. Each wait holds a server
thread, so at most ``qr_wait_slots`` wait at a time; the others are answered at once and ask
again (the page's fallback).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, insert, select, update

from gateway.qr.models import QrLoginTicket
from gateway.storage.database import Database

WAITING = "waiting"
SCANNED = "scanned"
CONFIRMED = "confirmed"
CANCELLED = "cancelled"
EXPIRED = "expired"
STATES = (WAITING, SCANNED, CONFIRMED, CANCELLED, EXPIRED)
# States after which nothing changes any more (for the browser: stop waiting).
FINAL = frozenset({CONFIRMED, CANCELLED, EXPIRED})
RECHECK_SECONDS = 1.0
# Expired tickets are kept this long, so a late poll hears "expired" rather than "unknown".
KEEP_EXPIRED = timedelta(minutes=10)
PURGE_INTERVAL = timedelta(minutes=5)


def scan_hash(scan_code: str) -> str:
    return hashlib.sha256(
        b"certgate qr scan\x00" + scan_code.encode("ascii", "replace")
    ).hexdigest()


def browser_hash(secret: str) -> str:
    return hashlib.sha256(
        b"certgate qr browser\x00" + secret.encode("ascii", "replace")
    ).hexdigest()


def scanner_hash(session_id_hash: str) -> str:
    """The phone session that scanned, as kept on the ticket (not the session table's key)."""
    return hashlib.sha256(b"certgate qr scanner\x00" + session_id_hash.encode()).hexdigest()


def ticket_reference(ticket_id: str) -> str:
    """How the audit trail names a ticket."""
    return hashlib.sha256(b"certgate qr ticket\x00" + ticket_id.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class QrTicket:
    id: str
    browser_hash: str
    state: str  # as stored: waiting, scanned, confirmed, cancelled
    address: str
    browser: str
    created_at: datetime
    expires_at: datetime
    account_id: int | None
    scanner_hash: str | None
    redeemed_at: datetime | None

    def state_at(self, at: datetime) -> str:
        """The state a person sees: a cancelled ticket stays cancelled and a redeemed one
        confirmed; anything else past its lifetime is expired."""
        if self.state == CANCELLED or self.redeemed_at is not None:
            return self.state
        return EXPIRED if at >= self.expires_at else self.state

    def browser_matches(self, secret: str | None) -> bool:
        if not secret or len(secret) > 128:
            return False
        return hmac.compare_digest(self.browser_hash, browser_hash(secret))

    def scanned_by(self, session_id_hash: str) -> bool:
        return self.scanner_hash is not None and hmac.compare_digest(
            self.scanner_hash, scanner_hash(session_id_hash)
        )


class QrTicketStore(Protocol):
    def put(self, ticket: QrTicket, *, scan_hash: str) -> None: ...

    def get(self, ticket_id: str) -> QrTicket | None: ...

    def find_by_scan(self, scan_hash: str) -> QrTicket | None: ...

    def scan(self, ticket_id: str, *, account_id: int, scanner_hash: str, at: datetime) -> bool:
        """waiting -> scanned, recording who scanned; False unless this call made the move."""

    def decide(self, ticket_id: str, state: str, *, scanner_hash: str, at: datetime) -> bool:
        """scanned -> confirmed or cancelled, by the session that scanned; False otherwise."""

    def redeem(self, ticket_id: str, *, browser_hash: str, at: datetime) -> bool:
        """Mark a confirmed ticket's login started; True for exactly one caller."""

    def purge(self, *, before: datetime) -> int: ...


_COLUMNS = (
    QrLoginTicket.id,
    QrLoginTicket.browser_hash,
    QrLoginTicket.state,
    QrLoginTicket.address,
    QrLoginTicket.browser,
    QrLoginTicket.created_at,
    QrLoginTicket.expires_at,
    QrLoginTicket.account_id,
    QrLoginTicket.scanner_hash,
    QrLoginTicket.redeemed_at,
)


def _ticket(row: Any) -> QrTicket:
    return QrTicket(*row)


class SqlQrTicketStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def put(self, ticket: QrTicket, *, scan_hash: str) -> None:
        with self.database.connection() as connection:
            connection.execute(
                insert(QrLoginTicket).values(
                    id=ticket.id,
                    scan_hash=scan_hash,
                    browser_hash=ticket.browser_hash,
                    state=ticket.state,
                    address=ticket.address,
                    browser=ticket.browser,
                    created_at=ticket.created_at,
                    expires_at=ticket.expires_at,
                )
            )

    def _one(self, condition: Any) -> QrTicket | None:
        with self.database.connection() as connection:
            row = connection.execute(select(*_COLUMNS).where(condition)).one_or_none()
        return _ticket(row) if row is not None else None

    def get(self, ticket_id: str) -> QrTicket | None:
        return self._one(QrLoginTicket.id == ticket_id)

    def find_by_scan(self, scan_hash: str) -> QrTicket | None:
        return self._one(QrLoginTicket.scan_hash == scan_hash)

    def _move(self, ticket_id: str, conditions: list[Any], at: datetime, **values: Any) -> bool:
        with self.database.connection() as connection:
            result = connection.execute(
                update(QrLoginTicket)
                .where(
                    QrLoginTicket.id == ticket_id,
                    QrLoginTicket.expires_at > at,
                    *conditions,
                )
                .values(**values)
            )
            return result.rowcount == 1

    def scan(self, ticket_id: str, *, account_id: int, scanner_hash: str, at: datetime) -> bool:
        return self._move(
            ticket_id,
            [QrLoginTicket.state == WAITING],
            at,
            state=SCANNED,
            account_id=account_id,
            scanner_hash=scanner_hash,
            scanned_at=at,
        )

    def decide(self, ticket_id: str, state: str, *, scanner_hash: str, at: datetime) -> bool:
        if state not in (CONFIRMED, CANCELLED):
            raise ValueError(f"a phone decides confirmed or cancelled, not {state!r}")
        return self._move(
            ticket_id,
            [QrLoginTicket.state == SCANNED, QrLoginTicket.scanner_hash == scanner_hash],
            at,
            state=state,
            decided_at=at,
        )

    def redeem(self, ticket_id: str, *, browser_hash: str, at: datetime) -> bool:
        return self._move(
            ticket_id,
            [
                QrLoginTicket.state == CONFIRMED,
                QrLoginTicket.redeemed_at.is_(None),
                QrLoginTicket.browser_hash == browser_hash,
            ],
            at,
            redeemed_at=at,
        )

    def purge(self, *, before: datetime) -> int:
        with self.database.connection() as connection:
            result = connection.execute(
                delete(QrLoginTicket).where(QrLoginTicket.expires_at < before)
            )
            return int(result.rowcount)


class TicketWatch:
    """Wakes the browsers waiting on tickets when this process changes one, and bounds how
    many wait at a time."""

    def __init__(self, *, slots: int) -> None:
        self._changed = threading.Condition()
        self._generation = 0
        self._slots = threading.BoundedSemaphore(slots)

    def changed(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def try_slot(self) -> bool:
        return self._slots.acquire(blocking=False)

    def release_slot(self) -> None:
        self._slots.release()

    def wait_for(
        self,
        read: Callable[[], str | None],
        since: str,
        *,
        seconds: float,
    ) -> str | None:
        """Read the state until it differs from ``since``, is final or gone (None), or
        ``seconds`` pass; the last state read."""
        deadline = time.monotonic() + seconds
        while True:
            with self._changed:
                seen = self._generation
            state = read()
            remaining = deadline - time.monotonic()
            if state is None or state != since or state in FINAL or remaining <= 0:
                return state
            with self._changed:
                if self._generation == seen:
                    self._changed.wait(min(remaining, RECHECK_SECONDS))


class Purger:
    """Deletes long-expired tickets at most once per ``PURGE_INTERVAL`` of the app's clock."""

    def __init__(self, store: QrTicketStore) -> None:
        self.store = store
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def maybe_run(self, now: datetime) -> None:
        with self._lock:
            if self._last is not None and now - self._last < PURGE_INTERVAL:
                return
            self._last = now
        self.store.purge(before=now - KEEP_EXPIRED)


EXTENSION = "certgate.qr"


@dataclass(frozen=True)
class QrLogins:
    """The QR login's state and settings, kept in ``app.extensions``."""

    store: QrTicketStore
    watch: TicketWatch
    purger: Purger
    ttl: timedelta
    cookie_name: str
    address_limit: int
