"""Who may act for which enterprise, decided in one place from the records.

- **Legal representative** (法定代表人, Agreement 2 §3.2.3): a person whose ID-card number has the
  keyed hash the enterprise's record holds for its representative, and whose real-name level is
  at least 2 (a CA certificate carrying that number was bound, or an operator checked in
  person). Nothing else is needed, and a change of representative on the record takes effect
  at the next check.
- **Staff** (经办人): a person who accepted the enterprise's invitation, until ``valid_until``,
  unless the enterprise revoked it or the person left.

Both need the enterprise and the person to be able to sign in (not frozen, suspended,
terminated or cancelled). Roles are computed on every check, never cached: expiry ends a role
without anyone acting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from certs.identifiers import is_valid_id_card_number, normalize_identifier
from gateway.accounts import DISABLED_STATES, LEGAL_REPRESENTATIVE_COLUMN, AccountInputError
from gateway.lifecycle.models import LegalRepresentativeId
from gateway.roles.models import StaffRole
from gateway.storage.database import Database
from gateway.storage.models import ENTERPRISE, PERSON, Account
from gateway.storage.personal_data import PersonalDataCipher

EXTENSION = "certgate.roles"
LEGAL_REPRESENTATIVE = "legal_representative"
STAFF = "staff"
# Agreement 2 §3.2.3: the representative signs in as a person who passed real-name checks.
MIN_REPRESENTATIVE_LEVEL = 2
# As gateway/lifecycle/registration.py seals it.
LEGAL_REPRESENTATIVE_ID_COLUMN = "legal_representative_ids.id_card_number"


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True)
class Role:
    """A current role of a person for an enterprise."""

    enterprise_id: int
    enterprise_public_id: str
    enterprise_name: str
    uscc: str | None
    role: str
    valid_until: datetime | None  # None: the legal representative's role has no end date

    def enterprise_api(self) -> dict[str, str | None]:
        return {"id": self.enterprise_public_id, "name": self.enterprise_name, "uscc": self.uscc}

    def to_api(self) -> dict[str, object]:
        return {
            "enterprise": self.enterprise_api(),
            "role": self.role,
            "valid_until": iso(self.valid_until),
        }

    def acting_for(self) -> dict[str, str | None]:
        """``acting_for`` as ``GET /api/v1/session`` shows it."""
        return {
            "id": self.enterprise_public_id,
            "uscc": self.uscc,
            "name": self.enterprise_name,
            "role": self.role,
        }


def _usable(account: Account | None) -> bool:
    return account is not None and account.status not in DISABLED_STATES


class RoleDirectory:
    def __init__(self, database: Database, cipher: PersonalDataCipher) -> None:
        self.database = database
        self.cipher = cipher

    # --- roles ---------------------------------------------------------------------------------

    def roles_of(
        self, person_id: int, *, at: datetime, enterprise_id: int | None = None
    ) -> list[Role]:
        """The person's current roles (one per enterprise: the legal representative's role
        when the person holds both), optionally for one enterprise only."""
        with self.database.session() as session:
            person = session.get(Account, person_id)
            if person is None or person.kind != PERSON or not _usable(person):
                return []
            found: dict[int, Role] = {}
            for enterprise in self._represented(session, person, enterprise_id):
                found[enterprise.id] = self._role(enterprise, LEGAL_REPRESENTATIVE, None)
            staff = (
                select(StaffRole, Account)
                .join(Account, Account.id == StaffRole.enterprise_id)
                .where(
                    StaffRole.person_id == person.id,
                    StaffRole.ended_at.is_(None),
                    StaffRole.valid_until > at,
                    Account.kind == ENTERPRISE,
                    Account.status.not_in(DISABLED_STATES),
                )
            )
            if enterprise_id is not None:
                staff = staff.where(StaffRole.enterprise_id == enterprise_id)
            for role, enterprise in session.execute(staff.order_by(Account.id)).all():
                found.setdefault(enterprise.id, self._role(enterprise, STAFF, role.valid_until))
            return sorted(found.values(), key=lambda r: (r.role != LEGAL_REPRESENTATIVE, r.uscc))

    def role_for(self, person_id: int, enterprise_id: int, *, at: datetime) -> Role | None:
        roles = self.roles_of(person_id, at=at, enterprise_id=enterprise_id)
        return roles[0] if roles else None

    def represented_below_level(self, person_id: int) -> list[Account]:
        """Enterprises naming this person as legal representative whose role waits for the
        person's real-name level 2 (the account page says how to get there)."""
        with self.database.session() as session:
            person = session.get(Account, person_id)
            if person is None or person.real_name_level >= MIN_REPRESENTATIVE_LEVEL:
                return []
            return self._represented(session, person, None, check_level=False)

    @staticmethod
    def _represented(
        session: Session, person: Account, enterprise_id: int | None, *, check_level: bool = True
    ) -> list[Account]:
        if person.id_card_number_hash is None:
            return []
        if check_level and person.real_name_level < MIN_REPRESENTATIVE_LEVEL:
            return []
        query = (
            select(Account)
            .join(LegalRepresentativeId, LegalRepresentativeId.account_id == Account.id)
            .where(
                LegalRepresentativeId.id_card_number_hash == person.id_card_number_hash,
                Account.kind == ENTERPRISE,
                Account.status.not_in(DISABLED_STATES),
            )
            .order_by(Account.id)
        )
        if enterprise_id is not None:
            query = query.where(Account.id == enterprise_id)
        return list(session.scalars(query).all())

    @staticmethod
    def _role(enterprise: Account, role: str, valid_until: datetime | None) -> Role:
        return Role(
            enterprise_id=enterprise.id,
            enterprise_public_id=enterprise.public_id,
            enterprise_name=enterprise.display_name,
            uscc=enterprise.unified_social_credit_code,
            role=role,
            valid_until=valid_until,
        )

    # --- the legal representative on the enterprise's record ----------------------------------

    def set_legal_representative(
        self, enterprise_id: int, *, name: str, id_card_number: str, at: datetime
    ) -> bool:
        """Record the enterprise's legal representative (name and ID-card number, sealed; the
        number also as keyed hash). True when the representative changed (another number)."""
        number = normalize_identifier(id_card_number)
        if not is_valid_id_card_number(number):
            raise AccountInputError(
                "legal representative's ID-card number: not valid (GB 11643-1999 check failed)"
            )
        if not name.strip():
            raise AccountInputError("legal representative's name: required")
        digest = self.cipher.lookup_hash("id_card_number", number)
        with self.database.session() as session:
            enterprise = session.get(Account, enterprise_id)
            if enterprise is None or enterprise.kind != ENTERPRISE:
                raise AccountInputError("legal representative: the account is not an enterprise")
            if enterprise.status == "cancelled":
                raise AccountInputError("legal representative: the enterprise is cancelled")
            enterprise.legal_representative_sealed = self.cipher.seal(
                LEGAL_REPRESENTATIVE_COLUMN, name.strip()
            )
            enterprise.updated_at = at
            record = session.get(LegalRepresentativeId, enterprise_id)
            changed = record is None or record.id_card_number_hash != digest
            if record is None:
                record = LegalRepresentativeId(account_id=enterprise_id)
                session.add(record)
            record.id_card_number_sealed = self.cipher.seal(LEGAL_REPRESENTATIVE_ID_COLUMN, number)
            record.id_card_number_hash = digest
            return changed


def init_app(app: Flask) -> RoleDirectory:
    from gateway.accounts import get_accounts

    accounts = get_accounts(app)
    directory = RoleDirectory(accounts.database, accounts.cipher)
    app.extensions[EXTENSION] = directory
    return directory


def get_roles(app: Flask | None = None) -> RoleDirectory:
    directory: RoleDirectory = (app or current_app).extensions[EXTENSION]
    return directory
