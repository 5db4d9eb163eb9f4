"""Prepared statements give what Connection.execute gives: same rows, same types, same errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import bindparam, exc, func, insert, select, update

from gateway.storage.database import Database
from gateway.storage.models import AuditHead, Challenge
from gateway.storage.prepared import Prepared

AT = datetime(2026, 11, 22, 8, 30, 15, 123456, tzinfo=UTC)

INSERT = Prepared(insert(Challenge))
SELECT = Prepared(select(Challenge.__table__).where(Challenge.id == bindparam("id")))
USE = Prepared(
    update(Challenge)
    .where(Challenge.id == bindparam("id"), Challenge.used_at.is_(None))
    .values(used_at=bindparam("at"))
)
COUNT = Prepared(select(func.count()).select_from(Challenge))
HEAD = Prepared(select(AuditHead.last_id).where(AuditHead.id == 1))  # a value in the statement


@pytest.fixture
def database(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'prepared.sqlite3'}")
    database.migrate()
    yield database
    database.close()


def challenge(challenge_id: str) -> dict[str, object]:
    return {
        "id": challenge_id,
        "nonce": "n-" + challenge_id,
        "binding_hash": "b" * 64,
        "created_at": AT,
        "expires_at": AT,
        "used_at": None,
    }


def test_rows_and_types_match_core(database: Database) -> None:
    with database.connection() as connection:
        INSERT.execute(connection, challenge("c1"))
    with database.connection() as connection:
        prepared = SELECT.execute(connection, {"id": "c1"}).one_or_none()
        core = connection.execute(SELECT.statement, {"id": "c1"}).one()
    assert tuple(prepared) == tuple(core)
    assert prepared.expires_at == AT and prepared.expires_at.tzinfo is UTC
    assert prepared.used_at is None


def test_rowcount_and_the_single_use_update(database: Database) -> None:
    with database.connection() as connection:
        INSERT.execute(connection, challenge("c2"))
        assert USE.execute(connection, {"id": "c2", "at": AT}).rowcount == 1
        assert USE.execute(connection, {"id": "c2", "at": AT}).rowcount == 0
        assert SELECT.execute(connection, {"id": "c2"}).one_or_none().used_at == AT


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


def test_a_missing_parameter_is_refused(database: Database) -> None:
    with pytest.raises(exc.ArgumentError, match="id"), database.connection() as connection:
        SELECT.execute(connection, {})
