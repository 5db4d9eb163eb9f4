"""Account API for the account page: who is signed in, bound certificates (unbind), active
sessions (sign out), recent login history from the audit trail, agreement consent, and
cancellation (gateway/lifecycle/cancellation.py).

Every route needs a live session; every state change also needs the session's CSRF token in
``X-CSRF-Token`` and a JSON body (a browser sends JSON across origins only after a CORS preflight,
which the gateway never grants), and its ``Origin`` must be the public origin.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request
from sqlalchemy import select

from certs.errors import BadRequest
from certs.mapping import BindingKind
from gateway import clock
from gateway.accounts import AccountInputError, account_is_usable, get_accounts
from gateway.certificates import get_certificates
from gateway.errors import NotSignedIn
from gateway.http import begin_audit, check_origin, json_body, write_audit
from gateway.sessions import get_sessions
from gateway.storage.database import get_database
from gateway.storage.models import Account, AuditRecord, CertificateBinding, LoginSession
from gateway.stores import SessionRecord

bp = Blueprint("account_api", __name__, url_prefix="/api/v1/account")

AGREEMENT_VERSION_KEY = "AGREEMENT_VERSION"
DEFAULT_AGREEMENT_VERSION = "2026-01"
HISTORY_LIMIT = 20
HISTORY_EVENTS = ("login", "logout", "certificate_unbound", "session_ended", "agreement_consented")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


# --- session helpers ------------------------------------------------------------------------------


def _session() -> tuple[SessionRecord, Account]:
    """The live session and its account; ``credentials_invalid`` (not signed in) otherwise."""
    sessions = get_sessions()
    record = sessions.current(request, at=clock.now())
    if record is None:
        g.certgate_skip_audit = True
        raise NotSignedIn("no live session")
    account = get_accounts().get(record.account_id)
    if account is None or not account_is_usable(account):
        sessions.end(record, everywhere=False)
        g.certgate_skip_audit = True
        raise NotSignedIn("the account of this session can no longer sign in")
    return record, account


def _state_change(
    event: str, schema: dict[str, type], *, optional: dict[str, type] | None = None
) -> tuple[SessionRecord, Account, dict[str, Any]]:
    """Origin, session, CSRF token and JSON body (with ``schema``) of a state change."""
    context = begin_audit(event)
    check_origin()
    record, account = _session()
    context.account_public_id = account.public_id
    if not get_sessions().csrf_ok(record, request):
        raise BadRequest("missing or wrong CSRF token")
    return record, account, json_body(schema, optional=optional)


def session_reference(id_hash: str) -> str:
    """A public handle for a session: not its cookie, not the stored hash of the cookie."""
    return hashlib.sha256(b"certgate session reference\x00" + id_hash.encode()).hexdigest()[:24]


# --- who is signed in -----------------------------------------------------------------------------


@bp.get("")
def account_info() -> Response:
    g.certgate_skip_audit = True
    record, account = _session()
    view = get_accounts().view(account)
    return jsonify(
        {
            "ok": True,
            "account": {
                **view.to_api(),
                "status": view.status,
                "login_name": view.login_name,
                "legal_representative": view.legal_representative,
                "id_card_number_masked": view.id_card_number_masked,
                "phone_masked": view.phone_masked,
                "real_name_level": view.real_name_level,
                "agreement_version": account.agreement_version,
                "agreement_consented_at": _iso(account.agreement_consented_at),
            },
            "amr": list(record.amr),
            "acr": record.acr,
            "csrf_token": record.csrf_token,
            "session": {
                "created_at": _iso(record.created_at),
                "expires_at": _iso(record.expires_at),
            },
            "agreement_version": agreement_version(),
        }
    )


# --- bound certificates ---------------------------------------------------------------------------


def _last_used(thumbprint: str | None, account_public_id: str) -> datetime | None:
    if not thumbprint:
        return None
    with get_database().session() as session:
        return session.scalar(
            select(AuditRecord.at)
            .where(
                AuditRecord.account_public_id == account_public_id,
                AuditRecord.certificate_thumbprint == thumbprint,
                AuditRecord.event == "login",
                AuditRecord.outcome == "ok",
            )
            .order_by(AuditRecord.id.desc())
            .limit(1)
        )


def _binding_entry(binding: CertificateBinding, account: Account) -> dict[str, Any]:
    catalogue = get_certificates()
    thumbprint: str | None = None
    issuer: str | None = None
    if binding.kind == BindingKind.SHA256:
        thumbprint = binding.value
        summary = catalogue.by_thumbprint(binding.value)
    else:
        issuer = binding.value.partition("@")[2]
        summary = catalogue.by_issuer_serial(binding.value)
        thumbprint = summary.thumbprint if summary else None
    return {
        "kind": binding.kind,
        "value": binding.value,
        "label": binding.label,
        "bound_at": _iso(binding.created_at),
        "subject": summary.subject if summary else None,
        "issuer": summary.issuer if summary else issuer,
        "not_after": _iso(summary.not_after) if summary else None,
        "last_used_at": _iso(_last_used(thumbprint, account.public_id)),
    }


@bp.get("/certificates")
def certificates() -> Response:
    g.certgate_skip_audit = True
    _, account = _session()
    with get_database().session() as session:
        bindings = session.scalars(
            select(CertificateBinding)
            .where(CertificateBinding.account_id == account.id)
            .order_by(CertificateBinding.id)
        ).all()
        entries = [_binding_entry(binding, account) for binding in bindings]
    return jsonify({"ok": True, "certificates": entries})


@bp.post("/certificates/unbind")
def unbind() -> Response:
    _, account, body = _state_change("certificate_unbound", {"kind": str, "value": str})
    from gateway.lifecycle.notices import get_notices

    now = clock.now()
    try:
        get_accounts().unbind(account.public_id, body["kind"], body["value"], at=now)
    except AccountInputError as exc:
        raise BadRequest(str(exc)) from None
    if body["kind"] == BindingKind.SHA256:
        g.certgate_audit.certificate_thumbprint = body["value"][:64]
    get_notices().post(account.id, "certificate_unbound", at=now)
    write_audit("ok")
    return jsonify({"ok": True})


# --- sessions -------------------------------------------------------------------------------------


def _live_sessions(account_id: int) -> list[LoginSession]:
    now = clock.now()
    idle = get_sessions().idle
    with get_database().session() as session:
        rows = session.scalars(
            select(LoginSession)
            .where(LoginSession.account_id == account_id, LoginSession.expires_at > now)
            .order_by(LoginSession.created_at.desc())
        ).all()
    return [row for row in rows if row.last_seen_at + idle > now]


@bp.get("/sessions")
def sessions() -> Response:
    g.certgate_skip_audit = True
    record, account = _session()
    entries = [
        {
            "id": session_reference(row.id_hash),
            "amr": row.amr.split(),
            "acr": row.acr,
            "created_at": _iso(row.created_at),
            "last_seen_at": _iso(row.last_seen_at),
            "expires_at": _iso(row.expires_at),
            "current": row.id_hash == record.id_hash,
        }
        for row in _live_sessions(account.id)
    ]
    entries.sort(key=lambda entry: not entry["current"])  # this session first, then newest
    return jsonify({"ok": True, "sessions": entries})


@bp.post("/sessions/end")
def end_session() -> Response:
    record, account, body = _state_change("session_ended", {"id": str})
    store = get_sessions().store
    for row in _live_sessions(account.id):
        if session_reference(row.id_hash) == body["id"]:
            store.delete(row.id_hash)
            write_audit("ok", detail="current session" if row.id_hash == record.id_hash else None)
            return jsonify({"ok": True, "current": row.id_hash == record.id_hash})
    raise BadRequest("no such session of this account")


# --- login history --------------------------------------------------------------------------------


@bp.get("/history")
def history() -> Response:
    g.certgate_skip_audit = True
    _, account = _session()
    with get_database().session() as session:
        rows = session.scalars(
            select(AuditRecord)
            .where(
                AuditRecord.account_public_id == account.public_id,
                AuditRecord.event.in_(HISTORY_EVENTS),
            )
            .order_by(AuditRecord.id.desc())
            .limit(HISTORY_LIMIT)
        ).all()
        entries = [
            {
                "at": _iso(row.at),
                "event": row.event,
                "method": row.method,
                "outcome": row.outcome,
                "address": row.address,
                "certificate_thumbprint": row.certificate_thumbprint,
            }
            for row in rows
        ]
    return jsonify({"ok": True, "history": entries})


# --- agreement consent ----------------------------------------------------------------------------


def agreement_version(app: Flask | None = None) -> str:
    """The current agreement version: the newest published one (gateway/lifecycle), else the
    configured ``agreement_version``."""
    from gateway.lifecycle.agreements import get_agreements

    return get_agreements(app).current().version


@bp.post("/consent")
def consent() -> Response:
    """Consent to the current version, kept in the consent history (gateway/lifecycle); an
    older version answers ``agreement_outdated``."""
    from gateway.lifecycle.agreements import get_agreements

    _, account, body = _state_change("agreement_consented", {"version": str})
    version = body["version"]
    if not get_agreements().record(account.id, version, how="account", at=clock.now()):
        g.certgate_skip_audit = True
        return jsonify({"ok": True, "recorded": False, "version": version})
    g.certgate_audit.notes.append(f"version {version}")
    write_audit("ok")
    return jsonify({"ok": True, "recorded": True, "version": version})


# --- cancellation ---------------------------------------------------------------------------------


@bp.post("/cancel")
def cancel() -> Response:
    """Cancellation (注销) by the holder: ``{"confirm": true}`` and a login in the last minutes
    (gateway/lifecycle/cancellation.py). The consent gate lets this through: a person may leave
    instead of accepting a new agreement."""
    from flask import current_app

    from gateway.lifecycle.cancellation import (
        check_recent_login,
        end_sessions_everywhere,
        erase_account,
    )

    record, account, body = _state_change("account_cancelled", {"confirm": bool})
    if body["confirm"] is not True:
        raise BadRequest('cancellation needs "confirm": true')
    now = clock.now()
    check_recent_login(record, at=now)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ended = end_sessions_everywhere(app, account.id, at=now, reason="account_cancelled")
    erase_account(app, account, at=now)
    g.certgate_audit.notes.append(f"ended {ended} session(s)")
    write_audit("ok")
    response = jsonify({"ok": True, "status": "cancelled", "sessions_ended": ended})
    get_sessions().clear_cookie(response)
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
