"""Notices to an account: in-site messages (站内信) and, for security events, the same notice by
SMS to the account's phone (or by e-mail when it has no phone) through the senders.

Security events: a sign-in from a device or address not seen before, a certificate bound or
unbound, the password changed or reset, an agreement version published, the account frozen,
suspended, terminated or reactivated, the real-name level changed. A notice names no personal
data (no name, number or phone), so messages are stored as written; times are shown in
Asia/Shanghai.

- ``GET /api/v1/account/messages`` → ``{"messages": [{"id", "kind", "title", "text",
  "created_at", "read"}], "unread": n}``, newest first;
- ``POST /api/v1/account/messages/read {"ids": [...]} | {"all": true}`` → ``{"marked": n}``.

A sign-in is noticed by the ``after_request`` hook over the login answers
(gateway/lifecycle/sign_in.py), so every login route (certificate, password, SMS) is covered in
one place; the very first sign-in of an account (its
registration, or its first login) is only remembered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, Response, current_app, g, jsonify
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from certs.errors import BadRequest
from gateway import clock
from gateway.accounts import PHONE_COLUMN
from gateway.lifecycle.models import AccountMessage, KnownSignInSource
from gateway.lifecycle.senders import EMAIL, SMS, DeliveryFailed, Message, Sender
from gateway.storage.database import Database
from gateway.storage.models import Account
from gateway.storage.personal_data import PersonalDataCipher
from gateway.storage.prepared import Prepared

log = logging.getLogger(__name__)

EXTENSION = "certgate.notices"
PRODUCT = "统一身份认证"
SHOWN_ZONE = ZoneInfo("Asia/Shanghai")
MESSAGE_LIMIT = 100
MAX_DEVICE = 256
REGISTRATION_ENDPOINTS = frozenset(
    {"registration.register_person", "registration.register_enterprise"}
)

_KNOWN_SOURCES = Prepared(
    select(KnownSignInSource.kind, KnownSignInSource.value_hash).where(
        KnownSignInSource.account_id == bindparam("account_id")
    )
)
_SOURCE_VALUES: dict[str, Any] = {
    name: bindparam(name) for name in ("account_id", "kind", "value_hash", "first_seen_at")
}
# [on SQLite, on PostgreSQL]
_REMEMBER_SOURCE = [
    Prepared(dialect_insert(KnownSignInSource).values(_SOURCE_VALUES).on_conflict_do_nothing())
    for dialect_insert in (sqlite_insert, postgresql_insert)
]

# kind -> (title, text); fields: {at} (Asia/Shanghai), {reason}, {level}, {version}, {summary},
# {label}. Chinese, like the verification codes; the pages translate titles by kind.
NOTICES: Mapping[str, tuple[str, str]] = {
    "sign_in_new_source": (
        "新设备或新地点登录提醒",
        "您的账户于 {at} 在一个新的设备或网络地址登录。如非本人操作，请立即修改密码并联系客服。",
    ),
    "certificate_bound": (
        "证书已绑定",
        "您的账户于 {at} 绑定了一张数字证书（{label}）。如非本人操作，请立即解除绑定并联系客服。",
    ),
    "certificate_unbound": (
        "证书已解除绑定",
        "您的账户于 {at} 解除了一张数字证书的绑定，该证书此后不能再登录本账户。",
    ),
    "password_changed": (
        "密码已修改",
        "您的账户密码于 {at} 被修改，其他设备上的登录已退出。如非本人操作，请立即找回密码。",
    ),
    "password_reset": (
        "密码已重置",
        "您的账户密码于 {at} 通过短信验证码重置，所有登录已退出。如非本人操作，请联系客服。",
    ),
    "agreement_published": (
        "服务协议已更新",
        "服务协议已于 {at} 更新为 {version} 版（{summary}）。下次登录时请阅读并同意新版本。",
    ),
    "account_frozen": (
        "账户已冻结",
        "您的账户已于 {at} 被冻结，暂时不能登录。原因：{reason}。如有疑问请联系客服。",
    ),
    "account_suspended": (
        "账户已暂停",
        "您的账户已于 {at} 被暂停使用。原因：{reason}。如有疑问请联系客服。",
    ),
    "account_terminated": (
        "账户已终止",
        "您的账户已于 {at} 被终止服务。原因：{reason}。如有疑问请联系客服。",
    ),
    "account_reactivated": (
        "账户已恢复",
        "您的账户已于 {at} 恢复正常，可以重新登录。",
    ),
    "real_name_level": (
        "实名等级已变更",
        "您的账户实名等级已于 {at} 变更为 {level} 级。",
    ),
    # Enterprise roles (gateway/roles): {enterprise} is the enterprise's registered name,
    # {until} the end of the authorised period, {how} how a role ended.
    "staff_invited": (
        "经办人授权邀请",
        "{enterprise}于 {at} 邀请您作为经办人代表其办理业务，授权至 {until}。"
        "请在账户页面接受或拒绝。",
    ),
    "role_granted": (
        "已成为企业经办人",
        "您已于 {at} 成为{enterprise}的经办人，授权至 {until}。"
        "如非本人操作，请在账户页面退出该授权。",
    ),
    "staff_joined": (
        "经办人已接受授权",
        "一名受邀人员已于 {at} 接受经办人授权，授权至 {until}。",
    ),
    "role_ended": (
        "经办人授权已结束",
        "您代表{enterprise}的经办人授权已于 {at} {how}。",
    ),
    "staff_left": (
        "经办人已退出授权",
        "一名经办人已于 {at} 退出了对本企业的授权。",
    ),
    "legal_representative_changed": (
        "法定代表人已变更",
        "本企业登记的法定代表人已于 {at} 变更，原法定代表人即时失去代表企业办理业务的权限。"
        "原因：{reason}。",
    ),
}


def shown_time(at: datetime) -> str:
    return at.astimezone(SHOWN_ZONE).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Notice:
    kind: str
    title: str
    text: str


class NoticeService:
    def __init__(
        self, database: Database, cipher: PersonalDataCipher, senders: Mapping[str, Sender | None]
    ) -> None:
        self.database = database
        self.cipher = cipher
        self.senders = senders

    @staticmethod
    def compose(kind: str, *, at: datetime, **fields: object) -> Notice:
        title, text = NOTICES[kind]
        return Notice(kind, title, text.format(at=shown_time(at), **fields))

    def post(self, account_id: int, kind: str, *, at: datetime, **fields: object) -> None:
        """An in-site message, and the same notice by SMS (or e-mail) when a sender is set."""
        notice = self.compose(kind, at=at, **fields)
        with self.database.session() as session:
            session.add(
                AccountMessage(
                    account_id=account_id,
                    kind=kind,
                    title=notice.title,
                    text=notice.text,
                    created_at=at,
                )
            )
            account = session.get(Account, account_id)
            destination = self._destination(account) if account is not None else None
        if destination is not None:
            self._deliver(*destination, notice, at=at)

    def _destination(self, account: Account) -> tuple[str, str] | None:
        if account.phone_sealed is not None and self.senders.get(SMS) is not None:
            return SMS, self.cipher.open(PHONE_COLUMN, account.phone_sealed)
        if account.email and self.senders.get(EMAIL) is not None:
            return EMAIL, account.email
        return None

    def _deliver(self, channel: str, to: str, notice: Notice, *, at: datetime) -> None:
        sender = self.senders[channel]
        assert sender is not None
        message = Message(
            channel=channel,
            to=to,
            purpose="notice",
            text=f"【{PRODUCT}】{notice.text}",
            subject=f"{PRODUCT} {notice.title}",
        )
        try:
            sender.send(message, at=at)
        except DeliveryFailed as exc:
            # The in-site message is there; the operator learns of the failure from the log.
            log.error("security notice not delivered by %s: %s", sender.describe(), exc)

    # --- in-site messages -----------------------------------------------------------------------

    def messages(self, account_id: int) -> list[AccountMessage]:
        with self.database.session() as session:
            return list(
                session.scalars(
                    select(AccountMessage)
                    .where(AccountMessage.account_id == account_id)
                    .order_by(AccountMessage.id.desc())
                    .limit(MESSAGE_LIMIT)
                ).all()
            )

    def unread(self, account_id: int) -> int:
        with self.database.session() as session:
            return int(
                session.scalar(
                    select(func.count(AccountMessage.id)).where(
                        AccountMessage.account_id == account_id, AccountMessage.read_at.is_(None)
                    )
                )
                or 0
            )

    def mark_read(self, account_id: int, ids: list[int] | None, *, at: datetime) -> int:
        """Mark the account's messages ``ids`` (all when None) read; how many changed."""
        statement = update(AccountMessage).where(
            AccountMessage.account_id == account_id, AccountMessage.read_at.is_(None)
        )
        if ids is not None:
            statement = statement.where(AccountMessage.id.in_(ids))
        with self.database.session() as session:
            return session.execute(statement.values(read_at=at)).rowcount  # type: ignore[attr-defined]

    # --- sign-in sources ------------------------------------------------------------------------

    def note_sign_in(self, account_id: int, *, device: str, client: str, at: datetime) -> bool:
        """Remember where the account signed in from; True when it was a device or address not
        seen before by an account that had signed in before (a notice is due)."""
        sources = {
            "device": self.cipher.lookup_hash("sign-in-device", device[:MAX_DEVICE]),
            "address": self.cipher.lookup_hash("sign-in-address", client),
        }
        # On the Core connection, inside the sign-in hook's unit of work when there is one
        # (gateway/lifecycle/sign_in.py): every login runs this.
        with self.database.connection() as connection:
            known = {
                (row.kind, row.value_hash)
                for row in _KNOWN_SOURCES.execute(connection, {"account_id": account_id}).rows
            }
            new = [pair for pair in sources.items() if pair not in known]
            if new:
                remember = _REMEMBER_SOURCE[connection.dialect.name == "postgresql"]
                for kind, digest in new:
                    # Two first sign-ins from one device at once: the second finds the row
                    # there and goes on.
                    remember.execute(
                        connection,
                        {
                            "account_id": account_id,
                            "kind": kind,
                            "value_hash": digest,
                            "first_seen_at": at,
                        },
                    )
        return bool(known) and bool(new)


def get_notices(app: Flask | None = None) -> NoticeService:
    service: NoticeService = (app or current_app).extensions[EXTENSION]
    return service


# --- routes ---------------------------------------------------------------------------------------

bp = Blueprint("notices", __name__, url_prefix="/api/v1/account")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@bp.get("/messages")
def messages() -> Response:
    from gateway.account_api import _session

    g.certgate_skip_audit = True
    _, account = _session()
    notices = get_notices()
    entries = [
        {
            "id": row.id,
            "kind": row.kind,
            "title": row.title,
            "text": row.text,
            "created_at": _iso(row.created_at),
            "read": row.read_at is not None,
        }
        for row in notices.messages(account.id)
    ]
    return jsonify({"ok": True, "messages": entries, "unread": notices.unread(account.id)})


@bp.post("/messages/read")
def mark_read() -> Response:
    from gateway.account_api import _state_change

    _, account, body = _state_change("messages_read", {}, optional={"ids": list, "all": bool})
    g.certgate_skip_audit = True  # reading one's messages is not an event worth a record
    ids = body.get("ids")
    if body.get("all") is True:
        ids = None
    elif not isinstance(ids, list) or not ids or len(ids) > MESSAGE_LIMIT:
        raise BadRequest('give "ids" (a list of message ids) or "all": true')
    elif not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise BadRequest("ids are message ids (integers)")
    marked = get_notices().mark_read(account.id, ids, at=clock.now())
    return jsonify({"ok": True, "marked": marked})


# --- the sign-in hook -----------------------------------------------------------------------------


def init_app(app: Flask) -> NoticeService:
    from gateway.lifecycle.codes import get_codes

    codes = get_codes(app)
    service = NoticeService(codes.database, codes.cipher, codes.senders)
    app.extensions[EXTENSION] = service
    app.register_blueprint(bp)
    return service
