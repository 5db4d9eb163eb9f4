"""The short-lived state stores: in-process (``state_store = "memory"``) beside the SQL ones,
the ``state_store`` setting, and the one-process claim on an SQLite file."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from gateway.clock import FixedClock
from gateway.config import DEFAULTS as CONFIG_DEFAULTS
from gateway.config import ConfigError, validate_config
from gateway.login import CHALLENGE_STORE
from gateway.storage.database import Database
from gateway.stores import (
    AttemptStore,
    ChallengeRecord,
    MemoryAttemptStore,
    MemoryChallengeStore,
    SqlAttemptStore,
    SqlChallengeStore,
)
from tests.gateway.conftest import DATA_KEY, ORIGIN

BINDING = "b" * 64


def challenge(name: str, expires_at: datetime) -> ChallengeRecord:
    return ChallengeRecord(name, "n" * 43, BINDING, expires_at, None)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'stores.sqlite3'}")
    database.migrate()
    yield database
    database.close()


# --- challenges ----------------------------------------------------------------------------------


def test_memory_challenge_is_consumed_exactly_once_under_concurrency(clock: FixedClock) -> None:
    store = MemoryChallengeStore()
    now = clock.now()
    store.put(challenge("c1", now + timedelta(seconds=120)), created_at=now)
    start = threading.Barrier(16)
    results: list[ChallengeRecord | None] = []
    lock = threading.Lock()

    def consume() -> None:
        start.wait()
        found = store.consume("c1", binding_hash=BINDING, at=now)
        with lock:
            results.append(found)

    threads = [threading.Thread(target=consume) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 16 and all(r is not None for r in results)
    assert sum(1 for r in results if r is not None and r.used_at is None) == 1


def test_memory_challenge_is_bound_to_the_prelogin_cookie(clock: FixedClock) -> None:
    store = MemoryChallengeStore()
    now = clock.now()
    store.put(challenge("c1", now + timedelta(seconds=120)), created_at=now)
    # Another cookie neither sees nor spends it.
    assert store.consume("c1", binding_hash="x" * 64, at=now) is None
    assert store.consume("nope", binding_hash=BINDING, at=now) is None
    first = store.consume("c1", binding_hash=BINDING, at=now)
    assert first is not None and first.used_at is None
    again = store.consume("c1", binding_hash=BINDING, at=now)
    assert again is not None and again.used_at == now


def test_memory_challenges_expire(clock: FixedClock) -> None:
    store = MemoryChallengeStore()
    now = clock.now()
    store.put(challenge("old", now + timedelta(seconds=10)), created_at=now)
    store.put(challenge("new", now + timedelta(seconds=120)), created_at=now)
    # An expired challenge is still returned until purged: the route answers challenge_expired.
    found = store.consume("old", binding_hash=BINDING, at=now + timedelta(seconds=11))
    assert found is not None and found.expires_at < now + timedelta(seconds=11)
    assert store.purge(before=now + timedelta(seconds=11)) == 1
    assert len(store) == 1
    assert store.consume("old", binding_hash=BINDING, at=now) is None


def test_memory_challenge_store_is_bounded(clock: FixedClock) -> None:
    store = MemoryChallengeStore(max_challenges=3)
    now = clock.now()
    store.put(challenge("expired", now - timedelta(seconds=1)), created_at=now)
    for name in ("a", "b", "c", "d"):
        store.put(challenge(name, now + timedelta(seconds=120)), created_at=now)
        assert len(store) <= 3
    # The expired one went first, then the oldest live one.
    assert store.consume("expired", binding_hash=BINDING, at=now) is None
    assert store.consume("a", binding_hash=BINDING, at=now) is None
    assert all(store.consume(n, binding_hash=BINDING, at=now) for n in ("b", "c", "d"))


# --- attempts ------------------------------------------------------------------------------------


def attempt_stores(database: Database) -> list[AttemptStore]:
    return [SqlAttemptStore(database), MemoryAttemptStore(keep=timedelta(minutes=15))]


def test_memory_attempts_count_like_the_sql_store(database: Database, clock: FixedClock) -> None:
    stores = attempt_stores(database)
    start = clock.now()
    history = [(0, False), (1, False), (2, True), (3, False), (4, False), (4, False), (70, False)]
    for offset, succeeded in history:
        for store in stores:
            store.record(["k", "other"], at=start + timedelta(seconds=offset), succeeded=succeeded)
    for since in (0, 1, 2, 3, 5, 60, 71):
        moment = start + timedelta(seconds=since)
        counts = {store.count("k", since=moment) for store in stores}
        failures = {store.failures_since_success("k", since=moment) for store in stores}
        assert len(counts) == 1 and len(failures) == 1, since
    assert stores[1].count("k", since=start) == 7
    assert stores[1].failures_since_success("k", since=start) == 4  # after the success at 2 s
    assert stores[1].count("unknown", since=start) == 0


def test_memory_attempts_forget_what_no_window_needs(clock: FixedClock) -> None:
    store = MemoryAttemptStore(keep=timedelta(seconds=60))
    start = clock.now()
    store.record(["k"], at=start, succeeded=False)
    store.record(["k"], at=start + timedelta(seconds=61), succeeded=False)
    # The first attempt fell out when the second arrived, 61 s later.
    assert store.count("k", since=start - timedelta(days=1)) == 1
    assert store.purge(before=start + timedelta(seconds=62)) == 1
    assert len(store) == 0


def test_memory_attempt_store_is_bounded(clock: FixedClock) -> None:
    store = MemoryAttemptStore(keep=timedelta(minutes=15), max_keys=2, max_per_key=3)
    now = clock.now()
    for _ in range(10):
        store.record(["busy"], at=now, succeeded=False)
    assert store.count("busy", since=now) == 3  # enough to answer any limit of at most 3
    store.record(["idle"], at=now, succeeded=False)
    store.record(["busy"], at=now, succeeded=False)  # "busy" is now the most recently used
    store.record(["third"], at=now, succeeded=False)
    assert len(store) == 2
    assert store.count("idle", since=now) == 0  # the least recently used key went
    assert store.count("busy", since=now) == 3 and store.count("third", since=now) == 1


def test_memory_attempts_under_concurrency(clock: FixedClock) -> None:
    store = MemoryAttemptStore(keep=timedelta(minutes=15))
    now = clock.now()

    def record_many() -> None:
        for _ in range(100):
            store.record(["k"], at=now, succeeded=False)

    threads = [threading.Thread(target=record_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count("k", since=now) == 800


# --- the setting ---------------------------------------------------------------------------------


def settings(**overrides: Any) -> dict[str, Any]:
    config = {**CONFIG_DEFAULTS, "PUBLIC_ORIGIN": ORIGIN, "DATA_KEY": DATA_KEY, **overrides}
    validate_config(config)
    return config


@pytest.mark.parametrize(
    ("database_url", "state_store", "expected"),
    [
        ("sqlite:///certgate.sqlite3", None, "memory"),
        ("postgresql+psycopg://certgate@db/certgate", None, "database"),
        ("sqlite:///certgate.sqlite3", "database", "database"),
        ("postgresql+psycopg://certgate@db/certgate", "memory", "memory"),
    ],
)
def test_state_store_default_follows_the_database(
    database_url: str, state_store: str | None, expected: str
) -> None:
    config = settings(DATABASE_URL=database_url, STATE_STORE=state_store)
    assert config["STATE_STORE"] == expected


@pytest.mark.parametrize(("value", "message"), [("redis", "not available yet"), ("disk", "one of")])
def test_state_store_refuses_what_it_cannot_do(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(STATE_STORE=value)


def test_the_app_uses_the_chosen_stores(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERTGATE_STATE_STORE", raising=False)
    assert isinstance(make_app().extensions[CHALLENGE_STORE], MemoryChallengeStore)
    database_app = make_app(STATE_STORE="database")
    assert isinstance(database_app.extensions[CHALLENGE_STORE], SqlChallengeStore)


def test_memory_state_refuses_a_second_process_on_the_same_file(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    database_file = tmp_path / "gateway.sqlite3"
    make_app(STATE_STORE="memory")
    make_app(STATE_STORE="memory")  # several apps of one process (tests, scripts) share it
    # Another process holding the claim: a second open file description, as another process has.
    descriptor = os.open(f"{database_file}.state-lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(descriptor)


def test_memory_state_starts_only_when_no_other_process_serves_the_file(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    descriptor = os.open(f"{tmp_path / 'gateway.sqlite3'}.state-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "the other process"
        with pytest.raises(ConfigError, match="another CertGate process"):
            make_app(STATE_STORE="memory")
        make_app(STATE_STORE="database")  # shares the file safely
    finally:
        os.close(descriptor)


def test_full_attempt_store_forgets_expired_keys_before_live_ones(clock: FixedClock) -> None:
    store = MemoryAttemptStore(keep=timedelta(seconds=60), max_keys=2)
    start = clock.now()
    store.record(["old"], at=start, succeeded=False)
    store.record(["live"], at=start + timedelta(seconds=50), succeeded=False)
    store.record(["new"], at=start + timedelta(seconds=70), succeeded=False)
    assert store.count("old", since=start) == 0
    assert store.count("live", since=start) == 1 and store.count("new", since=start) == 1
