"""What the operator commands share: the app they work on and their error convention."""

from __future__ import annotations

from datetime import datetime

import click
from flask import Flask

from gateway.config import ConfigError


class OperatorInputError(click.ClickException):
    """Refused input or configuration: the message says what and why; exit status 2."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


def operator_app(*, serve: bool = False) -> Flask:
    from gateway import create_app

    try:
        return create_app(operator=not serve)
    except ConfigError as exc:
        raise OperatorInputError(f"configuration: {exc}") from None


def audit_operator(
    app: Flask,
    event: str,
    *,
    account: str | None = None,
    thumbprint: str | None = None,
    detail: str | None = None,
) -> None:
    """An operator action in the audit trail (method "cli", address "local")."""
    from gateway.audit import AuditEntry, get_audit_log
    from gateway.clock import EXTENSION as CLOCK

    get_audit_log(app).append(
        AuditEntry(
            event=event,
            outcome="ok",
            at=app.extensions[CLOCK].now(),
            method="cli",
            account_public_id=account,
            certificate_thumbprint=thumbprint,
            address="local",
            detail=detail,
        )
    )


def now(app: Flask) -> datetime:
    """The app's clock (the system clock, unless a test set one)."""
    from gateway.clock import EXTENSION as CLOCK

    moment: datetime = app.extensions[CLOCK].now()
    return moment
