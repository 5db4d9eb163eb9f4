"""Single logout: when a gateway session ends, every client that received tokens or tickets in it
is told, and the tokens issued in it are revoked.

``end_session_everywhere`` is the one entry every place that ends sessions calls (logout, the
USB key pulled, expiry, an operator's freeze, a password reset, cancellation, signing out of one
application). In one transaction it marks the session's participations ended (each is told once,
however many paths end the same session), revokes the OpenID Connect access and refresh tokens
issued in the session, and queues one message per client in ``logout_deliveries``:

- OpenID Connect Back-Channel Logout 1.0: a ``logout_token`` JWT (``iss``, ``aud``, ``iat``,
  ``exp``, ``jti``, ``sid``, ``sub``, ``events``; never a ``nonce``; header ``typ: logout+jwt``),
  POSTed as the form field ``logout_token`` to the client's ``backchannel_logout_uri``. The queue
  keeps its claims; each attempt signs them afresh (a current ``iat``, the same ``jti``) with the
  active signing key of the client's algorithm.
- CAS single logout: a POST to the service URL the ticket was issued for, whose form field
  ``logoutRequest`` holds a SAML 2.0 ``<samlp:LogoutRequest>`` naming the ticket in
  ``<samlp:SessionIndex>`` (what the Java, PHP and .NET CAS clients read).

Callers queue before they delete the session row: a crash in between leaves a logout queued
for a session that is still there (it ends by itself), never a session ended with its clients
untold. ``LogoutWorker`` delivers from the queue in a background thread with a short timeout and
exponential back-off (10 s, 1 min, 5 min, 30 min, then every 2 h, given up after 24 h); every
attempt is audited, and nothing a client does (down, slow, refusing) delays a logout, which only
queues. Sessions that end without a call (idle or absolute expiry, a session replaced by a new
login) are found by ``end_expired_sessions``, run by the housekeeping and by the worker.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from flask import Flask, current_app, has_request_context
from joserfc import jwt
from sqlalchemy import ColumnElement, or_, select, update

from gateway.audit import AuditEntry, get_audit_log
from gateway.sso.models import (
    CAS,
    DELIVERY_DELIVERED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    OIDC,
    CasTicket,
    LogoutDelivery,
    SsoAccessToken,
    SsoParticipation,
    SsoRefreshToken,
)
from gateway.storage.database import get_database

log = logging.getLogger("certgate.sso.logout")

EXTENSION = "certgate.sso.logout"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TTL = timedelta(minutes=2)
DELIVERY_TIMEOUT = 5.0  # seconds, per attempt: a dead client costs the worker this much
# Waits after the 1st, 2nd, ... failed attempt; the last repeats until GIVE_UP_AFTER.
BACKOFF = (
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
)
GIVE_UP_AFTER = timedelta(hours=24)
# A delivery being attempted is leased for this long, so two workers (processes) sharing the
# queue never post the same message at once.
LEASE = timedelta(seconds=60)
BATCH = 20
POLL_SECONDS = 2.0
SWEEP_EVERY = timedelta(seconds=60)

# Why a session ended, as the queue and the audit trail name it: ``logout``, ``expired``,
# ``session_ended``, ``account_frozen`` (also suspended, terminated), ``account_cancelled``,
# ``password_reset``, ``application_signed_out``, ``consent_withdrawn``.
REASON = re.compile(r"[a-z_]{1,32}")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now(app: Flask) -> datetime:
    from gateway.clock import EXTENSION as CLOCK

    moment: datetime = app.extensions[CLOCK].now()
    return moment


def _audit(
    app: Flask, event: str, outcome: str, *, account: str | None, detail: str | None
) -> None:
    where = "local"
    if has_request_context():
        from gateway.http import address

        where = address()[:64]
    get_audit_log(app).append(
        AuditEntry(
            event=event,
            outcome=outcome,
            at=_now(app),
            method="sso",
            account_public_id=account,
            certificate_thumbprint=None,
            address=where,
            detail=detail,
        )
    )


# --- the messages -------------------------------------------------------------------------------


def cas_logout_request(ticket: str, name_id: str, at: datetime) -> str:
    """The SAML 2.0 LogoutRequest CAS clients expect (CAS protocol 3.0, §2.3.3)."""
    return (
        '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID={quoteattr("LR-" + secrets.token_hex(16))} Version="2.0" '
        f"IssueInstant={quoteattr(_iso(at))}>"
        f"<saml:NameID>{escape(name_id)}</saml:NameID>"
        f"<samlp:SessionIndex>{escape(ticket)}</samlp:SessionIndex>"
        "</samlp:LogoutRequest>"
    )


def logout_token(app: Flask, claims: dict[str, Any], at: datetime) -> str:
    """The signed Back-Channel Logout token for queued ``claims`` (``aud``, ``sub``, ``sid``,
    ``jti``), issued now."""
    from gateway.sso.clients import get_clients
    from gateway.sso.keys import get_keys

    client = get_clients(app).get(claims["aud"])
    algorithm = client.id_token_signed_response_alg if client is not None else "RS256"
    key = get_keys(app).signing_key(algorithm)
    issued = int(at.timestamp())
    body = {
        "iss": app.config["PUBLIC_ORIGIN"],
        "iat": issued,
        "exp": issued + int(LOGOUT_TOKEN_TTL.total_seconds()),
        "events": {BACKCHANNEL_EVENT: {}},
        **claims,
    }
    header = {"alg": algorithm, "kid": key.kid, "typ": "logout+jwt"}
    return jwt.encode(header, body, key)


# --- ending sessions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Queued:
    client_id: str
    protocol: str
    account: str


def end_session_everywhere(
    reason: str,
    *,
    session_id: str | None = None,
    account_id: int | None = None,
    except_session_id: str | None = None,
    client_id: str | None = None,
    app: Flask | None = None,
) -> int:
    """Tell every client of the ending session(s) and revoke their tokens; the number of logout
    messages queued.

    ``session_id`` names one gateway session (the session row's ``id_hash``); ``account_id``
    every session of that account (``except_session_id`` spared: a password change keeps the
    session it was made in); ``client_id`` narrows both to one application (signing out of it
    from the account page). Call it before the session rows are deleted.
    """
    from gateway.accounts import get_accounts
    from gateway.sso.clients import get_clients

    if not REASON.fullmatch(reason):
        raise ValueError(f"unknown single logout reason {reason!r}")
    if session_id is None and account_id is None:
        raise ValueError("name a session or an account")
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    now = _now(app)
    account_public_id = None
    if account_id is not None:
        account = get_accounts(app).get(account_id)
        account_public_id = account.public_id if account is not None else None
    which = []
    if session_id is not None:
        which.append(SsoParticipation.gateway_session_id == session_id)
    if account_public_id is not None:
        which.append(SsoParticipation.account_public_id == account_public_id)
    if not which:
        return 0
    query = select(SsoParticipation).where(SsoParticipation.ended_at.is_(None), or_(*which))
    if except_session_id is not None:
        query = query.where(SsoParticipation.gateway_session_id != except_session_id)
    if client_id is not None:
        query = query.where(SsoParticipation.client_id == client_id)
    clients = get_clients(app)
    queued: list[_Queued] = []
    sessions: set[str] = set() if session_id is None else {session_id}
    with get_database(app).session() as session:
        for row in session.scalars(query.order_by(SsoParticipation.id)).all():
            # One conditional update per participation: a session ended by two paths at once
            # (an operator's freeze during the person's own logout) is told once.
            claimed = session.execute(
                update(SsoParticipation)
                .where(SsoParticipation.id == row.id, SsoParticipation.ended_at.is_(None))
                .values(ended_at=now)
            )
            if not getattr(claimed, "rowcount", 0):
                continue
            sessions.add(row.gateway_session_id)
            client = clients.get(row.client_id)
            delivery = _delivery_for(session, row, client, reason, now)
            if delivery is not None:
                session.add(delivery)
                queued.append(_Queued(row.client_id, row.protocol, row.account_public_id))
        _revoke_tokens(session, sessions, account_id, except_session_id, client_id, now)
    for item in queued:
        _audit(
            app,
            "sso_logout_queued",
            "ok",
            account=item.account,
            detail=f"{reason}; client {item.client_id} ({item.protocol})",
        )
    if queued:
        worker = app.extensions.get(EXTENSION)
        if worker is not None:
            worker.wake()
    return len(queued)


def _delivery_for(
    session: Any, row: SsoParticipation, client: Any, reason: str, now: datetime
) -> LogoutDelivery | None:
    if client is None:
        return None
    if row.protocol == OIDC:
        if not client.backchannel_logout_uri:
            return None  # the client registered no back-channel: its tokens are revoked only
        url = client.backchannel_logout_uri
        payload = json.dumps(
            {
                "aud": row.client_id,
                "sub": row.account_public_id,
                "sid": row.sid,
                "jti": secrets.token_urlsafe(16),
            },
            sort_keys=True,
        )
    else:
        if row.cas_ticket is None:
            return None
        from gateway.sso.cas import ticket_hash

        ticket = session.get(CasTicket, ticket_hash(row.cas_ticket))
        if ticket is None:
            return None
        url = ticket.service
        payload = cas_logout_request(row.cas_ticket, row.account_public_id, now)
    return LogoutDelivery(
        client_id=row.client_id,
        protocol=row.protocol,
        payload=payload,
        attempts=0,
        next_attempt_at=now,
        state=DELIVERY_PENDING,
        created_at=now,
        url=url,
        account_public_id=row.account_public_id,
        reason=reason,
    )


def _revoke_tokens(
    session: Any,
    sessions: set[str],
    account_id: int | None,
    except_session_id: str | None,
    client_id: str | None,
    now: datetime,
) -> None:
    for table in (SsoAccessToken, SsoRefreshToken):
        which: list[ColumnElement[bool]] = []
        if sessions:
            which.append(table.gateway_session_id.in_(sessions))
        if account_id is not None:
            which.append(table.account_id == account_id)
        if not which:
            continue
        statement = update(table).where(table.revoked_at.is_(None), or_(*which))
        if except_session_id is not None:
            statement = statement.where(table.gateway_session_id != except_session_id)
        if client_id is not None:
            statement = statement.where(table.client_id == client_id)
        session.execute(statement.values(revoked_at=now))


def end_expired_sessions(app: Flask, now: datetime) -> int:
    """Single logout for sessions that ended without anyone calling: expired (idle or
    absolute), replaced by a new login, or deleted by an older path. The messages queued."""
    from gateway.sessions import get_sessions

    manager = get_sessions(app)
    with get_database(app).session() as session:
        live = list(
            session.scalars(
                select(SsoParticipation.gateway_session_id)
                .where(SsoParticipation.ended_at.is_(None))
                .distinct()
            ).all()
        )
    queued = 0
    for gateway_session_id in live:
        record = manager.store.get(gateway_session_id)
        if (
            record is not None
            and now < record.expires_at
            and now < record.last_seen_at + (manager.idle)
        ):
            continue
        reason = "session_ended" if record is None else "expired"
        queued += end_session_everywhere(reason, session_id=gateway_session_id, app=app)
    return queued


# --- delivery -----------------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is not a delivery (and must not turn the POST into a GET)


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post_form(url: str, fields: dict[str, str], timeout: float) -> None:
    """POST ``fields`` as application/x-www-form-urlencoded; raises on anything but 2xx."""
    body = urllib.parse.urlencode(fields).encode("ascii")
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "CertGate single logout",
        },
    )
    with _OPENER.open(request, timeout=timeout) as answer:
        answer.read(4096)
        if not 200 <= answer.status < 300:
            raise urllib.error.HTTPError(url, answer.status, "not 2xx", answer.headers, None)


def _failure_text(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        return f"unreachable: {error.reason}"[:200]
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{error.__class__.__name__}: {error}"[:200]


def next_attempt(created_at: datetime, attempts: int, now: datetime) -> datetime | None:
    """When to try again after ``attempts`` failures, or None to give up."""
    wait = BACKOFF[min(attempts, len(BACKOFF)) - 1]
    at = now + wait
    return at if at <= created_at + GIVE_UP_AFTER else None


class LogoutWorker:
    """Delivers queued logout messages. ``run_once`` is one pass (what the thread repeats every
    ``POLL_SECONDS``, or at once when woken; tests call it directly)."""

    def __init__(self, app: Flask, *, background: bool) -> None:
        self.app = app
        self.background = background
        self.timeout = DELIVERY_TIMEOUT
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_sweep: datetime | None = None

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or not self.background or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name="certgate-single-logout", daemon=True
            )
            self._thread.start()

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def stop(self, timeout: float = DELIVERY_TIMEOUT + 5) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = _now(self.app)
                if self._last_sweep is None or now - self._last_sweep >= SWEEP_EVERY:
                    self._last_sweep = now
                    end_expired_sessions(self.app, now)
                self.run_once(now)
            except Exception:  # noqa: BLE001 - the worker outlives a bad pass and tries again
                log.exception("single logout pass failed")
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    # --- one pass -----------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> int:
        """Attempt every delivery due at ``now``; the number attempted."""
        now = now or _now(self.app)
        database = get_database(self.app)
        with database.session() as session:
            due = session.execute(
                select(LogoutDelivery.id, LogoutDelivery.next_attempt_at)
                .where(
                    LogoutDelivery.state == DELIVERY_PENDING,
                    LogoutDelivery.next_attempt_at <= now,
                )
                .order_by(LogoutDelivery.next_attempt_at, LogoutDelivery.id)
                .limit(BATCH)
            ).all()
        attempted = 0
        for delivery_id, due_at in due:
            if self._stop.is_set() and self.background:
                break
            if self._claim(delivery_id, due_at, now):
                self._attempt(delivery_id, now)
                attempted += 1
        return attempted

    def _claim(self, delivery_id: int, due_at: datetime, now: datetime) -> bool:
        with get_database(self.app).session() as session:
            claimed = session.execute(
                update(LogoutDelivery)
                .where(
                    LogoutDelivery.id == delivery_id,
                    LogoutDelivery.state == DELIVERY_PENDING,
                    LogoutDelivery.next_attempt_at == due_at,
                )
                .values(next_attempt_at=now + LEASE)
            )
            return bool(getattr(claimed, "rowcount", 0))

    def _attempt(self, delivery_id: int, now: datetime) -> None:
        database = get_database(self.app)
        with database.session() as session:
            row = session.get_one(LogoutDelivery, delivery_id)
            protocol, url, payload = row.protocol, row.url or "", row.payload
            client_id, account, created_at = row.client_id, row.account_public_id, row.created_at
            attempts = row.attempts + 1
        error: str | None = None
        try:
            if protocol == OIDC:
                token = logout_token(self.app, json.loads(payload), now)
                _post_form(url, {"logout_token": token}, self.timeout)
            elif protocol == CAS:
                _post_form(url, {"logoutRequest": payload}, self.timeout)
            else:
                error = f"unknown protocol {protocol!r}"
        except Exception as exc:  # noqa: BLE001 - any failure of a client is a failed attempt
            error = _failure_text(exc)
        retry_at = None if error is None else next_attempt(created_at, attempts, now)
        with database.session() as session:
            row = session.get_one(LogoutDelivery, delivery_id)
            row.attempts = attempts
            row.last_error = error
            if error is None:
                row.state = DELIVERY_DELIVERED
                row.delivered_at = now
            elif retry_at is None:
                row.state = DELIVERY_FAILED
            else:
                row.next_attempt_at = retry_at
        outcome = "ok" if error is None else ("given_up" if retry_at is None else "failed")
        detail = f"client {client_id} ({protocol}); attempt {attempts}"
        if error is not None:
            detail += f"; {error}"
            if retry_at is not None:
                detail += f"; next at {_iso(retry_at)}"
        _audit(self.app, "sso_logout_delivery", outcome, account=account, detail=detail)


def init_app(app: Flask) -> LogoutWorker:
    """The delivery worker. It runs as a thread in a serving gateway (one with a certificate
    engine; operator commands only queue) unless ``SSO_LOGOUT_WORKER`` is false, and starts on
    the first message queued, or at once when messages wait from before."""
    serving = "certgate.engine" in app.extensions
    background = serving and bool(app.config.get("SSO_LOGOUT_WORKER", True))
    worker = LogoutWorker(app, background=background)
    app.extensions[EXTENSION] = worker
    if background:
        with get_database(app).session() as session:
            waiting = session.scalars(
                select(LogoutDelivery.id).where(LogoutDelivery.state == DELIVERY_PENDING).limit(1)
            ).first()
        if waiting is not None:
            worker.start()
    return worker


def get_logout_worker(app: Flask | None = None) -> LogoutWorker:
    return (app or current_app).extensions[EXTENSION]
