"""Acting for an enterprise: ``POST /api/v1/session/act-as``, the check on every request while
acting, what the session, the pages, the audit trail and single sign-on show of it.

A session acts for one enterprise at a time, and only while the person holds a role for it
(gateway/roles/roles.py). The person stays the signed-in account: the audit trail names the
person as the account and the enterprise in every record's detail, and applications receive
the person's ``sub`` with ``acting_for``.

Every request of an acting session re-checks the role (``acting_gate``, one ``before_request``
hook): when the role has ended meanwhile (expired, revoked, left, the legal representative
changed, the enterprise frozen), JSON routes and the sign-on endpoints answer ``403
role_required`` until the person switches back (or to another role); pages still render, with
the banner saying so. Switching silently back to the person would have the person do in their
own name what they meant to do for the enterprise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from sqlalchemy import bindparam, delete, select
from werkzeug.wrappers import Response as BaseResponse

from gateway import clock
from gateway.http import begin_audit, write_audit
from gateway.roles.errors import RoleRequired
from gateway.roles.models import ActingSession
from gateway.roles.roles import Role, get_roles
from gateway.sessions import get_sessions, token_hash
from gateway.storage.database import get_database
from gateway.storage.models import ENTERPRISE, PERSON, Account
from gateway.storage.prepared import Prepared

bp = Blueprint("acting", __name__, url_prefix="/api/v1/session")

# What a session whose role ended may still reach: switching (back or to another role), seeing
# who it is and which roles it has, signing out or in again, and the pages and assets (which
# show the banner). Everything else carrying the session cookie answers role_required.
ALLOWED_WHEN_ROLE_ENDED = frozenset(
    {
        "static",
        "web.static",
        "acting.act_as",
        "staff.roles",
        "login.session_info",
        "login.logout",
        "login.challenge",
        "login.token_login",
        "login.tls_login",
        "login.password_login",
        "credentials.sms_login",
    }
)
# Browser endpoints of single sign-on: refused with a page, not JSON.
SIGN_ON_PAGES = frozenset({"sso_oidc.authorize", "sso_cas.login"})


@dataclass(frozen=True)
class Acting:
    """What the current request's session is doing for an enterprise."""

    person_id: int
    person_public_id: str
    role: Role | None  # None: the role has ended; the session must switch
    enterprise_public_id: str
    enterprise_name: str
    uscc: str | None

    def audit_note(self) -> str:
        role = self.role.role if self.role is not None else "ended role"
        return f"acting for enterprise {self.enterprise_public_id} as {role}"


def acting() -> Acting | None:
    """The current request's acting state (set by ``acting_gate``)."""
    found: Acting | None = g.get("certgate_acting")
    return found


def acting_role() -> Role | None:
    current = acting()
    return current.role if current is not None else None


_ACTING_ROW = Prepared(
    select(ActingSession.session_hash).where(
        ActingSession.session_hash == bindparam("session_hash")
    )
)


def _cookie_hash() -> str | None:
    token = request.cookies.get(get_sessions().cookie_name)
    if not token or len(token) > 128:
        return None
    return token_hash(token)


def _load(session_hash: str, *, at: datetime) -> Acting | None:
    """The acting state of a session; a row whose session is gone is removed."""
    database = get_database()
    # Most sessions act for nobody: one small statement on every request says so.
    with database.connection() as connection:
        if _ACTING_ROW.execute(connection, {"session_hash": session_hash}).one_or_none() is None:
            return None
    with database.session() as session:
        row = session.get(ActingSession, session_hash)
        if row is None:
            return None
        record = get_sessions().store.get(session_hash)
        ended = record is None or at >= record.expires_at or record.account_id != row.person_id
        if not ended:
            person = session.get(Account, row.person_id)
            enterprise = session.get(Account, row.enterprise_id)
            if person is None or enterprise is None:
                return None
            person_public_id = person.public_id
            enterprise_public_id = enterprise.public_id
            name, uscc = enterprise.display_name, enterprise.unified_social_credit_code
            person_id, enterprise_id = row.person_id, row.enterprise_id
    if ended:
        # On the Core connection: inside a request's open unit of work (an SSO token
        # exchange) this joins it rather than waiting on it for the write lock.
        with database.connection() as connection:
            connection.execute(
                delete(ActingSession).where(ActingSession.session_hash == session_hash)
            )
        return None
    role = get_roles().role_for(person_id, enterprise_id, at=at)
    return Acting(person_id, person_public_id, role, enterprise_public_id, name, uscc)


def acting_gate() -> BaseResponse | None:
    """Before every request: the session's acting state, its role checked again."""
    if request.endpoint is None or request.endpoint in ("static", "web.static"):
        return None
    session_hash = _cookie_hash()
    if session_hash is None:
        return None
    current = _load(session_hash, at=clock.now())
    if current is None:
        return None
    g.certgate_acting = current
    # Every audit record this request writes names the enterprise beside the person.
    g.certgate_acting_note = current.audit_note()
    if current.role is not None or request.endpoint in ALLOWED_WHEN_ROLE_ENDED:
        return None
    refused = RoleRequired(f"{request.endpoint}: the role for the enterprise has ended")
    if request.endpoint in SIGN_ON_PAGES:
        from gateway.sso.pages import error_page, message_of

        context = begin_audit("acting_refused")
        context.account_public_id = current.person_public_id
        context.notes.append(request.endpoint)
        write_audit(refused.code, detail=refused.detail)
        g.certgate_skip_audit = True
        return error_page(refused.code, message_of(refused), status=403)
    if request.path.startswith("/api/") or request.method not in ("GET", "HEAD"):
        context = begin_audit("acting_refused")
        context.account_public_id = current.person_public_id
        raise refused
    return None  # a page: the banner tells what happened and offers switching back


def record_unaudited_action(response: Response) -> Response:
    """A state-changing request while acting that wrote no audit record of its own (some
    routes skip theirs, e.g. marking messages read) is recorded here: every action while
    acting is in the trail with the person and the enterprise."""
    current = acting()
    if current is None or request.method in ("GET", "HEAD", "OPTIONS"):
        return response
    if g.get("certgate_audit_written"):
        return response
    context = begin_audit("acting_request")
    context.account_public_id = current.person_public_id
    context.notes.append(request.endpoint or request.path[:64])
    write_audit("ok" if response.status_code < 400 else f"http_{response.status_code}")
    return response


def add_acting_to_session(response: Response) -> Response:
    """``GET /api/v1/session`` (and the account page's ``GET /api/v1/account``) show
    ``acting_for``: the enterprise and role, or null."""
    if request.endpoint not in ("login.session_info", "account_api.account_info"):
        return response
    if response.status_code != 200 or not response.is_json:
        return response
    body = response.get_json()
    if not isinstance(body, dict) or body.get("ok") is not True:
        return response
    current = acting()
    body["acting_for"] = current.role.acting_for() if current and current.role else None
    if current is not None and current.role is None:
        body["acting_ended"] = {
            "id": current.enterprise_public_id,
            "uscc": current.uscc,
            "name": current.enterprise_name,
        }
    response.set_data(current_app.json.dumps(body))
    return response


# --- switching ------------------------------------------------------------------------------------


@bp.post("/act-as")
def act_as() -> Response:
    from gateway.account_api import _state_change

    record, account, body = _state_change("act_as", {}, optional={"enterprise_id": str})
    # The note of the request is about the switch itself, not the state before it.
    g.pop("certgate_acting_note", None)
    context = g.certgate_audit
    now = clock.now()
    database = get_database()
    previous = acting()
    if previous is not None:
        context.notes.append(f"was acting for enterprise {previous.enterprise_public_id}")
    enterprise_id = body.get("enterprise_id")
    if enterprise_id is None:
        with database.session() as session:
            session.execute(
                delete(ActingSession).where(ActingSession.session_hash == record.id_hash)
            )
        context.notes.append("acting for oneself")
        write_audit("ok")
        return jsonify({"ok": True, "acting_for": None})
    if len(enterprise_id) > 64:
        raise RoleRequired("enterprise_id too long")
    context.notes.append(f"enterprise {enterprise_id}")
    with database.session() as session:
        enterprise = session.scalars(
            select(Account).where(Account.public_id == enterprise_id, Account.kind == ENTERPRISE)
        ).one_or_none()
    if account.kind != PERSON or enterprise is None:
        raise RoleRequired("only a person with a role acts for an enterprise")
    role = get_roles().role_for(account.id, enterprise.id, at=now)
    if role is None:
        raise RoleRequired("no current role for the enterprise")
    horizon = now - timedelta(seconds=current_app.config["SESSION_ABSOLUTE_TIMEOUT"])
    with database.session() as session:
        # Rows of sessions that have certainly ended (older than any session can live).
        session.execute(delete(ActingSession).where(ActingSession.started_at < horizon))
        row = session.get(ActingSession, record.id_hash)
        if row is None:
            row = ActingSession(session_hash=record.id_hash)
            session.add(row)
        row.person_id = account.id
        row.enterprise_id = enterprise.id
        row.role = role.role
        row.started_at = now
    context.notes.append(f"now acting as {role.role}")
    write_audit("ok")
    return jsonify({"ok": True, "acting_for": role.acting_for()})


# --- single sign-on -------------------------------------------------------------------------------


def acting_for_claim(gateway_session_id: str) -> dict[str, Any] | None:
    """``acting_for`` of a gateway session for an application: ``{"uscc", "name", "role"}``
    while the session acts for an enterprise with a current role, else None. Read when the
    token or the CAS answer is made, so an ended role never reaches an application."""
    found = _load(gateway_session_id, at=clock.now())
    if found is None or found.role is None:
        return None
    return {"uscc": found.role.uscc, "name": found.role.enterprise_name, "role": found.role.role}


# --- pages ----------------------------------------------------------------------------------------


def banner_context() -> dict[str, Any]:
    """The base layout's banner: whom the session acts for, or that the role has ended."""
    current = acting()
    if current is None:
        return {"acting": None}
    return {
        "acting": {
            "name": current.enterprise_name,
            "uscc": current.uscc or "",
            "role": current.role.role if current.role else None,
        }
    }


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(acting_gate)
    app.after_request(add_acting_to_session)
    app.after_request(record_unaudited_action)
    app.context_processor(banner_context)
