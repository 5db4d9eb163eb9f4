"""Throw-away PostgreSQL and Redis for the scale-out tests (tests/fixtures_databases.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures_databases import PostgresServer, RedisServer, available

pytestmark = pytest.mark.skipif(
    not available(), reason="postgresql and redis-server are not installed (make test does it)"
)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if not available():
        pytest.skip("postgresql is not installed (make test installs it)")
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not available():
        pytest.skip("redis-server is not installed (make test installs it)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.close()
