"""The audit trail: every attempt recorded and hash-chained; `certgate audit verify` finds
tampering, a truncated or emptied trail included, and proves a checkpoint kept elsewhere."""

from __future__ import annotations

import base64
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import text

from gateway import create_app
from gateway.accounts import AccountService
from gateway.audit import AuditEntry, AuditLog, get_audit_log
from gateway.cli import main
from gateway.clock import FixedClock
from gateway.storage.database import Database, alembic_config
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
        ("DELETE FROM audit_records WHERE id = 4", "records 4..4 are missing"),
        ("DELETE FROM audit_records WHERE id > 2", "records 3..4 are missing"),
        ("DELETE FROM audit_records", "records 1..4 are missing"),
        ("UPDATE audit_head SET record_count = 3", "MAC does not match"),
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


# --- truncation: the sealed head, the genesis marker, checkpoints ---------------------------------

CHECKPOINT_LINE = re.compile(
    r"certgate-audit-checkpoint v1 (\d+) (\d+) [0-9a-f]{64} "
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ [0-9a-f]{64}"
)
# Moves the head back onto record 2, as someone with write access to the database alone can:
# the id and hash (what the head held before it was sealed), and the count as well.
HEAD_MOVED_BACK = (
    "UPDATE audit_head SET last_id = 2, "
    "last_hash = (SELECT chain_hash FROM audit_records WHERE id = 2)"
)
HEAD_AND_COUNT_MOVED_BACK = HEAD_MOVED_BACK.replace("SET ", "SET record_count = 2, ")


def audit_cli(app: Flask, *args: str) -> Any:
    return CliRunner().invoke(main, ["audit", *args], env=cli_env(app))


def take_checkpoint(app: Flask) -> str:
    result = audit_cli(app, "checkpoint")
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert CHECKPOINT_LINE.fullmatch(line), line
    return line


@pytest.fixture
def in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize("move_head", [HEAD_MOVED_BACK, HEAD_AND_COUNT_MOVED_BACK])
def test_newest_records_deleted_and_head_moved_back_is_broken(trail: Flask, move_head: str) -> None:
    execute(trail, "DELETE FROM audit_records WHERE id > 2")
    execute(trail, move_head)
    result = audit_cli(trail, "verify")
    assert result.exit_code == 1
    assert "the audit head was altered (its MAC does not match): it claims seq 2" in result.output
    assert "BROKEN" in result.output


@pytest.mark.usefixtures("in_tmp")
def test_a_checkpoint_names_the_records_lost_behind_a_moved_head(trail: Flask) -> None:
    checkpoint = take_checkpoint(trail)
    execute(trail, "DELETE FROM audit_records WHERE id > 2")
    execute(trail, HEAD_AND_COUNT_MOVED_BACK)
    result = audit_cli(trail, "verify", "--checkpoint", checkpoint)
    assert result.exit_code == 1
    assert "the trail ends at seq 2 but the checkpoint of " in result.output
    assert "saw seq 4: records 3..4 are missing" in result.output


@pytest.mark.usefixtures("in_tmp")
def test_only_the_newest_records_deleted_names_them(trail: Flask) -> None:
    execute(trail, "DELETE FROM audit_records WHERE id > 2")
    result = audit_cli(trail, "verify")
    assert result.exit_code == 1
    assert "records 3..4 are missing: the trail ends at seq 2, its head at seq 4" in result.output


@pytest.mark.usefixtures("in_tmp")
def test_both_tables_emptied_is_broken(trail: Flask) -> None:
    execute(trail, "DELETE FROM audit_records")
    execute(trail, "DELETE FROM audit_head")
    result = audit_cli(trail, "verify")
    assert result.exit_code == 1
    assert (
        "the audit head is missing and no record remains: every record of the trail is missing"
        in result.output
    )
    assert "BROKEN: 1 problem(s) in 0 record(s)" in result.output


@pytest.mark.usefixtures("in_tmp")
def test_a_checkpoint_names_the_records_of_an_emptied_trail(trail: Flask) -> None:
    checkpoint = take_checkpoint(trail)
    execute(trail, "DELETE FROM audit_records")
    execute(trail, "DELETE FROM audit_head")
    result = audit_cli(trail, "verify", "--checkpoint", checkpoint)
    assert result.exit_code == 1
    assert "the trail ends at seq 0 but the checkpoint of " in result.output
    assert "saw seq 4: records 1..4 are missing" in result.output


@pytest.mark.usefixtures("in_tmp")
def test_genesis_marker_emptied_too_is_broken(trail: Flask) -> None:
    for table in ("audit_records", "audit_head", "audit_genesis"):
        execute(trail, f"DELETE FROM {table}")
    result = audit_cli(trail, "verify")
    assert result.exit_code == 1
    assert "the audit genesis marker is missing" in result.output
    assert "the audit head is missing" in result.output


def test_nothing_is_appended_onto_a_forged_head(trail: Flask) -> None:
    # Appending would seal the truncation with a genuine MAC: the login is refused instead,
    # and the trail keeps saying what happened.
    execute(trail, "DELETE FROM audit_records WHERE id > 2")
    execute(trail, HEAD_MOVED_BACK)
    response = post_json(
        trail.test_client(),
        "/api/v1/login/password",
        {"identifier": "sunba", "password": PASSWORD},
    )
    assert response.status_code == 503 and response.get_json()["error"] == "unavailable"
    assert [r.id for r in get_audit_log(trail).records()] == [1, 2]
    assert any("MAC does not match" in p.problem for p in get_audit_log(trail).verify())


@pytest.mark.usefixtures("in_tmp")
def test_checkpoint_round_trip(trail: Flask, clock: FixedClock) -> None:
    checkpoint = take_checkpoint(trail)
    assert checkpoint.startswith("certgate-audit-checkpoint v1 4 4 ")
    log = get_audit_log(trail)
    log.append(entry(clock, "after the checkpoint"))
    result = audit_cli(trail, "verify", "--checkpoint", checkpoint)
    assert result.exit_code == 0, result.output
    assert "intact: 5 record(s)" in result.output
    assert "up to the checkpoint" in result.output and "(seq 4)" in result.output


@pytest.mark.usefixtures("in_tmp")
def test_an_older_copy_put_back_passes_alone_but_not_the_checkpoint(
    trail: Flask, clock: FixedClock, tmp_path: Path
) -> None:
    # The whole older state (records and their genuine head) is consistent in itself: only a
    # checkpoint kept outside the database shows what it lost.
    database_file = trail.config["DATABASE_URL"].removeprefix("sqlite:///")
    backup = tmp_path / "older.sqlite3"
    execute(trail, f"VACUUM INTO '{backup}'")
    log = get_audit_log(trail)
    log.append(entry(clock, "newer"))
    checkpoint = take_checkpoint(trail)
    log.database.close()
    with sqlite3.connect(backup) as source, sqlite3.connect(database_file) as target:
        source.backup(target)
    assert audit_cli(trail, "verify").exit_code == 0
    result = audit_cli(trail, "verify", "--checkpoint", checkpoint)
    assert result.exit_code == 1
    assert "the trail ends at seq 4 but the checkpoint" in result.output
    assert "saw seq 5: records 5..5 are missing" in result.output


@pytest.mark.usefixtures("in_tmp")
def test_a_replaced_trail_does_not_match_the_checkpoint(trail: Flask, clock: FixedClock) -> None:
    checkpoint = take_checkpoint(trail)
    execute(trail, "UPDATE audit_records SET outcome = 'ok' WHERE id = 3")
    result = audit_cli(trail, "verify", "--checkpoint", checkpoint)
    assert result.exit_code == 1
    assert "record 3: record was changed" in result.output


@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize(
    "forge",
    [
        lambda line: line.replace(" v1 4 4 ", " v1 9 9 "),  # claims more than was seen
        lambda line: line.replace(" v1 4 4 ", " v1 2 2 "),  # claims less
        lambda line: line[:-64] + "0" * 64,
    ],
)
def test_a_forged_checkpoint_is_refused(trail: Flask, forge: Any) -> None:
    result = audit_cli(trail, "verify", "--checkpoint", forge(take_checkpoint(trail)))
    assert result.exit_code == 2
    assert "--checkpoint: its MAC does not match" in result.output


@pytest.mark.usefixtures("in_tmp")
def test_a_checkpoint_of_another_data_key_is_refused(trail: Flask) -> None:
    checkpoint = take_checkpoint(trail)
    other = {**cli_env(trail), "CERTGATE_DATA_KEY": base64.b64encode(bytes(32)).decode()}
    other["CERTGATE_DATABASE_URL"] = "sqlite:///other.sqlite3"
    result = CliRunner().invoke(main, ["audit", "verify", "--checkpoint", checkpoint], env=other)
    assert result.exit_code == 2 and "another data key" in result.output


@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "--checkpoint", "yesterday"], "not a checkpoint line"),
        (
            [
                "verify",
                "--checkpoint",
                "certgate-audit-checkpoint v2 4 4 " + "a" * 64 + " "
                "2026-01-01T00:00:00Z " + "b" * 64,
            ],
            "format 'v2' is not known",
        ),
        (
            [
                "verify",
                "--checkpoint",
                "certgate-audit-checkpoint v1 -4 4 " + "a" * 64 + " "
                "2026-01-01T00:00:00Z " + "b" * 64,
            ],
            "whole numbers",
        ),
        (
            [
                "verify",
                "--checkpoint",
                "certgate-audit-checkpoint v1 4 4 " + "A" * 64 + " "
                "2026-01-01T00:00:00Z " + "b" * 64,
            ],
            "hexadecimal",
        ),
        (
            [
                "verify",
                "--checkpoint",
                "certgate-audit-checkpoint v1 4 4 " + "a" * 64 + " 2026-01-01 " + "b" * 64,
            ],
            "the time is YYYY-MM-DDTHH:MM:SSZ, not '2026-01-01'",
        ),
        (
            [
                "verify",
                "--checkpoint",
                "certgate-audit-checkpoint v1 4 4 " + "a" * 64 + " "
                "2026-13-01T00:00:00Z " + "b" * 64,
            ],
            "YYYY-MM-DDTHH:MM:SSZ",
        ),
        (["verify", "--checkpoint"], "requires an argument"),
        (["checkpoint", "extra"], "unexpected extra argument"),
    ],
)
def test_checkpoint_usage_errors(trail: Flask, args: list[str], message: str) -> None:
    result = audit_cli(trail, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.usefixtures("in_tmp")
def test_no_checkpoint_of_a_broken_trail(trail: Flask) -> None:
    execute(trail, "DELETE FROM audit_records WHERE id = 2")
    result = audit_cli(trail, "checkpoint")
    assert result.exit_code == 1
    assert "certgate-audit-checkpoint" not in result.output
    assert "records 2..2 are missing" in result.output and "no checkpoint taken" in result.output


# --- the upgrade: trails written before the head was sealed ---------------------------------------


def back_to_unsealed(app: Flask) -> str:
    """The database as revision 0005 left it (no head MAC, no genesis marker); its URL."""
    from alembic import command

    url: str = app.config["DATABASE_URL"]
    app.extensions["certgate.database"].close()
    database = Database(url)
    with database.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0005")
    database.close()
    return url


def test_a_trail_written_before_the_upgrade_keeps_verifying(
    trail: Flask, make_app: Any, clock: FixedClock
) -> None:
    back_to_unsealed(trail)
    upgraded = make_app()
    log = get_audit_log(upgraded)
    assert log.verify() == []
    assert log.examine().record_count == 4
    assert log.append(entry(clock, "after the upgrade")) == 5
    assert log.verify() == []


def test_a_tail_deleted_before_the_upgrade_is_still_reported(trail: Flask, make_app: Any) -> None:
    execute(trail, "DELETE FROM audit_records WHERE id > 2")
    back_to_unsealed(trail)
    problems = get_audit_log(make_app()).verify()
    assert [p.problem for p in problems] == [
        "records 3..4 are missing: the trail ends at seq 2, its head at seq 4"
    ]


def test_a_trail_is_not_sealed_without_the_data_key(trail: Flask) -> None:
    url = back_to_unsealed(trail)
    database = Database(url)
    with pytest.raises(RuntimeError, match="seals the audit trail and needs the data key"):
        database.migrate()
    database.close()


def test_a_database_migrated_by_hand_is_sealed_by_the_first_start(
    base_config: dict[str, Any], clock: FixedClock
) -> None:
    database = Database(base_config["DATABASE_URL"])
    database.migrate()
    database.close()
    app = create_app(base_config)
    try:
        log = get_audit_log(app)
        assert log.verify() == []
        assert log.append(entry(clock, "first")) == 1
        assert log.verify() == []
    finally:
        app.extensions["certgate.database"].close()


def test_an_unsealed_marker_is_not_sealed_over_a_trail(trail: Flask, make_app: Any) -> None:
    # Clearing the marker's MAC does not get the next start to vouch for what is there.
    execute(trail, "UPDATE audit_genesis SET genesis_mac = NULL")
    problems = get_audit_log(make_app()).verify()
    assert [p.problem for p in problems] == [
        "the audit genesis marker was altered (its MAC does not match): the trail may have "
        "been replaced"
    ]
