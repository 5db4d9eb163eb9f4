"""Hardening: ``__Host-`` cookie names on HTTPS deployments, the log scrubber's ID-card numbers
typed with a lower-case x, and people's names sealed at rest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from gateway.accounts import get_accounts
from gateway.clock import FixedClock
from gateway.http import scrub_detail
from gateway.storage.database import Database, alembic_config
from tests.gateway.conftest import ORIGIN, PASSWORD, post_json

ID_NUMBER = "11010519491231002X"
USCC = "91110000600037341L"
PERSON_NAME = "欧阳明月"
REPRESENTATIVE_NAME = "司马长风"


def set_cookies(response: Any) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}


def password_login(client: FlaskClient, identifier: str) -> Any:
    return post_json(
        client, "/api/v1/login/password", {"identifier": identifier, "password": PASSWORD}
    )


# --- __Host- cookies --------------------------------------------------------------------------


def test_https_origin_uses_host_prefixed_cookies_and_the_session_works(
    app: Flask, clock: FixedClock
) -> None:
    assert ORIGIN.startswith("https://")
    get_accounts(app).create_person(
        real_name=PERSON_NAME,
        id_card_number=ID_NUMBER,
        login_name="ouyang",
        password=PASSWORD,
        at=clock.now(),
    )
    client = app.test_client()
    challenge = set_cookies(post_json(client, "/api/v1/login/challenge", None))
    login = password_login(client, "ouyang")
    assert login.status_code == 200, login.json
    cookies = {**challenge, **set_cookies(login)}
    assert set(cookies) == {"__Host-certgate_prelogin", "__Host-certgate_session"}
    for header in cookies.values():
        # What browsers require of a __Host- cookie: Secure, Path=/, no Domain.
        assert "Secure" in header and "Path=/" in header and "Domain" not in header
    session = client.get("/api/v1/session")
    assert session.status_code == 200 and session.json["account"]["display_name"] == PERSON_NAME
    logout = post_json(
        client, "/api/v1/logout", None, **{"X-CSRF-Token": session.json["csrf_token"]}
    )
    assert logout.status_code == 200
    assert "__Host-certgate_session" in set_cookies(logout)  # cleared under the same name
    assert client.get("/api/v1/session").status_code == 401


def test_plain_http_loopback_keeps_the_cookie_names(
    make_app: Callable[..., Flask], clock: FixedClock
) -> None:
    origin = "http://127.0.0.1:8080"
    app = make_app(PUBLIC_ORIGIN=origin)
    get_accounts(app).create_person(
        real_name=PERSON_NAME,
        id_card_number=ID_NUMBER,
        login_name="ouyang",
        password=PASSWORD,
        at=clock.now(),
    )
    client = app.test_client()
    response = client.post(
        "/api/v1/login/password",
        json={"identifier": "ouyang", "password": PASSWORD},
        headers={"Origin": origin},
    )
    assert response.status_code == 200, response.json
    assert set(set_cookies(response)) == {"certgate_session"}
    assert client.get("/api/v1/session").status_code == 200


# --- the scrubber --------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [ID_NUMBER, ID_NUMBER.lower(), "360426199101010071"])
def test_scrubber_masks_id_card_numbers_whatever_the_case_of_x(number: str) -> None:
    scrubbed = scrub_detail(f"no account for identifier {number}, tried by id_card_number")
    assert number not in scrubbed and number.upper() not in scrubbed
    assert f"{number[:4]}************{number[-2:]}" in scrubbed


# --- names sealed at rest ------------------------------------------------------------------------


def database_bytes(app: Flask) -> bytes:
    """The SQLite file and its write-ahead log, as a copy of the disk would hold them."""
    path = Path(app.config["DATABASE_URL"].removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_the_database_file_holds_no_real_name_in_clear(app: Flask, clock: FixedClock) -> None:
    accounts = get_accounts(app)
    person = accounts.create_person(
        real_name=PERSON_NAME,
        id_card_number=ID_NUMBER,
        login_name="ouyang",
        password=PASSWORD,
        at=clock.now(),
    )
    enterprise = accounts.create_enterprise(
        unified_social_credit_code=USCC,
        name="示例科技有限公司",
        legal_representative=REPRESENTATIVE_NAME,
        at=clock.now(),
    )
    raw = database_bytes(app)
    for name in (PERSON_NAME, REPRESENTATIVE_NAME):
        assert name.encode("utf-8") not in raw
    with app.extensions["certgate.database"].engine.connect() as connection:
        columns = set(
            connection.execute(text("SELECT name FROM pragma_table_info('accounts')")).scalars()
        )
    assert "real_name" not in columns and "legal_representative" not in columns
    # Shown where it was shown before: the views, the login answer.
    assert person.display_name == PERSON_NAME
    assert accounts.view(accounts.find(enterprise.id)).legal_representative == REPRESENTATIVE_NAME
    login = password_login(app.test_client(), "ouyang")
    assert login.json["account"]["display_name"] == PERSON_NAME


def test_names_stored_in_clear_are_sealed_by_the_migration(
    make_app: Callable[..., Flask], base_config: dict[str, Any]
) -> None:
    url = base_config["DATABASE_URL"]
    old = Database(url)
    with old.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0003")
        connection.execute(
            text(
                "INSERT INTO accounts (id, public_id, kind, status, display_name, real_name, "
                "legal_representative, unified_social_credit_code, real_name_level, "
                "created_at, updated_at) VALUES "
                "(1, 'p-1', 'person', 'active', :person, :person, NULL, NULL, 0, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00'), "
                "(2, 'e-1', 'enterprise', 'active', '示例科技有限公司', NULL, :representative, "
                ":uscc, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            ),
            {"person": PERSON_NAME, "representative": REPRESENTATIVE_NAME, "uscc": USCC},
        )
        connection.execute(
            text(
                "INSERT INTO sessions (id_hash, account_id, amr, csrf_token, created_at, "
                "last_seen_at, expires_at) VALUES ('h', 1, 'hwk pin', 'c', "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00', '2099-01-01 00:00:00')"
            )
        )
    # Without the data key the names cannot be sealed: the migration stops, nothing is lost.
    with pytest.raises(RuntimeError, match="needs the data key"):
        old.migrate()
    old.close()

    app = make_app()  # migrates with the gateway's data key
    accounts = get_accounts(app)
    with app.extensions["certgate.database"].engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        display = connection.execute(text("SELECT display_name FROM accounts ORDER BY id"))
        session = connection.execute(text("SELECT amr, acr FROM sessions")).one()
    assert list(display.scalars()) == ["", "示例科技有限公司"]
    # Sessions from before claimed "hwk" for any USB key: no anchor vouched for hardware then.
    assert tuple(session) == ("swk pin", "urn:certgate:loa:3")
    assert accounts.view(accounts.find("p-1")).display_name == PERSON_NAME
    assert accounts.view(accounts.find("e-1")).legal_representative == REPRESENTATIVE_NAME
    raw = database_bytes(app)
    for name in (PERSON_NAME, REPRESENTATIVE_NAME):
        assert name.encode("utf-8") not in raw
