"""Cancellation (注销) by the account's holder, and ending every session of an account.

``POST /api/v1/account/cancel {"confirm": true}`` (the route is ``account_api.cancel``, which the
consent gate lets through) needs a session started by a login (any factor) in the last
``REAUTHENTICATION_MINUTES``; an older session answers ``403 reauthentication_required``.

What cancellation erases: the person's name, ID-card number, phone, e-mail, login name, the
enterprise's credit code and legal representative (name and ID-card number), the password, every
certificate binding and refusal, the stored details (subject) of certificates the account used,
its in-site messages and sign-in sources. The account's row stays as a tombstone (status
``cancelled``, shown as 已注销账户) so the audit trail, which holds only the account's public id,
keeps pointing at it and ``certgate audit verify`` still passes. Every identifier can register
again. Verification codes keep only keyed hashes of destinations, which no one can reverse.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import delete, select

from gateway.accounts import get_accounts
from gateway.lifecycle.errors import ReauthenticationRequired
from gateway.lifecycle.models import (
    AccountMessage,
    AccountStatusChange,
    KnownSignInSource,
    LegalRepresentativeId,
    RefusedCertificate,
)
from gateway.sessions import get_sessions
from gateway.storage.models import Account, AuditRecord, CertificateBinding, CertificateDetails
from gateway.stores import SessionRecord

REAUTHENTICATION_MINUTES = 5


def end_sessions_everywhere(app: Flask, account_id: int, *, at: datetime, reason: str) -> int:
    """End every session of the account; the number ended. Single logout first
    (``gateway.sso.logout.end_session_everywhere``): the applications that received tokens or
    tickets in those sessions are told and the tokens revoked, queued before the session rows
    go. ``reason``: ``account_cancelled``, ``account_frozen``, ..."""
    from gateway.sso.logout import end_session_everywhere

    end_session_everywhere(reason, account_id=account_id, app=app)
    return get_sessions(app).store.delete_for_account(account_id)


def check_recent_login(record: SessionRecord, *, at: datetime) -> None:
    if at - record.created_at > timedelta(minutes=REAUTHENTICATION_MINUTES):
        raise ReauthenticationRequired(
            "the session's login is older than the cancellation window",
            minutes=REAUTHENTICATION_MINUTES,
        )


def erase_account(app: Flask, account: Account, *, at: datetime) -> None:
    """Everything personal about ``account`` erased; the row kept as a tombstone."""
    accounts = get_accounts(app)
    with accounts.database.session() as session:
        thumbprints = set(
            session.scalars(
                select(CertificateBinding.value).where(
                    CertificateBinding.account_id == account.id,
                    CertificateBinding.kind == "sha256",
                )
            ).all()
        )
        thumbprints |= {
            value
            for value in session.scalars(
                select(AuditRecord.certificate_thumbprint)
                .where(AuditRecord.account_public_id == account.public_id)
                .distinct()
            ).all()
            if value
        }
        issuer_serials = list(
            session.scalars(
                select(CertificateBinding.value).where(
                    CertificateBinding.account_id == account.id,
                    CertificateBinding.kind == "issuer_serial",
                )
            ).all()
        )
        session.execute(
            delete(CertificateDetails).where(
                CertificateDetails.thumbprint.in_(thumbprints)
                | CertificateDetails.issuer_serial.in_(issuer_serials)
            )
        )
        for table in (
            LegalRepresentativeId,
            RefusedCertificate,
            KnownSignInSource,
            AccountMessage,
            AccountStatusChange,
        ):
            session.execute(delete(table).where(table.account_id == account.id))
    accounts.cancel(account.public_id, at=at)
