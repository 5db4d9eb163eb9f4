"""The database extension: engine, sessions, and the Alembic migrations run at start-up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import ConfigError

EXTENSION = "certgate.database"
SCRIPT_LOCATION = "gateway:migrations"


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA busy_timeout = 5000")
    # Write-ahead log: readers and the one writer no longer block each other (a login reads
    # limits and accounts while other requests write attempts, sessions and audit records), and a
    # commit appends to the log instead of rewriting pages through a rollback journal. With
    # synchronous=NORMAL a commit is not fsynced on its own (the log is, at checkpoints): an
    # application crash loses nothing, a power cut may lose the newest commits but never corrupts
    # the database or the audit chain. Measured with bench/bench_login.py: the rollback journal's
    # fsyncs per commit made a login cost ~30 bare requests, most of it waiting on the disk.
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError and others
        raise ConfigError(f"database_url: not a database URL ({exc.__class__.__name__})") from None
    engine = create_engine(parsed)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def alembic_config(engine_connection: Any) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = engine_connection
    return config


class Database:
    """Holds the engine and the session factory of one app."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite allows one writer at a time and makes the others poll with growing sleeps
        # (busy_timeout: 1, 2, 5, 10 ... 100 ms), which under concurrent logins cost more than the
        # work itself (p99 in the hundreds of milliseconds in bench/bench_login.py). Within one
        # process, units of work take turns on this lock instead; other processes still meet
        # busy_timeout. Re-entrant, as a unit of work may open another on the same thread.
        self._turn: threading.RLock | None = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else None
        )

    @contextmanager
    def _taking_turns(self) -> Iterator[None]:
        if self._turn is None:
            yield
            return
        with self._turn:
            yield

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any exception."""
        with self._taking_turns(), self.session_factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A Core connection in one transaction, committed on success, rolled back on error.

        For the few small statements each login runs (attempt counts, challenges, sessions,
        binding look-ups): an ORM ``Session`` with its unit of work and identity map costs several
        times the statement itself, and these statements need neither (bench/bench_login.py)."""
        with self._taking_turns(), self.engine.begin() as connection:
            yield connection

    def migrate(self) -> None:
        """Bring the schema to the newest revision."""
        with self.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")

    def current_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(alembic_config(None)).get_current_head()

    def close(self) -> None:
        self.engine.dispose()


def init_app(app: Flask) -> Database:
    database = Database(app.config["DATABASE_URL"])
    if app.config["MIGRATE_ON_START"]:
        database.migrate()
    elif database.current_revision() != database.head_revision():
        raise ConfigError(
            "database_url: the database schema is not at the newest revision and "
            "migrate_on_start is false; run `certgate serve` once with migrations on"
        )
    app.extensions[EXTENSION] = database
    return database


def get_database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[EXTENSION]
