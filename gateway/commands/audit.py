"""`certgate audit`: read and verify the tamper-evident audit trail."""

from __future__ import annotations

import json

import click

from gateway.commands.common import operator_app


@click.group()
def audit() -> None:
    """The audit trail of every login attempt and operator action."""


@audit.command("verify")
def verify() -> None:
    """Check the hash chain; exit 1 and name each changed or missing record."""
    from gateway.audit import get_audit_log

    app = operator_app()
    log = get_audit_log(app)
    problems = log.verify()
    count = len(log.records())
    if problems:
        for problem in problems:
            click.echo(f"record {problem.record_id}: {problem.problem}", err=True)
        click.echo(f"audit trail BROKEN: {len(problems)} problem(s) in {count} record(s)", err=True)
        raise SystemExit(1)
    click.echo(f"audit trail intact: {count} record(s)")


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
