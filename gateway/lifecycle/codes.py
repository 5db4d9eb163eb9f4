"""Verification codes: ``POST /api/v1/codes``, and checking a code a route was given.

A code is 6 digits, lives 5 minutes, is used once, and is bound to its channel, destination
and purpose: a registration code does not reset a password. Five wrong tries void it, and a new
code for the same destination and purpose replaces the old one. Only an HMAC of the code is
stored (``PersonalDataCipher.lookup_hash``: HMAC-SHA256 under a sub-key of the data key, in
its own "verification-code" namespace); the destination is stored as a keyed hash too.

The answer is ``200 {"ok": true, "resend_after": seconds}`` whether or not an account has the
destination: a login or reset code for a number with no account is recorded as if it had been
sent, and counts against the same limits, but nothing is sent (an SMS costs money, and nobody
could use it). Limits, each answered ``429 rate_limited`` the same way for every destination:
one code per destination per ``code_resend_seconds``, ``code_daily_limit`` per destination per
24 hours, ``code_address_limit`` requests per client address per ``rate_limit_window``.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import delete, func, select, update

from certs.errors import BadRequest
from gateway import clock
from gateway.accounts import is_valid_phone, normalize_phone
from gateway.errors import RateLimited, Unavailable
from gateway.http import address, begin_audit, check_origin, json_body, write_audit
from gateway.lifecycle.errors import CodeExpired, CodeInvalid, IdentifierInvalid
from gateway.lifecycle.models import VerificationCode
from gateway.lifecycle.senders import (
    CHANNELS,
    EMAIL,
    SMS,
    DeliveryFailed,
    Message,
    Sender,
    make_sender,
)
from gateway.limits import address_key, get_guard
from gateway.storage.database import Database, get_database
from gateway.storage.models import Account
from gateway.storage.personal_data import PersonalDataCipher

log = logging.getLogger("certgate.lifecycle")

EXTENSION = "certgate.codes"
PURPOSES = ("register", "login", "reset", "verify")
# Purposes for which a code goes out only when an account has the destination.
ACCOUNT_PURPOSES = frozenset({"login", "reset"})
CODE_DIGITS = 6
CODE_LIFETIME = timedelta(minutes=5)
MAX_WRONG_TRIES = 5
DAY = timedelta(hours=24)
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MAX_EMAIL_LENGTH = 254

PRODUCT = "CertGate"
# Purpose -> (SMS / e-mail text, e-mail subject), zh-CN: the platforms' users read Chinese.
TEXTS = {
    "register": "您正在注册账户，验证码 {code}，5 分钟内有效。请勿将验证码告诉他人。",
    "login": "您正在登录，验证码 {code}，5 分钟内有效。如非本人操作，请忽略并注意账户安全。",
    "reset": "您正在重置密码，验证码 {code}，5 分钟内有效。如非本人操作，请忽略并注意账户安全。",
    "verify": "您正在验证此联系方式，验证码 {code}，5 分钟内有效。请勿将验证码告诉他人。",
}
SUBJECTS = {
    "register": "注册验证码",
    "login": "登录验证码",
    "reset": "重置密码验证码",
    "verify": "验证码",
}


def normalize_destination(channel: str, value: str) -> str:
    """A phone number (mainland mobile) or an e-mail address in the form codes are bound to;
    ``identifier_invalid`` when it is neither."""
    if channel == SMS:
        number = normalize_phone(value)
        if not is_valid_phone(number):
            raise IdentifierInvalid("phone")
        return number
    address_ = value.strip().lower()
    if len(address_) > MAX_EMAIL_LENGTH or not _EMAIL_RE.match(address_):
        raise IdentifierInvalid("email")
    return address_


@dataclass(frozen=True)
class CodeSettings:
    resend: timedelta
    daily_limit: int
    address_limit: int
    address_window: timedelta


class CodeService:
    def __init__(
        self,
        database: Database,
        cipher: PersonalDataCipher,
        senders: dict[str, Sender | None],
        settings: CodeSettings,
    ) -> None:
        self.database = database
        self.cipher = cipher
        self.senders = senders
        self.settings = settings

    def destination_hash(self, channel: str, destination: str) -> str:
        return self.cipher.lookup_hash("code-destination", f"{channel}:{destination}")

    def _code_hash(self, channel: str, purpose: str, destination_hash: str, code: str) -> str:
        return self.cipher.lookup_hash(
            "verification-code", f"{channel}:{purpose}:{destination_hash}:{code}"
        )

    def _account_exists(self, channel: str, destination: str) -> bool:
        if channel == SMS:
            condition = Account.phone_hash == self.cipher.lookup_hash("phone", destination)
        else:
            condition = Account.email == destination
        with self.database.session() as session:
            return session.scalar(select(Account.id).where(condition)) is not None

    def issue(self, channel: str, to: str, purpose: str, *, at: datetime) -> int:
        """Record (and usually send) a new code; the seconds before the next may be asked."""
        sender = self.senders.get(channel)
        if sender is None:
            raise Unavailable(f"no sender configured for {channel}")
        destination = normalize_destination(channel, to)
        guard = get_guard()
        store, settings = guard.store, self.settings
        admission = store.admit(
            "code-address:" + address_key(address()).removeprefix("address:"),
            limit=settings.address_limit,
            window=settings.address_window,
            at=at,
        )
        if not admission.admitted:
            raise RateLimited(
                "code requests per address", retry_after=_seconds(admission.retry_at, at)
            )
        digest = self.destination_hash(channel, destination)
        # One request per destination per resend interval passes this atomic counter, so the
        # daily count below is never raced by a parallel request for the same destination.
        admission = store.admit(
            f"code-destination:{digest}", limit=1, window=settings.resend, at=at
        )
        if not admission.admitted:
            raise RateLimited("code resend interval", retry_after=_seconds(admission.retry_at, at))
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        with self.database.session() as session:
            session.execute(delete(VerificationCode).where(VerificationCode.created_at < at - DAY))
            sent_today = session.scalars(
                select(VerificationCode.created_at)
                .where(
                    VerificationCode.destination_hash == digest,
                    VerificationCode.created_at > at - DAY,
                )
                .order_by(VerificationCode.created_at)
            ).all()
            if len(sent_today) >= settings.daily_limit:
                raise RateLimited("code daily limit", retry_after=_seconds(sent_today[0] + DAY, at))
            # A new code replaces the destination's earlier code for the same purpose.
            session.execute(
                update(VerificationCode)
                .where(
                    VerificationCode.destination_hash == digest,
                    VerificationCode.purpose == purpose,
                    VerificationCode.spent_at.is_(None),
                )
                .values(spent_at=at)
            )
            session.add(
                VerificationCode(
                    channel=channel,
                    purpose=purpose,
                    destination_hash=digest,
                    code_hash=self._code_hash(channel, purpose, digest, code),
                    created_at=at,
                    expires_at=at + CODE_LIFETIME,
                    failed_tries=0,
                )
            )
        if purpose in ACCOUNT_PURPOSES and not self._account_exists(channel, destination):
            return int(settings.resend.total_seconds())
        text = f"【{PRODUCT}】" + TEXTS[purpose].format(code=code)
        message = Message(
            channel=channel,
            to=destination,
            purpose=purpose,
            text=text,
            code=code,
            subject=f"{PRODUCT} {SUBJECTS[purpose]}",
        )
        try:
            sender.send(message, at=at)
        except DeliveryFailed as exc:
            # The answer stays the same (it must not tell which destinations have accounts);
            # the operator learns from the log and the audit trail.
            log.error("verification code not delivered by %s: %s", sender.describe(), exc)
            write_audit("unavailable", event="code_delivery_failed", detail=str(exc))
        return int(settings.resend.total_seconds())

    def check(
        self, channel: str, to: str, purpose: str, code: str, *, at: datetime, consume: bool = True
    ) -> str:
        """Use the destination's code for ``purpose``: the normalised destination, or
        ``code_invalid`` / ``code_expired``. A right code works once. ``consume=False`` checks
        a right code without using it (wrong tries count all the same): a route whose other
        checks may still refuse calls ``spend`` once it has succeeded, so a person who mistyped
        something else need not ask for a new code."""
        destination = normalize_destination(channel, to)
        digest = self.destination_hash(channel, destination)
        table = VerificationCode
        with self.database.session() as session:
            row = session.scalars(
                select(table)
                .where(
                    table.destination_hash == digest,
                    table.purpose == purpose,
                    table.channel == channel,
                )
                .order_by(table.created_at.desc(), table.id.desc())
                .limit(1)
            ).one_or_none()
            if row is None:
                raise CodeInvalid("no code for this destination and purpose")
            if row.spent_at is not None or at >= row.expires_at:
                raise CodeExpired("code used, replaced, voided or expired")
            well_formed = len(code) == CODE_DIGITS and code.isascii() and code.isdigit()
            expected = row.code_hash
            given = self._code_hash(channel, purpose, digest, code) if well_formed else ""
            if well_formed and hmac.compare_digest(expected, given):
                if not consume:
                    return destination
                # Conditional on still being unspent: two parallel uses, one wins.
                used = session.execute(
                    update(table)
                    .where(table.id == row.id, table.spent_at.is_(None))
                    .values(spent_at=at)
                )
                if used.rowcount != 1:  # type: ignore[attr-defined]
                    raise CodeExpired("code used by a parallel request")
                return destination
            session.execute(
                update(table).where(table.id == row.id).values(failed_tries=table.failed_tries + 1)
            )
            tries = session.scalar(select(table.failed_tries).where(table.id == row.id)) or 0
            if tries >= MAX_WRONG_TRIES:
                session.execute(update(table).where(table.id == row.id).values(spent_at=at))
                voided = True
            else:
                voided = False
        if voided:
            raise CodeExpired(f"wrong code, try {tries}: code voided")
        raise CodeInvalid(f"wrong code, try {tries}")

    def spend(self, channel: str, destination: str, purpose: str, *, at: datetime) -> None:
        """Use up the code ``check(..., consume=False)`` accepted; ``code_expired`` when a
        parallel request used it first."""
        digest = self.destination_hash(channel, destination)
        table = VerificationCode
        with self.database.session() as session:
            used = session.execute(
                update(table)
                .where(
                    table.destination_hash == digest,
                    table.purpose == purpose,
                    table.channel == channel,
                    table.spent_at.is_(None),
                    table.expires_at > at,
                )
                .values(spent_at=at)
            )
            if used.rowcount != 1:  # type: ignore[attr-defined]
                raise CodeExpired("code used by a parallel request")

    def sent_today(self, channel: str, to: str, *, at: datetime) -> int:
        digest = self.destination_hash(channel, normalize_destination(channel, to))
        with self.database.session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(VerificationCode)
                    .where(
                        VerificationCode.destination_hash == digest,
                        VerificationCode.created_at > at - DAY,
                    )
                )
                or 0
            )


def code_field(body: dict[str, str]) -> str:
    """The ``code`` of a request body: six digits, or the request is malformed."""
    code = body["code"].strip()
    if len(code) != CODE_DIGITS or not (code.isascii() and code.isdigit()):
        raise BadRequest("code is 6 digits")
    return code


def _seconds(until: datetime | None, at: datetime) -> int:
    if until is None:
        return 1
    return max(1, int((until - at).total_seconds() + 0.999))


bp = Blueprint("codes", __name__, url_prefix="/api/v1")


@bp.post("/codes")
def request_code() -> Response:
    context = begin_audit("code_requested")
    check_origin()
    body = json_body({"channel": str, "to": str, "purpose": str})
    channel, purpose = body["channel"], body["purpose"]
    if channel not in CHANNELS:
        raise BadRequest("channel is sms or email")
    if purpose not in PURPOSES:
        raise BadRequest("purpose is register, login, reset or verify")
    if len(body["to"]) > MAX_EMAIL_LENGTH:
        raise IdentifierInvalid("phone" if channel == SMS else "email")
    context.method = channel
    context.notes.append(f"purpose {purpose}")
    resend_after = get_codes().issue(channel, body["to"], purpose, at=clock.now())
    write_audit("ok")
    return jsonify({"ok": True, "resend_after": resend_after})


def get_codes(app: Flask | None = None) -> CodeService:
    return (app or current_app).extensions[EXTENSION]


def init_app(app: Flask) -> CodeService:
    from gateway.accounts import get_accounts

    config = app.config
    base = Path.cwd()
    senders: dict[str, Sender | None] = {}
    outboxes: list[str] = []
    for channel, key in ((SMS, "NOTIFY_SMS"), (EMAIL, "NOTIFY_EMAIL")):
        setting = config[key]
        if setting is None:
            senders[channel] = None
            continue
        sender = make_sender(
            setting,
            secret=config["NOTIFY_SMS_SECRET"],
            email_from=config["NOTIFY_EMAIL_FROM"],
            timeout=config["NOTIFY_TIMEOUT"],
            base=base,
        )
        senders[channel] = sender
        if sender.development:
            outboxes.append(f"{channel} -> {sender.describe().removeprefix('development outbox ')}")
        else:
            log.info("%s messages go to %s", channel, sender.describe())
    if outboxes:
        # Once, at start-up: nobody receives these codes; they are only written down.
        log.warning(
            "DEVELOPMENT OUTBOX: verification codes and notices are NOT sent, only written to "
            "a file (%s); configure notify_sms / notify_email before real use",
            "; ".join(outboxes),
        )
    service = CodeService(
        get_database(app),
        get_accounts(app).cipher,
        senders,
        CodeSettings(
            resend=timedelta(seconds=config["CODE_RESEND_SECONDS"]),
            daily_limit=config["CODE_DAILY_LIMIT"],
            address_limit=config["CODE_ADDRESS_LIMIT"],
            address_window=timedelta(seconds=config["RATE_LIMIT_WINDOW"]),
        ),
    )
    app.extensions[EXTENSION] = service
    app.register_blueprint(bp)
    return service
