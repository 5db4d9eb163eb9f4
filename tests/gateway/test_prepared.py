"""Prepared statements give what Connection.execute gives: same rows, same types, same errors,
on SQLite and on a throw-away PostgreSQL (tests/fixtures_databases.py; skipped without it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, delete, event, exc, func, insert, select, text, update

from gateway.storage.database import Database
from gateway.storage.models import (
    AuditHead,
    CertificateDetails,
    Challenge,
    LoginSession,
    TrustAnchorRecord,
)
from gateway.storage.prepared import Prepared
from tests.fixtures_databases import PostgresServer, available

AT = datetime(2026, 11, 22, 8, 30, 15, 123456, tzinfo=UTC)
BEIJING = timezone(timedelta(hours=8))

INSERT = Prepared(insert(Challenge))
SELECT = Prepared(select(Challenge.__table__).where(Challenge.id == bindparam("id")))
USE = Prepared(
    update(Challenge)
    .where(Challenge.id == bindparam("challenge_id"), Challenge.used_at.is_(None))
    .values(used_at=bindparam("at"))
)
DELETE = Prepared(delete(Challenge).where(Challenge.expires_at < bindparam("before")))
COUNT = Prepared(select(func.count()).select_from(Challenge))
HEAD = Prepared(select(AuditHead.last_id).where(AuditHead.id == 1))  # a value in the statement
INSERT_DETAILS = Prepared(insert(CertificateDetails))
SELECT_DETAILS = Prepared(
    select(CertificateDetails.__table__).where(
        CertificateDetails.thumbprint == bindparam("thumbprint")
    )
)
INSERT_ANCHOR = Prepared(
    insert(TrustAnchorRecord).values(
        {
            name: bindparam(name)
            for name in (
                "name",
                "thumbprint",
                "subject",
                "certificate_pem",
                "revocation_mode",
                "crl_sources",
                "hardware_keys",
                "created_at",
            )
        }
    )
)
SELECT_ANCHOR = Prepared(
    select(
        TrustAnchorRecord.name,
        TrustAnchorRecord.hardware_keys,
        TrustAnchorRecord.intermediates_pem,
        TrustAnchorRecord.created_at,
    ).where(TrustAnchorRecord.name == bindparam("name"))
)
SESSION_OF = Prepared(select(LoginSession.id_hash).where(LoginSession.id_hash == bindparam("h")))


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[Database]:
    if not available():
        pytest.skip("postgresql is not installed (make test installs it)")
    server = PostgresServer()
    database = Database(server.url)
    try:
        database.migrate()
        yield database
    finally:
        database.close()
        server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'prepared.sqlite3'}")
        database.migrate()
        yield database
        database.close()
        return
    database = request.getfixturevalue("postgres_database")
    yield database
    with database.connection() as connection:  # the next test starts from empty tables
        for table in (Challenge, CertificateDetails, TrustAnchorRecord):
            connection.execute(delete(table))


def challenge(challenge_id: str) -> dict[str, object]:
    return {
        "id": challenge_id,
        "nonce": "n-" + challenge_id,
        "binding_hash": "b" * 64,
        "created_at": AT,
        "expires_at": AT,
        "used_at": None,
    }


def same(prepared: Any, core: Any) -> None:
    """Equal values of the same Python types, column by column."""
    assert tuple(prepared) == tuple(core)
    assert [type(value) for value in prepared] == [type(value) for value in core]


def test_rows_and_types_match_core(database: Database) -> None:
    with database.connection() as connection:
        INSERT.execute(connection, challenge("c1"))
    with database.connection() as connection:
        prepared = SELECT.execute(connection, {"id": "c1"}).one_or_none()
        core = connection.execute(SELECT.statement, {"id": "c1"}).one()
    same(prepared, core)
    assert prepared.expires_at == AT and prepared.expires_at.tzinfo is UTC
    assert prepared.used_at is None


def test_bytes_booleans_and_other_time_zones_round_trip_as_through_core(
    database: Database,
) -> None:
    sealed = bytes(range(256))
    details = {
        "issuer_serial": "CN=CA,O=X|01",
        "subject_sealed": sealed,
        "issuer": "CN=测试 CA",
        "not_after": datetime(2027, 1, 1, 8, 0, tzinfo=BEIJING),  # stored and read as UTC
        "recorded_at": AT,
    }
    anchor = {
        "subject": "CN=Root",
        "certificate_pem": "-----BEGIN CERTIFICATE-----",
        "revocation_mode": "hard-fail",
        "crl_sources": "[]",
        "created_at": AT,
    }
    with database.connection() as connection:
        INSERT_DETAILS.execute(connection, {**details, "thumbprint": "p" * 64})
        connection.execute(INSERT_DETAILS.statement, {**details, "thumbprint": "c" * 64})
        for name, hardware in (("p", True), ("c", False)):
            row = {**anchor, "name": name, "thumbprint": name * 64, "hardware_keys": hardware}
            if name == "p":
                INSERT_ANCHOR.execute(connection, row)
            else:
                connection.execute(INSERT_ANCHOR.statement, row)
    with database.connection() as connection:
        for key in ("p", "c"):  # written by Prepared, by Core: read by both alike
            prepared = SELECT_DETAILS.execute(connection, {"thumbprint": key * 64}).one_or_none()
            core = connection.execute(SELECT_DETAILS.statement, {"thumbprint": key * 64}).one()
            same(prepared, core)
            assert prepared.subject_sealed == sealed and type(prepared.subject_sealed) is bytes
            assert prepared.not_after == datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
            assert prepared.not_after.tzinfo is UTC
            prepared = SELECT_ANCHOR.execute(connection, {"name": key}).one_or_none()
            core = connection.execute(SELECT_ANCHOR.statement, {"name": key}).one()
            same(prepared, core)
            assert prepared.hardware_keys is (key == "p")
            assert prepared.intermediates_pem is None


def test_rowcount_of_updates_and_deletes(database: Database) -> None:
    with database.connection() as connection:
        INSERT.execute(connection, challenge("c2"))
        INSERT.execute(connection, challenge("c2b"))
        assert USE.execute(connection, {"challenge_id": "c2", "at": AT}).rowcount == 1
        assert USE.execute(connection, {"challenge_id": "c2", "at": AT}).rowcount == 0
        assert SELECT.execute(connection, {"id": "c2"}).one_or_none().used_at == AT
        assert DELETE.execute(connection, {"before": AT}).rowcount == 0
        assert DELETE.execute(connection, {"before": AT + timedelta(seconds=1)}).rowcount == 2


def test_unnamed_columns_and_values_inside_the_statement(database: Database) -> None:
    with database.connection() as connection:
        assert COUNT.execute(connection).rows[0][0] == 0
        assert HEAD.execute(connection).one_or_none() is None


def test_rolled_back_with_the_callers_transaction(database: Database) -> None:
    with pytest.raises(RuntimeError), database.connection() as connection:
        INSERT.execute(connection, challenge("c3"))
        raise RuntimeError("the caller failed")
    with database.connection() as connection:
        assert SELECT.execute(connection, {"id": "c3"}).one_or_none() is None


def test_driver_errors_are_sqlalchemy_errors(database: Database) -> None:
    with database.connection() as connection:
        INSERT.execute(connection, challenge("c4"))
    with pytest.raises(exc.IntegrityError), database.connection() as connection:
        INSERT.execute(connection, challenge("c4"))
    with database.connection() as connection:  # the connection is usable again
        assert SELECT.execute(connection, {"id": "c4"}).one_or_none() is not None


def test_a_missing_parameter_is_refused(database: Database) -> None:
    with pytest.raises(exc.ArgumentError, match="id"), database.connection() as connection:
        SELECT.execute(connection, {})


def test_on_postgresql_the_statements_run_on_the_drivers_cursor(
    postgres_database: Database,
) -> None:
    """Not through Connection.execute (whose per-call machinery they exist to skip)."""
    through_core: list[object] = []
    engine = postgres_database.engine

    def executed(*_args: object) -> None:
        through_core.append(_args)

    event.listen(engine, "before_execute", executed)
    try:
        with postgres_database.connection() as connection:
            INSERT.execute(connection, challenge("c5"))
            assert SELECT.execute(connection, {"id": "c5"}).one_or_none().id == "c5"
            assert USE.execute(connection, {"challenge_id": "c5", "at": AT}).rowcount == 1
            connection.execute(delete(Challenge))
    finally:
        event.remove(engine, "before_execute", executed)
    assert len(through_core) == 1  # the DELETE only


def test_a_connection_the_server_ended_is_invalidated_as_by_core(
    postgres_database: Database,
) -> None:
    """The server ends the session mid-transaction (a restart, an administrator): the error is
    SQLAlchemy's OperationalError marked as a lost connection, the connection is replaced, and
    the next unit of work runs, as with Connection.execute."""
    errors: list[exc.DBAPIError] = []
    for run in (lambda c: SESSION_OF.execute(c, {"h": "x"}), lambda c: c.execute(text("SELECT 1"))):
        with pytest.raises(exc.OperationalError) as raised:
            with postgres_database.connection() as connection:
                backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
                with postgres_database.engine.connect() as other:
                    other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
                run(connection)
        errors.append(raised.value)
        with postgres_database.connection() as connection:
            assert SESSION_OF.execute(connection, {"h": "x"}).one_or_none() is None
    prepared, core = errors
    assert prepared.connection_invalidated and core.connection_invalidated
