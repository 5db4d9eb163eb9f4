"""Purges of the single sign-on tables: codes, tickets and tokens past their life, finished logout
messages, and the older participations of an account in an application.

``purge_expired(database, now)`` is the one entry; the gateway's housekeeping
(gateway/housekeeping.py) calls it on login requests, at most every 5 minutes of the app's
clock, after single logout has told the applications of the sessions that ended. It runs the
same Core statements on SQLite and PostgreSQL (with ``state_store = "redis"`` these tables are
still in the database). What is kept how long, and why (docs/sso.md, "Housekeeping"):

- authorization codes and CAS tickets: ``GRACE`` past their 60 s life, so a code presented again
  soon after it was exchanged is still recognised as reused (and the tokens it gave revoked);
  later it is refused as unknown, as an expired one is. A CAS ticket stays while a
  participation of its gateway session has not ended: single logout posts to the service URL
  the ticket was issued for and names it in the ``LogoutRequest``;
- access tokens: from their expiry (an expired one is refused like an unknown one);
- refresh tokens: once every token of their family has expired, so a used one presented again
  revokes its family for as long as the family can still be used;
- logout messages delivered or given up: ``KEEP_FINISHED`` after their last attempt (each
  attempt is in the audit trail for good); pending ones are never purged;
- participations: never while they have not ended (single logout reads them); an ended one
  ``KEEP_FINISHED`` after it ended when the account has a newer one in the same application,
  so the account page's applications (their newest use, per application) read the same.

Each table is purged in batches of ``BATCH`` rows, each its own short transaction, at most
``MAX_BATCHES`` per table and run: a large backlog (a first run after an upgrade) is worked off
over a few runs instead of holding a login request or the tables' locks.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, delete, exists, select
from sqlalchemy.orm import aliased

from gateway.sso.models import (
    CAS,
    DELIVERY_DELIVERED,
    DELIVERY_FAILED,
    CasTicket,
    LogoutDelivery,
    SsoAccessToken,
    SsoAuthorizationCode,
    SsoParticipation,
    SsoRefreshToken,
)
from gateway.storage.database import Database

log = logging.getLogger("certgate.sso.housekeeping")

GRACE = timedelta(minutes=10)
KEEP_FINISHED = timedelta(days=7)
BATCH = 5000
MAX_BATCHES = 20


def _purge(database: Database, table: Table, which: ColumnElement[bool]) -> int:
    """Delete the rows ``which`` selects, ``BATCH`` at a time (by the table's one-column
    primary key); the number deleted."""
    (key,) = table.primary_key.columns
    removed = 0
    for _ in range(MAX_BATCHES):
        chosen = select(key).where(which).limit(BATCH).correlate(None).scalar_subquery()
        with database.connection() as connection:
            result = connection.execute(delete(table).where(key.in_(chosen)))
        count = int(result.rowcount)
        removed += count
        if count < BATCH:
            break
    return removed


def _codes(now: datetime) -> ColumnElement[bool]:
    return SsoAuthorizationCode.expires_at < now - GRACE


def _cas_tickets(now: datetime) -> ColumnElement[bool]:
    told = SsoParticipation
    awaiting_logout = exists().where(
        told.gateway_session_id == CasTicket.gateway_session_id,
        told.protocol == CAS,
        told.ended_at.is_(None),
    )
    return (CasTicket.expires_at < now - GRACE) & ~awaiting_logout


def _access_tokens(now: datetime) -> ColumnElement[bool]:
    return SsoAccessToken.expires_at < now


def _refresh_tokens(now: datetime) -> ColumnElement[bool]:
    member = aliased(SsoRefreshToken)
    family_alive = exists().where(
        member.family_id == SsoRefreshToken.family_id, member.expires_at >= now
    )
    return (SsoRefreshToken.expires_at < now) & ~family_alive


def _logout_deliveries(now: datetime) -> ColumnElement[bool]:
    # A finished message is not attempted again: its next_attempt_at (indexed) is its last
    # attempt's lease, at most 60 s after that attempt.
    return LogoutDelivery.state.in_((DELIVERY_DELIVERED, DELIVERY_FAILED)) & (
        LogoutDelivery.next_attempt_at < now - KEEP_FINISHED
    )


def _participations(now: datetime) -> ColumnElement[bool]:
    newer = aliased(SsoParticipation)
    superseded = exists().where(
        newer.account_public_id == SsoParticipation.account_public_id,
        newer.client_id == SsoParticipation.client_id,
        newer.id > SsoParticipation.id,
    )
    return (SsoParticipation.ended_at < now - KEEP_FINISHED) & superseded


# Each table with the rows to remove at ``now``, purged in this order.
_PURGES = (
    (SsoAuthorizationCode, _codes),
    (SsoAccessToken, _access_tokens),
    (SsoRefreshToken, _refresh_tokens),
    (CasTicket, _cas_tickets),
    (LogoutDelivery, _logout_deliveries),
    (SsoParticipation, _participations),
)


def purge_expired(database: Database, now: datetime) -> dict[str, int]:
    """Remove what the single sign-on tables no longer need at ``now``; the rows removed per
    table. Logs the counts (never a row's content) when anything was removed."""
    removed: dict[str, int] = {}
    for model, which in _PURGES:
        table: Table = model.__table__  # type: ignore[assignment]
        removed[table.name] = _purge(database, table, which(now))
    if any(removed.values()):
        log.info(
            "single sign-on housekeeping removed %s",
            ", ".join(f"{name} {count}" for name, count in removed.items()),
        )
    return removed
