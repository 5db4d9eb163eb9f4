"""The account page's applications: those the person signed in to through the gateway (from the
participations) or allowed to receive their data (consents), with signing out of one of them and
withdrawing consent.

- ``GET /api/v1/account/applications`` → ``{"ok": true, "applications": [{"client_id", "name",
  "protocol", "signed_in", "last_used_at", "consent": {"scopes", "granted_at"} | null}]}``
- ``POST /api/v1/account/applications/<client_id>/sign-out`` (CSRF, body ``{}``): single logout to
  that application only (back-channel logout token or CAS LogoutRequest, for every session of
  the account), its tokens revoked → ``{"ok": true, "messages_queued": n}``.
- ``POST /api/v1/account/applications/<client_id>/consent/withdraw`` (CSRF, body ``{}``): the
  consent is withdrawn (the next sign-in there asks again) and the application signed out as
  above → ``{"ok": true, "messages_queued": n}``.

An application the account never used answers ``404 application_unknown``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify
from sqlalchemy import select, update

from gateway import clock
from gateway.account_api import _session, _state_change
from gateway.http import write_audit
from gateway.sso.clients import get_clients
from gateway.sso.errors import ApplicationUnknown
from gateway.sso.logout import end_session_everywhere
from gateway.sso.models import SsoConsent, SsoParticipation
from gateway.storage.database import get_database
from gateway.storage.models import Account

bp = Blueprint("sso_applications", __name__, url_prefix="/api/v1/account/applications")


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


def _applications(account: Account) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    with get_database().session() as session:
        used = session.execute(
            select(
                SsoParticipation.client_id,
                SsoParticipation.created_at,
                SsoParticipation.ended_at,
            )
            .where(SsoParticipation.account_public_id == account.public_id)
            .order_by(SsoParticipation.id)
        ).all()
        consents = session.scalars(
            select(SsoConsent).where(
                SsoConsent.account_id == account.id, SsoConsent.withdrawn_at.is_(None)
            )
        ).all()
        for client_id, created_at, ended_at in used:
            entry = found.setdefault(client_id, {"signed_in": False, "consent": None})
            entry["last_used_at"] = created_at  # rows come oldest first
            entry["signed_in"] = entry["signed_in"] or ended_at is None
        for consent in consents:
            entry = found.setdefault(
                consent.client_id, {"last_used_at": None, "signed_in": False, "consent": None}
            )
            entry["consent"] = {
                "scopes": consent.scopes.split(),
                "granted_at": _iso(consent.granted_at),
            }
    return found


@bp.get("")
def list_applications() -> Response:
    g.certgate_skip_audit = True
    _, account = _session()
    clients = get_clients()
    entries = []
    for client_id, entry in _applications(account).items():
        client = clients.get(client_id)
        if client is None:
            continue
        entries.append(
            {
                "client_id": client_id,
                "name": client.name,
                "protocol": client.protocol,
                "signed_in": entry["signed_in"],
                "last_used_at": _iso(entry["last_used_at"]),
                "consent": entry["consent"],
            }
        )
    entries.sort(key=lambda e: e["last_used_at"] or "", reverse=True)
    return jsonify({"ok": True, "applications": entries})


def _known(account: Account, client_id: str) -> dict[str, Any]:
    entry = _applications(account).get(client_id) if len(client_id) <= 64 else None
    if entry is None or get_clients().get(client_id) is None:
        raise ApplicationUnknown(f"client {client_id[:64]!r} not used by this account")
    g.certgate_audit.notes.append(f"client {client_id}")
    return entry


@bp.post("/<client_id>/sign-out")
def sign_out(client_id: str) -> Response:
    _, account, _ = _state_change("sso_application_signed_out", {})
    _known(account, client_id)
    queued = end_session_everywhere(
        "application_signed_out", account_id=account.id, client_id=client_id
    )
    write_audit("ok", detail=f"{queued} logout message(s) queued")
    g.certgate_skip_audit = True
    return jsonify({"ok": True, "messages_queued": queued})


@bp.post("/<client_id>/consent/withdraw")
def withdraw_consent(client_id: str) -> Response:
    _, account, _ = _state_change("sso_consent_withdrawn", {})
    entry = _known(account, client_id)
    if entry["consent"] is None:
        raise ApplicationUnknown(f"no consent of this account for client {client_id}")
    with get_database().session() as session:
        session.execute(
            update(SsoConsent)
            .where(
                SsoConsent.account_id == account.id,
                SsoConsent.client_id == client_id,
                SsoConsent.withdrawn_at.is_(None),
            )
            .values(withdrawn_at=clock.now())
        )
    queued = end_session_everywhere("consent_withdrawn", account_id=account.id, client_id=client_id)
    write_audit("ok", detail=f"{queued} logout message(s) queued")
    g.certgate_skip_audit = True
    return jsonify({"ok": True, "messages_queued": queued})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
