"""The CertGate gateway: a thin Flask face over the ``certs`` and ``tokens`` libraries.

``create_app(config=None)`` loads defaults, then ``certgate.toml``, then ``CERTGATE_*`` environment
variables, then ``config`` (tests); migrates the database; checks the trust configuration; and
registers the login blueprint and the components, each keeping its state in ``app.extensions``.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from gateway.config import ConfigError, decode_data_key, load_config

__all__ = ["ConfigError", "create_app"]

DEV_KEY_FILE = ".certgate-dev-data-key"
log = logging.getLogger("certgate.gateway")


def _data_key(app: Flask) -> bytes:
    configured = app.config["DATA_KEY"]
    if configured is not None:
        return decode_data_key(str(configured))
    # Dev mode only (validate_config refuses to start otherwise): a key kept next to the
    # working directory's database, so a restarted dev server still reads its data.
    path = Path.cwd() / DEV_KEY_FILE
    if path.is_file():
        return decode_data_key(path.read_text())
    key = os.urandom(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(base64.b64encode(key).decode())
    log.warning("dev mode: generated a throw-away data key in %s; never use it in production", path)
    return key


def create_app(config: Mapping[str, Any] | None = None, *, operator: bool = False) -> Flask:
    """The gateway app. ``operator=True`` (the ``certgate`` operator commands) skips building
    the certificate engine, so a damaged trust anchor can still be listed and removed."""
    from gateway import (
        accounts,
        audit,
        certificates,
        clock,
        engine,
        housekeeping,
        http,
        limits,
        operations,
        sessions,
        trust,
    )
    from gateway.login import CHALLENGE_STORE
    from gateway.login import bp as login_bp
    from gateway.storage import database as database_module
    from gateway.storage.personal_data import PersonalDataCipher
    from gateway.stores import SessionStore, SqlSessionStore, make_state_stores

    app = Flask(__name__)
    load_config(app, config)
    cipher = PersonalDataCipher(_data_key(app))

    clock.init_app(app)
    database = database_module.init_app(app, personal_data=cipher)
    audit.init_app(app, database, cipher.audit_key)
    accounts.init_app(app, database, cipher)
    certificates.init_app(app, database, cipher)
    trust_store = trust.init_app(app, database)
    # Scale-out (docs/scaling.md): with state_store = "redis" the processes share challenges,
    # attempt counters, the sessions' idle timers and verified OCSP answers through Redis.
    redis_client = operations.connect_state_store(app)
    if not operator:
        engine.init_app(
            app,
            trust.load_trust_configuration(app.config, trust_store),
            ocsp=operations.ocsp_client(redis_client),
        )
    # Short-lived state behind small store interfaces (gateway/stores.py): challenges and
    # attempt counters in this process, in the database or in Redis (``state_store``);
    # sessions always in the database, so a restart signs nobody out.
    challenge_store, attempt_store = make_state_stores(
        app.config, database, operator=operator, redis_client=redis_client
    )
    session_store: SessionStore = SqlSessionStore(database)
    if redis_client is not None:
        from gateway.storage.redis_state import RedisSessionStore

        session_store = RedisSessionStore(redis_client, SqlSessionStore(database))
    app.extensions[CHALLENGE_STORE] = challenge_store
    sessions.init_app(app, session_store)
    limits.init_app(app, attempt_store)
    housekeeping.init_app(app, challenge_store, session_store, attempt_store)
    http.init_app(app)
    operations.init_app(app)
    app.register_blueprint(login_bp)
    from gateway import web  # the pages and the account API

    web.init_app(app)
    from gateway import sso  # single sign-on: OpenID Connect provider, clients, keys

    sso.init_app(app)
    from gateway import lifecycle  # codes, registration, agreements (after sessions and web)

    lifecycle.init_app(app)
    from gateway import qr  # QR-code login: tickets, the phone's API and its web app at /m/

    qr.init_app(app)
    from gateway import roles  # enterprise roles: legal representative, staff, acting for

    roles.init_app(app)
    from gateway import admin  # the operator console at /admin/ (after accounts, web, sso)

    admin.init_app(app)
    return app
