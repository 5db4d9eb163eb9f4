"""Operator accounts and their console sessions.

Operators are not accounts: their own table, their own password hashes, a TOTP secret each
(sealed with the data key), their own session table behind their own cookie. A user's session
cookie means nothing under ``/admin/api`` and an operator's cookie nothing elsewhere.

Sign-in failures count with the login limits' atomic counters (``gateway.limits``): per address
and per operator name (``operator:<name>``, whether or not the name exists, so the answers do not
tell which names exist), and ``LOCKOUT_THRESHOLD`` failures lock the name for
``LOCKOUT_DURATION``. Console sessions are short: idle ``ADMIN_IDLE_TIMEOUT`` (15 min) and
absolute ``ADMIN_ABSOLUTE_TIMEOUT`` (8 h).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, Request, Response, current_app
from sqlalchemy import delete, select, update

from gateway.admin import totp
from gateway.admin.models import ROLES, Operator, OperatorSession
from gateway.config import host_cookie_name
from gateway.passwords import Passwords, password_problem
from gateway.storage.database import Database
from gateway.storage.personal_data import PersonalDataCipher

EXTENSION = "certgate.admin.operators"
TOTP_COLUMN = "operators.totp_secret"
COOKIE = "certgate_admin"
DEFAULT_IDLE_TIMEOUT = 15 * 60
DEFAULT_ABSOLUTE_TIMEOUT = 8 * 60 * 60
TOTP_ISSUER = "CertGate"
NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,63}$")
MIN_PASSWORD_LENGTH = 12


class OperatorInputError(ValueError):
    """A refused operator definition; the message says which field and why."""


@dataclass(frozen=True)
class SignedInOperator:
    id: int
    name: str
    role: str
    session_hash: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class NewOperator:
    name: str
    role: str
    totp_uri: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class OperatorService:
    def __init__(
        self,
        database: Database,
        cipher: PersonalDataCipher,
        passwords: Passwords,
        *,
        cookie_name: str,
        idle_timeout: int,
        absolute_timeout: int,
    ) -> None:
        self.database = database
        self.cipher = cipher
        self.passwords = passwords
        self.cookie_name = cookie_name
        self.idle = timedelta(seconds=idle_timeout)
        self.absolute = timedelta(seconds=absolute_timeout)

    # --- operators -----------------------------------------------------------------------------

    def create(self, name: str, role: str, password: str, *, at: datetime) -> NewOperator:
        name = name.strip()
        if not NAME_RE.match(name):
            raise OperatorInputError(
                "NAME: 2 to 64 characters, lower-case letters, digits, '_', '.' or '-', "
                "starting with a letter"
            )
        if role not in ROLES:
            raise OperatorInputError(f"--role: one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise OperatorInputError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
        problem = password_problem(password)
        if problem:
            raise OperatorInputError(f"password: {problem}")
        secret = totp.new_secret()
        with self.database.session() as session:
            if session.scalars(select(Operator.id).where(Operator.name == name)).first():
                raise OperatorInputError(f"NAME: operator {name!r} already exists")
            session.add(
                Operator(
                    name=name,
                    role=role,
                    password_hash=self.passwords.hash(password),
                    totp_secret_sealed=self.cipher.seal(TOTP_COLUMN, secret),
                    totp_last_step=0,
                    created_at=at,
                )
            )
        return NewOperator(
            name, role, totp.provisioning_uri(secret, account=name, issuer=TOTP_ISSUER)
        )

    def get(self, name: str) -> Operator | None:
        with self.database.session() as session:
            return session.scalars(select(Operator).where(Operator.name == name)).one_or_none()

    def check(self, operator: Operator | None, password: str, code: str, *, at: datetime) -> bool:
        """Password and TOTP code both right; the code's time step is then spent (a code
        signs in once). The password is checked even for an unknown name, so the time taken
        does not tell which names exist."""
        password_ok = self.passwords.verify(
            operator.password_hash if operator is not None else None, password
        )
        if operator is None or not password_ok:
            return False
        secret = self.cipher.open(TOTP_COLUMN, operator.totp_secret_sealed)
        step = totp.matching_step(secret, code, at, after=operator.totp_last_step)
        if step is None:
            return False
        with self.database.session() as session:
            # Conditional: two sign-ins with the same code at once, only one spends it.
            spent = session.execute(
                update(Operator)
                .where(Operator.id == operator.id, Operator.totp_last_step < step)
                .values(totp_last_step=step)
            )
            return bool(getattr(spent, "rowcount", 0))

    # --- sessions ------------------------------------------------------------------------------

    def start(self, operator: Operator, *, at: datetime, previous: str | None) -> tuple[str, str]:
        """A new console session (the cookie's token, the CSRF token); the browser's previous
        console session, if any, ends."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.database.session() as session:
            if previous:
                session.execute(
                    delete(OperatorSession).where(OperatorSession.id_hash == _hash(previous))
                )
            session.add(
                OperatorSession(
                    id_hash=_hash(token),
                    operator_id=operator.id,
                    csrf_token=csrf,
                    created_at=at,
                    last_seen_at=at,
                    expires_at=at + self.absolute,
                )
            )
        return token, csrf

    def current(self, request: Request, *, at: datetime) -> SignedInOperator | None:
        token = request.cookies.get(self.cookie_name)
        if not token or len(token) > 128:
            return None
        with self.database.session() as session:
            row = session.execute(
                select(OperatorSession, Operator)
                .join(Operator, Operator.id == OperatorSession.operator_id)
                .where(OperatorSession.id_hash == _hash(token))
            ).one_or_none()
            if row is None:
                return None
            record, operator = row
            if at >= record.expires_at or at >= record.last_seen_at + self.idle:
                session.delete(record)
                return None
            record.last_seen_at = at
            return SignedInOperator(
                operator.id,
                operator.name,
                operator.role,
                record.id_hash,
                record.csrf_token,
                record.expires_at,
            )

    def end(self, signed_in: SignedInOperator) -> None:
        with self.database.session() as session:
            session.execute(
                delete(OperatorSession).where(OperatorSession.id_hash == signed_in.session_hash)
            )

    def purge(self, *, before: datetime) -> int:
        with self.database.session() as session:
            result = session.execute(
                delete(OperatorSession).where(OperatorSession.expires_at < before)
            )
            return int(getattr(result, "rowcount", 0))

    def set_cookie(self, response: Response, token: str) -> None:
        # Strict: the console is never entered from a link on another site.
        response.set_cookie(
            self.cookie_name,
            token,
            max_age=int(self.absolute.total_seconds()),
            path="/",
            secure=True,
            httponly=True,
            samesite="Strict",
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.cookie_name, path="/", secure=True, httponly=True, samesite="Strict"
        )


def init_app(app: Flask, database: Database, cipher: PersonalDataCipher) -> OperatorService:
    from gateway.accounts import get_accounts

    service = OperatorService(
        database,
        cipher,
        get_accounts(app).passwords,
        cookie_name=host_cookie_name(
            str(app.config.get("ADMIN_COOKIE", COOKIE)), app.config["PUBLIC_ORIGIN"]
        ),
        idle_timeout=int(app.config.get("ADMIN_IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT)),
        absolute_timeout=int(app.config.get("ADMIN_ABSOLUTE_TIMEOUT", DEFAULT_ABSOLUTE_TIMEOUT)),
    )
    app.extensions[EXTENSION] = service
    return service


def get_operators(app: Flask | None = None) -> OperatorService:
    return (app or current_app).extensions[EXTENSION]
