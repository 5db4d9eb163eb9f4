"""Staff (经办人): the enterprise invites a person for a period, the person accepts or declines,
the enterprise revokes or the person leaves, and the period's end ends it by itself.

Enterprise side (its own login, or its legal representative acting for it):

- ``POST /api/v1/enterprise/staff {"id_card_number" | "phone", "valid_until"}`` → ``201
  {"invitation": {...}}``; ``GET /api/v1/enterprise/staff`` → staff with their periods and the
  open invitations; ``POST /api/v1/enterprise/staff/<person id>/revoke``.

Person side: ``GET /api/v1/account/invitations``, ``POST /api/v1/account/invitations/<id>/accept``
(or ``/decline``), ``GET /api/v1/account/roles``, ``POST /api/v1/account/roles/<enterprise
id>/leave``.

The invitee is named by ID-card number or phone and found through the same keyed hashes the
accounts use, so the answer never tells whether such a person has an account, and a person who
registers later still finds the invitation. An invitation can be answered for
``INVITATION_DAYS`` days, and never after the period it offers has ended. A new invitation of
the same person replaces an open one; accepting it again renews the role with the new period.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, Response, g, jsonify
from sqlalchemy import select, update

from certs.errors import BadRequest
from certs.identifiers import is_valid_id_card_number, mask_identifier, normalize_identifier
from gateway import clock
from gateway.accounts import (
    REAL_NAME_COLUMN,
    account_is_usable,
    is_valid_phone,
    normalize_phone,
)
from gateway.http import write_audit
from gateway.lifecycle.errors import IdentifierInvalid
from gateway.lifecycle.notices import get_notices
from gateway.roles.acting import acting_role
from gateway.roles.errors import (
    EnterpriseRequired,
    InvitationClosed,
    InvitationUnknown,
    PeriodInvalid,
    RoleUnknown,
)
from gateway.roles.models import (
    ACCEPTED,
    DECLINED,
    LEFT,
    PENDING,
    REPLACED,
    REVOKED,
    StaffInvitation,
    StaffRole,
)
from gateway.roles.roles import LEGAL_REPRESENTATIVE, STAFF, get_roles, iso
from gateway.storage.database import get_database
from gateway.storage.models import ENTERPRISE, PERSON, Account

enterprise_bp = Blueprint("enterprise_staff", __name__, url_prefix="/api/v1/enterprise")
bp = Blueprint("staff", __name__, url_prefix="/api/v1/account")

INVITATION_DAYS = 7
MAX_PERIOD_DAYS = 3 * 366
INVITEE_COLUMN = "staff_invitations.invitee"
# A date alone ("2027-06-30") means to the end of that day where the platforms are.
PERIOD_ZONE = ZoneInfo("Asia/Shanghai")
MAX_ID = 64


def _session() -> Any:
    from gateway.account_api import _session as account_session

    return account_session()


def _state_change(event: str, schema: dict[str, type], **kw: Any) -> Any:
    from gateway.account_api import _state_change as account_state_change

    return account_state_change(event, schema, **kw)


def _enterprise_of(account: Account) -> Account:
    """The enterprise this session manages: its own, or the one its legal representative
    acts for; ``enterprise_required`` otherwise (staff cannot appoint staff)."""
    if account.kind == ENTERPRISE:
        return account
    role = acting_role()
    if role is not None and role.role == LEGAL_REPRESENTATIVE:
        enterprise = get_database_account(role.enterprise_id)
        if enterprise is not None:
            return enterprise
    raise EnterpriseRequired(f"{account.kind} session without the legal representative's role")


def get_database_account(account_id: int) -> Account | None:
    with get_database().session() as session:
        return session.get(Account, account_id)


def parse_valid_until(value: str, *, at: datetime) -> datetime:
    """``valid_until`` as an instant: an ISO 8601 date (to the end of that day, Asia/Shanghai)
    or a date and time with its offset."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            until = datetime.combine(day + timedelta(days=1), time(), PERIOD_ZONE)
        else:
            until = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("valid_until is an ISO 8601 date or date-time") from None
    if until.tzinfo is None:
        raise BadRequest("valid_until needs an offset (e.g. +08:00) or is a date alone")
    until = until.astimezone(UTC)
    if until <= at or until > at + timedelta(days=MAX_PERIOD_DAYS):
        raise PeriodInvalid(f"valid_until {iso(until)}", max_days=MAX_PERIOD_DAYS)
    return until


def _invitee(body: dict[str, Any]) -> tuple[str, str]:
    """(kind, normalised value) of the invitee: exactly one of ID-card number and phone."""
    given = [field for field in ("id_card_number", "phone") if field in body]
    if len(given) != 1:
        raise BadRequest('give exactly one of "id_card_number" and "phone"')
    kind = given[0]
    if kind == "id_card_number":
        number = normalize_identifier(body[kind])
        if not is_valid_id_card_number(number):
            raise IdentifierInvalid("id_card_number")
        return kind, number
    phone = normalize_phone(body[kind])
    if not is_valid_phone(phone):
        raise IdentifierInvalid("phone")
    return kind, phone


def _enterprise_api(enterprise: Account) -> dict[str, str | None]:
    return {
        "id": enterprise.public_id,
        "name": enterprise.display_name,
        "uscc": enterprise.unified_social_credit_code,
    }


def _state_of(invitation: StaffInvitation, at: datetime) -> str:
    if invitation.state == PENDING and invitation.expires_at <= at:
        return "expired"
    return invitation.state


def _invitation_api(invitation: StaffInvitation, at: datetime) -> dict[str, Any]:
    cipher = get_roles().cipher
    return {
        "id": invitation.public_id,
        "invitee": {
            "kind": invitation.invitee_kind,
            "masked": mask_identifier(cipher.open(INVITEE_COLUMN, invitation.invitee_sealed)),
        },
        "valid_until": iso(invitation.valid_until),
        "expires_at": iso(invitation.expires_at),
        "created_at": iso(invitation.created_at),
        "state": _state_of(invitation, at),
    }


# --- the enterprise's side ------------------------------------------------------------------------


@enterprise_bp.post("/staff")
def invite() -> tuple[Response, int]:
    record, account, body = _state_change(
        "staff_invited", {"valid_until": str}, optional={"id_card_number": str, "phone": str}
    )
    enterprise = _enterprise_of(account)
    context = g.certgate_audit
    context.notes.append(f"enterprise {enterprise.public_id}")
    if len(body["valid_until"]) > MAX_ID:
        raise BadRequest("valid_until is too long")
    now = clock.now()
    valid_until = parse_valid_until(body["valid_until"], at=now)
    kind, value = _invitee(body)
    cipher = get_roles().cipher
    digest = cipher.lookup_hash(kind, value)
    invitation = StaffInvitation(
        public_id=str(uuid.uuid4()),
        enterprise_id=enterprise.id,
        invited_by_id=account.id,
        invitee_kind=kind,
        invitee_hash=digest,
        invitee_sealed=cipher.seal(INVITEE_COLUMN, value),
        valid_until=valid_until,
        created_at=now,
        expires_at=min(now + timedelta(days=INVITATION_DAYS), valid_until),
        state=PENDING,
    )
    hash_column = Account.id_card_number_hash if kind == "id_card_number" else Account.phone_hash
    with get_database().session() as session:
        replaced = session.execute(
            update(StaffInvitation)
            .where(
                StaffInvitation.enterprise_id == enterprise.id,
                StaffInvitation.invitee_hash == digest,
                StaffInvitation.state == PENDING,
            )
            .values(state=REPLACED, answered_at=now)
        ).rowcount  # type: ignore[attr-defined]
        session.add(invitation)
        invitee_id = session.scalar(
            select(Account.id).where(hash_column == digest, Account.kind == PERSON)
        )
    if replaced:
        context.notes.append(f"replaced {replaced} open invitation(s)")
    context.notes.append(f"invitation {invitation.public_id} by {kind}, until {iso(valid_until)}")
    if invitee_id is not None:
        get_notices().post(
            invitee_id,
            "staff_invited",
            at=now,
            enterprise=enterprise.display_name,
            until=_shown(valid_until),
        )
    write_audit("ok")
    return jsonify({"ok": True, "invitation": _invitation_api(invitation, now)}), 201


def _shown(at: datetime) -> str:
    return at.astimezone(PERIOD_ZONE).strftime("%Y-%m-%d %H:%M")


@enterprise_bp.get("/staff")
def staff_list() -> Response:
    g.certgate_skip_audit = True
    _, account = _session()
    enterprise = _enterprise_of(account)
    now = clock.now()
    cipher = get_roles().cipher
    from gateway.accounts import ID_CARD_COLUMN

    with get_database().session() as session:
        rows = session.execute(
            select(StaffRole, Account)
            .join(Account, Account.id == StaffRole.person_id)
            .where(StaffRole.enterprise_id == enterprise.id)
            .order_by(StaffRole.granted_at.desc(), StaffRole.id.desc())
        ).all()
        invitations = session.scalars(
            select(StaffInvitation)
            .where(
                StaffInvitation.enterprise_id == enterprise.id,
                StaffInvitation.state == PENDING,
                StaffInvitation.expires_at > now,
            )
            .order_by(StaffInvitation.created_at.desc(), StaffInvitation.id.desc())
        ).all()
    staff = []
    for role, person in rows:
        if role.ended_at is not None:
            state = role.ended_how or REVOKED
        elif role.valid_until <= now:
            state = "expired"
        else:
            state = "active"
        staff.append(
            {
                "person": {
                    "id": person.public_id,
                    "name": cipher.open(REAL_NAME_COLUMN, person.real_name_sealed)
                    if person.real_name_sealed
                    else person.display_name,
                    "id_card_number_masked": mask_identifier(
                        cipher.open(ID_CARD_COLUMN, person.id_card_number_sealed)
                    )
                    if person.id_card_number_sealed
                    else None,
                },
                "granted_at": iso(role.granted_at),
                "valid_until": iso(role.valid_until),
                "ended_at": iso(role.ended_at),
                "state": state,
            }
        )
    return jsonify(
        {
            "ok": True,
            "enterprise": _enterprise_api(enterprise),
            "staff": staff,
            "invitations": [_invitation_api(invitation, now) for invitation in invitations],
        }
    )


def _end_role(enterprise_id: int, person_id: int, how: str, *, at: datetime) -> bool:
    """End a current staff role (revoked or left); False when there is none."""
    with get_database().session() as session:
        ended = session.execute(
            update(StaffRole)
            .where(
                StaffRole.enterprise_id == enterprise_id,
                StaffRole.person_id == person_id,
                StaffRole.ended_at.is_(None),
                StaffRole.valid_until > at,
            )
            .values(ended_at=at, ended_how=how)
        ).rowcount  # type: ignore[attr-defined]
    return bool(ended)


@enterprise_bp.post("/staff/<person_id>/revoke")
def revoke(person_id: str) -> Response:
    _, account, _ = _state_change("staff_revoked", {})
    enterprise = _enterprise_of(account)
    context = g.certgate_audit
    context.notes.append(f"enterprise {enterprise.public_id}, person {person_id[:MAX_ID]}")
    with get_database().session() as session:
        person = session.scalars(
            select(Account).where(Account.public_id == person_id[:MAX_ID], Account.kind == PERSON)
        ).one_or_none()
    now = clock.now()
    if person is None or not _end_role(enterprise.id, person.id, REVOKED, at=now):
        raise RoleUnknown("no current staff role of that person")
    get_notices().post(
        person.id, "role_ended", at=now, enterprise=enterprise.display_name, how="被企业撤销"
    )
    write_audit("ok")
    return jsonify({"ok": True})


# --- the person's side ----------------------------------------------------------------------------


def _invitee_hashes(person: Account) -> list[str]:
    return [h for h in (person.id_card_number_hash, person.phone_hash) if h]


@bp.get("/invitations")
def invitations() -> Response:
    g.certgate_skip_audit = True
    _, account = _session()
    now = clock.now()
    hashes = _invitee_hashes(account) if account.kind == PERSON else []
    if not hashes:
        return jsonify({"ok": True, "invitations": []})
    with get_database().session() as session:
        rows = session.execute(
            select(StaffInvitation, Account)
            .join(Account, Account.id == StaffInvitation.enterprise_id)
            .where(
                StaffInvitation.invitee_hash.in_(hashes),
                StaffInvitation.state == PENDING,
                StaffInvitation.expires_at > now,
            )
            .order_by(StaffInvitation.created_at.desc(), StaffInvitation.id.desc())
        ).all()
    entries = [
        {
            "id": invitation.public_id,
            "enterprise": _enterprise_api(enterprise),
            "role": STAFF,
            "valid_until": iso(invitation.valid_until),
            "expires_at": iso(invitation.expires_at),
            "state": _state_of(invitation, now),
        }
        for invitation, enterprise in rows
        if account_is_usable(enterprise)
    ]
    return jsonify({"ok": True, "invitations": entries})


@dataclass(frozen=True)
class _Answered:
    enterprise: Account
    valid_until: datetime


def _answer(invitation_id: str, accept: bool) -> _Answered:
    _, account, _ = _state_change("staff_invitation_answered", {})
    context = g.certgate_audit
    context.notes.append(
        f"invitation {invitation_id[:MAX_ID]} {'accepted' if accept else 'declined'}"
    )
    now = clock.now()
    hashes = _invitee_hashes(account) if account.kind == PERSON else []
    with get_database().session() as session:
        invitation = session.scalars(
            select(StaffInvitation).where(StaffInvitation.public_id == invitation_id[:MAX_ID])
        ).one_or_none()
        if invitation is None or invitation.invitee_hash not in hashes:
            raise InvitationUnknown("no such invitation for this person")
        state = _state_of(invitation, now)
        if state != PENDING:
            raise InvitationClosed(f"invitation is {state}", state=state)
        enterprise = session.get(Account, invitation.enterprise_id)
        if enterprise is None or not account_is_usable(enterprise):
            raise InvitationClosed("the enterprise can no longer sign in", state="expired")
        # Answered once, also when two answers race.
        answered = session.execute(
            update(StaffInvitation)
            .where(StaffInvitation.id == invitation.id, StaffInvitation.state == PENDING)
            .values(
                state=ACCEPTED if accept else DECLINED, answered_at=now, answered_by_id=account.id
            )
        ).rowcount  # type: ignore[attr-defined]
        if not answered:
            raise InvitationClosed("answered meanwhile", state=ACCEPTED)
        context.notes.append(f"enterprise {enterprise.public_id}")
        if accept:
            role = session.scalars(
                select(StaffRole).where(
                    StaffRole.enterprise_id == enterprise.id, StaffRole.person_id == account.id
                )
            ).one_or_none()
            if role is None:
                role = StaffRole(enterprise_id=enterprise.id, person_id=account.id)
                session.add(role)
            role.valid_until = invitation.valid_until
            role.granted_at = now
            role.ended_at = None
            role.ended_how = None
        valid_until = invitation.valid_until
    notices = get_notices()
    if accept:
        until = _shown(valid_until)
        notices.post(
            account.id, "role_granted", at=now, enterprise=enterprise.display_name, until=until
        )
        notices.post(enterprise.id, "staff_joined", at=now, until=until)
    write_audit("ok")
    return _Answered(enterprise, valid_until)


@bp.post("/invitations/<invitation_id>/accept")
def accept(invitation_id: str) -> Response:
    answered = _answer(invitation_id, accept=True)
    return jsonify(
        {
            "ok": True,
            "role": {
                "enterprise": _enterprise_api(answered.enterprise),
                "role": STAFF,
                "valid_until": iso(answered.valid_until),
            },
        }
    )


@bp.post("/invitations/<invitation_id>/decline")
def decline(invitation_id: str) -> Response:
    _answer(invitation_id, accept=False)
    return jsonify({"ok": True})


@bp.get("/roles")
def roles() -> Response:
    g.certgate_skip_audit = True
    _, account = _session()
    directory = get_roles()
    current = directory.roles_of(account.id, at=clock.now()) if account.kind == PERSON else []
    waiting = directory.represented_below_level(account.id) if account.kind == PERSON else []
    return jsonify(
        {
            "ok": True,
            "roles": [role.to_api() for role in current],
            # Enterprises naming this person as legal representative, waiting for the
            # person's real-name level 2.
            "pending_verification": [_enterprise_api(enterprise) for enterprise in waiting],
        }
    )


@bp.post("/roles/<enterprise_id>/leave")
def leave(enterprise_id: str) -> Response:
    _, account, _ = _state_change("staff_left", {})
    g.certgate_audit.notes.append(f"enterprise {enterprise_id[:MAX_ID]}")
    with get_database().session() as session:
        enterprise = session.scalars(
            select(Account).where(
                Account.public_id == enterprise_id[:MAX_ID], Account.kind == ENTERPRISE
            )
        ).one_or_none()
    now = clock.now()
    if enterprise is None or not _end_role(enterprise.id, account.id, LEFT, at=now):
        raise RoleUnknown("no current staff role for that enterprise")
    get_notices().post(enterprise.id, "staff_left", at=now)
    write_audit("ok")
    return jsonify({"ok": True})


def init_app(app: Flask) -> None:
    app.register_blueprint(enterprise_bp)
    app.register_blueprint(bp)
