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
    return [SqlAttemptStore(database), MemoryAttemptStore()]


WINDOW = timedelta(seconds=60)
STREAK = {"threshold": 3, "window": timedelta(minutes=15), "duration": timedelta(minutes=15)}


def test_memory_attempts_count_like_the_sql_store(database: Database, clock: FixedClock) -> None:
    start = clock.now()
    answers = []
    for store in attempt_stores(database):
        seen: list[Any] = []
        admitted = [store.admit("k", limit=3, window=WINDOW, at=start) for _ in range(4)]
        seen.append([a.admitted for a in admitted])
        seen.append(admitted[-1].retry_at)
        store.give_back(admitted[0], end_streak=True)  # a success is not counted
        seen.append(store.admit("k", limit=3, window=WINDOW, at=start).admitted)
        later = start + WINDOW  # a new window
        seen.append([store.admit("k", limit=3, window=WINDOW, at=later).admitted for _ in range(4)])
        seen.append([store.failed("p", at=start, **STREAK) for _ in range(3)])
        seen.append(store.locked_until("p", at=start))
        seen.append(store.locked_until("p", at=start + timedelta(minutes=15)))
        # A success ends the streak: two failures, a success, two failures do not lock.
        for _ in range(2):
            store.failed("q", at=start, **STREAK)
        store.give_back(store.admit("q", limit=9, window=WINDOW, at=start), end_streak=True)
        seen.append([store.failed("q", at=start, **STREAK) for _ in range(2)])
        # A streak older than its window starts again.
        store.failed("r", at=start, **STREAK)
        store.failed("r", at=start, **STREAK)
        seen.append(store.failed("r", at=start + timedelta(minutes=15), **STREAK))
        answers.append(seen)
    sql, memory = answers
    assert sql == memory
    until = start + timedelta(minutes=15)
    assert memory == [
        [True, True, True, False],
        start + WINDOW,
        True,
        [True, True, True, False],
        [None, None, until],
        until,
        None,
        [None, None],
        None,
    ]


@pytest.mark.parametrize("kind", ["sql", "memory"])
def test_attempt_purge_keeps_what_still_counts(
    database: Database, clock: FixedClock, kind: str
) -> None:
    store = attempt_stores(database)[kind == "memory"]
    start = clock.now()
    store.admit("address:old", limit=5, window=WINDOW, at=start)
    store.failed("password:locked", at=start, **{**STREAK, "threshold": 1})
    store.admit("address:new", limit=5, window=WINDOW, at=start + timedelta(minutes=14))
    assert store.purge(before=start + timedelta(minutes=1)) == 1
    assert store.locked_until("password:locked", at=start) == start + timedelta(minutes=15)
    assert not store.admit(
        "address:new", limit=1, window=WINDOW, at=start + timedelta(minutes=14)
    ).admitted


def test_memory_attempt_tables_are_per_kind(clock: FixedClock) -> None:
    store = MemoryAttemptStore(max_keys=2)
    now = clock.now()
    for n in range(5):
        store.admit(f"address:192.0.2.{n}", limit=5, window=WINDOW, at=now)
    # A full address table lets new addresses through uncounted, and leaves the password
    # table alone; a full password table refuses new keys.
    assert store.admit("address:192.0.2.99", limit=1, window=WINDOW, at=now).window_start is None
    assert store.admit("password:a", limit=5, window=WINDOW, at=now).admitted
    assert store.admit("password:b", limit=5, window=WINDOW, at=now).admitted
    refused = store.admit("password:c", limit=5, window=WINDOW, at=now)
    assert not refused.admitted and refused.retry_at == now + WINDOW
    assert len(store) == 4


def test_memory_attempts_under_concurrency(clock: FixedClock) -> None:
    store = MemoryAttemptStore()
    now = clock.now()

    def fail_many() -> None:
        for _ in range(100):
            store.failed("k", at=now, threshold=10_000, window=WINDOW, duration=WINDOW)

    threads = [threading.Thread(target=fail_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The 801st failure in the streak is the first to reach a threshold of 801.
    assert store.failed("k", at=now, threshold=801, window=WINDOW, duration=WINDOW) is not None


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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"STATE_STORE": "redis"}, "redis_url: required"),
        ({"STATE_STORE": "redis", "REDIS_URL": "http://cache:6379"}, "redis://"),
        ({"STATE_STORE": "disk"}, "one of"),
    ],
)
def test_state_store_refuses_what_it_cannot_do(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**overrides)


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
