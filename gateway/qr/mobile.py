"""The phone's side of QR-code login, and ``/m/``, the phone-width web app that stands in for the
platform's mobile app (a mini-program in production).

The phone is signed in through the ordinary login routes (password; SMS code where the gateway
has it) and calls, with that session, its CSRF token in ``X-CSRF-Token`` and a JSON body:

- ``POST /api/v1/mobile/qr/scan {"qr_payload"}`` → ``{"ticket", "site", "address", "browser",
  "requested_at"}``: what the person is shown before deciding (the site the login is for, the
  requesting browser's address and kind, when it asked). A ticket is scanned once; from then
  on only the session that scanned it may decide.
- ``POST /api/v1/mobile/qr/confirm {"ticket"}`` and ``POST /api/v1/mobile/qr/cancel
  {"ticket"}``: decided once.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.wrappers import Response as BaseResponse

from certs.errors import BadRequest
from gateway import clock
from gateway.accounts import account_is_usable, get_accounts
from gateway.errors import NotSignedIn
from gateway.http import begin_audit, check_origin, json_body, write_audit
from gateway.qr.browser import TICKET_RE, qr_logins, scan_code_of
from gateway.qr.errors import QrTicketExpired, QrTicketUnknown, QrTicketUsed
from gateway.qr.tickets import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    SCANNED,
    WAITING,
    QrTicket,
    scan_hash,
    scanner_hash,
    ticket_reference,
)
from gateway.sessions import get_sessions
from gateway.storage.models import Account
from gateway.stores import SessionRecord
from gateway.web import render_page

bp = Blueprint("qr_mobile", __name__, url_prefix="/api/v1/mobile/qr")
pages = Blueprint("qr_pages", __name__)

MAX_PAYLOAD_LENGTH = 512


def _phone_session(event: str) -> tuple[SessionRecord, Account, dict[str, str]]:
    """Origin, the phone's live session, its CSRF token, and the JSON body's one field."""
    context = begin_audit("qr_login", "qr")
    context.notes.append(event)
    check_origin()
    sessions = get_sessions()
    record = sessions.current(request, at=clock.now())
    if record is None:
        g.certgate_skip_audit = True
        raise NotSignedIn("no live session on the phone")
    account = get_accounts().get(record.account_id)
    if account is None or not account_is_usable(account):
        sessions.end(record, everywhere=False)
        g.certgate_skip_audit = True
        raise NotSignedIn("the phone's account can no longer sign in")
    context.account_public_id = account.public_id
    if not sessions.csrf_ok(record, request):
        raise BadRequest("missing or wrong CSRF token")
    field = "qr_payload" if event == "scan" else "ticket"
    body = json_body({field: str})
    limit = MAX_PAYLOAD_LENGTH if event == "scan" else 64
    if not 0 < len(body[field]) <= limit:
        raise BadRequest(f"{field} has the wrong length")
    return record, account, body


def _refuse(ticket: QrTicket) -> None:
    """Why a ticket in the wrong state cannot take this step."""
    if ticket.state_at(clock.now()) == EXPIRED:
        raise QrTicketExpired("the ticket has expired")
    raise QrTicketUsed(f"the ticket is {ticket.state}")


@bp.post("/scan")
def scan() -> Response:
    record, account, body = _phone_session("scan")
    logins = qr_logins()
    code = scan_code_of(body["qr_payload"])
    ticket = logins.store.find_by_scan(scan_hash(code)) if code else None
    if ticket is None:
        raise QrTicketUnknown("not a login QR code of this gateway, or an unknown one")
    g.certgate_audit.notes.append(f"ticket {ticket_reference(ticket.id)}")
    now = clock.now()
    if ticket.state_at(now) != WAITING or not logins.store.scan(
        ticket.id, account_id=account.id, scanner_hash=scanner_hash(record.id_hash), at=now
    ):
        _refuse(logins.store.get(ticket.id) or ticket)
    write_audit(SCANNED)
    logins.watch.changed()
    return jsonify(
        {
            "ok": True,
            "ticket": ticket.id,
            "site": current_app.config["PUBLIC_ORIGIN"],
            "address": ticket.address,
            "browser": ticket.browser,
            "requested_at": ticket.created_at.isoformat().replace("+00:00", "Z"),
            "expires_at": ticket.expires_at.isoformat().replace("+00:00", "Z"),
        }
    )


def _decide(state: str) -> Response:
    record, _account, body = _phone_session("confirm" if state == CONFIRMED else "cancel")
    logins = qr_logins()
    ticket_id = body["ticket"]
    ticket = logins.store.get(ticket_id) if TICKET_RE.match(ticket_id) else None
    if ticket is None or not ticket.scanned_by(record.id_hash):
        raise QrTicketUnknown("no ticket scanned by this session")
    g.certgate_audit.notes.append(f"ticket {ticket_reference(ticket.id)}")
    now = clock.now()
    if ticket.state_at(now) != SCANNED or not logins.store.decide(
        ticket.id, state, scanner_hash=scanner_hash(record.id_hash), at=now
    ):
        _refuse(logins.store.get(ticket.id) or ticket)
    write_audit(state)
    logins.watch.changed()
    return jsonify({"ok": True, "state": state})


@bp.post("/confirm")
def confirm() -> Response:
    return _decide(CONFIRMED)


@bp.post("/cancel")
def cancel() -> Response:
    return _decide(CANCELLED)


@pages.get("/m/")
def mobile_app() -> BaseResponse:
    return render_page(
        "mobile.html",
        # The SMS-code login is offered when this gateway has it (gateway/lifecycle).
        sms_login="credentials.sms_login" in current_app.view_functions,
    )
