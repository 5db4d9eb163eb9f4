"""Small store interfaces for the short-lived state: challenges, sessions, login attempts.

The SQL implementations below are the embedded default. Each interface is narrow and atomic in
its own terms (``consume`` marks a challenge used exactly once), so a Redis implementation can
replace them for scale-out without touching the routes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, insert, select, update

from gateway.storage.database import Database
from gateway.storage.models import Challenge, LoginAttempt, LoginSession


@dataclass(frozen=True)
class ChallengeRecord:
    id: str
    nonce: str
    binding_hash: str
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class SessionRecord:
    id_hash: str
    account_id: int
    amr: tuple[str, ...]
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


class ChallengeStore(Protocol):
    def put(self, challenge: ChallengeRecord, *, created_at: datetime) -> None: ...

    def consume(
        self, challenge_id: str, *, binding_hash: str, at: datetime
    ) -> ChallengeRecord | None:
        """Mark the challenge used and return it as it was before; None if unknown or bound to
        another pre-login cookie (then it stays unused).

        Exactly one caller across all processes sees ``used_at is None`` for a challenge."""

    def purge(self, *, before: datetime) -> int: ...


class SessionStore(Protocol):
    def create(self, session: SessionRecord) -> None: ...

    def get(self, id_hash: str) -> SessionRecord | None: ...

    def touch(self, id_hash: str, *, at: datetime) -> None: ...

    def delete(self, id_hash: str) -> None: ...

    def delete_for_account(self, account_id: int) -> int: ...

    def purge(self, *, before: datetime) -> int: ...


class AttemptStore(Protocol):
    def record(self, keys: list[str], *, at: datetime, succeeded: bool) -> None: ...

    def count(self, key: str, *, since: datetime) -> int: ...

    def failures_since_success(self, key: str, *, since: datetime) -> int: ...

    def purge(self, *, before: datetime) -> int: ...


def _challenge_record(row: Any) -> ChallengeRecord:
    return ChallengeRecord(row.id, row.nonce, row.binding_hash, row.expires_at, row.used_at)


# The statements below run on every login. They are built once, with bind parameters, and run on
# Core connections (``Database.connection``) rather than ORM sessions: building a statement and
# its cache key per call, and an ORM unit of work around it, cost three to five times the SQLite
# statement itself (bench/bench_login.py).
_INSERT_CHALLENGE = insert(Challenge)
_SELECT_CHALLENGE = select(
    Challenge.id, Challenge.nonce, Challenge.binding_hash, Challenge.expires_at, Challenge.used_at
).where(Challenge.id == bindparam("challenge_id"))
_USE_CHALLENGE = (
    update(Challenge)
    .where(Challenge.id == bindparam("challenge_id"), Challenge.used_at.is_(None))
    .values(used_at=bindparam("at"))
)
_INSERT_SESSION = insert(LoginSession)
_SELECT_SESSION = select(LoginSession.__table__).where(
    LoginSession.id_hash == bindparam("session_hash")
)
_TOUCH_SESSION = (
    update(LoginSession)
    .where(LoginSession.id_hash == bindparam("session_hash"))
    .values(last_seen_at=bindparam("at"))
)
_DELETE_SESSION = delete(LoginSession).where(LoginSession.id_hash == bindparam("session_hash"))
_INSERT_ATTEMPT = insert(LoginAttempt)
_COUNT_ATTEMPTS = (
    select(func.count())
    .select_from(LoginAttempt)
    .where(LoginAttempt.key == bindparam("key"), LoginAttempt.at >= bindparam("since"))
)


class SqlChallengeStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def put(self, challenge: ChallengeRecord, *, created_at: datetime) -> None:
        with self.database.connection() as connection:
            connection.execute(
                _INSERT_CHALLENGE,
                {
                    "id": challenge.id,
                    "nonce": challenge.nonce,
                    "binding_hash": challenge.binding_hash,
                    "created_at": created_at,
                    "expires_at": challenge.expires_at,
                    "used_at": None,
                },
            )

    def consume(
        self, challenge_id: str, *, binding_hash: str, at: datetime
    ) -> ChallengeRecord | None:
        with self.database.connection() as connection:
            row = connection.execute(
                _SELECT_CHALLENGE, {"challenge_id": challenge_id}
            ).one_or_none()
            if row is None or not hmac.compare_digest(row.binding_hash, binding_hash):
                return None
            before = _challenge_record(row)
            if row.used_at is not None:
                return before
            # The conditional UPDATE is the single-use guarantee: one winner per challenge.
            result = connection.execute(_USE_CHALLENGE, {"challenge_id": challenge_id, "at": at})
            if result.rowcount != 1:
                return ChallengeRecord(
                    before.id, before.nonce, before.binding_hash, before.expires_at, at
                )
            return before

    def purge(self, *, before: datetime) -> int:
        with self.database.session() as session:
            result = session.execute(delete(Challenge).where(Challenge.expires_at < before))
            return int(result.rowcount)  # type: ignore[attr-defined]


def _session_record(row: Any) -> SessionRecord:
    return SessionRecord(
        row.id_hash,
        row.account_id,
        tuple(row.amr.split()),
        row.csrf_token,
        row.created_at,
        row.last_seen_at,
        row.expires_at,
    )


class SqlSessionStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def create(self, record: SessionRecord) -> None:
        with self.database.connection() as connection:
            connection.execute(
                _INSERT_SESSION,
                {
                    "id_hash": record.id_hash,
                    "account_id": record.account_id,
                    "amr": " ".join(record.amr),
                    "csrf_token": record.csrf_token,
                    "created_at": record.created_at,
                    "last_seen_at": record.last_seen_at,
                    "expires_at": record.expires_at,
                },
            )

    def get(self, id_hash: str) -> SessionRecord | None:
        with self.database.connection() as connection:
            row = connection.execute(_SELECT_SESSION, {"session_hash": id_hash}).one_or_none()
            return _session_record(row) if row else None

    def touch(self, id_hash: str, *, at: datetime) -> None:
        with self.database.connection() as connection:
            connection.execute(_TOUCH_SESSION, {"session_hash": id_hash, "at": at})

    def delete(self, id_hash: str) -> None:
        with self.database.connection() as connection:
            connection.execute(_DELETE_SESSION, {"session_hash": id_hash})

    def delete_for_account(self, account_id: int) -> int:
        with self.database.session() as session:
            result = session.execute(
                delete(LoginSession).where(LoginSession.account_id == account_id)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def purge(self, *, before: datetime) -> int:
        with self.database.session() as session:
            result = session.execute(delete(LoginSession).where(LoginSession.expires_at < before))
            return int(result.rowcount)  # type: ignore[attr-defined]


class SqlAttemptStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def record(self, keys: list[str], *, at: datetime, succeeded: bool) -> None:
        if not keys:
            return
        with self.database.connection() as connection:
            connection.execute(
                _INSERT_ATTEMPT, [{"key": key, "at": at, "succeeded": succeeded} for key in keys]
            )

    def count(self, key: str, *, since: datetime) -> int:
        with self.database.connection() as connection:
            found = connection.execute(_COUNT_ATTEMPTS, {"key": key, "since": since}).scalar()
            return int(found or 0)

    def failures_since_success(self, key: str, *, since: datetime) -> int:
        with self.database.session() as session:
            last_success = session.scalar(
                select(func.max(LoginAttempt.at)).where(
                    LoginAttempt.key == key,
                    LoginAttempt.succeeded.is_(True),
                    LoginAttempt.at >= since,
                )
            )
            start = since if last_success is None else last_success
            query = (
                select(func.count())
                .select_from(LoginAttempt)
                .where(
                    LoginAttempt.key == key,
                    LoginAttempt.succeeded.is_(False),
                    LoginAttempt.at >= start,
                )
            )
            if last_success is not None:
                query = query.where(LoginAttempt.at > last_success)
            return int(session.scalar(query) or 0)

    def purge(self, *, before: datetime) -> int:
        with self.database.session() as session:
            result = session.execute(delete(LoginAttempt).where(LoginAttempt.at < before))
            return int(result.rowcount)  # type: ignore[attr-defined]
