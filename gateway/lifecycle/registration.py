"""Self-service registration (the agreements' 账户注册): a person with real name, ID-card number
and phone; an enterprise with name, unified social credit code, legal representative and phone.

``POST /api/v1/register/person`` and ``/register/enterprise`` answer ``201 {"ok": true,
"account": {...}}`` and start a session (amr ["sms"], acr level 2: the phone was proven with a
registration code). In order: the agreement version must be the current one
(``agreement_outdated``), the identifiers must be well formed with right check characters
(``identifier_invalid`` with ``field``), the password must pass the policy (``password_weak``),
the registration code sent to the phone must be right (``code_invalid`` / ``code_expired``), and
only then is uniqueness told (``identifier_taken`` with ``field``), so nobody learns which
ID-card numbers or credit codes are registered without holding the phone. The code is used up
only when the account is made; an earlier refusal leaves it for the corrected request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response
from sqlalchemy import select

from certs.errors import BadRequest
from certs.identifiers import is_valid_id_card_number, is_valid_uscc, normalize_identifier
from gateway import clock
from gateway.accounts import (
    AccountInputError,
    AccountService,
    classify_identifier,
    get_accounts,
)
from gateway.http import address, begin_audit, check_origin, json_body
from gateway.lifecycle.agreements import get_agreements
from gateway.lifecycle.codes import (
    MAX_EMAIL_LENGTH,
    code_field,
    get_codes,
    normalize_destination,
)
from gateway.lifecycle.errors import AgreementOutdated, IdentifierInvalid, IdentifierTaken
from gateway.lifecycle.models import LegalRepresentativeId
from gateway.lifecycle.policy import check_new_password
from gateway.lifecycle.realname import registration_level
from gateway.lifecycle.senders import EMAIL, SMS
from gateway.lifecycle.signin import SMS as SMS_ASSURANCE
from gateway.lifecycle.signin import start_session
from gateway.limits import get_guard
from gateway.passwords import MAX_PASSWORD_LENGTH
from gateway.storage.models import Account

bp = Blueprint("registration", __name__, url_prefix="/api/v1/register")

MAX_NAME_LENGTH = 100
LEGAL_REPRESENTATIVE_ID_COLUMN = "legal_representative_ids.id_card_number"
COMMON = {"phone": str, "code": str, "password": str, "agreement_version": str}


def _text(body: dict[str, Any], field: str) -> str:
    value = body[field].strip()
    if not value or len(value) > MAX_NAME_LENGTH:
        raise BadRequest(f"{field}: 1-{MAX_NAME_LENGTH} characters")
    return value


def _id_card_number(value: str, field: str) -> str:
    number = normalize_identifier(value)
    if not is_valid_id_card_number(number):
        raise IdentifierInvalid(field)
    return number


def _login_name(value: str | None) -> str | None:
    if value is None:
        return None
    classified = classify_identifier(value)
    if classified is None or classified[0] != "login_name":
        raise IdentifierInvalid("login_name")
    return classified[1]


def _common_checks(body: dict[str, Any]) -> tuple[str, str | None]:
    """Code shape, agreement version, phone and login name; the normalised phone and login
    name."""
    body["code"] = code_field(body)
    agreements = get_agreements()
    current = agreements.current()
    if body["agreement_version"] != current.version:
        raise AgreementOutdated(
            "registration with another version", version=current.version, summary=current.summary
        )
    phone = normalize_destination(SMS, body["phone"])
    login_name = _login_name(body.get("login_name"))
    if len(body["password"]) > MAX_PASSWORD_LENGTH:
        raise BadRequest("password has the wrong length")
    return phone, login_name


def _login_name_taken(login_name: str | None) -> list[tuple[str, Any]]:
    """The login-name check, only when one was asked for: ``login_name == None`` would be
    ``IS NULL`` and find every account registered without a login name."""
    return [] if login_name is None else [("login_name", Account.login_name == login_name)]


def _taken(accounts: AccountService, checks: list[tuple[str, Any]]) -> None:
    """``identifier_taken`` naming the first field an existing account already has."""
    with accounts.database.session() as session:
        for field, condition in checks:
            if session.scalar(select(Account.id).where(condition)) is not None:
                raise IdentifierTaken(field)


def _created(accounts: AccountService, public_id: str, *, at: datetime, version: str) -> Account:
    account = accounts.find(public_id)
    get_agreements().record(account.id, version, how="registration", at=at)
    return account


def _code_then_create(phone: str, code: str, create: Any) -> Account:
    """Check the registration code, make the account (``create``), then use the code up."""
    codes = get_codes()
    now = clock.now()
    codes.check(SMS, phone, "register", code, at=now, consume=False)
    account: Account = create(now)
    codes.spend(SMS, phone, "register", at=now)
    return account


@bp.post("/person")
def register_person() -> Response:
    context = begin_audit("register", "person")
    check_origin()
    body = json_body(
        {"real_name": str, "id_card_number": str, **COMMON},
        optional={"login_name": str, "email": str},
    )
    guard = get_guard()
    admission = guard.admit_address(address(), clock.now())
    phone, login_name = _common_checks(body)
    real_name = _text(body, "real_name")
    number = _id_card_number(body["id_card_number"], "id_card_number")
    email = body.get("email")
    if email is not None:
        if len(email) > MAX_EMAIL_LENGTH:
            raise IdentifierInvalid("email")
        email = normalize_destination(EMAIL, email)
    check_new_password(body["password"], (phone, number, login_name))
    accounts = get_accounts()
    cipher = accounts.cipher

    def create(now: datetime) -> Account:
        _taken(
            accounts,
            [
                (
                    "id_card_number",
                    Account.id_card_number_hash == cipher.lookup_hash("id_card_number", number),
                ),
                ("phone", Account.phone_hash == cipher.lookup_hash("phone", phone)),
                *_login_name_taken(login_name),
            ],
        )
        try:
            view = accounts.create_person(
                real_name=real_name,
                id_card_number=number,
                at=now,
                login_name=login_name,
                phone=phone,
                email=email,
                password=body["password"],
                real_name_level=registration_level(number, today=now.date()),
            )
        except AccountInputError as exc:  # a parallel registration took an identifier
            raise IdentifierTaken("phone", str(exc)) from None
        return _created(accounts, view.id, at=now, version=body["agreement_version"])

    account = _code_then_create(phone, body["code"], create)
    context.account_public_id = account.public_id
    guard.succeeded([admission])
    return start_session(account, SMS_ASSURANCE, status=201)


@bp.post("/enterprise")
def register_enterprise() -> Response:
    context = begin_audit("register", "enterprise")
    check_origin()
    body = json_body(
        {
            "name": str,
            "uscc": str,
            "legal_representative_name": str,
            "legal_representative_id_number": str,
            **COMMON,
        },
        optional={"login_name": str},
    )
    guard = get_guard()
    admission = guard.admit_address(address(), clock.now())
    phone, login_name = _common_checks(body)
    name = _text(body, "name")
    representative = _text(body, "legal_representative_name")
    uscc = normalize_identifier(body["uscc"])
    if not is_valid_uscc(uscc):
        raise IdentifierInvalid("uscc")
    representative_number = _id_card_number(
        body["legal_representative_id_number"], "legal_representative_id_number"
    )
    check_new_password(body["password"], (phone, uscc, representative_number, login_name))
    accounts = get_accounts()
    cipher = accounts.cipher

    def create(now: datetime) -> Account:
        _taken(
            accounts,
            [
                ("uscc", Account.unified_social_credit_code == uscc),
                ("phone", Account.phone_hash == cipher.lookup_hash("phone", phone)),
                *_login_name_taken(login_name),
            ],
        )
        try:
            view = accounts.create_enterprise(
                unified_social_credit_code=uscc,
                name=name,
                at=now,
                legal_representative=representative,
                login_name=login_name,
                phone=phone,
                password=body["password"],
                real_name_level=registration_level(representative_number, today=now.date()),
            )
        except AccountInputError as exc:  # a parallel registration took an identifier
            raise IdentifierTaken("uscc", str(exc)) from None
        account = accounts.find(view.id)
        with accounts.database.session() as session:
            session.add(
                LegalRepresentativeId(
                    account_id=account.id,
                    id_card_number_sealed=cipher.seal(
                        LEGAL_REPRESENTATIVE_ID_COLUMN, representative_number
                    ),
                    id_card_number_hash=cipher.lookup_hash("id_card_number", representative_number),
                )
            )
        return _created(accounts, view.id, at=now, version=body["agreement_version"])

    account = _code_then_create(phone, body["code"], create)
    context.account_public_id = account.public_id
    guard.succeeded([admission])
    return start_session(account, SMS_ASSURANCE, status=201)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
