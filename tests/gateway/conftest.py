"""Gateway fixtures: an app on a fresh SQLite file with a fixed clock, and trust-anchor entries
for the test PKI."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway import create_app
from gateway.accounts import AccountService, get_accounts
from gateway.clock import FixedClock
from gateway.sso.logout import EXTENSION as LOGOUT_WORKER
from softhsm.pki import TestPki
from tests.fixtures_pki import PKI_VALIDATION_TIME

ORIGIN = "https://login.example.cn"
DATA_KEY = base64.b64encode(bytes(range(32))).decode()
PASSWORD = "correct horse battery"
TRUSTED_PROXY = "10.0.0.5"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(PKI_VALIDATION_TIME)


@pytest.fixture
def base_config(tmp_path: Path, clock: FixedClock) -> dict[str, Any]:
    return {
        "CONFIG_FILE": None,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.sqlite3'}",
        "PUBLIC_ORIGIN": ORIGIN,
        "DATA_KEY": DATA_KEY,
        "CLOCK": clock,
        "TRUSTED_PROXIES": ["10.0.0.0/24"],
        # Cheap argon2id parameters: the tests check behaviour, not hashing cost.
        "PASSWORD_MEMORY_COST": 1024,
        "PASSWORD_TIME_COST": 1,
    }


@pytest.fixture
def make_app(base_config: dict[str, Any]) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = create_app({**base_config, **overrides})
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


def close_app(app: Flask) -> None:
    """Stop what a built app runs beside the requests (its single logout worker, the CRL
    refresh) and close its database: after the server that served it has stopped."""
    worker = app.extensions.get(LOGOUT_WORKER)
    if worker is not None:
        worker.stop()
    engine = app.extensions.get("certgate.engine")
    if engine is not None:
        engine.close()
    app.extensions["certgate.database"].close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def accounts(app: Flask) -> AccountService:
    return get_accounts(app)


def pki_anchor_config(pki: TestPki, **policy: Any) -> dict[str, Any]:
    """A [[trust.anchors]] entry for the test PKI's root, with its CRLs and intermediates (USB
    keys often hold the user's certificate alone)."""
    entry: dict[str, Any] = {
        "name": "CertGate Test Root",
        "certificate": str(pki.ca_certificate_path("root")),
        "intermediates": [str(pki.ca_certificate_path(ca)) for ca in ("rsa", "p256", "sm2")],
        "revocation": "hard-fail",
        "crl": [str(pki.crl_path(ca)) for ca in ("rsa", "p256", "sm2", "root")],
    }
    entry.update(policy)
    return entry


def post_json(client: FlaskClient, path: str, body: Any, **headers: str) -> Any:
    return client.post(path, json=body, headers={"Origin": ORIGIN, **headers})
