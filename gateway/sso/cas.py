"""CAS 3.0 server (Apereo CAS protocol specification 3.0): ``/cas/login``, ``/cas/serviceValidate``,
``/cas/p3/serviceValidate`` and ``/cas/logout``.

A service URL must match a prefix registered with ``certgate client add --protocol cas --service
PREFIX``: the scheme, host and port equal (default ports made explicit, host case ignored) and
the path equal to the prefix's path or continuing it at a segment boundary (``/app`` matches
``/app``, ``/app/`` and ``/app/x``, not ``/application``); the query is not compared. A service
whose path holds a ``.`` or ``..`` segment (also percent-encoded) or a backslash, or with a
fragment or user information, matches nothing.

Service tickets ``ST-…``: 256 random bits, stored as SHA-256, 60 s, bound to the exact service
URL they were issued for and to the gateway session. One validation attempt consumes a ticket
whatever its outcome (§3.5). A successful validation records the client's participation in the
session with the ticket, so single logout later names that ticket in its ``LogoutRequest``.
Proxy tickets are not offered (``pgtUrl`` is ignored, as §2.5.4 allows).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote, urlencode, urlsplit
from xml.sax.saxutils import escape

from flask import Blueprint, Response, g, redirect, request
from sqlalchemy import bindparam, insert, select, update
from werkzeug.wrappers import Response as BaseResponse

from gateway import clock
from gateway.accounts import AccountRecord, account_is_usable, get_accounts
from gateway.http import begin_audit, write_audit
from gateway.sessions import get_sessions
from gateway.sso import pages
from gateway.sso.clients import RegisteredClient, get_clients
from gateway.sso.errors import ServiceInvalid
from gateway.sso.models import CAS, CasTicket
from gateway.sso.participation import record_participation
from gateway.storage.database import get_database
from gateway.storage.models import ENTERPRISE
from gateway.storage.prepared import Prepared

bp = Blueprint("sso_cas", __name__)

TICKET_TTL = timedelta(seconds=60)
TICKET_PREFIX = "ST-"
MAX_SERVICE = 2048
MAX_TICKET = 256
# The login page's way back to /cas/login carries when it was sent there, MAC'd, so a login
# after it counts as new (renew=true asks for one). Such a way back is good this long.
RENEW_WINDOW = timedelta(minutes=10)
CAS_NS = "http://www.yale.edu/tp/cas"

INVALID_REQUEST = "INVALID_REQUEST"
INVALID_TICKET = "INVALID_TICKET"
INVALID_SERVICE = "INVALID_SERVICE"

_DEFAULT_PORTS = {"http": 80, "https": 443}
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")


# A ticket's issue and its validation, built once and run on the Core connection
# (gateway/storage/prepared.py), as the OpenID Connect code flow's statements are.
_INSERT_TICKET = Prepared(insert(CasTicket))
# One attempt consumes the ticket whatever its outcome (§3.5): marked used only if unused.
_CONSUME_TICKET = Prepared(
    update(CasTicket)
    .where(CasTicket.ticket_hash == bindparam("ticket_hash"), CasTicket.used_at.is_(None))
    .values(used_at=bindparam("at"))
)
_SELECT_TICKET = Prepared(
    select(CasTicket.__table__).where(CasTicket.ticket_hash == bindparam("ticket_hash"))
)


def ticket_hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("ascii", "replace")).hexdigest()


# --- services -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int
    path: str


def _parts(url: str) -> _Origin | None:
    """Scheme, host, port and path of an absolute http(s) URL, or None when it cannot match."""
    if len(url) > MAX_SERVICE or "\\" in url or any(ord(c) < 0x21 for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.fragment or "#" in url:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    path = parts.path or "/"
    if _DOT_SEGMENT.search(unquote(path)):
        return None
    return _Origin(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], path)


def service_matches(service: str, prefix: str) -> bool:
    """Whether ``service`` is under the registered ``prefix`` (see the module's rule)."""
    wanted, given = _parts(prefix), _parts(service)
    if wanted is None or given is None:
        return False
    if (wanted.scheme, wanted.host, wanted.port) != (given.scheme, given.host, given.port):
        return False
    if (
        given.path == wanted.path
        or wanted.path.endswith("/")
        and given.path.startswith(wanted.path)
    ):
        return True
    return given.path.startswith(wanted.path + "/")


def client_for_service(service: str) -> RegisteredClient | None:
    """The CAS client one of whose prefixes the service matches (the longest prefix wins)."""
    best: tuple[int, RegisteredClient] | None = None
    for client in get_clients().cas_clients():
        for prefix in client.cas_service_prefixes:
            if service_matches(service, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), client)
    return best[1] if best else None


def _with_query(url: str, **fields: str) -> str:
    joiner = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    return url + joiner + urlencode(fields)


# --- /cas/login ---------------------------------------------------------------------------------


def _truthy(name: str) -> bool:
    return request.args.get(name, "").lower() in ("true", "1")


def _renew_mark(service: str, since: int) -> str:
    return get_accounts().cipher.lookup_hash("cas renew", f"{since}\n{service}")


def _renewed_since(service: str) -> datetime | None:
    """The moment a renew login was asked for, when the way back proves it; else None."""
    since, mark = request.args.get("renewed_since", ""), request.args.get("renewed_mark", "")
    if not since.isdigit() or len(since) > 12 or not mark:
        return None
    if not hmac.compare_digest(mark.encode(), _renew_mark(service, int(since)).encode()):
        return None
    at = datetime.fromtimestamp(int(since), tz=clock.now().tzinfo)
    return at if clock.now() - at <= RENEW_WINDOW else None


def _to_login(service: str, *, renew: bool) -> BaseResponse:
    """To the login page, which returns here. The way back carries when this was (MAC'd): a
    session started after it is a new login (``renew``, and the p3 ``isFromNewLogin``)."""
    since = int(clock.now().timestamp())
    back = {"service": service, "renewed_since": str(since)}
    back["renewed_mark"] = _renew_mark(service, since)
    if renew:
        back["renew"] = "true"
    return redirect("/login?" + urlencode({"next": "/cas/login?" + urlencode(back)}), code=302)


@bp.get("/cas/login")
def login() -> BaseResponse:
    context = begin_audit("cas_login", CAS)
    service = request.args.get("service", "")
    sessions = get_sessions()
    now = clock.now()
    record = sessions.current(request, at=now)
    account = get_accounts().record(record.account_id) if record is not None else None
    if record is not None and (account is None or not account_is_usable(account)):
        record, account = None, None
    if not service:
        # No application asked: the gateway's own pages.
        g.certgate_skip_audit = True
        return redirect("/account" if record is not None else "/login", code=302)
    client = client_for_service(service)
    if client is None:
        error = ServiceInvalid(f"service {service[:200]!r} matches no registered prefix")
        write_audit(error.code, detail=error.detail)
        g.certgate_skip_audit = True
        return pages.error_page(error.code, pages.message_of(error), status=400)
    context.notes.append(f"client {client.client_id}")
    renew = _truthy("renew")
    since = _renewed_since(service)
    from_new_login = record is not None and since is not None and record.created_at >= since
    if renew and not from_new_login:
        record, account = None, None  # renew: only a login made after this request counts
    if record is None or account is None:
        if _truthy("gateway") and not renew:
            write_audit("gateway_no_session")
            g.certgate_skip_audit = True
            return redirect(service, code=302)
        write_audit("login_required")
        g.certgate_skip_audit = True
        return _to_login(service, renew=renew)
    context.account_public_id = account.public_id
    ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
    with get_database().connection() as connection:
        _INSERT_TICKET.execute(
            connection,
            {
                "ticket_hash": ticket_hash(ticket),
                "client_id": client.client_id,
                "service": service,
                "account_id": account.id,
                "gateway_session_id": record.id_hash,
                "acr": record.acr,
                "created_at": now,
                "expires_at": now + TICKET_TTL,
                "used_at": None,
                "from_new_login": from_new_login,
            },
        )
    write_audit("ok", detail="renewed login" if from_new_login else None)
    g.certgate_skip_audit = True
    return redirect(_with_query(service, ticket=ticket), code=302)


# --- validation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Validated:
    account: AccountRecord
    acr: str
    amr: tuple[str, ...]  # RFC 8176 values of the gateway session the ticket was issued in
    auth_time: datetime
    from_new_login: bool
    gateway_session_id: str


class _Refused(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def _validate(service: str, ticket: str, renew: bool) -> _Validated:
    if not service or not ticket:
        raise _Refused(INVALID_REQUEST, "'service' and 'ticket' are both required")
    if not ticket.startswith(TICKET_PREFIX) or len(ticket) > MAX_TICKET:
        raise _Refused(INVALID_TICKET, "ticket not recognized")
    now = clock.now()
    hashed = ticket_hash(ticket)
    with get_database().connection() as connection:
        consumed = _CONSUME_TICKET.execute(connection, {"ticket_hash": hashed, "at": now})
        row = _SELECT_TICKET.execute(connection, {"ticket_hash": hashed}).one_or_none()
    # Refused only now, after the commit: the consumption stands whatever the answer.
    if row is None:
        raise _Refused(INVALID_TICKET, "ticket not recognized")
    g.certgate_audit.notes.append(f"client {row.client_id}")
    if not consumed.rowcount:
        raise _Refused(INVALID_TICKET, "ticket already used")
    client_id, issued_for, account_id, gateway_session_id, acr = (
        row.client_id,
        row.service,
        row.account_id,
        row.gateway_session_id,
        row.acr,
    )
    expired, fresh = row.expires_at <= now, bool(row.from_new_login)
    if expired:
        raise _Refused(INVALID_TICKET, "ticket expired")
    if service != issued_for:
        raise _Refused(INVALID_SERVICE, "the ticket was issued for another service")
    client = client_for_service(service)
    if client is None or client.client_id != client_id:
        raise _Refused(INVALID_SERVICE, "the service is no longer registered")
    if renew and not fresh:
        raise _Refused(INVALID_TICKET, "renew: the ticket was not issued from a new login")
    record = get_sessions().store.get(gateway_session_id)
    if record is None or now >= record.expires_at:
        # The sign-on session ended before validation: single logout could not reach this one.
        raise _Refused(INVALID_TICKET, "the sign-on session of this ticket has ended")
    account = get_accounts().record(account_id)
    if account is None or not account_is_usable(account):
        raise _Refused(INVALID_TICKET, "the account can no longer sign in")
    g.certgate_audit.account_public_id = account.public_id
    record_participation(
        get_database(),
        gateway_session_id=gateway_session_id,
        client_id=client_id,
        protocol=CAS,
        account_public_id=account.public_id,
        at=now,
        cas_ticket=ticket,
    )
    return _Validated(account, acr, tuple(record.amr), record.created_at, fresh, gateway_session_id)


def _attributes(validated: _Validated) -> dict[str, list[str]]:
    """The p3 attributes, each a list of values: a multi-valued one (``amr``) is answered as
    one element per value, as CAS 3.0 answers multi-valued attributes."""
    account = validated.account
    attributes: dict[str, str | list[str]] = {
        "authenticationDate": validated.auth_time.isoformat().replace("+00:00", "Z"),
        "isFromNewLogin": "true" if validated.from_new_login else "false",
        "longTermAuthenticationRequestTokenUsed": "false",
        "name": get_accounts().shown_name(account),
        "account_kind": account.kind,
        "real_name_level": str(account.real_name_level),
        "acr": validated.acr,
        "amr": list(validated.amr),
    }
    if account.kind == ENTERPRISE and account.unified_social_credit_code:
        attributes["uscc"] = account.unified_social_credit_code
    # A person acting for an enterprise (gateway/roles/acting.py): flat, as CAS attributes are.
    from gateway.roles.acting import acting_for_claim

    acting_for = acting_for_claim(validated.gateway_session_id) or {}
    attributes.update({f"acting_for_{k}": str(v) for k, v in acting_for.items() if v})
    return {k: v if isinstance(v, list) else [v] for k, v in attributes.items()}


def _xml(body: str) -> Response:
    document = f'<cas:serviceResponse xmlns:cas="{CAS_NS}">{body}</cas:serviceResponse>\n'
    return Response(document, status=200, content_type="application/xml; charset=UTF-8")


def _answer(fmt: str, validated: _Validated | None, refused: _Refused | None, p3: bool) -> Response:
    if fmt == "JSON":
        if refused is not None:
            content: dict[str, object] = {
                "authenticationFailure": {"code": refused.code, "description": refused.description}
            }
        else:
            assert validated is not None
            success: dict[str, object] = {"user": validated.account.public_id}
            if p3:
                success["attributes"] = _attributes(validated)
            content = {"authenticationSuccess": success}
        return Response(
            json.dumps({"serviceResponse": content}, ensure_ascii=False),
            status=200,
            content_type="application/json; charset=UTF-8",
        )
    if refused is not None:
        return _xml(
            f'<cas:authenticationFailure code="{refused.code}">'
            f"{escape(refused.description)}</cas:authenticationFailure>"
        )
    assert validated is not None
    inner = f"<cas:user>{escape(validated.account.public_id)}</cas:user>"
    if p3:
        elements = "".join(
            f"<cas:{name}>{escape(value)}</cas:{name}>"
            for name, values in _attributes(validated).items()
            for value in values
        )
        inner += f"<cas:attributes>{elements}</cas:attributes>"
    return _xml(f"<cas:authenticationSuccess>{inner}</cas:authenticationSuccess>")


def _service_validate(p3: bool) -> Response:
    begin_audit("cas_validate", CAS)
    g.certgate_skip_audit = True
    fmt = request.args.get("format", "XML").upper()
    if fmt not in ("XML", "JSON"):
        fmt = "XML"
    service = request.args.get("service", "")[: MAX_SERVICE + 1]
    ticket = request.args.get("ticket", "")[: MAX_TICKET + 1]
    try:
        validated = _validate(service, ticket, _truthy("renew"))
    except _Refused as refused:
        write_audit(refused.code, detail=refused.description)
        return _answer(fmt, None, refused, p3)
    write_audit("ok", detail="p3" if p3 else None)
    return _answer(fmt, validated, None, p3)


@bp.get("/cas/serviceValidate")
def service_validate() -> Response:
    return _service_validate(p3=False)


@bp.get("/cas/p3/serviceValidate")
def p3_service_validate() -> Response:
    return _service_validate(p3=True)


# --- /cas/logout --------------------------------------------------------------------------------


@bp.get("/cas/logout")
def logout() -> BaseResponse:
    """Ends the gateway session (with single logout to every client of it), then goes to
    ``service`` only when it matches a registered prefix: never an open redirect."""
    from gateway.sso.logout import end_session_everywhere

    context = begin_audit("logout", CAS)
    sessions = get_sessions()
    record = sessions.current(request, at=clock.now())
    if record is not None:
        account = get_accounts().record(record.account_id)
        context.account_public_id = account.public_id if account else None
        end_session_everywhere("logout", session_id=record.id_hash)
        sessions.end(record, everywhere=False)
    service = request.args.get("service", "")
    target = service if service and client_for_service(service) is not None else "/login"
    if service and target != service:
        context.notes.append("service not registered: not followed")
    write_audit("ok" if record is not None else "no_session")
    g.certgate_skip_audit = True
    response = Response(status=302, headers={"Location": target})
    sessions.clear_cookie(response)
    return response
