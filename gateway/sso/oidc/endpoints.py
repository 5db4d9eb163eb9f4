"""The OpenID Connect provider's routes: discovery, JWKS, authorization (with the consent
page), token and userinfo.

The authorization endpoint decides in this order: the client and its redirect URI (wrong: an
error page, never a redirect); the request itself (Authlib: response type, scope, PKCE; wrong:
an OAuth error sent to the redirect URI); the gateway session (absent, or not satisfying
``prompt=login``, ``max_age`` or ``acr_values``: to the login page, which returns here;
``prompt=none``: ``login_required`` to the redirect URI); consent (asked once per client and
scopes unless the client is registered ``--consent skip``); then the code.
"""

from __future__ import annotations

import contextlib
import hmac
from typing import Any
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Blueprint, Response, current_app, g, jsonify, redirect, request
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from gateway import clock
from gateway.accounts import AccountRecord, account_is_usable, get_accounts
from gateway.assurance import LEVELS
from gateway.errors import BadRequest
from gateway.http import begin_audit, write_audit
from gateway.sessions import get_sessions
from gateway.sso import pages
from gateway.sso.clients import RegisteredClient, get_clients
from gateway.sso.errors import ClientUnknown, RedirectUriInvalid, SsoError
from gateway.sso.keys import ALGORITHMS, get_keys
from gateway.sso.models import CONSENT_SKIP, OIDC, SsoConsent
from gateway.sso.oidc.claims import (
    CLAIMS_SUPPORTED,
    SCOPES,
    required_level,
    satisfies,
    session_claims,
    user_claims,
)
from gateway.sso.oidc.provider import SessionGrant, access_grant, get_server
from gateway.storage.database import get_database
from gateway.stores import SessionRecord

bp = Blueprint("sso_oidc", __name__)

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
USERINFO_PATH = "/oauth/userinfo"
JWKS_PATH = "/oauth/jwks"
MAX_QUERY = 4096


def _origin() -> str:
    return str(current_app.config["PUBLIC_ORIGIN"]).rstrip("/")


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    origin = _origin()
    response = jsonify(
        {
            "issuer": origin,
            "authorization_endpoint": origin + AUTHORIZE_PATH,
            "token_endpoint": origin + TOKEN_PATH,
            "userinfo_endpoint": origin + USERINFO_PATH,
            "jwks_uri": origin + JWKS_PATH,
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(ALGORITHMS),
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": list(CLAIMS_SUPPORTED),
            "acr_values_supported": list(LEVELS),
            "prompt_values_supported": ["none", "login", "consent"],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
        }
    )
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get(JWKS_PATH)
def jwks() -> Response:
    response = jsonify(get_keys().jwks(clock.now()))
    # Short, so a rotation reaches relying parties quickly.
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# --- authorization ------------------------------------------------------------------------------


def _current_session() -> tuple[SessionRecord, AccountRecord] | None:
    record = get_sessions().current(request, at=clock.now())
    if record is None:
        return None
    account = get_accounts().record(record.account_id)
    if account is None or not account_is_usable(account):
        return None
    return record, account


def _login_redirect(required: str | None) -> BaseResponse:
    """To the login page, which returns to this request once signed in. ``prompt=login`` is
    dropped from the way back (the login it asked for has then happened)."""
    query = [(k, v) for k, v in parse_qsl(request.query_string.decode("utf-8", "replace"))]
    kept = [(k, v) for k, v in query if k != "prompt" or v.split() != ["login"]]
    target = AUTHORIZE_PATH + ("?" + urlencode(kept) if kept else "")
    login = {"next": target}
    if required is not None:
        login["acr"] = required
    return redirect("/login?" + urlencode(login), code=302)


def _needs_login(record: SessionRecord, payload: Any) -> str | None:
    """Why the live session does not do for this request, or None."""
    prompts = (payload.get("prompt") or "").split()
    if "login" in prompts:
        return "prompt=login"
    max_age = payload.get("max_age")
    if max_age is not None:
        try:
            seconds = int(max_age)
        except ValueError:
            seconds = -1
        if seconds < 0:
            raise BadRequest("max_age is not a number of seconds")
        if (clock.now() - record.created_at).total_seconds() > seconds:
            return f"max_age={seconds}"
    required = required_level(payload.get("acr_values"))
    if not satisfies(record.acr, required):
        return f"acr {record.acr} below {required}"
    return None


def _consented(account: AccountRecord, client: RegisteredClient, scope: str) -> bool:
    if client.consent == CONSENT_SKIP:
        return True
    with get_database().session() as session:
        row = session.scalars(
            select(SsoConsent).where(
                SsoConsent.account_id == account.id, SsoConsent.client_id == client.client_id
            )
        ).one_or_none()
    return (
        row is not None
        and row.withdrawn_at is None
        and set(scope.split()) <= set(row.scopes.split())
    )


def _record_consent(account: AccountRecord, client: RegisteredClient, scope: str) -> None:
    now = clock.now()
    with get_database().session() as session:
        row = session.scalars(
            select(SsoConsent).where(
                SsoConsent.account_id == account.id, SsoConsent.client_id == client.client_id
            )
        ).one_or_none()
        if row is None:
            session.add(
                SsoConsent(
                    account_id=account.id,
                    client_id=client.client_id,
                    scopes=scope,
                    granted_at=now,
                )
            )
        else:
            kept = set() if row.withdrawn_at is not None else set(row.scopes.split())
            row.scopes = " ".join(sorted(kept | set(scope.split())))
            row.granted_at = now
            row.withdrawn_at = None


def _checked_client() -> RegisteredClient:
    """The client and exact redirect URI of this request, or an error page (never a
    redirect to an address the client did not register)."""
    if len(request.query_string) > MAX_QUERY:
        raise BadRequest("authorization request too long")
    client_id = request.args.get("client_id", "")
    client = get_clients().get(client_id)
    if client is None or client.protocol != OIDC:
        raise ClientUnknown(f"client_id {client_id[:64]!r}")
    g.certgate_audit.notes.append(f"client {client.client_id}")
    redirect_uri = request.args.get("redirect_uri", "")
    if len(request.args.getlist("redirect_uri")) != 1 or not client.check_redirect_uri(
        redirect_uri
    ):
        raise RedirectUriInvalid(f"redirect_uri not registered for {client.client_id}")
    return client


def _oauth_error(error: OAuth2Error) -> BaseResponse:
    """An OAuth error: to the client when its redirect URI is known good, else a page."""
    write_audit(error.error, detail=error.description or None)
    g.certgate_skip_audit = True
    if error.redirect_uri:
        response: BaseResponse = get_server().handle_error_response(None, error)
        return response
    return pages.error_page(
        "bad_request",
        pages.request_invalid_message(error.description or error.error),
        status=400,
    )


@bp.route(AUTHORIZE_PATH, methods=["GET", "POST"])
def authorize() -> BaseResponse:
    context = begin_audit("sso_authorize", OIDC)
    try:
        client = _checked_client()
    except SsoError as error:
        write_audit(error.code, detail=error.detail)
        return pages.error_page(error.code, pages.message_of(error), status=400)
    payload = request.args
    server = get_server()
    current = _current_session()
    if current is not None:
        context.account_public_id = current[1].public_id
    try:
        grant = server.get_consent_grant(end_user=current[1] if current else None)
    except OAuth2Error as error:
        return _oauth_error(error)
    redirect_uri = grant.redirect_uri
    prompts = (payload.get("prompt") or "").split()
    required = required_level(payload.get("acr_values"))
    try:
        why = "no session" if current is None else _needs_login(current[0], payload)
    except BadRequest as error:
        return _oauth_error(_invalid_request(str(error.detail), redirect_uri))
    if why is not None:
        if "none" in prompts:
            return _oauth_error(_with_state(LoginRequiredError(redirect_uri=redirect_uri)))
        context.notes.append(f"to login: {why}")
        write_audit("login_required")
        return _login_redirect(required)
    assert current is not None
    record, account = current
    scope = grant.request.scope or ""

    if request.method == "POST":
        if not hmac.compare_digest(
            request.form.get("csrf_token", "").encode(), record.csrf_token.encode()
        ):
            write_audit("bad_request", detail="consent form without the session's CSRF token")
            refused = BadRequest("missing or wrong CSRF token")
            return pages.error_page(refused.code, pages.message_of(refused), status=400)
        if request.form.get("decision") != "allow":
            context.notes.append("consent denied")
            return _finish(server, grant, record, account, granted=False)
        _record_consent(account, client, scope)
        context.notes.append(f"consent granted: {scope}")
    elif not _consented(account, client, scope):
        if "none" in prompts:
            return _oauth_error(_with_state(ConsentRequiredError(redirect_uri=redirect_uri)))
        write_audit("consent_asked")
        g.certgate_skip_audit = True
        return pages.consent_page(
            client=client,
            account_name=get_accounts().shown_name(account),
            scopes=scope.split(),
            csrf_token=record.csrf_token,
            action=request.full_path.rstrip("?"),
            redirect_uri=redirect_uri,
        )
    return _finish(server, grant, record, account, granted=True)


def _with_state(error: OAuth2Error) -> OAuth2Error:
    error.state = request.args.get("state")
    return error


def _invalid_request(description: str, redirect_uri: str) -> OAuth2Error:
    from authlib.oauth2.rfc6749 import InvalidRequestError

    return _with_state(InvalidRequestError(description, redirect_uri=redirect_uri))


def _finish(
    server: Any, grant: Any, record: SessionRecord, account: AccountRecord, *, granted: bool
) -> BaseResponse:
    grant.request.session_grant = SessionGrant(
        gateway_session_id=record.id_hash,
        account=account,
        acr=record.acr,
        amr=record.amr,
        auth_time=record.created_at,
    )
    # The code and its audit record: one transaction (both on the Core connection).
    with get_database().connection():
        response: BaseResponse = server.create_authorization_response(
            grant=grant, grant_user=account if granted else None
        )
        location = response.headers.get("Location", "")
        outcome = "ok" if granted and "code=" in location else "access_denied"
        write_audit(outcome)
    g.certgate_skip_audit = True
    return response


# --- token and userinfo -------------------------------------------------------------------------


@bp.post(TOKEN_PATH)
def token() -> BaseResponse:
    context = begin_audit("sso_token", OIDC)
    grant_type = request.form.get("grant_type", "")
    context.notes.append(f"grant_type {grant_type[:32]}")
    # The code exchanged, the tokens stored and the audit record: one transaction on the Core
    # connection (every statement of the code grant runs there; refresh-token rotation keeps
    # its ORM units of work, outside).
    unit = (
        get_database().connection()
        if grant_type == "authorization_code"
        else contextlib.nullcontext()
    )
    with unit:
        response: BaseResponse = get_server().create_token_response()
        body = response.get_json(silent=True) or {}
        note = g.get("certgate_sso_note")
        if note:
            context.notes.append(note)
        client_id = request.form.get("client_id") or getattr(
            request.authorization, "username", None
        )
        if client_id:
            context.notes.append(f"client {str(client_id)[:64]}")
        write_audit("ok" if response.status_code == 200 else str(body.get("error", "bad_request")))
    g.certgate_skip_audit = True
    response.headers["Pragma"] = "no-cache"
    return response


def _bearer_error(error: str, description: str, status: int) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return response


@bp.route(USERINFO_PATH, methods=["GET", "POST"])
def userinfo() -> Response:
    context = begin_audit("sso_userinfo", OIDC)
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value or len(value) > 256:
        write_audit("invalid_token", detail="no bearer token")
        g.certgate_skip_audit = True
        return _bearer_error("invalid_token", "A bearer access token is required.", 401)
    # The reads and the audit record: one transaction on the Core connection.
    with get_database().connection():
        granted = access_grant(value.strip())
        if granted is None:
            write_audit("invalid_token", detail="unknown, expired or revoked access token")
            g.certgate_skip_audit = True
            return _bearer_error("invalid_token", "The access token is not valid.", 401)
        context.account_public_id = granted.account.public_id
        context.notes.append(f"client {granted.client_id}")
        if "openid" not in granted.scope.split():
            write_audit("insufficient_scope")
            g.certgate_skip_audit = True
            return _bearer_error("insufficient_scope", "The token lacks the openid scope.", 403)
        write_audit("ok")
    claims = user_claims(granted.account, get_accounts(), granted.scope)
    claims.update(session_claims(granted.gateway_session_id, granted.scope))
    return jsonify(claims)
