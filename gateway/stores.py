"""Small store interfaces for the short-lived state: challenges, sessions, login attempts.

SQL implementations (``state_store = "database"``), and in-process ones for challenges and
attempts (``state_store = "memory"``, the embedded default; sessions are always in SQL so a
restart does not sign anyone out). Each interface is narrow and atomic in
its own terms (``consume`` marks a challenge used exactly once), so a Redis implementation can
replace them for scale-out without touching the routes.
"""

from __future__ import annotations

import hmac
import logging
import threading
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, insert, select, update

from gateway.storage.database import Database
from gateway.storage.models import Challenge, LoginAttempt, LoginSession
from gateway.storage.prepared import Prepared

log = logging.getLogger("certgate.gateway")


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
# Core connections (``Database.connection``) rather than ORM sessions, through ``Prepared``:
# building a statement and its cache key per call, and an ORM unit of work around it, cost three
# to five times the SQLite statement itself (bench/bench_login.py).
_INSERT_CHALLENGE = Prepared(insert(Challenge))
_SELECT_CHALLENGE = Prepared(
    select(
        Challenge.id,
        Challenge.nonce,
        Challenge.binding_hash,
        Challenge.expires_at,
        Challenge.used_at,
    ).where(Challenge.id == bindparam("challenge_id"))
)
_USE_CHALLENGE = Prepared(
    update(Challenge)
    .where(Challenge.id == bindparam("challenge_id"), Challenge.used_at.is_(None))
    .values(used_at=bindparam("at"))
)
_INSERT_SESSION = Prepared(insert(LoginSession))
_SELECT_SESSION = Prepared(
    select(LoginSession.__table__).where(LoginSession.id_hash == bindparam("session_hash"))
)
_TOUCH_SESSION = Prepared(
    update(LoginSession)
    .where(LoginSession.id_hash == bindparam("session_hash"))
    .values(last_seen_at=bindparam("at"))
)
_DELETE_SESSION = Prepared(
    delete(LoginSession).where(LoginSession.id_hash == bindparam("session_hash"))
)
_INSERT_ATTEMPT = insert(LoginAttempt)
_COUNT_ATTEMPTS = Prepared(
    select(func.count())
    .select_from(LoginAttempt)
    .where(LoginAttempt.key == bindparam("key"), LoginAttempt.at >= bindparam("since"))
)


class SqlChallengeStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def put(self, challenge: ChallengeRecord, *, created_at: datetime) -> None:
        with self.database.connection() as connection:
            _INSERT_CHALLENGE.execute(
                connection,
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
            row = _SELECT_CHALLENGE.execute(
                connection, {"challenge_id": challenge_id}
            ).one_or_none()
            if row is None or not hmac.compare_digest(row.binding_hash, binding_hash):
                return None
            before = _challenge_record(row)
            if row.used_at is not None:
                return before
            # The conditional UPDATE is the single-use guarantee: one winner per challenge.
            result = _USE_CHALLENGE.execute(connection, {"challenge_id": challenge_id, "at": at})
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
            _INSERT_SESSION.execute(
                connection,
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
            row = _SELECT_SESSION.execute(connection, {"session_hash": id_hash}).one_or_none()
            return _session_record(row) if row else None

    def touch(self, id_hash: str, *, at: datetime) -> None:
        with self.database.connection() as connection:
            _TOUCH_SESSION.execute(connection, {"session_hash": id_hash, "at": at})

    def delete(self, id_hash: str) -> None:
        with self.database.connection() as connection:
            _DELETE_SESSION.execute(connection, {"session_hash": id_hash})

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
            row = _COUNT_ATTEMPTS.execute(connection, {"key": key, "since": since}).one_or_none()
            return int(row[0] or 0) if row else 0

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


# --- in-process stores (embedded default: one process) -------------------------------------------
#
# With ``state_store = "memory"`` challenges and attempt counters live in this process's memory
# instead of SQLite rows. A challenge login touched the database eight times for them (insert the
# challenge, count and record the challenge limit, count the address and subject limits twice,
# select and mark the challenge used, record the attempt), each a transaction with its commit:
# about half the work of a login (bench/bench_login.py). The state is short-lived (120 s
# challenges, minutes of attempt history); what must survive a restart stays in the database
# (sessions, the audit trail, an account's ``locked_until``). Only correct when one process
# answers every request: docs/configuration.md ``state_store``.

DEFAULT_MAX_CHALLENGES = 100_000
DEFAULT_MAX_ATTEMPT_KEYS = 100_000


class MemoryChallengeStore:
    """Challenges in a dict, bounded and expiring. ``consume`` is atomic under one lock, so
    exactly one caller in this process sees ``used_at is None``; a challenge issued by another
    process is simply unknown here (the login fails closed with ``challenge_unknown``)."""

    def __init__(self, *, max_challenges: int = DEFAULT_MAX_CHALLENGES) -> None:
        if max_challenges <= 0:
            raise ValueError("max_challenges must be positive")
        self.max_challenges = max_challenges
        # Insertion-ordered: the first entries are the oldest challenges.
        self._challenges: dict[str, ChallengeRecord] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._challenges)

    def put(self, challenge: ChallengeRecord, *, created_at: datetime) -> None:
        with self._lock:
            challenges = self._challenges
            # Full: drop from the oldest end, so a full store costs a new challenge O(1), not a
            # scan. Every challenge gets the same lifetime, so the oldest are the expired ones;
            # when even the oldest is live (the per-address challenge limit keeps one client from
            # doing this), its login fails closed with challenge_unknown.
            while len(challenges) >= self.max_challenges:
                del challenges[next(iter(challenges))]
            challenges[challenge.id] = challenge

    def consume(
        self, challenge_id: str, *, binding_hash: str, at: datetime
    ) -> ChallengeRecord | None:
        with self._lock:
            found = self._challenges.get(challenge_id)
            if found is None or not hmac.compare_digest(found.binding_hash, binding_hash):
                return None
            if found.used_at is None:
                # Kept, marked used, until it expires: a replay answers ``challenge_used``.
                self._challenges[challenge_id] = replace(found, used_at=at)
            return found

    def purge(self, *, before: datetime) -> int:
        with self._lock:
            return self._purge_locked(before)

    def _purge_locked(self, before: datetime) -> int:
        expired = [key for key, record in self._challenges.items() if record.expires_at < before]
        for key in expired:
            del self._challenges[key]
        return len(expired)


class _AttemptHistory:
    """One key's attempt times, oldest first (seconds since the epoch)."""

    __slots__ = ("failures", "successes")

    def __init__(self) -> None:
        self.failures: list[float] = []
        self.successes: list[float] = []


class MemoryAttemptStore:
    """Attempt times per key in sorted lists, so a count is two bisections however busy the key.

    Bounded twice: entries older than ``keep`` are dropped as new ones arrive (nothing older is
    ever asked for: ``keep`` is the longest of the rate-limit and lockout windows), and at most
    ``max_keys`` keys are held. When the keys are full of live history the least recently used
    key is forgotten and a warning logged; an account's lockout, once reached, is on its row and
    survives that (and a restart)."""

    def __init__(
        self,
        *,
        keep: timedelta,
        max_keys: int = DEFAULT_MAX_ATTEMPT_KEYS,
        max_per_key: int | None = None,
    ) -> None:
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self.keep = keep.total_seconds()
        self.max_keys = max_keys
        # No limit needs more than (largest limit) entries of one key to answer; the cap keeps a
        # hammered key's list from growing with the request rate.
        self.max_per_key = max_per_key
        self._keys: OrderedDict[str, _AttemptHistory] = OrderedDict()
        self._lock = threading.Lock()
        self._warned_full = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def record(self, keys: list[str], *, at: datetime, succeeded: bool) -> None:
        moment = at.timestamp()
        horizon = moment - self.keep
        with self._lock:
            for key in keys:
                history = self._keys.get(key)
                if history is None:
                    self._make_room_locked(horizon)
                    history = self._keys[key] = _AttemptHistory()
                else:
                    self._keys.move_to_end(key)
                times = history.successes if succeeded else history.failures
                # Requests take ``at`` before they get here, so threads may arrive slightly out
                # of order: insert in place rather than append.
                insort(times, moment)
                _drop_before(times, horizon)
                if self.max_per_key is not None and len(times) > self.max_per_key:
                    del times[: len(times) - self.max_per_key]

    def count(self, key: str, *, since: datetime) -> int:
        start = since.timestamp()
        with self._lock:
            history = self._keys.get(key)
            if history is None:
                return 0
            return _count_from(history.failures, start) + _count_from(history.successes, start)

    def failures_since_success(self, key: str, *, since: datetime) -> int:
        start = since.timestamp()
        with self._lock:
            history = self._keys.get(key)
            if history is None:
                return 0
            successes, failures = history.successes, history.failures
            if successes and successes[-1] >= start:
                # Strictly after the last success, as the SQL store counts.
                return len(failures) - bisect_right(failures, successes[-1])
            return _count_from(failures, start)

    def purge(self, *, before: datetime) -> int:
        horizon = before.timestamp()
        with self._lock:
            return self._purge_locked(horizon)

    def _purge_locked(self, horizon: float) -> int:
        dropped = 0
        for key in list(self._keys):
            history = self._keys[key]
            dropped += _drop_before(history.failures, horizon)
            dropped += _drop_before(history.successes, horizon)
            if not history.failures and not history.successes:
                del self._keys[key]
        return dropped

    def _make_room_locked(self, horizon: float) -> None:
        # Only the least recently used end is looked at, so a full store costs a new key O(1),
        # not a scan of every key: keys whose newest attempt is past the horizon go first.
        keys = self._keys
        while len(keys) >= self.max_keys:
            oldest_key = next(iter(keys))
            history = keys[oldest_key]
            newest = max(history.failures[-1:] + history.successes[-1:], default=0.0)
            if newest < horizon:
                del keys[oldest_key]
                continue
            if not self._warned_full:
                self._warned_full = True
                log.warning(
                    "attempt store full (%d keys of live history): forgetting the least "
                    "recently used keys",
                    self.max_keys,
                )
            self._keys.popitem(last=False)


def _drop_before(times: list[float], horizon: float) -> int:
    cut = bisect_left(times, horizon)
    if cut:
        del times[:cut]
    return cut


def _count_from(times: list[float], start: float) -> int:
    return len(times) - bisect_left(times, start)


def make_state_stores(
    config: Mapping[str, Any], database: Database, *, operator: bool = False
) -> tuple[ChallengeStore, AttemptStore]:
    """The challenge and attempt stores ``state_store`` names. Serving with "memory" claims the
    SQLite file for this process (``Database.claim_single_process``); operator commands serve no
    logins and claim nothing, so they run beside a server."""
    if config["STATE_STORE"] == "database":
        return SqlChallengeStore(database), SqlAttemptStore(database)
    if not operator:
        try:
            database.claim_single_process()
        except Exception:
            database.close()  # start-up stops here; leave no connections behind
            raise
    keep = max(config["RATE_LIMIT_WINDOW"], config["LOCKOUT_WINDOW"])
    largest_limit = max(
        config["ADDRESS_ATTEMPT_LIMIT"],
        config["ACCOUNT_ATTEMPT_LIMIT"],
        config["CHALLENGE_LIMIT"],
        config["LOCKOUT_THRESHOLD"],
    )
    return MemoryChallengeStore(), MemoryAttemptStore(
        keep=timedelta(seconds=keep), max_per_key=largest_limit
    )
