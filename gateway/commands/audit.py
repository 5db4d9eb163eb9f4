"""`certgate audit`: read, verify and checkpoint the tamper-evident audit trail."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from gateway.commands.common import OperatorInputError, now, operator_app

if TYPE_CHECKING:
    from gateway.audit import AuditProblem


@click.group()
def audit() -> None:
    """The audit trail of every login attempt and operator action."""


def _echo_problems(problems: Sequence[AuditProblem]) -> None:
    for problem in problems:
        prefix = f"record {problem.record_id}: " if problem.record_id is not None else ""
        click.echo(f"{prefix}{problem.problem}", err=True)


@audit.command("verify")
@click.option(
    "--checkpoint",
    "checkpoint_line",
    metavar="LINE",
    help="A line printed by `certgate audit checkpoint`: also prove that nothing up to it "
    "was lost or altered.",
)
def verify(checkpoint_line: str | None) -> None:
    """Check the hash chain, the sealed head and the genesis marker (and a checkpoint); exit 1
    and name each changed or missing record."""
    from gateway.audit import CHECKPOINT_TIME_FORMAT, parse_checkpoint

    checkpoint = None
    if checkpoint_line is not None:
        try:
            checkpoint = parse_checkpoint(checkpoint_line)
        except ValueError as exc:
            raise OperatorInputError(f"--checkpoint: {exc}") from None
    from gateway.audit import get_audit_log

    log = get_audit_log(operator_app())
    if checkpoint is not None and not log.checkpoint_is_genuine(checkpoint):
        raise OperatorInputError(
            "--checkpoint: its MAC does not match: the line was altered, or it was made with "
            "another data key"
        )
    verdict = log.examine(checkpoint)
    if verdict.problems:
        _echo_problems(verdict.problems)
        click.echo(
            f"audit trail BROKEN: {len(verdict.problems)} problem(s) in "
            f"{verdict.record_count} record(s)",
            err=True,
        )
        raise SystemExit(1)
    summary = f"audit trail intact: {verdict.record_count} record(s)"
    if checkpoint is not None:
        taken = checkpoint.at.strftime(CHECKPOINT_TIME_FORMAT)
        summary += (
            f"; every record up to the checkpoint of {taken} (seq {checkpoint.seq}) is present "
            "and unchanged"
        )
    click.echo(summary)


@audit.command("checkpoint")
def checkpoint() -> None:
    """Print one signed line naming the trail's newest record, to keep outside the database;
    `certgate audit verify --checkpoint LINE` later proves nothing before it was lost. Exit 1
    (and no line) when the trail is not intact."""
    from gateway.audit import AuditTrailBroken, get_audit_log

    app = operator_app()
    try:
        line = get_audit_log(app).checkpoint(now(app)).line()
    except AuditTrailBroken as exc:
        _echo_problems(exc.problems)
        click.echo("audit trail BROKEN: no checkpoint taken", err=True)
        raise SystemExit(1) from None
    click.echo(line)


@audit.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_records(limit: int, as_json: bool) -> None:
    """The newest records (no personal data is stored in them)."""
    from gateway.audit import get_audit_log, record_fields

    for record in get_audit_log(operator_app()).records(limit=limit):
        fields = record_fields(record)
        if as_json:
            click.echo(json.dumps(fields, ensure_ascii=False))
        else:
            click.echo("  ".join(f"{k}={v}" for k, v in fields.items() if v is not None))
