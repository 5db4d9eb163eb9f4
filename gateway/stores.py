"""Small store interfaces for the short-lived state: challenges, sessions, login attempts.

The SQL implementations below are the embedded default. Each interface is narrow and atomic in
its own terms (``consume`` marks a challenge used exactly once), so a Redis implementation can
replace them for scale-out without touching the routes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, func, select, update

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


def _challenge_record(row: Challenge) -> ChallengeRecord:
    return ChallengeRecord(row.id, row.nonce, row.binding_hash, row.expires_at, row.used_at)


class SqlChallengeStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def put(self, challenge: ChallengeRecord, *, created_at: datetime) -> None:
        with self.database.session() as session:
            session.add(
                Challenge(
                    id=challenge.id,
                    nonce=challenge.nonce,
                    binding_hash=challenge.binding_hash,
                    created_at=created_at,
                    expires_at=challenge.expires_at,
                    used_at=None,
                )
            )

    def consume(
        self, challenge_id: str, *, binding_hash: str, at: datetime
    ) -> ChallengeRecord | None:
        with self.database.session() as session:
            row = session.get(Challenge, challenge_id)
            if row is None or not hmac.compare_digest(row.binding_hash, binding_hash):
                return None
            before = _challenge_record(row)
            if row.used_at is not None:
                return before
            # The conditional UPDATE is the single-use guarantee: one winner per challenge.
            result = session.execute(
                update(Challenge)
                .where(Challenge.id == challenge_id, Challenge.used_at.is_(None))
                .values(used_at=at)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return ChallengeRecord(
                    before.id, before.nonce, before.binding_hash, before.expires_at, at
                )
            return before

    def purge(self, *, before: datetime) -> int:
        with self.database.session() as session:
            result = session.execute(delete(Challenge).where(Challenge.expires_at < before))
            return int(result.rowcount)  # type: ignore[attr-defined]


def _session_record(row: LoginSession) -> SessionRecord:
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
        with self.database.session() as session:
            session.add(
                LoginSession(
                    id_hash=record.id_hash,
                    account_id=record.account_id,
                    amr=" ".join(record.amr),
                    csrf_token=record.csrf_token,
                    created_at=record.created_at,
                    last_seen_at=record.last_seen_at,
                    expires_at=record.expires_at,
                )
            )

    def get(self, id_hash: str) -> SessionRecord | None:
        with self.database.session() as session:
            row = session.get(LoginSession, id_hash)
            return _session_record(row) if row else None

    def touch(self, id_hash: str, *, at: datetime) -> None:
        with self.database.session() as session:
            session.execute(
                update(LoginSession).where(LoginSession.id_hash == id_hash).values(last_seen_at=at)
            )

    def delete(self, id_hash: str) -> None:
        with self.database.session() as session:
            session.execute(delete(LoginSession).where(LoginSession.id_hash == id_hash))

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
        with self.database.session() as session:
            session.add_all(LoginAttempt(key=key, at=at, succeeded=succeeded) for key in keys)

    def count(self, key: str, *, since: datetime) -> int:
        with self.database.session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(LoginAttempt)
                    .where(LoginAttempt.key == key, LoginAttempt.at >= since)
                )
                or 0
            )

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
