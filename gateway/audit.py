"""The audit trail: an append-only table where each record carries the hash of the previous one.

``chain_hash = HMAC-SHA256(audit key, previous_hash || canonical JSON of the record's fields)``.
The key is derived from the data key, so someone with write access to the database alone cannot
forge a consistent chain. ``audit_head`` keeps the last id and hash, so deleting the newest
records is detected as well as changing or deleting one in the middle.

Records hold no personal data: the account's public id, the certificate's thumbprint, the error
code, the client address and a short detail (identifiers masked with ``mask_identifier``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy import Connection, bindparam, insert, select, update

from gateway.storage.database import Database
from gateway.storage.models import AuditHead, AuditRecord
from gateway.storage.prepared import Prepared

EXTENSION = "certgate.audit"
GENESIS_HASH = "0" * 64
HEAD_ROW_ID = 1
HEAD_ATTEMPTS = 5  # reads of a head other writers keep moving, before giving up

_SELECT_HEAD = Prepared(
    select(AuditHead.last_id, AuditHead.last_hash)
    .where(AuditHead.id == HEAD_ROW_ID)
    .with_for_update()
)
_INSERT_RECORD = Prepared(insert(AuditRecord))
_INSERT_HEAD = Prepared(insert(AuditHead))
# Moves the head on only if it is still where the appender read or left it (AuditLog.append).
_ADVANCE_HEAD = Prepared(
    update(AuditHead)
    .where(
        AuditHead.id == HEAD_ROW_ID,
        AuditHead.last_id == bindparam("known_id"),
        AuditHead.last_hash == bindparam("known_hash"),
    )
    .values(last_id=bindparam("last_id_"), last_hash=bindparam("last_hash_"))
)


@dataclass(frozen=True)
class AuditEntry:
    event: str  # "login", "logout", "tls_header_ignored", "account_created", ...
    outcome: str  # "ok" or a stable error code
    at: datetime
    method: str | None = None  # "token", "tls", "password"
    account_public_id: str | None = None
    certificate_thumbprint: str | None = None
    address: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class AuditProblem:
    record_id: int
    problem: str


@dataclass(frozen=True)
class _NewRecord:
    """A record about to be appended, hashed like an ``AuditRecord`` read back. Hashing it as
    an ORM ``AuditRecord`` meant building an instrumented object (an event per column) on every
    attempt, only to read its fields back (bench/bench_login.py)."""

    id: int
    at: datetime
    event: str
    method: str | None
    outcome: str
    account_public_id: str | None
    certificate_thumbprint: str | None
    address: str | None
    detail: str | None


def _new_record(record_id: int, entry: AuditEntry) -> _NewRecord:
    return _NewRecord(
        record_id,
        entry.at,
        entry.event,
        entry.method,
        entry.outcome,
        entry.account_public_id,
        entry.certificate_thumbprint,
        entry.address,
        entry.detail,
    )


def record_fields(record: AuditRecord | _NewRecord) -> dict[str, object]:
    """A record's fields by their public names (the hash input and `certgate audit list`)."""
    return {
        "id": record.id,
        "at": record.at.isoformat(),
        "event": record.event,
        "method": record.method,
        "outcome": record.outcome,
        "account": record.account_public_id,
        "thumbprint": record.certificate_thumbprint,
        "address": record.address,
        "detail": record.detail,
    }


def _canonical(record: AuditRecord | _NewRecord) -> bytes:
    fields = record_fields(record)
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


class AuditLog:
    def __init__(self, database: Database, key: bytes) -> None:
        self.database = database
        self._key = key
        # SQLite has no row locks; appends in one process are serialised here, and on PostgreSQL
        # the head row is also locked (SELECT ... FOR UPDATE) across processes.
        self._lock = threading.Lock()
        # (id, chain hash) of the last record this process appended: see ``append``.
        self._known_head: tuple[int, str] | None = None

    def _hash(self, previous_hash: str, record: AuditRecord | _NewRecord) -> str:
        message = previous_hash.encode("ascii") + b"\n" + _canonical(record)
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def append(self, entry: AuditEntry) -> int:
        # The unit of work first, then the lock: on SQLite the database's own turn-taking lock
        # (gateway/storage/database.py) is always taken before this one, never after. Core
        # statements built once: every login writes a record, and an ORM unit of work here cost
        # more than the rest of the login's database work (bench/bench_login.py).
        with self.database.connection() as connection, self._lock:
            # Usually two statements: the head this process wrote last is moved on only if
            # nobody moved it since; reading the head first cost a third statement on every
            # attempt (bench/bench_login.py). Otherwise (first append, another process appended,
            # or a rolled-back transaction left ``_known_head`` ahead of the table) the head is
            # read, locked (SELECT ... FOR UPDATE on PostgreSQL), and moved on the same way.
            known = self._known_head
            for _attempt in range(HEAD_ATTEMPTS):
                if known is None:
                    head = _SELECT_HEAD.execute(connection).one_or_none()
                    if head is None:
                        return self._first(connection, entry)
                    known = (head.last_id, head.last_hash)
                record_id = self._advance(connection, entry, known)
                if record_id is not None:
                    return record_id
                known = None
            raise RuntimeError("the audit head keeps moving: another writer holds it")

    def _advance(
        self, connection: Connection, entry: AuditEntry, known: tuple[int, str]
    ) -> int | None:
        """Append after the head ``known`` if it is still the head; None if it has moved.

        The id is the head's successor, chosen here rather than by the database, so the record
        is inserted once with its chain hash: inserting it first and updating the hash in after
        cost a statement per attempt (bench/bench_login.py). The conditional UPDATE locks the
        head row for the rest of the transaction, and ``verify`` insists on consecutive ids, so
        nothing else can take this id; a writer that did would fail the insert on the primary
        key, not fork the chain."""
        record_id = known[0] + 1
        chain_hash = self._hash(known[1], _new_record(record_id, entry))
        moved = _ADVANCE_HEAD.execute(
            connection,
            {
                "known_id": known[0],
                "known_hash": known[1],
                "last_id_": record_id,
                "last_hash_": chain_hash,
            },
        ).rowcount
        if moved != 1:
            return None
        self._insert(connection, entry, record_id, known[1], chain_hash)
        return record_id

    def _first(self, connection: Connection, entry: AuditEntry) -> int:
        """The first record, and the head row with it."""
        chain_hash = self._hash(GENESIS_HASH, _new_record(1, entry))
        _INSERT_HEAD.execute(connection, {"id": HEAD_ROW_ID, "last_id": 1, "last_hash": chain_hash})
        self._insert(connection, entry, 1, GENESIS_HASH, chain_hash)
        return 1

    def _insert(
        self,
        connection: Connection,
        entry: AuditEntry,
        record_id: int,
        previous_hash: str,
        chain_hash: str,
    ) -> None:
        _INSERT_RECORD.execute(
            connection,
            {
                "id": record_id,
                "at": entry.at,
                "event": entry.event,
                "method": entry.method,
                "outcome": entry.outcome,
                "account_public_id": entry.account_public_id,
                "certificate_thumbprint": entry.certificate_thumbprint,
                "address": entry.address,
                "detail": entry.detail,
                "previous_hash": previous_hash,
                "chain_hash": chain_hash,
            },
        )
        # Remembered before the transaction commits: if it rolls back instead, the table's head
        # no longer matches, and the next append reads it.
        self._known_head = (record_id, chain_hash)

    def records(self, *, limit: int | None = None) -> list[AuditRecord]:
        with self.database.session() as session:
            query = select(AuditRecord).order_by(AuditRecord.id.desc())
            if limit:
                query = query.limit(limit)
            return list(reversed(session.scalars(query).all()))

    def verify(self) -> list[AuditProblem]:
        """Every inconsistency in the chain; an empty list means the trail is intact."""
        with self.database.session() as session:
            head = session.get(AuditHead, HEAD_ROW_ID)
            records: Iterable[AuditRecord] = session.scalars(
                select(AuditRecord).order_by(AuditRecord.id)
            ).all()
            return self._check(records, head)

    def _check(self, records: Iterable[AuditRecord], head: AuditHead | None) -> list[AuditProblem]:
        problems: list[AuditProblem] = []
        previous_hash = GENESIS_HASH
        previous_id = 0
        for record in records:
            if record.id != previous_id + 1:
                problems.append(
                    AuditProblem(
                        record.id, f"records {previous_id + 1}..{record.id - 1} are missing"
                    )
                )
            if record.previous_hash != previous_hash:
                problems.append(AuditProblem(record.id, "previous hash does not match"))
            if not hmac.compare_digest(record.chain_hash, self._hash(record.previous_hash, record)):
                problems.append(AuditProblem(record.id, "record was changed"))
            previous_hash = record.chain_hash
            previous_id = record.id
        if head is None:
            if previous_id:
                problems.append(AuditProblem(previous_id, "audit head is missing"))
        elif head.last_id != previous_id or head.last_hash != previous_hash:
            problems.append(
                AuditProblem(head.last_id, f"newest record {head.last_id} is missing or changed")
            )
        return problems


def init_app(app: Flask, database: Database, key: bytes) -> AuditLog:
    log = AuditLog(database, key)
    app.extensions[EXTENSION] = log
    return log


def get_audit_log(app: Flask | None = None) -> AuditLog:
    return (app or current_app).extensions[EXTENSION]
