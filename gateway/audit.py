"""The audit trail: an append-only table where each record carries the hash of the previous one.

``chain_hash = HMAC-SHA256(audit key, previous_hash || canonical JSON of the record's fields)``.
The key is derived from the data key, so someone with write access to the database alone cannot
forge a consistent chain.

The chain alone cannot show that its newest records were deleted, so two more things are sealed
with sub-keys of the audit key (HKDF-SHA256, like the data key's own sub-keys in
``storage/personal_data.py``):

- ``audit_head``, one row: the newest record's id and chain hash and the number of records, with
  ``head_mac = HMAC-SHA256(head key, "certgate-audit-head v1 <seq> <count> <hash>")``. Moving the
  head back over deleted records needs that key; a head row found without a valid MAC is reported
  and nothing is appended onto it (appending would seal the truncation).
- ``audit_genesis``, one row written when the trail is created (revision 0006): its time and a
  MAC. While it stands, a missing head row is reported even when every record is gone too.

What stays possible with database access alone is putting back a whole older state: an older
copy of the head row with the records it covers, an older backup, or a database reset to the
state before the trail existed. A checkpoint (``Checkpoint``: one signed line an operator keeps
outside the database) catches those: everything up to its sequence number must still be there,
unchanged.

Records hold no personal data: the account's public id, the certificate's thumbprint, the error
code, the client address and a short detail (identifiers masked with ``mask_identifier``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app
from sqlalchemy import Connection, bindparam, insert, select, update

from gateway.storage.database import Database
from gateway.storage.models import AuditGenesis, AuditHead, AuditRecord
from gateway.storage.prepared import Prepared

EXTENSION = "certgate.audit"
GENESIS_HASH = "0" * 64
HEAD_ROW_ID = 1
GENESIS_ROW_ID = 1
HEAD_ATTEMPTS = 5  # reads of a head other writers keep moving, before giving up

HEAD_KEY_PURPOSE = b"certgate audit-head hmac v1"
CHECKPOINT_KEY_PURPOSE = b"certgate audit-checkpoint hmac v1"
CHECKPOINT_TAG = "certgate-audit-checkpoint"
CHECKPOINT_VERSION = "v1"
CHECKPOINT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")

_SELECT_HEAD = Prepared(
    select(AuditHead.last_id, AuditHead.last_hash, AuditHead.record_count, AuditHead.head_mac)
    .where(AuditHead.id == HEAD_ROW_ID)
    .with_for_update()
)
_INSERT_RECORD = Prepared(insert(AuditRecord))
# Moves the head on only if it is still where the appender read or left it (AuditLog.append).
_ADVANCE_HEAD = Prepared(
    update(AuditHead)
    .where(
        AuditHead.id == HEAD_ROW_ID,
        AuditHead.last_id == bindparam("known_id"),
        AuditHead.last_hash == bindparam("known_hash"),
    )
    .values(
        last_id=bindparam("last_id_"),
        last_hash=bindparam("last_hash_"),
        record_count=bindparam("record_count_"),
        head_mac=bindparam("head_mac_"),
    )
)


class AuditTrailBroken(RuntimeError):
    """The trail cannot be appended to or vouched for: its head is missing or forged."""

    def __init__(self, message: str, problems: Sequence[AuditProblem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


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
    record_id: int | None  # None: the problem is the trail's, not one record's
    problem: str


@dataclass(frozen=True)
class AuditVerdict:
    """What ``AuditLog.examine`` found: an empty ``problems`` means the trail is intact."""

    problems: list[AuditProblem]
    record_count: int
    newest: int  # the newest record's id, 0 for none
    head: _Head | None  # as read, whether or not it is genuine


@dataclass(frozen=True)
class _Head:
    last_id: int
    last_hash: str
    record_count: int


@dataclass(frozen=True)
class Checkpoint:
    """The trail's newest record as an operator saw it, signed:
    ``certgate-audit-checkpoint v1 <seq> <count> <head hash> <time> <mac>``."""

    seq: int
    record_count: int
    head_hash: str
    at: datetime
    mac: str

    def body(self) -> str:
        at = self.at.astimezone(UTC).strftime(CHECKPOINT_TIME_FORMAT)
        return (
            f"{CHECKPOINT_TAG} {CHECKPOINT_VERSION} {self.seq} {self.record_count} "
            f"{self.head_hash} {at}"
        )

    def line(self) -> str:
        return f"{self.body()} {self.mac}"


CHECKPOINT_SHAPE = (
    f"{CHECKPOINT_TAG} {CHECKPOINT_VERSION} SEQ COUNT HEAD_HASH YYYY-MM-DDTHH:MM:SSZ MAC"
)


def parse_checkpoint(line: str) -> Checkpoint:
    """A checkpoint line read back; ValueError says what is wrong with its form (not its MAC)."""
    fields = line.split()
    if len(fields) != 7 or fields[0] != CHECKPOINT_TAG:
        raise ValueError(f"not a checkpoint line (expected: {CHECKPOINT_SHAPE})")
    _tag, version, seq, count, head_hash, at, mac = fields
    if version != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint format {version!r} is not known (this is {CHECKPOINT_VERSION})"
        )
    if not _DECIMAL.fullmatch(seq) or not _DECIMAL.fullmatch(count):
        raise ValueError(f"SEQ and COUNT are whole numbers, not {seq!r} and {count!r}")
    if not _HEX64.fullmatch(head_hash) or not _HEX64.fullmatch(mac):
        raise ValueError("HEAD_HASH and MAC are 64 lowercase hexadecimal digits")
    try:
        moment = datetime.strptime(at, CHECKPOINT_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"the time is YYYY-MM-DDTHH:MM:SSZ, not {at!r}") from None
    return Checkpoint(int(seq), int(count), head_hash, moment, mac)


def _derive(audit_key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(audit_key)


def _genesis_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime(CHECKPOINT_TIME_FORMAT)


class AuditSeal:
    """The MACs over the head, the genesis marker and checkpoints. Keys derived from the audit
    key, each for one purpose, so a MAC of one kind never stands for another."""

    def __init__(self, audit_key: bytes) -> None:
        self._head_key = _derive(audit_key, HEAD_KEY_PURPOSE)
        self._checkpoint_key = _derive(audit_key, CHECKPOINT_KEY_PURPOSE)

    def head(self, last_id: int, record_count: int, last_hash: str) -> str:
        message = f"certgate-audit-head v1 {last_id} {record_count} {last_hash}"
        return hmac.new(self._head_key, message.encode("ascii"), hashlib.sha256).hexdigest()

    def genesis(self, created_at: datetime) -> str:
        message = f"certgate-audit-genesis v1 {_genesis_time(created_at)}"
        return hmac.new(self._head_key, message.encode("ascii"), hashlib.sha256).hexdigest()

    def checkpoint(self, body: str) -> str:
        return hmac.new(self._checkpoint_key, body.encode("ascii"), hashlib.sha256).hexdigest()

    def head_is_genuine(
        self, last_id: int, record_count: int, last_hash: str, head_mac: str | None
    ) -> bool:
        expected = self.head(last_id, record_count, last_hash)
        return head_mac is not None and hmac.compare_digest(head_mac, expected)


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


def _missing_ranges(ids: Sequence[int], upto: int) -> list[tuple[int, int]]:
    """The runs of ids in 1..upto that ``ids`` (ascending) lacks."""
    ranges: list[tuple[int, int]] = []
    expected = 1
    for record_id in ids:
        if record_id > upto:
            break
        if record_id > expected:
            ranges.append((expected, record_id - 1))
        expected = max(expected, record_id + 1)
    if expected <= upto:
        ranges.append((expected, upto))
    return ranges


class AuditLog:
    def __init__(self, database: Database, key: bytes) -> None:
        self.database = database
        self._key = key
        self.seal = AuditSeal(key)
        # SQLite has no row locks; appends in one process are serialised here, and on PostgreSQL
        # the head row is also locked (SELECT ... FOR UPDATE) across processes.
        self._lock = threading.Lock()
        # The head this process wrote last: see ``append``.
        self._known_head: _Head | None = None

    def _hash(self, previous_hash: str, record: AuditRecord | _NewRecord) -> str:
        message = previous_hash.encode("ascii") + b"\n" + _canonical(record)
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def open(self) -> None:
        """Seal a trail that a migration created without the data key (``Database.migrate()``
        run by hand): a genesis marker without a MAC, and no head and no record yet. Through
        ``certgate`` the migration has the key and seals the trail itself; any other unsealed
        state is left for ``verify`` to report."""
        with self.database.connection() as connection:
            genesis = connection.execute(
                select(AuditGenesis.created_at, AuditGenesis.genesis_mac).where(
                    AuditGenesis.id == GENESIS_ROW_ID
                )
            ).one_or_none()
            if genesis is None or genesis.genesis_mac is not None:
                return
            if _SELECT_HEAD.execute(connection).one_or_none() is not None:
                return
            if connection.execute(select(AuditRecord.id).limit(1)).first() is not None:
                return
            sealed = connection.execute(
                update(AuditGenesis)
                .where(AuditGenesis.id == GENESIS_ROW_ID, AuditGenesis.genesis_mac.is_(None))
                .values(genesis_mac=self.seal.genesis(genesis.created_at))
            ).rowcount
            if sealed == 1:
                connection.execute(insert(AuditHead).values(self.empty_head()))

    def empty_head(self) -> dict[str, object]:
        """The head row of a trail with no record yet."""
        return {
            "id": HEAD_ROW_ID,
            "last_id": 0,
            "last_hash": GENESIS_HASH,
            "record_count": 0,
            "head_mac": self.seal.head(0, 0, GENESIS_HASH),
        }

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
            # read, locked (SELECT ... FOR UPDATE on PostgreSQL), checked against its MAC and
            # moved on the same way.
            known = self._known_head
            for _attempt in range(HEAD_ATTEMPTS):
                if known is None:
                    known = self._read_head(connection)
                record_id = self._advance(connection, entry, known)
                if record_id is not None:
                    return record_id
                known = None
            raise RuntimeError("the audit head keeps moving: another writer holds it")

    def _read_head(self, connection: Connection) -> _Head:
        """The head to chain onto. A missing or forged head is refused: chaining onto it would
        seal whatever truncation put it there."""
        head = _SELECT_HEAD.execute(connection).one_or_none()
        if head is None:
            raise AuditTrailBroken(
                "the audit head is missing (the trail was truncated or never created): "
                "nothing is appended until `certgate audit verify` passes"
            )
        if not self.seal.head_is_genuine(
            head.last_id, head.record_count, head.last_hash, head.head_mac
        ):
            raise AuditTrailBroken(
                "the audit head does not carry a valid MAC (it was altered): nothing is "
                "appended until `certgate audit verify` passes"
            )
        return _Head(head.last_id, head.last_hash, head.record_count)

    def _advance(self, connection: Connection, entry: AuditEntry, known: _Head) -> int | None:
        """Append after the head ``known`` if it is still the head; None if it has moved.

        The id is the head's successor, chosen here rather than by the database, so the record
        is inserted once with its chain hash: inserting it first and updating the hash in after
        cost a statement per attempt (bench/bench_login.py). The conditional UPDATE locks the
        head row for the rest of the transaction, and ``verify`` insists on consecutive ids, so
        nothing else can take this id; a writer that did would fail the insert on the primary
        key, not fork the chain."""
        record_id = known.last_id + 1
        record_count = known.record_count + 1
        chain_hash = self._hash(known.last_hash, _new_record(record_id, entry))
        moved = _ADVANCE_HEAD.execute(
            connection,
            {
                "known_id": known.last_id,
                "known_hash": known.last_hash,
                "last_id_": record_id,
                "last_hash_": chain_hash,
                "record_count_": record_count,
                "head_mac_": self.seal.head(record_id, record_count, chain_hash),
            },
        ).rowcount
        if moved != 1:
            return None
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
                "previous_hash": known.last_hash,
                "chain_hash": chain_hash,
            },
        )
        # Remembered before the transaction commits: if it rolls back instead, the table's head
        # no longer matches, and the next append reads it.
        self._known_head = _Head(record_id, chain_hash, record_count)
        return record_id

    def records(self, *, limit: int | None = None) -> list[AuditRecord]:
        with self.database.session() as session:
            query = select(AuditRecord).order_by(AuditRecord.id.desc())
            if limit:
                query = query.limit(limit)
            return list(reversed(session.scalars(query).all()))

    def verify(self, checkpoint: Checkpoint | None = None) -> list[AuditProblem]:
        """Every inconsistency in the trail; an empty list means it is intact."""
        return self.examine(checkpoint).problems

    def examine(self, checkpoint: Checkpoint | None = None) -> AuditVerdict:
        """The chain, the head, the genesis marker and, if given, a checkpoint (whose MAC the
        caller has checked with ``checkpoint_is_genuine``), read in one transaction."""
        with self.database.session() as session:
            genesis = session.get(AuditGenesis, GENESIS_ROW_ID)
            head = session.get(AuditHead, HEAD_ROW_ID)
            records = session.scalars(select(AuditRecord).order_by(AuditRecord.id)).all()
        problems = self._check_chain(records)
        problems += self._check_genesis(genesis)
        problems += self._check_head(records, head, genesis, gaps=bool(problems))
        if checkpoint is not None:
            problems += _check_checkpoint(records, checkpoint)
        return AuditVerdict(
            problems,
            len(records),
            records[-1].id if records else 0,
            _Head(head.last_id, head.last_hash, head.record_count) if head else None,
        )

    def _check_chain(self, records: Sequence[AuditRecord]) -> list[AuditProblem]:
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
        return problems

    def _check_genesis(self, genesis: AuditGenesis | None) -> list[AuditProblem]:
        if genesis is None:
            return [
                AuditProblem(
                    None,
                    "the audit genesis marker is missing: the trail's tables were emptied "
                    "or replaced",
                )
            ]
        expected = self.seal.genesis(genesis.created_at)
        if genesis.genesis_mac is None or not hmac.compare_digest(genesis.genesis_mac, expected):
            return [
                AuditProblem(
                    None,
                    "the audit genesis marker was altered (its MAC does not match): the "
                    "trail may have been replaced",
                )
            ]
        return []

    def _check_head(
        self,
        records: Sequence[AuditRecord],
        head: AuditHead | None,
        genesis: AuditGenesis | None,
        *,
        gaps: bool,
    ) -> list[AuditProblem]:
        newest = records[-1] if records else None
        newest_id = newest.id if newest else 0
        if head is None:
            begun = f" (the trail was begun {_genesis_time(genesis.created_at)})" if genesis else ""
            if newest is None:
                return [
                    AuditProblem(
                        None,
                        "the audit head is missing and no record remains: every record of "
                        f"the trail is missing{begun}",
                    )
                ]
            return [
                AuditProblem(
                    newest_id,
                    f"the audit head is missing: records after {newest_id} may have been "
                    f"deleted{begun}",
                )
            ]
        if not self.seal.head_is_genuine(
            head.last_id, head.record_count, head.last_hash, head.head_mac
        ):
            return [
                AuditProblem(
                    head.last_id,
                    f"the audit head was altered (its MAC does not match): it claims seq "
                    f"{head.last_id} and {head.record_count} record(s), so newer records may "
                    "have been deleted; verify against a checkpoint "
                    "(certgate audit verify --checkpoint LINE) to name them",
                )
            ]
        problems: list[AuditProblem] = []
        if newest_id < head.last_id:
            problems.append(
                AuditProblem(
                    head.last_id,
                    f"records {newest_id + 1}..{head.last_id} are missing: the trail ends at "
                    f"seq {newest_id}, its head at seq {head.last_id}",
                )
            )
        elif newest_id > head.last_id:
            problems.append(
                AuditProblem(
                    newest_id,
                    f"records {head.last_id + 1}..{newest_id} were added behind the head's back",
                )
            )
        elif newest is not None and newest.chain_hash != head.last_hash:
            problems.append(AuditProblem(newest_id, "the newest record does not match the head"))
        if not problems and not gaps and head.record_count != len(records):
            problems.append(
                AuditProblem(
                    None,
                    f"the head counts {head.record_count} record(s), the trail holds "
                    f"{len(records)}",
                )
            )
        return problems

    def checkpoint(self, at: datetime) -> Checkpoint:
        """A signed checkpoint of the trail's newest record; AuditTrailBroken (with the
        problems) when the trail is not intact, as a checkpoint vouches for all before it."""
        verdict = self.examine()
        if verdict.problems or verdict.head is None:
            raise AuditTrailBroken("the audit trail is not intact", verdict.problems)
        head = verdict.head
        unsigned = Checkpoint(
            head.last_id, head.record_count, head.last_hash, at.replace(microsecond=0), ""
        )
        return Checkpoint(
            unsigned.seq,
            unsigned.record_count,
            unsigned.head_hash,
            unsigned.at,
            self.seal.checkpoint(unsigned.body()),
        )

    def checkpoint_is_genuine(self, checkpoint: Checkpoint) -> bool:
        return hmac.compare_digest(checkpoint.mac, self.seal.checkpoint(checkpoint.body()))


def _check_checkpoint(records: Sequence[AuditRecord], checkpoint: Checkpoint) -> list[AuditProblem]:
    """What the trail lost or changed up to the checkpoint's newest record."""
    seq = checkpoint.seq
    taken = checkpoint.at.strftime(CHECKPOINT_TIME_FORMAT)
    newest_id = records[-1].id if records else 0
    problems: list[AuditProblem] = []
    for first, last in _missing_ranges([r.id for r in records], seq):
        if last == seq and newest_id < seq:
            problems.append(
                AuditProblem(
                    None,
                    f"the trail ends at seq {newest_id} but the checkpoint of {taken} saw seq "
                    f"{seq}: records {first}..{last} are missing",
                )
            )
        else:
            problems.append(
                AuditProblem(
                    first,
                    f"records {first}..{last} are missing since the checkpoint of {taken}",
                )
            )
    at_seq = next((r for r in reversed(records) if r.id == seq), None)
    if at_seq is not None and not hmac.compare_digest(at_seq.chain_hash, checkpoint.head_hash):
        problems.append(
            AuditProblem(
                seq,
                f"record {seq} is not the one the checkpoint of {taken} saw: the records up to "
                f"seq {seq} were replaced or rewritten",
            )
        )
    held = sum(1 for r in records if r.id <= seq)
    if not problems and held != checkpoint.record_count:
        problems.append(
            AuditProblem(
                None,
                f"the checkpoint of {taken} counted {checkpoint.record_count} record(s) up to "
                f"seq {seq}, the trail holds {held}",
            )
        )
    return problems


def init_app(app: Flask, database: Database, key: bytes) -> AuditLog:
    log = AuditLog(database, key)
    log.open()
    app.extensions[EXTENSION] = log
    return log


def get_audit_log(app: Flask | None = None) -> AuditLog:
    return (app or current_app).extensions[EXTENSION]
