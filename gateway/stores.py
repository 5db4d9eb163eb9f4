"""Small store interfaces for the short-lived state: challenges, sessions, login attempts.

SQL implementations (``state_store = "database"``), and in-process ones for challenges and
attempts (``state_store = "memory"``, the embedded default; sessions are always in SQL so a
restart does not sign anyone out). Each interface is narrow and atomic in
its own terms (``consume`` marks a challenge used exactly once), so the Redis implementations
(``state_store = "redis"``, gateway/storage/redis_state.py) replace them for scale-out without
touching the routes.
"""

from __future__ import annotations

import functools
import hmac
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    Integer,
    Table,
    and_,
    bindparam,
    case,
    delete,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.storage.database import Database
from gateway.storage.models import AttemptCounter, Challenge, LoginSession
from gateway.storage.prepared import Prepared
from gateway.storage.types import UtcDateTime

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
    acr: str
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
        row.acr,
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
                    "acr": record.acr,
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


@dataclass(frozen=True)
class Admission:
    """One attempt counted against a limit key, or refused.

    ``window_start`` names the window the attempt was counted in (``give_back`` un-counts it
    there); None when it was not counted (refused, or let through untracked by a full in-process
    table: see ``MemoryAttemptStore``). ``retry_at``: when a refused key has room again."""

    key: str
    admitted: bool
    window_start: datetime | None = None
    retry_at: datetime | None = None


class AttemptStore(Protocol):
    """Attempt counters per limit key. Each method is one atomic step, so parallel requests
    cannot all pass a check before any of them is counted."""

    def admit(self, key: str, *, limit: int, window: timedelta, at: datetime) -> Admission:
        """Count one attempt against ``key`` if its current window (``window`` long, from its
        first attempt) holds fewer than ``limit``; else refuse and count nothing."""

    def give_back(self, admission: Admission, *, end_streak: bool) -> None:
        """Un-count an admitted attempt (a successful login, or an answer that said nothing
        about the credentials); ``end_streak``: a success, which also ends the key's failure
        streak."""

    def give_back_all(self, admissions: Sequence[Admission], *, end_streak: bool) -> None:
        """``give_back`` of each admission (a login's address and certificate); a store on
        another server sends them together."""

    def failed(
        self,
        key: str,
        *,
        at: datetime,
        threshold: int,
        window: timedelta,
        duration: timedelta,
    ) -> datetime | None:
        """One more failure in ``key``'s streak (a streak older than ``window`` starts again).
        The failure that makes ``threshold`` locks the key for ``duration`` and starts the
        streak afresh: the lock's end is returned, else None."""

    def locked_until(self, key: str, *, at: datetime) -> datetime | None:
        """The end of a lock on ``key`` that is still running at ``at``, else None."""

    def purge(self, *, before: datetime) -> int: ...


_COUNTERS: Table = AttemptCounter.__table__  # type: ignore[assignment]
_SELECT_COUNTER = Prepared(
    select(AttemptCounter.window_start, AttemptCounter.locked_until).where(
        AttemptCounter.key == bindparam("b_key")
    )
)


def _at(name: str) -> Any:
    return bindparam(name, type_=UtcDateTime())


@functools.cache
def _counter_statements(dialect_name: str) -> tuple[Any, Any, Any, Any]:
    """Admit, give back (with and without ending the streak) and fail, each ONE statement.
    Admit and fail are upserts (INSERT .. ON CONFLICT DO UPDATE) that count and answer in the
    same step (RETURNING). SQLite takes its write lock when the
    statement starts, and PostgreSQL locks the conflicting row before it evaluates the update,
    so a second request waits for the first and sees its count: the check cannot race the count
    on either (a SELECT count then an INSERT did: forty parallel attempts all saw a free key).
    Built per dialect, because ON CONFLICT is each dialect's own construct."""
    insert_for = postgresql_insert if dialect_name == "postgresql" else sqlite_insert
    c = _COUNTERS.c

    # admit: a new key, a window that has run out (starts again at 1), or room left.
    expired = c.window_start <= _at("since")
    admit_insert = insert_for(_COUNTERS).values(
        key=bindparam("b_key"), window_start=_at("at"), attempts=1, failures=0
    )
    admit = admit_insert.on_conflict_do_update(
        index_elements=[c.key],
        set_={
            "window_start": case((expired, _at("at")), else_=c.window_start),
            "attempts": case((expired, literal(1)), else_=c.attempts + 1),
        },
        where=or_(expired, c.attempts < bindparam("limit", type_=Integer())),
    ).returning(c.window_start)

    # give back: un-count the attempt in its own window (a later window is left alone).
    give_back = (
        update(_COUNTERS)
        .where(c.key == bindparam("b_key"))
        .values(
            attempts=case(
                (and_(c.window_start == _at("b_window_start"), c.attempts > 0), c.attempts - 1),
                else_=c.attempts,
            )
        )
    )
    succeed = give_back.values(failures=0, first_failure_at=None)

    # failed: the streak goes on, starts again (too old), or reaches the threshold and locks.
    over = or_(c.first_failure_at.is_(None), c.first_failure_at <= _at("streak_since"))
    count = case((over, literal(1)), else_=c.failures + 1)
    reached = count >= bindparam("threshold", type_=Integer())
    fail_insert = insert_for(_COUNTERS).values(
        key=bindparam("b_key"),
        window_start=_at("at"),
        attempts=0,
        failures=bindparam("first_failures", type_=Integer()),
        first_failure_at=_at("b_first_failure_at"),
        locked_until=_at("first_lock"),
    )
    fail = fail_insert.on_conflict_do_update(
        index_elements=[c.key],
        set_={
            "failures": case((reached, literal(0)), else_=count),
            "first_failure_at": case(
                (reached, null()), (over, _at("at")), else_=c.first_failure_at
            ),
            "locked_until": case((reached, _at("until")), else_=c.locked_until),
        },
    ).returning(c.failures, c.locked_until)
    return admit, give_back, succeed, fail


class SqlAttemptStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def admit(self, key: str, *, limit: int, window: timedelta, at: datetime) -> Admission:
        with self.database.connection() as connection:
            admit, _give_back, _succeed, _fail = _counter_statements(connection.dialect.name)
            started = connection.execute(
                admit, {"b_key": key, "at": at, "since": at - window, "limit": limit}
            ).scalar_one_or_none()
            if started is not None:
                return Admission(key, True, window_start=started)
            row = _SELECT_COUNTER.execute(connection, {"b_key": key}).one_or_none()
        retry_at = row.window_start + window if row is not None else at + window
        return Admission(key, False, retry_at=max(retry_at, at))

    def give_back(self, admission: Admission, *, end_streak: bool) -> None:
        if admission.window_start is None:
            return
        with self.database.connection() as connection:
            _admit, give_back, succeed, _fail = _counter_statements(connection.dialect.name)
            connection.execute(
                succeed if end_streak else give_back,
                {"b_key": admission.key, "b_window_start": admission.window_start},
            )

    def give_back_all(self, admissions: Sequence[Admission], *, end_streak: bool) -> None:
        for admission in admissions:
            self.give_back(admission, end_streak=end_streak)

    def failed(
        self,
        key: str,
        *,
        at: datetime,
        threshold: int,
        window: timedelta,
        duration: timedelta,
    ) -> datetime | None:
        until = at + duration
        locks_at_once = threshold <= 1
        with self.database.connection() as connection:
            _admit, _give_back, _succeed, fail = _counter_statements(connection.dialect.name)
            row = connection.execute(
                fail,
                {
                    "b_key": key,
                    "at": at,
                    "streak_since": at - window,
                    "threshold": threshold,
                    "until": until,
                    "first_failures": 0 if locks_at_once else 1,
                    "b_first_failure_at": None if locks_at_once else at,
                    "first_lock": until if locks_at_once else None,
                },
            ).one()
        return until if row.failures == 0 and row.locked_until == until else None

    def locked_until(self, key: str, *, at: datetime) -> datetime | None:
        with self.database.connection() as connection:
            row = _SELECT_COUNTER.execute(connection, {"b_key": key}).one_or_none()
        if row is None or row.locked_until is None or row.locked_until <= at:
            return None
        return row.locked_until

    def purge(self, *, before: datetime) -> int:
        """Counters with nothing left to say: window, streak and lock all older than
        ``before`` (the longest of the windows ago)."""
        c = _COUNTERS.c
        with self.database.connection() as connection:
            result = connection.execute(
                delete(_COUNTERS).where(
                    c.window_start < before,
                    or_(c.first_failure_at.is_(None), c.first_failure_at < before),
                    or_(c.locked_until.is_(None), c.locked_until < before),
                )
            )
            return int(result.rowcount)


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


class _Counter:
    """One key's counters (seconds since the epoch). ``live_until``: until when any of them
    still matters (the window, the failure streak or the lock); afterwards the key may go."""

    __slots__ = ("attempts", "failures", "first_failure_at", "live_until", "locked_until", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.attempts = 0
        self.failures = 0
        self.first_failure_at: float | None = None
        self.locked_until: float | None = None
        self.live_until = start


# Keys that count per client address. When their table is full of live keys, a new address is
# let through uncounted rather than refused: whoever filled the table holds that many addresses
# (IPv6 /64s) and is past any per-address limit anyway, while refusing would turn the flood into
# a lockout of every new client. The other kinds (password subjects, certificates) guard against
# guessing, so a new key there is refused (rate_limited) until room comes back.
UNCOUNTED_WHEN_FULL = frozenset({"address", "challenge", "qr"})
# A full table is swept for expired keys at most this often (a sweep reads every key).
SWEEP_INTERVAL = 1.0


class _Table:
    __slots__ = ("counters", "next_sweep", "warned")

    def __init__(self) -> None:
        self.counters: dict[str, _Counter] = {}
        self.next_sweep = 0.0
        self.warned = False


class MemoryAttemptStore:
    """Attempt counters in this process, one table per kind of key (the text before the first
    ':': address, password, certificate, challenge), each of at most ``max_keys`` keys.

    Every method runs under one lock, so checking and counting are one step. A full table never
    evicts a key that still counts (an attacker's flood of new keys would otherwise wipe the
    counts of the clients it is meant to limit): it first drops keys whose window, streak and
    lock have all run out, and if every key is live, a new key is refused — or, for the address
    kinds, let through uncounted (``UNCOUNTED_WHEN_FULL``). One kind filling up leaves the others
    untouched. An account's lockout is also on its row, which survives this table and a
    restart."""

    def __init__(self, *, max_keys: int = DEFAULT_MAX_ATTEMPT_KEYS) -> None:
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self.max_keys = max_keys
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(table.counters) for table in self._tables.values())

    def admit(self, key: str, *, limit: int, window: timedelta, at: datetime) -> Admission:
        moment, length = at.timestamp(), window.total_seconds()
        with self._lock:
            counter = self._counter_locked(key, moment)
            if counter is None:
                if _kind(key) in UNCOUNTED_WHEN_FULL:
                    return Admission(key, True)
                return Admission(key, False, retry_at=at + window)
            if counter.start + length <= moment:
                counter.start, counter.attempts = moment, 0
            if counter.attempts >= limit:
                return Admission(key, False, retry_at=_datetime(counter.start + length))
            counter.attempts += 1
            counter.live_until = max(counter.live_until, counter.start + length)
            return Admission(key, True, window_start=_datetime(counter.start))

    def give_back(self, admission: Admission, *, end_streak: bool) -> None:
        if admission.window_start is None:
            return
        with self._lock:
            counter = self._table(admission.key).counters.get(admission.key)
            if counter is None:
                return
            if counter.start == admission.window_start.timestamp() and counter.attempts > 0:
                counter.attempts -= 1
            if end_streak:
                counter.failures, counter.first_failure_at = 0, None

    def give_back_all(self, admissions: Sequence[Admission], *, end_streak: bool) -> None:
        for admission in admissions:
            self.give_back(admission, end_streak=end_streak)

    def failed(
        self,
        key: str,
        *,
        at: datetime,
        threshold: int,
        window: timedelta,
        duration: timedelta,
    ) -> datetime | None:
        moment = at.timestamp()
        with self._lock:
            counter = self._counter_locked(key, moment)
            if counter is None:
                return None  # full of live keys: admit() refused this key already
            first = counter.first_failure_at
            if first is None or first <= moment - window.total_seconds():
                counter.failures, counter.first_failure_at = 1, moment
            else:
                counter.failures += 1
            counter.live_until = max(counter.live_until, moment + window.total_seconds())
            if counter.failures < threshold:
                return None
            counter.failures, counter.first_failure_at = 0, None
            counter.locked_until = moment + duration.total_seconds()
            counter.live_until = max(counter.live_until, counter.locked_until)
            return _datetime(counter.locked_until)

    def locked_until(self, key: str, *, at: datetime) -> datetime | None:
        with self._lock:
            counter = self._table(key).counters.get(key)
            if counter is None or counter.locked_until is None:
                return None
            if counter.locked_until <= at.timestamp():
                return None
            return _datetime(counter.locked_until)

    def purge(self, *, before: datetime) -> int:
        """Keys with nothing left to say at ``before``: window, streak and lock run out."""
        with self._lock:
            return sum(_sweep(table, before.timestamp()) for table in self._tables.values())

    def _table(self, key: str) -> _Table:
        kind = _kind(key)
        table = self._tables.get(kind)
        if table is None:
            table = self._tables[kind] = _Table()
        return table

    def _counter_locked(self, key: str, moment: float) -> _Counter | None:
        """``key``'s counter, made if there is room; None if its table is full of live keys."""
        table = self._table(key)
        counter = table.counters.get(key)
        if counter is not None:
            return counter
        if len(table.counters) >= self.max_keys and moment >= table.next_sweep:
            table.next_sweep = moment + SWEEP_INTERVAL
            _sweep(table, moment)
        if len(table.counters) >= self.max_keys:
            if not table.warned:
                table.warned = True
                log.warning(
                    "attempt counters for %r keys full (%d live keys): new keys are %s",
                    _kind(key),
                    self.max_keys,
                    "not counted" if _kind(key) in UNCOUNTED_WHEN_FULL else "refused",
                )
            return None
        table.warned = False
        counter = table.counters[key] = _Counter(moment)
        return counter


def _kind(key: str) -> str:
    return key.split(":", 1)[0]


def _sweep(table: _Table, moment: float) -> int:
    expired = [key for key, counter in table.counters.items() if counter.live_until <= moment]
    for key in expired:
        del table.counters[key]
    return len(expired)


def _datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def make_state_stores(
    config: Mapping[str, Any],
    database: Database,
    *,
    operator: bool = False,
    redis_client: Any = None,
) -> tuple[ChallengeStore, AttemptStore]:
    """The challenge and attempt stores ``state_store`` names ("redis": ``redis_client``'s,
    gateway/storage/redis_state.py). Serving with "memory" claims the SQLite file for this
    process (``Database.claim_single_process``); operator commands serve no logins and claim
    nothing, so they run beside a server."""
    if config["STATE_STORE"] == "redis":
        from gateway.storage.redis_state import RedisAttemptStore, RedisChallengeStore

        return RedisChallengeStore(redis_client), RedisAttemptStore(redis_client)
    if config["STATE_STORE"] == "database":
        return SqlChallengeStore(database), SqlAttemptStore(database)
    if not operator:
        try:
            database.claim_single_process()
        except Exception:
            database.close()  # start-up stops here; leave no connections behind
            raise
    return MemoryChallengeStore(), MemoryAttemptStore()
