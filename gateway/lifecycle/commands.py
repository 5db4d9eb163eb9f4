"""`certgate agreement`: publish service agreement versions and list them."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import Flask

from gateway.commands.common import OperatorInputError, audit_operator, now, operator_app


@click.group()
def agreement() -> None:
    """Service agreement versions people must accept (docs/accounts.md)."""


@agreement.command("publish")
@click.argument("version")
@click.option(
    "--file",
    "text_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The agreement's text (UTF-8).",
)
@click.option("--summary", help="What changed, shown when people are asked to accept it.")
def publish(version: str, text_file: Path, summary: str | None) -> None:
    """Publish VERSION: from now on every account must accept it before doing anything else."""
    from gateway.lifecycle.agreements import AgreementInputError, get_agreements

    try:
        text = text_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OperatorInputError(f"--file: cannot read {text_file}: {exc}") from None
    app = operator_app()
    try:
        published = get_agreements(app).publish(version, text, summary=summary, at=now(app))
    except AgreementInputError as exc:
        raise OperatorInputError(str(exc)) from None
    notified = _notify_accounts(app, published.version, published.summary)
    audit_operator(
        app,
        "agreement_published",
        detail=f"version {published.version}; {notified} account(s) notified",
    )
    click.echo(f"published agreement version {published.version}; {notified} account(s) notified")


def _notify_accounts(app: Flask, version: str, summary: str | None) -> int:
    """Every account that can still sign in gets an in-site message and the notice by SMS or
    e-mail: it will be asked to accept the new version."""
    from sqlalchemy import select

    from gateway.accounts import DISABLED_STATES
    from gateway.lifecycle.notices import get_notices
    from gateway.storage.database import get_database
    from gateway.storage.models import Account

    with get_database(app).session() as session:
        ids = session.scalars(
            select(Account.id).where(Account.status.not_in(DISABLED_STATES)).order_by(Account.id)
        ).all()
    notices = get_notices(app)
    at = now(app)
    for account_id in ids:
        notices.post(
            account_id, "agreement_published", at=at, version=version, summary=summary or "—"
        )
    return len(ids)


@agreement.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_versions(as_json: bool) -> None:
    """The published versions, oldest first; the last one is current."""
    from gateway.lifecycle.agreements import get_agreements

    for entry in get_agreements(operator_app()).published():
        published_at = entry.published_at.isoformat() if entry.published_at else ""
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "version": entry.version,
                        "summary": entry.summary,
                        "published_at": published_at,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            click.echo(f"{entry.version}\t{published_at}\t{entry.summary or ''}")
