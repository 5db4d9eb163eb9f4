"""The database extension: engine, sessions, and the Alembic migrations run at start-up."""

from __future__ import annotations

import fcntl
import os
import select
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
from sqlalchemy.exc import DisconnectionError
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


def _closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool check-out of a server database's connection: refuse one the server has closed,
    without a round trip. Between units of work a live connection has nothing to read; a server
    that restarts or ends the session writes its last error and closes the socket, which then
    reads as ready (or hung up). SQLAlchemy discards a connection refused here and takes a new
    one, so the first request after a restart gets a fresh connection and the gateway recovers
    with no restart of its own. A server that vanished without closing the socket is met by the
    request's first statement: SQLAlchemy then replaces every connection older than that error.

    ``pool_pre_ping`` did the same with a ``SELECT 1`` per check-out: one round trip, and a
    wake-up of the server's backend, for every unit of work, several per login
    (bench/bench_scale.py)."""
    try:
        descriptor = dbapi_connection.fileno()
    except Exception:  # noqa: BLE001 - closed or broken: the driver's own error classes
        raise DisconnectionError("database connection closed") from None
    poller = select.poll()
    poller.register(descriptor, select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        raise DisconnectionError("the database server closed this connection")


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError and others
        raise ConfigError(f"database_url: not a database URL ({exc.__class__.__name__})") from None
    if parsed.get_backend_name() == "sqlite":
        # Each thread keeps a connection (Database.connection), so the pool must not cap the
        # number of threads: SQLite connections are a file handle and a page cache each.
        engine = create_engine(parsed, max_overflow=-1)
    else:
        # A server database may restart under the gateway: each connection is checked before
        # it is handed out, so the first request after a restart gets a fresh connection
        # instead of a dead one, and the gateway recovers with no restart of its own. On
        # PostgreSQL the check looks at the socket (_closed_by_server, no round trip); other
        # servers get SQLAlchemy's pre-ping (a round trip per check-out). A down server answers
        # "connection refused" at once; connect_timeout bounds the rest.
        postgresql = parsed.get_backend_name() == "postgresql"
        engine = create_engine(
            parsed,
            pool_pre_ping=not postgresql,
            pool_size=10,
            max_overflow=10,
            pool_timeout=5,
            connect_args={"connect_timeout": 3} if postgresql else {},
        )
        if postgresql:
            event.listen(engine, "checkout", _closed_by_server)
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
        # The Core connection a thread has open, if any: ``connection()`` calls inside it join
        # its transaction (one commit) instead of opening another.
        self._open = threading.local()
        # SQLite: the connection each thread keeps between its units of work (see connection()),
        # and all of them, to close with the database.
        self._kept = threading.local()
        self._all_kept: list[Connection] = []
        self._kept_lock = threading.Lock()
        self._keep_connections = self.engine.dialect.name == "sqlite"
        self._process_claim: str | None = None

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

        For the few small statements each login runs (sessions, audit records, binding look-ups):
        an ORM ``Session`` with its unit of work and identity map costs several times the
        statement itself, and these statements need neither (bench/bench_login.py).

        Nested in another ``connection()`` on the same thread it joins that transaction, so a
        caller can make several stores' writes one commit: a successful login's session and
        audit record commit together, where each used to pay its own begin, commit and turn on
        the lock (bench/bench_login.py)."""
        joined = getattr(self._open, "connection", None)
        if joined is not None:
            yield joined
            return
        if not self._keep_connections:
            with self._taking_turns(), self.engine.begin() as connection:
                self._open.connection = connection
                try:
                    yield connection
                finally:
                    self._open.connection = None
            return
        with self._taking_turns():
            connection = self._kept_connection()
            self._open.connection = connection
            try:
                with connection.begin():
                    yield connection
            except BaseException:
                # Rolled back by begin(); after a failure the next unit of work gets a fresh
                # connection rather than one in a state nobody has looked at.
                self._drop_kept(connection)
                raise
            finally:
                self._open.connection = None

    def _kept_connection(self) -> Connection:
        """This thread's connection, kept checked out between its units of work (SQLite only).

        Checking a connection out of the pool and back in, with the ``Connection`` built
        around it, cost about a tenth of a certificate login (bench/bench_login.py); a thread
        runs one unit of work at a time, so it can keep its own. Idle between units of work:
        no transaction stays open, so no read snapshot goes stale and checkpoints are not held
        up. The server's worker threads live as long as it does; a thread that ends leaves its
        connection to ``close()``."""
        connection: Connection | None = getattr(self._kept, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self.engine.connect()
            self._kept.connection = connection
            with self._kept_lock:
                self._all_kept.append(connection)
        return connection

    def _drop_kept(self, connection: Connection) -> None:
        self._kept.connection = None
        with self._kept_lock:
            if connection in self._all_kept:
                self._all_kept.remove(connection)
        connection.close()

    def claim_single_process(self) -> None:
        """Refuse to start when another process already answers logins from this SQLite file
        with its own in-process state (``state_store = "memory"``): each would keep its own
        challenges and attempt counters, so rate limits would count per process and a challenge
        issued by one could not be answered at the other. An advisory lock file next to the
        database, held while this ``Database`` is open; other databases are not checked."""
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if not path or path == ":memory:" or path.startswith("file:"):
            return
        lock_path = os.path.abspath(path) + ".state-lock"
        with _CLAIMS_LOCK:
            held = _CLAIMS.get(lock_path)
            if held is None:
                descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(descriptor)
                    raise ConfigError(
                        f'state_store: "memory" and another CertGate process is already '
                        f'serving {path}; give every process state_store = "database" '
                        "(or run one process)"
                    ) from None
                held = _CLAIMS[lock_path] = [descriptor, 0]
            held[1] += 1
        self._process_claim = lock_path

    def _release_claim(self) -> None:
        if self._process_claim is None:
            return
        with _CLAIMS_LOCK:
            held = _CLAIMS[self._process_claim]
            held[1] -= 1
            if held[1] == 0:
                del _CLAIMS[self._process_claim]
                os.close(held[0])  # closing the descriptor releases the flock
        self._process_claim = None

    def migrate(self, *, personal_data: Any = None) -> None:
        """Bring the schema to the newest revision. ``personal_data``: the gateway's
        ``PersonalDataCipher``, for revisions that seal data already stored (0004)."""
        with self.engine.begin() as connection:
            config = alembic_config(connection)
            config.attributes["personal_data_cipher"] = personal_data
            command.upgrade(config, "head")

    def current_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(alembic_config(None)).get_current_head()

    def close(self) -> None:
        self._release_claim()
        with self._kept_lock:
            kept, self._all_kept = self._all_kept, []
        for connection in kept:
            connection.close()
        self.engine.dispose()


# flock is held per open file description, and one process may open several apps on one file
# (tests, the bench's set-up): the process's claims are counted here, not per Database.
_CLAIMS: dict[str, list[int]] = {}
_CLAIMS_LOCK = threading.Lock()


def init_app(app: Flask, *, personal_data: Any = None) -> Database:
    database = Database(app.config["DATABASE_URL"])
    if app.config["MIGRATE_ON_START"]:
        database.migrate(personal_data=personal_data)
    elif database.current_revision() != database.head_revision():
        raise ConfigError(
            "database_url: the database schema is not at the newest revision and "
            "migrate_on_start is false; run `certgate serve` once with migrations on"
        )
    app.extensions[EXTENSION] = database
    return database


def get_database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[EXTENSION]
