"""The browser's side of QR-code login: ask for a ticket, then hear its state.

``POST /api/v1/login/qr`` answers ``{"ticket", "qr_payload", "expires_at", "qr_image"}`` and sets
a cookie (``qr_cookie``, ``__Host-`` on an HTTPS origin) holding a secret only this browser has;
the ticket keeps its hash. ``GET /api/v1/login/qr/<ticket>`` answers only with that cookie:
``{"state"}`` at once, after a change (``?wait=N``, N ≤ 30, with ``since=<state>`` the state
the page last saw), or as server-sent events (``Accept: text/event-stream``). The JSON answer
that reports ``confirmed`` starts this browser's session, once; server-sent events cannot set
a cookie after their headers went out, so their ``confirmed`` tells the page to ask once more.

The QR code holds ``<public origin>/m/#qr=<scan code>``: a second secret, different from the
ticket, so whoever sees the code learns nothing that lets them follow or redeem the ticket,
and the scan code sits in the fragment, which no server or proxy logs.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Iterator
from datetime import datetime

import segno
from flask import Blueprint, Response, current_app, g, jsonify, request, stream_with_context

from certs.errors import BadRequest
from gateway import clock
from gateway.accounts import account_is_usable, account_summary, get_accounts
from gateway.assurance import LOA_PASSWORD, Assurance
from gateway.errors import AccountDisabled
from gateway.housekeeping import run_housekeeping
from gateway.http import address, begin_audit, check_origin, write_audit
from gateway.limits import get_guard
from gateway.qr.errors import QrTicketUnknown, QrTicketUsed
from gateway.qr.tickets import (
    CONFIRMED,
    EXTENSION,
    FINAL,
    STATES,
    WAITING,
    QrLogins,
    QrTicket,
    browser_hash,
    scan_hash,
    ticket_reference,
)
from gateway.sessions import get_sessions, set_secure_cookie
from gateway.storage.database import get_database

bp = Blueprint("qr_login", __name__, url_prefix="/api/v1/login/qr")

# DESIGN.md "Assurance": a login confirmed by the platform's mobile app.
MOBILE_APP = Assurance(("mca",), LOA_PASSWORD)
MAX_WAIT = 30
# One server-sent event stream lasts at most this long; the browser's EventSource then
# reconnects by itself after RETRY_MS (and so does one that found no free wait slot).
STREAM_SECONDS = 25
RETRY_MS = 2000
TICKET_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SCAN_FRAGMENT = "/m/#qr="


def qr_logins() -> QrLogins:
    return current_app.extensions[EXTENSION]


def _urlsafe(random: bytes) -> str:
    return base64.urlsafe_b64encode(random).rstrip(b"=").decode("ascii")


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def qr_payload(scan_code: str) -> str:
    return current_app.config["PUBLIC_ORIGIN"] + SCAN_FRAGMENT + scan_code


def scan_code_of(payload: str) -> str | None:
    """The scan code in a QR payload of this gateway; None for anything else."""
    prefix = current_app.config["PUBLIC_ORIGIN"] + SCAN_FRAGMENT
    if not payload.startswith(prefix):
        return None
    code = payload[len(prefix) :]
    return code if TICKET_RE.match(code) else None


# --- what the phone is shown about the requesting browser ---------------------------------------

# (User-Agent token, name shown); the first that matches names the browser. Chromium-based
# browsers carry "Chrome/" and Safari's token too, so the specific ones come first.
_BROWSERS = (
    ("MicroMessenger/", "WeChat"),
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("QQBrowser/", "QQ Browser"),
    ("UCBrowser/", "UC Browser"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),
)
_SYSTEMS = (
    ("Windows NT", "Windows"),
    ("HarmonyOS", "HarmonyOS"),
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)
MAX_BROWSER_TEXT = 120


def describe_browser(user_agent: str) -> str:
    """A short name for a User-Agent, e.g. "Chrome 142 · Windows"; the raw text, cut short,
    when neither browser nor system is recognised."""
    name = next(
        (
            f"{shown} {match.group(1)}"
            for token, shown in _BROWSERS
            if (match := re.search(re.escape(token) + r"(\d+)", user_agent))
        ),
        None,
    )
    system = next((shown for token, shown in _SYSTEMS if token in user_agent), None)
    parts = [part for part in (name, system) if part]
    text = " · ".join(parts) if parts else user_agent.strip() or "?"
    return "".join(c for c in text if c.isprintable())[:MAX_BROWSER_TEXT]


# --- the ticket ---------------------------------------------------------------------------------


@bp.post("")
def new_ticket() -> Response:
    context = begin_audit("qr_login", "qr")
    check_origin()
    now = clock.now()
    logins = qr_logins()
    run_housekeeping(now)
    logins.purger.maybe_run(now)
    get_guard().admit_qr_ticket(address(), now, limit=logins.address_limit)
    secret = request.cookies.get(logins.cookie_name)
    fresh = not secret or not TICKET_RE.match(secret)
    random = secrets.token_bytes(18 + 32 + 32)
    if fresh:
        secret = _urlsafe(random[50:])
    assert secret is not None
    ticket = QrTicket(
        id=_urlsafe(random[:18]),
        browser_hash=browser_hash(secret),
        state=WAITING,
        address=address()[:64],
        browser=describe_browser(request.headers.get("User-Agent", "")),
        created_at=now,
        expires_at=now + logins.ttl,
        account_id=None,
        scanner_hash=None,
        redeemed_at=None,
    )
    scan_code = _urlsafe(random[18:50])
    payload = qr_payload(scan_code)
    with get_database().connection():
        logins.store.put(ticket, scan_hash=scan_hash(scan_code))
        context.notes.append(f"ticket {ticket_reference(ticket.id)}")
        write_audit(WAITING)
    response = jsonify(
        {
            "ok": True,
            "ticket": ticket.id,
            "qr_payload": payload,
            "expires_at": _iso(ticket.expires_at),
            # The QR code itself, drawn here: the page needs no outside service or script.
            "qr_image": segno.make(payload, error="m").svg_data_uri(scale=6, border=4),
        }
    )
    response.status_code = 201
    # Kept as long as the ticket lives; a browser that asks again keeps its secret, so two
    # tabs showing QR codes can both be confirmed.
    set_secure_cookie(response, logins.cookie_name, secret, max_age=int(logins.ttl.total_seconds()))
    return response


def _own_ticket(ticket_id: str) -> QrTicket:
    """The ticket, if this browser holds its secret; ``qr_ticket_unknown`` for anyone else
    (someone who saw the QR code, or only the ticket id, learns nothing from the answer)."""
    logins = qr_logins()
    found = logins.store.get(ticket_id) if TICKET_RE.match(ticket_id) else None
    if found is None or not found.browser_matches(request.cookies.get(logins.cookie_name)):
        raise QrTicketUnknown("no such ticket for this browser's secret cookie")
    return found


def _state_answer(ticket: QrTicket, state: str) -> Response:
    g.certgate_skip_audit = True  # hearing a state changes nothing
    return jsonify({"ok": True, "state": state, "expires_at": _iso(ticket.expires_at)})


def _redeem(ticket: QrTicket) -> Response:
    """The confirmed ticket's login: this browser's new session, for the phone's account."""
    context = begin_audit("login", "qr")
    context.notes.append(f"ticket {ticket_reference(ticket.id)}")
    now = clock.now()
    accounts = get_accounts()
    account = accounts.get(ticket.account_id) if ticket.account_id is not None else None
    if account is not None:
        context.account_public_id = account.public_id
    if ticket.redeemed_at is not None:
        raise QrTicketUsed("the ticket's login has already started")
    if account is None or not account_is_usable(account):
        raise AccountDisabled("the phone's account can no longer sign in")
    sessions = get_sessions()
    # Redemption, session and audit record commit together: one winner, never a session
    # without its record.
    with get_database().connection():
        if not qr_logins().store.redeem(ticket.id, browser_hash=ticket.browser_hash, at=now):
            raise QrTicketUsed("another answer started the ticket's login")
        started = sessions.start(
            account.id,
            MOBILE_APP.amr,
            acr=MOBILE_APP.acr,
            at=now,
            previous_token=request.cookies.get(sessions.cookie_name),
        )
        write_audit("ok")
    response = jsonify(
        {
            "ok": True,
            "state": CONFIRMED,
            "account": account_summary(account, accounts.shown_name(account)),
            "amr": list(MOBILE_APP.amr),
            "acr": MOBILE_APP.acr,
            "csrf_token": started.record.csrf_token,
        }
    )
    sessions.set_cookie(response, started.token)
    qr_logins().watch.changed()
    return response


def _read_state(ticket_id: str) -> str | None:
    found = qr_logins().store.get(ticket_id)
    return found.state_at(clock.now()) if found is not None else None


def _event(state: str) -> str:
    return f"event: state\ndata: {json.dumps({'state': state})}\n\n"


def _stream(ticket_id: str) -> Iterator[str]:
    watch = qr_logins().watch
    waiting = watch.try_slot()
    try:
        yield f"retry: {RETRY_MS}\n\n"
        deadline = time.monotonic() + (STREAM_SECONDS if waiting else 0)
        seen: str | None = None
        state = _read_state(ticket_id)
        while state is not None:
            if state != seen:
                yield _event(state)
                seen = state
            remaining = deadline - time.monotonic()
            if state in FINAL or remaining <= 0:
                return
            state = watch.wait_for(lambda: _read_state(ticket_id), seen, seconds=remaining)
    finally:
        if waiting:
            watch.release_slot()


@bp.get("/<ticket_id>")
def ticket_state(ticket_id: str) -> Response:
    begin_audit("qr_login", "qr")
    ticket = _own_ticket(ticket_id)
    if request.accept_mimetypes.best == "text/event-stream":
        g.certgate_skip_audit = True
        response = Response(stream_with_context(_stream(ticket.id)), mimetype="text/event-stream")
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response
    wait_text = request.args.get("wait", "0")
    if not wait_text.isdigit() or int(wait_text) > MAX_WAIT:
        raise BadRequest(f"wait is a whole number of seconds up to {MAX_WAIT}")
    since = request.args.get("since")
    if since is not None and since not in STATES:
        raise BadRequest("since is one of " + ", ".join(STATES))
    now = clock.now()
    state = ticket.state_at(now)
    wait = int(wait_text)
    logins = qr_logins()
    if wait and logins.watch.try_slot():
        try:
            latest = logins.watch.wait_for(
                lambda: _read_state(ticket.id), since or state, seconds=wait
            )
        finally:
            logins.watch.release_slot()
        if latest is None:
            raise QrTicketUnknown("the ticket is gone")
        ticket = _own_ticket(ticket.id)
        state = ticket.state_at(clock.now())
    if state == CONFIRMED:
        return _redeem(ticket)
    return _state_answer(ticket, state)
