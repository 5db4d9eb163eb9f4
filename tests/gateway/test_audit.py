"""The audit trail: every attempt recorded and hash-chained; `certgate audit verify` finds
tampering."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import text

from gateway.accounts import AccountService
from gateway.audit import AuditEntry, AuditLog, get_audit_log
from gateway.cli import main
from gateway.clock import FixedClock
from tests.gateway.conftest import DATA_KEY, ORIGIN, PASSWORD, post_json

ID_NUMBER = "360426199101010071"
PHONE = "13912345678"


@pytest.fixture
def trail(app: Flask, accounts: AccountService, clock: FixedClock) -> Flask:
    accounts.create_person(
        real_name="孙八",
        id_card_number=ID_NUMBER,
        at=clock.now(),
        login_name="sunba",
        phone=PHONE,
        password=PASSWORD,
    )
    client = app.test_client()
    for identifier, password in [
        ("sunba", "wrong password"),
        (ID_NUMBER, PASSWORD),
        (PHONE, "wrong again!"),
        ("nobody", PASSWORD),
    ]:
        post_json(
            client, "/api/v1/login/password", {"identifier": identifier, "password": password}
        )
    return app


def execute(app: Flask, statement: str) -> None:
    with app.extensions["certgate.database"].engine.begin() as connection:
        connection.execute(text(statement))


def test_every_attempt_is_recorded(trail: Flask) -> None:
    records = get_audit_log(trail).records()
    assert [(r.method, r.outcome) for r in records] == [
        ("password", "credentials_invalid"),
        ("password", "ok"),
        ("password", "credentials_invalid"),
        ("password", "credentials_invalid"),
    ]
    assert all(r.address == "127.0.0.1" for r in records)
    assert records[0].account_public_id == records[1].account_public_id is not None
    assert records[3].account_public_id is None
    assert records[1].previous_hash == records[0].chain_hash


def test_no_personal_data_in_the_trail_or_logs(
    trail: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("DEBUG"):
        post_json(
            trail.test_client(),
            "/api/v1/login/password",
            {"identifier": ID_NUMBER, "password": "wrong password"},
        )
    dumped = " ".join(str(vars(r)) for r in get_audit_log(trail).records()) + caplog.text
    for secret in (ID_NUMBER, PHONE, PASSWORD, "wrong password", "孙八"):
        assert secret not in dumped


def test_intact_trail_verifies(trail: Flask) -> None:
    assert get_audit_log(trail).verify() == []


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("UPDATE audit_records SET outcome = 'ok' WHERE id = 1", "record was changed"),
        ("UPDATE audit_records SET address = '10.9.9.9' WHERE id = 3", "record was changed"),
        ("DELETE FROM audit_records WHERE id = 2", "missing"),
        ("DELETE FROM audit_records WHERE id = 4", "missing or changed"),
        ("DELETE FROM audit_records", "missing or changed"),
    ],
)
def test_tampering_is_detected(trail: Flask, statement: str, problem: str) -> None:
    execute(trail, statement)
    problems = get_audit_log(trail).verify()
    assert problems and any(problem in p.problem for p in problems)


def test_recomputed_plain_hashes_do_not_pass(trail: Flask) -> None:
    # Someone with database access alone cannot re-chain: the chain is keyed.
    import hashlib

    execute(trail, "UPDATE audit_records SET outcome = 'ok' WHERE id = 4")
    execute(
        trail,
        "UPDATE audit_records SET chain_hash = '"
        + hashlib.sha256(b"forged").hexdigest()
        + "' WHERE id = 4",
    )
    execute(
        trail, "UPDATE audit_head SET last_hash = '" + hashlib.sha256(b"forged").hexdigest() + "'"
    )
    assert get_audit_log(trail).verify()


def entry(clock: FixedClock, event: str) -> AuditEntry:
    return AuditEntry(event=event, outcome="ok", at=clock.now(), method="cli", address="local")


def test_appends_from_another_process_keep_one_chain(trail: Flask, clock: FixedClock) -> None:
    # A second AuditLog on the same database stands for another process (the operator CLI,
    # another gateway): each one's appends must chain onto the other's.
    log = get_audit_log(trail)
    other = AuditLog(log.database, log._key)
    ids = [
        writer.append(entry(clock, f"step-{n}"))
        for n, writer in enumerate([log, other, other, log, log, other])
    ]
    assert ids == list(range(5, 11))
    assert [r.event for r in log.records()][-6:] == [f"step-{n}" for n in range(6)]
    assert log.verify() == []


def test_a_rolled_back_append_leaves_no_gap(trail: Flask, clock: FixedClock) -> None:
    log = get_audit_log(trail)
    with pytest.raises(RuntimeError), log.database.connection():
        log.append(entry(clock, "rolled-back"))
        raise RuntimeError("the login failed after its audit record")
    assert log.append(entry(clock, "kept")) == 5
    assert [r.event for r in log.records()][-1] == "kept"
    assert log.verify() == []


def cli_env(app: Flask) -> dict[str, str]:
    return {
        "CERTGATE_DATABASE_URL": app.config["DATABASE_URL"],
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
    }


def test_cli_audit_verify(trail: Flask, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "verify"], env=cli_env(trail))
    assert result.exit_code == 0, result.output
    assert "intact: 4 record(s)" in result.output
    listed = runner.invoke(main, ["audit", "list", "--json"], env=cli_env(trail))
    assert listed.exit_code == 0 and listed.output.count("\n") == 4
    execute(trail, "DELETE FROM audit_records WHERE id = 2")
    result = runner.invoke(main, ["audit", "verify"], env=cli_env(trail))
    assert result.exit_code == 1
    assert "record 3: records 2..2 are missing" in result.output
    assert "BROKEN" in result.output
