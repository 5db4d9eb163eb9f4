"""The Redis state stores against a real Redis, and the migrations on a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from certs.revocation.ocsp import OcspCertId
from certs.revocation.status import RevocationState, RevocationStatus
from gateway.storage.database import alembic_config, make_engine
from gateway.storage.redis_state import (
    RedisAttemptStore,
    RedisChallengeStore,
    RedisOcspCache,
    StateStoreUnavailable,
    connect,
)
from gateway.stores import ChallengeRecord, MemoryAttemptStore
from tests.fixtures_databases import PostgresServer, RedisServer, free_port

AT = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
STREAK = {"threshold": 3, "window": timedelta(minutes=15), "duration": timedelta(minutes=15)}
BINDING = "b" * 64


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    made = connect(redis_server.url)
    made.flushdb()
    return made


def _attempt_story(store: Any, start: datetime) -> list[Any]:
    seen: list[Any] = []
    admitted = [store.admit("k", limit=3, window=WINDOW, at=start) for _ in range(4)]
    seen.append([a.admitted for a in admitted])
    seen.append(admitted[-1].retry_at)
    store.give_back(admitted[0], end_streak=True)
    seen.append(store.admit("k", limit=3, window=WINDOW, at=start).admitted)
    later = start + WINDOW
    seen.append([store.admit("k", limit=3, window=WINDOW, at=later).admitted for _ in range(4)])
    seen.append([store.failed("p", at=start, **STREAK) for _ in range(3)])
    seen.append(store.locked_until("p", at=start))
    seen.append(store.locked_until("p", at=start + timedelta(minutes=15)))
    for _ in range(2):
        store.failed("q", at=start, **STREAK)
    store.give_back(store.admit("q", limit=9, window=WINDOW, at=start), end_streak=True)
    seen.append([store.failed("q", at=start, **STREAK) for _ in range(2)])
    store.failed("r", at=start, **STREAK)
    store.failed("r", at=start, **STREAK)
    seen.append(store.failed("r", at=start + timedelta(minutes=15), **STREAK))
    return seen


def test_redis_attempts_count_like_the_in_process_store(client: redis.Redis) -> None:
    assert _attempt_story(RedisAttemptStore(client), AT) == _attempt_story(MemoryAttemptStore(), AT)


def test_a_login_gives_back_its_address_and_certificate_together_even_after_redis_lost_scripts(
    client: redis.Redis,
) -> None:
    # A successful login gives back both of its admissions in one pipeline; a Redis that lost
    # its scripts (restarted) meanwhile must still have both given back, each exactly once.
    store = RedisAttemptStore(client)
    memory = MemoryAttemptStore()
    for flushed in (False, True):
        for each in (store, memory):
            admissions = [
                each.admit(key, limit=2, window=WINDOW, at=AT)
                for key in (f"address:{flushed}", f"certificate:{flushed}")
                for _ in range(2)
            ]
            each.failed(f"certificate:{flushed}", at=AT, **STREAK)
            each.failed(f"certificate:{flushed}", at=AT, **STREAK)
            if flushed and each is store:
                client.script_flush()
            each.give_back_all([admissions[1], admissions[3]], end_streak=True)
        for key in (f"address:{flushed}", f"certificate:{flushed}"):
            # One slot of two free again, in both stores; the certificate's streak ended.
            assert (
                [store.admit(key, limit=2, window=WINDOW, at=AT).admitted for _ in range(2)]
                == [memory.admit(key, limit=2, window=WINDOW, at=AT).admitted for _ in range(2)]
                == [True, False]
            )
        assert store.failed(f"certificate:{flushed}", at=AT, **STREAK) is None


def test_a_connection_the_database_server_closed_is_replaced_before_use(
    postgres: PostgresServer,
) -> None:
    # PostgreSQL ending a pooled connection (a restart, an administrator) must not fail the
    # next request: the pool notices the closed socket at check-out and connects again.
    engine = make_engine(postgres.url)
    try:
        with engine.connect() as connection:
            first = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        killer = create_engine(postgres.url)
        with killer.connect() as connection:
            assert connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": first}
            ).scalar_one()
        killer.dispose()
        time.sleep(0.2)  # the server's last message and the socket's close reach this side
        with engine.connect() as connection:
            second = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first
    finally:
        engine.dispose()


def test_a_limit_admits_exactly_its_count_across_processes(redis_server: RedisServer) -> None:
    # Forty attempts from eight connections (as from eight gateway processes) at a limit of 5.
    stores = [RedisAttemptStore(connect(redis_server.url)) for _ in range(8)]
    stores[0].redis.flushdb()
    admitted: list[bool] = []
    lock = threading.Lock()

    def attempt(store: RedisAttemptStore) -> None:
        for _ in range(5):
            answer = store.admit("password:x", limit=5, window=WINDOW, at=AT).admitted
            with lock:
                admitted.append(answer)

    threads = [threading.Thread(target=attempt, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 5 and len(admitted) == 40


def test_a_challenge_is_won_once_across_processes(redis_server: RedisServer) -> None:
    stores = [RedisChallengeStore(connect(redis_server.url)) for _ in range(8)]
    stores[0].put(ChallengeRecord("c1", "nonce", BINDING, AT + WINDOW, None), created_at=AT)
    winners: list[int] = []

    def consume(n: int) -> None:
        found = stores[n].consume("c1", binding_hash=BINDING, at=AT)
        if found is not None and found.used_at is None:
            winners.append(n)

    threads = [threading.Thread(target=consume, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    replay = stores[3].consume("c1", binding_hash=BINDING, at=AT)
    assert replay is not None and replay.used_at == AT  # challenge_used, not unknown
    # Another pre-login cookie neither sees nor spends it.
    stores[0].put(ChallengeRecord("c2", "nonce", BINDING, AT + WINDOW, None), created_at=AT)
    assert stores[1].consume("c2", binding_hash="c" * 64, at=AT) is None
    fresh = stores[2].consume("c2", binding_hash=BINDING, at=AT)
    assert fresh is not None and fresh.used_at is None and fresh.nonce == "nonce"


def test_an_ocsp_answer_verified_by_one_process_serves_another(
    client: redis.Redis, redis_server: RedisServer
) -> None:
    cert_id = OcspCertId("sha1", b"\x01" * 20, b"\x02" * 20, 12345)
    good = RevocationStatus(
        RevocationState.GOOD, "ocsp", this_update=AT, next_update=AT + timedelta(hours=1)
    )
    first, second = RedisOcspCache(client), RedisOcspCache(connect(redis_server.url))
    assert second.get(cert_id, at=AT) is None
    first.put(cert_id, good, valid_from=AT, valid_until=AT + timedelta(hours=1))
    assert second.get(cert_id, at=AT + timedelta(minutes=5)) == good
    assert second.get(cert_id, at=AT + timedelta(hours=2)) is None  # past nextUpdate
    # A final REVOKED is not replaced by a later GOOD from a lagging responder.
    revoked = RevocationStatus(RevocationState.REVOKED, "ocsp", reason="key_compromise")
    first.put(cert_id, revoked, valid_from=AT, valid_until=AT + timedelta(hours=1))
    third = RedisOcspCache(client)
    third.put(cert_id, good, valid_from=AT, valid_until=AT + timedelta(hours=1))
    assert RedisOcspCache(client).get(cert_id, at=AT) == revoked


def test_redis_away_is_unavailable_within_a_second() -> None:
    store = RedisAttemptStore(connect(f"redis://127.0.0.1:{free_port()}/0"))
    started = time.monotonic()
    with pytest.raises(StateStoreUnavailable) as raised:
        store.admit("address:192.0.2.1", limit=5, window=WINDOW, at=AT)
    assert time.monotonic() - started < 1.0
    assert raised.value.code == "unavailable"


def _step_by_step(url: str) -> list[str]:
    """Every revision in order, one upgrade each; the tables of the head revision."""
    engine = create_engine(url)
    scripts = ScriptDirectory.from_config(alembic_config(None))
    revisions = [r.revision for r in reversed(list(scripts.walk_revisions()))]
    with engine.begin() as connection:
        config = alembic_config(connection)
        for revision in revisions:
            command.upgrade(config, revision)
        tables = sorted(inspect(connection).get_table_names())
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert current == revisions[-1]
    return tables


def test_every_migration_runs_on_sqlite_and_postgresql(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS migrations"))
        connection.execute(text("CREATE DATABASE migrations"))
    admin.dispose()
    on_postgres = _step_by_step(postgres.url.rsplit("/", 1)[0] + "/migrations")
    on_sqlite = _step_by_step(f"sqlite:///{tmp_path / 'migrations.sqlite3'}")
    assert on_postgres == on_sqlite
    assert {"accounts", "audit_records", "certificate_bindings"} <= set(on_postgres)
