"""Storage: migrations match the models; personal data is sealed at rest and found by keyed hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask
from sqlalchemy import create_engine, text

from gateway.accounts import AccountService
from gateway.clock import FixedClock
from gateway.storage.database import Database
from gateway.storage.models import Base
from gateway.storage.personal_data import PersonalDataCipher

ID_NUMBER = "11010519491231002X"
PHONE = "13800138000"


def test_migrations_reach_head_and_match_the_models(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'schema.sqlite3'}")
    database.migrate()
    assert database.current_revision() == database.head_revision()
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    database.migrate()  # idempotent
    database.close()


def test_personal_data_is_sealed_at_rest(
    app: Flask, accounts: AccountService, clock: FixedClock
) -> None:
    view = accounts.create_person(
        real_name="张三", id_card_number=ID_NUMBER, phone=PHONE, at=clock.now()
    )
    raw = Path(app.config["DATABASE_URL"].removeprefix("sqlite:///")).read_bytes()
    assert ID_NUMBER.encode() not in raw and PHONE.encode() not in raw
    assert view.id_card_number_masked == "1101************2X"
    found = accounts.find_by_identifier(PHONE)
    assert found is not None and found.public_id == view.id
    with app.extensions["certgate.database"].engine.connect() as connection:
        sealed = connection.execute(text("SELECT id_card_number_sealed FROM accounts")).scalar()
    assert accounts.cipher.open("accounts.id_card_number", sealed) == ID_NUMBER
    with pytest.raises(ValueError):
        accounts.cipher.open("accounts.phone", sealed)  # bound to its column


def test_another_data_key_cannot_open_or_find(accounts: AccountService, clock: FixedClock) -> None:
    accounts.create_person(real_name="张三", id_card_number=ID_NUMBER, at=clock.now())
    other = PersonalDataCipher(bytes(32))
    sealed = accounts.cipher.seal("accounts.phone", PHONE)
    with pytest.raises(ValueError):
        other.open("accounts.phone", sealed)
    assert other.lookup_hash("phone", PHONE) != accounts.cipher.lookup_hash("phone", PHONE)


def test_timestamps_come_back_aware_utc(accounts: AccountService, clock: FixedClock) -> None:
    view = accounts.create_person(real_name="张三", id_card_number=ID_NUMBER, at=clock.now())
    account = accounts.find(view.id)
    assert account.created_at == clock.now() and account.created_at.tzinfo is not None


def test_schema_is_created_only_by_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    Database(url).migrate()
    engine = create_engine(url)
    with engine.connect() as connection:
        tables = set(
            connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table'")
            ).scalars()
        )
    engine.dispose()
    assert {
        "accounts",
        "certificate_bindings",
        "trust_anchors",
        "challenges",
        "sessions",
        "attempt_counters",
        "audit_records",
        "audit_head",
        "alembic_version",
    } <= tables


def test_a_challenge_is_consumed_exactly_once_under_concurrency(
    tmp_path: Path, clock: FixedClock
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from gateway.stores import ChallengeRecord, SqlChallengeStore

    database = Database(f"sqlite:///{tmp_path / 'race.sqlite3'}")
    database.migrate()
    store = SqlChallengeStore(database)
    now = clock.now()
    store.put(ChallengeRecord("c1", "n" * 43, "b" * 64, now, None), created_at=now)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda _: store.consume("c1", binding_hash="b" * 64, at=now), range(16))
        )
    assert sum(1 for r in results if r is not None and r.used_at is None) == 1
    assert all(r is not None for r in results)
    assert store.consume("c1", binding_hash="x" * 64, at=now) is None
    database.close()


def test_schema_compiles_for_postgresql() -> None:
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    ddl = "\n".join(
        str(CreateTable(table).compile(dialect=postgresql.dialect()))
        for table in Base.metadata.sorted_tables
    )
    assert "TIMESTAMP WITH TIME ZONE" in ddl
    assert "BYTEA" in ddl and "BIGSERIAL" in ddl


def test_upgrade_from_the_first_revision_keeps_data(tmp_path: Path, clock: FixedClock) -> None:
    from alembic import command

    from gateway.storage.database import alembic_config

    database = Database(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    with database.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            text(
                "INSERT INTO trust_anchors (name, thumbprint, subject, certificate_pem, "
                "revocation_mode, crl_sources, created_at) "
                "VALUES ('old', 'ab', 'CN=old', 'pem', 'off', '[]', '2026-01-01 00:00:00')"
            )
        )
    database.migrate()
    assert database.current_revision() == database.head_revision()
    with database.engine.connect() as connection:
        row = connection.execute(text("SELECT name, intermediates_pem FROM trust_anchors")).one()
    assert tuple(row) == ("old", None)
    database.close()


def test_threads_keep_their_connection_and_a_failure_replaces_it(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'kept.sqlite3'}")
    database.migrate()
    with database.connection() as first:
        first.execute(text("CREATE TABLE notes (body TEXT)"))
    with database.connection() as again:
        assert again is first  # kept between units of work
        again.execute(text("INSERT INTO notes VALUES ('kept')"))
    with pytest.raises(RuntimeError), database.connection() as failing:
        failing.execute(text("INSERT INTO notes VALUES ('rolled back')"))
        raise RuntimeError("the unit of work failed")
    with database.connection() as fresh:
        assert fresh is not first and first.closed
        assert fresh.execute(text("SELECT body FROM notes")).scalars().all() == ["kept"]
    database.close()
    assert fresh.closed


def test_more_threads_than_the_pool_size_all_get_a_connection(tmp_path: Path) -> None:
    # Every thread keeps a connection, so the pool must not make the 16th thread wait.
    import threading

    database = Database(f"sqlite:///{tmp_path / 'threads.sqlite3'}")
    database.migrate()
    with database.connection() as connection:
        connection.execute(text("CREATE TABLE hits (n INTEGER)"))
    started = threading.Barrier(24)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            with database.connection() as connection:
                connection.execute(text("INSERT INTO hits VALUES (:n)"), {"n": n})
            started.wait(timeout=20)  # all 24 hold a kept connection at once
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with database.connection() as connection:
        assert connection.execute(text("SELECT count(*) FROM hits")).scalar() == 24
    database.close()
