"""SMS login, password reset by SMS code, and password change.

- ``POST /api/v1/login/sms {"phone", "code"}``: a login code sent to the account's phone signs
  in with amr ["sms"] at level 2 (DESIGN.md "Assurance"). A code proves the phone, so the
  account's state is told (``account_disabled``) and a password lock does not stop it.
- ``POST /api/v1/password/reset {"phone", "code", "new_password"}``: a reset code sets a new
  password, lifts a password lock, and ends every session of the account.
- ``POST /api/v1/account/password {"current_password", "new_password"}`` (session, CSRF token,
  JSON, like every cookie-authenticated change): ends the account's other sessions. A wrong
  current password counts against password sign-in like a failed login.

Every new password passes gateway/lifecycle/policy.py. Nothing here answers differently for a
phone with or without an account before the code is right: no code goes to a number without an
account, so any code typed for it is wrong.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, g, jsonify, request
from sqlalchemy import delete

from certs.errors import BadRequest
from gateway import clock
from gateway.account_api import _session
from gateway.accounts import (
    ID_CARD_COLUMN,
    PHONE_COLUMN,
    account_is_usable,
    get_accounts,
)
from gateway.errors import AccountDisabled, CredentialsInvalid
from gateway.http import address, begin_audit, check_origin, json_body, write_audit
from gateway.lifecycle.codes import code_field, get_codes
from gateway.lifecycle.errors import CodeInvalid
from gateway.lifecycle.notices import get_notices
from gateway.lifecycle.policy import check_new_password
from gateway.lifecycle.senders import SMS
from gateway.lifecycle.signin import SMS as SMS_ASSURANCE
from gateway.lifecycle.signin import start_session
from gateway.limits import get_guard, password_key, password_locked
from gateway.passwords import MAX_PASSWORD_LENGTH
from gateway.sessions import get_sessions
from gateway.sso.logout import end_session_everywhere
from gateway.storage.database import get_database
from gateway.storage.models import Account, LoginSession

bp = Blueprint("credentials", __name__, url_prefix="/api/v1")


def _account_by_phone(phone: str) -> Account | None:
    return get_accounts().find_by_identifier(phone)


def _personal_values(account: Account) -> list[str | None]:
    """What a new password of this account must not contain (gateway/lifecycle/policy.py)."""
    cipher = get_accounts().cipher
    return [
        account.login_name,
        account.unified_social_credit_code,
        cipher.open(PHONE_COLUMN, account.phone_sealed) if account.phone_sealed else None,
        cipher.open(ID_CARD_COLUMN, account.id_card_number_sealed)
        if account.id_card_number_sealed
        else None,
    ]


def _new_password_length(password: str) -> None:
    if not 0 < len(password) <= MAX_PASSWORD_LENGTH:
        raise BadRequest("new_password has the wrong length")


@bp.post("/login/sms")
def sms_login() -> Response:
    context = begin_audit("login", "sms")
    check_origin()
    body = json_body({"phone": str, "code": str})
    code = code_field(body)
    guard = get_guard()
    now = clock.now()
    admission = guard.admit_address(address(), now)
    phone = get_codes().check(SMS, body["phone"], "login", code, at=now)
    account = _account_by_phone(phone)
    if account is None:
        raise CodeInvalid("right code for a phone with no account")
    context.account_public_id = account.public_id
    if not account_is_usable(account):
        raise AccountDisabled(f"account status {account.status}")
    guard.succeeded([admission])
    return start_session(account, SMS_ASSURANCE)


@bp.post("/password/reset")
def reset_password() -> Response:
    context = begin_audit("password_reset", "sms")
    check_origin()
    body = json_body({"phone": str, "code": str, "new_password": str})
    code = code_field(body)
    _new_password_length(body["new_password"])
    now = clock.now()
    get_guard().admit_address(address(), now)
    codes = get_codes()
    phone = codes.check(SMS, body["phone"], "reset", code, at=now, consume=False)
    account = _account_by_phone(phone)
    if account is None:
        raise CodeInvalid("right code for a phone with no account")
    context.account_public_id = account.public_id
    if not account_is_usable(account):
        raise AccountDisabled(f"account status {account.status}")
    check_new_password(body["new_password"], _personal_values(account))
    password_hash = get_accounts().passwords.hash(body["new_password"])
    codes.spend(SMS, phone, "reset", at=now)
    with get_database().session() as session:
        row = session.get_one(Account, account.id)
        row.password_hash = password_hash
        row.locked_until = None
        row.updated_at = now
    end_session_everywhere("password_reset", account_id=account.id)  # single logout first
    ended = get_sessions().store.delete_for_account(account.id)
    context.notes.append(f"ended {ended} session(s)")
    get_notices().post(account.id, "password_reset", at=now)
    write_audit("ok")
    response = jsonify({"ok": True, "sessions_ended": ended})
    get_sessions().clear_cookie(response)
    return response


@bp.post("/account/password")
def change_password() -> Response:
    context = begin_audit("password_changed")
    check_origin()
    record, account = _session()
    context.account_public_id = account.public_id
    sessions = get_sessions()
    if not sessions.csrf_ok(record, request):
        raise BadRequest("missing or wrong CSRF token")
    body = json_body({"current_password": str, "new_password": str})
    _new_password_length(body["new_password"])
    if not 0 < len(body["current_password"]) <= MAX_PASSWORD_LENGTH:
        raise BadRequest("current_password has the wrong length")
    now = clock.now()
    guard = get_guard()
    accounts = get_accounts()
    subject = password_key(f"account:{account.id}")
    if account.locked_until is not None and account.locked_until > now:
        raise password_locked(account.locked_until)
    admission = guard.admit_subject(subject, now)
    if not accounts.passwords.verify(account.password_hash, body["current_password"]):
        until = guard.failed(subject, now)
        if until is not None:
            accounts.lock(account.id, until=until, at=now)
            raise password_locked(until)
        raise CredentialsInvalid("current password does not match")
    guard.succeeded([admission])
    check_new_password(body["new_password"], _personal_values(account))
    password_hash = accounts.passwords.hash(body["new_password"])
    with get_database().session() as session:
        row = session.get_one(Account, account.id)
        row.password_hash = password_hash
        row.updated_at = now
        others = session.execute(
            delete(LoginSession).where(
                LoginSession.account_id == account.id, LoginSession.id_hash != record.id_hash
            )
        )
        ended = int(others.rowcount)  # type: ignore[attr-defined]
    context.notes.append(f"ended {ended} other session(s)")
    get_notices().post(account.id, "password_changed", at=now)
    write_audit("ok")
    g.certgate_skip_audit = True
    return jsonify({"ok": True, "other_sessions_ended": ended})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
