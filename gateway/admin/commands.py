"""``certgate operator create NAME --role admin|auditor|reviewer [--json]``: an operator
account for the console at ``/admin/``. The password is read from standard input (one line);
the answer carries the ``otpauth://`` URI to load into the operator's authenticator app."""

from __future__ import annotations

import json
import sys

import click

from gateway.commands.common import OperatorInputError, audit_operator, now, operator_app


@click.group()
def operator() -> None:
    """Operator accounts of the console at /admin/ (not user accounts)."""


@operator.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "auditor", "reviewer"]), required=True)
@click.option("--json", "as_json", is_flag=True, help='Print {"name", "role", "totp_uri"}.')
def create(name: str, role: str, as_json: bool) -> None:
    """Create operator NAME; reads the password from standard input."""
    from gateway.admin.operators import OperatorInputError as Refused
    from gateway.admin.operators import get_operators

    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise OperatorInputError("password: give it on standard input")
    app = operator_app()
    try:
        made = get_operators(app).create(name, role, password, at=now(app))
    except Refused as exc:
        raise OperatorInputError(str(exc)) from None
    audit_operator(app, "operator_created", detail=f"operator {made.name}; role {made.role}")
    answer = {"name": made.name, "role": made.role, "totp_uri": made.totp_uri}
    if as_json:
        click.echo(json.dumps(answer))
        return
    click.echo(f"operator {made.name} ({made.role}) created")
    click.echo(f"TOTP: {made.totp_uri}  (load it into the authenticator app; shown once)")
