"""Accounts: creation and validation, identifier look-up, bindings, state; the mapping directory.

Person accounts carry a real name, ID-card number, phone and e-mail; enterprise accounts a unified
social credit code, a name and a legal representative (the service agreements in DESIGN.md). The
ID-card number and phone are sealed with AES-GCM and found through keyed hashes; people's names (a
person's real name, an enterprise's legal representative) are sealed too and opened only to be
shown. Nothing looks an account up by name, so names have no lookup hash.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import (
    ColumnElement,
    bindparam,
    delete,
    exists,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from certs.errors import AccountAmbiguous, AccountNotFound
from certs.identifiers import (
    is_valid_id_card_number,
    is_valid_uscc,
    mask_identifier,
    normalize_identifier,
    normalize_typed,
)
from certs.identity import normalize_issuer_serial
from certs.mapping import AccountKind, AccountRef, BindingKind, IdentityField, Probe
from gateway.lifecycle.models import RefusedCertificate
from gateway.passwords import Passwords, password_problem
from gateway.storage.database import Database
from gateway.storage.models import (
    ACCOUNT_STATES,
    ACTIVE,
    ENTERPRISE,
    PERSON,
    REAL_NAME_LEVELS,
    Account,
    CertificateBinding,
    CertificateDetails,
)
from gateway.storage.personal_data import PersonalDataCipher
from gateway.storage.prepared import Prepared

EXTENSION = "certgate.accounts"

ID_CARD_COLUMN = "accounts.id_card_number"
PHONE_COLUMN = "accounts.phone"
REAL_NAME_COLUMN = "accounts.real_name"
LEGAL_REPRESENTATIVE_COLUMN = "accounts.legal_representative"
# Mainland mobile numbers: 11 digits starting with 1; "+86" / "86" prefixes are dropped.
_PHONE_RE = re.compile(r"^1[3-9][0-9]{9}$")
_LOGIN_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{2,63}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CANCELLED = "cancelled"
CANCELLED_DISPLAY_NAME = "已注销账户"
# Operator-set states that stop sign-in (the agreements: 冻结, 暂停, 终止; people's own 注销).
DISABLED_STATES = frozenset(ACCOUNT_STATES) - {ACTIVE}


class AccountInputError(ValueError):
    """Operator input refused; the message says which field and why (no personal data)."""


def normalize_phone(value: str) -> str:
    digits = normalize_typed(value).replace("-", "")
    digits = digits.removeprefix("+86") if digits.startswith("+86") else digits
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits


def normalize_login_name(value: str) -> str:
    """A login name as typed: full-width letters and digits to ASCII (NFKC), surrounding spaces
    dropped, lower case."""
    text = value if value.isascii() else unicodedata.normalize("NFKC", value)
    return text.strip().lower()


def is_valid_phone(value: str) -> bool:
    return bool(_PHONE_RE.match(value))


# How a typed login identifier is recognised, in order (the four identifiers of the agreements).
# Login names that look like any of the others are refused at creation, so this is unambiguous.
IDENTIFIER_KINDS: tuple[tuple[str, Callable[[str], str], Callable[[str], bool]], ...] = (
    ("unified_social_credit_code", normalize_identifier, is_valid_uscc),
    ("id_card_number", normalize_identifier, is_valid_id_card_number),
    ("phone", normalize_phone, is_valid_phone),
    ("login_name", normalize_login_name, lambda v: bool(_LOGIN_NAME_RE.match(v))),
)


def classify_identifier(value: str) -> tuple[str, str] | None:
    """``(kind, normalised value)`` of a typed identifier, or None if it is none of the four."""
    every = classify_identifier_all(value)
    return every[0] if every else None


def classify_identifier_all(value: str) -> list[tuple[str, str]]:
    """Every ``(kind, normalised value)`` a typed identifier may be. One string can be two: about
    one ID-card number in 31 also passes the credit code's checksum (both are 18 characters of
    digits and X), so a look-up must try each reading, not just the first."""
    readings = []
    for kind, normalize, is_valid in IDENTIFIER_KINDS:
        normalised = normalize(value)
        if is_valid(normalised):
            readings.append((kind, normalised))
    return readings


@dataclass(frozen=True)
class AccountView:
    """What the API and CLI show of an account: never the ID-card number or phone in clear."""

    id: str
    kind: str
    status: str
    display_name: str
    login_name: str | None
    unified_social_credit_code: str | None
    id_card_number_masked: str | None
    phone_masked: str | None
    real_name_level: int
    locked_until: datetime | None
    bindings: tuple[tuple[str, str], ...] = ()
    legal_representative: str | None = None

    def to_api(self) -> dict[str, str]:
        data = {"id": self.id, "kind": self.kind, "display_name": self.display_name}
        if self.unified_social_credit_code:
            data["uscc"] = self.unified_social_credit_code
        return data


class AccountService:
    def __init__(
        self, database: Database, cipher: PersonalDataCipher, passwords: Passwords
    ) -> None:
        self.database = database
        self.cipher = cipher
        self.passwords = passwords

    # --- views --------------------------------------------------------------------------------

    def shown_name(self, account: Account | LoginAccount | AccountRecord) -> str:
        """The name an account is shown by: a person's real name (opened from its sealed
        column), an enterprise's name, or the placeholder of a cancelled account."""
        if isinstance(account, LoginAccount) or account.real_name_sealed is None:
            return account.display_name
        return self.cipher.open(REAL_NAME_COLUMN, account.real_name_sealed)

    def view(self, account: Account) -> AccountView:
        def masked(column: str, blob: bytes | None) -> str | None:
            return mask_identifier(self.cipher.open(column, blob)) if blob else None

        sealed_representative = account.legal_representative_sealed
        return AccountView(
            id=account.public_id,
            kind=account.kind,
            status=account.status,
            display_name=self.shown_name(account),
            login_name=account.login_name,
            unified_social_credit_code=account.unified_social_credit_code,
            id_card_number_masked=masked(ID_CARD_COLUMN, account.id_card_number_sealed),
            phone_masked=masked(PHONE_COLUMN, account.phone_sealed),
            real_name_level=account.real_name_level,
            locked_until=account.locked_until,
            bindings=tuple((b.kind, b.value) for b in account.bindings),
            legal_representative=self.cipher.open(
                LEGAL_REPRESENTATIVE_COLUMN, sealed_representative
            )
            if sealed_representative
            else None,
        )

    # --- creation -----------------------------------------------------------------------------

    def _check_login_name(self, session: Session, login_name: str | None) -> str | None:
        if login_name is None:
            return None
        name = normalize_login_name(login_name)
        if not _LOGIN_NAME_RE.match(name):
            raise AccountInputError(
                "login name: 3-64 characters, letters, digits, '_', '.', '-', starting with a "
                "letter"
            )
        classified = classify_identifier(name)
        if classified is None or classified[0] != "login_name":
            raise AccountInputError("login name: looks like a credit code, ID-card or phone number")
        if session.scalar(select(Account.id).where(Account.login_name == name)):
            raise AccountInputError("login name: already taken")
        return name

    def _check_phone(self, session: Session, phone: str | None) -> tuple[bytes, str] | None:
        if phone is None:
            return None
        number = normalize_phone(phone)
        if not is_valid_phone(number):
            raise AccountInputError(
                "phone: not a mainland mobile number (11 digits starting with 1)"
            )
        digest = self.cipher.lookup_hash("phone", number)
        if session.scalar(select(Account.id).where(Account.phone_hash == digest)):
            raise AccountInputError("phone: already used by another account")
        return self.cipher.seal(PHONE_COLUMN, number), digest

    def _check_password(self, password: str | None) -> str | None:
        if password is None:
            return None
        problem = password_problem(password)
        if problem:
            raise AccountInputError(f"password: {problem}")
        return self.passwords.hash(password)

    def create_person(
        self,
        *,
        real_name: str,
        id_card_number: str,
        at: datetime,
        login_name: str | None = None,
        phone: str | None = None,
        email: str | None = None,
        password: str | None = None,
        real_name_level: int = 0,
        agreement_version: str | None = None,
    ) -> AccountView:
        number = normalize_identifier(id_card_number)
        if not is_valid_id_card_number(number):
            raise AccountInputError("ID-card number: not valid (GB 11643-1999 check failed)")
        if not real_name.strip():
            raise AccountInputError("real name: required")
        if email is not None and not _EMAIL_RE.match(email.strip()):
            raise AccountInputError("e-mail: not an e-mail address")
        digest = self.cipher.lookup_hash("id_card_number", number)
        return self._insert_account(
            PERSON,
            duplicate=(
                Account.id_card_number_hash == digest,
                "ID-card number: a person account with it exists",
            ),
            at=at,
            login_name=login_name,
            phone=phone,
            password=password,
            real_name_level=real_name_level,
            agreement_version=agreement_version,
            # The name lives sealed only; display_name stays empty for a person.
            display_name="",
            real_name_sealed=self.cipher.seal(REAL_NAME_COLUMN, real_name.strip()),
            id_card_number_sealed=self.cipher.seal(ID_CARD_COLUMN, number),
            id_card_number_hash=digest,
            email=email.strip().lower() if email else None,
        )

    def create_enterprise(
        self,
        *,
        unified_social_credit_code: str,
        name: str,
        at: datetime,
        legal_representative: str | None = None,
        login_name: str | None = None,
        phone: str | None = None,
        password: str | None = None,
        real_name_level: int = 0,
        agreement_version: str | None = None,
    ) -> AccountView:
        code = normalize_identifier(unified_social_credit_code)
        if not is_valid_uscc(code):
            raise AccountInputError(
                "unified social credit code: not valid (GB 32100-2015 check failed)"
            )
        if not name.strip():
            raise AccountInputError("enterprise name: required")
        return self._insert_account(
            ENTERPRISE,
            duplicate=(
                Account.unified_social_credit_code == code,
                "unified social credit code: an enterprise with it exists",
            ),
            at=at,
            login_name=login_name,
            phone=phone,
            password=password,
            real_name_level=real_name_level,
            agreement_version=agreement_version,
            display_name=name.strip(),
            unified_social_credit_code=code,
            legal_representative_sealed=self.cipher.seal(
                LEGAL_REPRESENTATIVE_COLUMN, legal_representative.strip()
            )
            if legal_representative and legal_representative.strip()
            else None,
        )

    def _insert_account(
        self,
        kind: str,
        *,
        duplicate: tuple[ColumnElement[bool], str],
        at: datetime,
        login_name: str | None,
        phone: str | None,
        password: str | None,
        real_name_level: int,
        agreement_version: str | None,
        **kind_fields: Any,
    ) -> AccountView:
        """Check the fields every account has, refuse a duplicate, and store the new account."""
        if real_name_level not in REAL_NAME_LEVELS:
            raise AccountInputError(f"real-name level: one of {REAL_NAME_LEVELS}")
        password_hash = self._check_password(password)
        exists, refusal = duplicate
        with self.database.session() as session:
            if session.scalar(select(Account.id).where(exists)):
                raise AccountInputError(refusal)
            login = self._check_login_name(session, login_name)
            sealed_phone = self._check_phone(session, phone)
            account = Account(
                public_id=str(uuid.uuid4()),
                kind=kind,
                status=ACTIVE,
                login_name=login,
                phone_sealed=sealed_phone[0] if sealed_phone else None,
                phone_hash=sealed_phone[1] if sealed_phone else None,
                real_name_level=real_name_level,
                agreement_version=agreement_version,
                agreement_consented_at=at if agreement_version else None,
                password_hash=password_hash,
                created_at=at,
                updated_at=at,
                **kind_fields,
            )
            session.add(account)
            session.flush()
            return self.view(account)

    # --- look-up ------------------------------------------------------------------------------

    def _where_identifier(self, kind: str, value: str) -> ColumnElement[bool]:
        conditions = {
            "unified_social_credit_code": lambda: Account.unified_social_credit_code == value,
            "id_card_number": lambda: (
                Account.id_card_number_hash == self.cipher.lookup_hash("id_card_number", value)
            ),
            "phone": lambda: Account.phone_hash == self.cipher.lookup_hash("phone", value),
            "login_name": lambda: Account.login_name == value,
        }
        return conditions[kind]()

    def _identified(self, session: Session, typed: str) -> Account | None:
        """The one account any reading of ``typed`` names; ``AccountAmbiguous`` when two do
        (a credit code of one account that is also the ID-card number of another)."""
        readings = classify_identifier_all(typed)
        if not readings:
            return None
        found = session.scalars(
            select(Account)
            .where(or_(*(self._where_identifier(*reading) for reading in readings)))
            .limit(2)
        ).all()
        if len(found) > 1:
            raise AccountAmbiguous("the identifier names more than one account")
        return found[0] if found else None

    def find_by_identifier(self, typed: str) -> Account | None:
        """The account a typed login identifier names (any of the four), or None."""
        with self.database.session() as session:
            return self._identified(session, typed)

    def password_subject(self, typed: str, account: Account | None) -> str:
        """What password attempts count against: the account a typed identifier names, or,
        when it names none, the identifier itself (normalised as a look-up would, keyed-hashed
        so no identifier is held in clear). Either is limited and locked the same way, so the
        answers do not tell which identifiers exist."""
        if account is not None:
            return f"account:{account.id}"
        classified = classify_identifier(typed)
        normalised = ":".join(classified) if classified else typed.strip().lower()
        return "identifier:" + self.cipher.lookup_hash("typed-identifier", normalised)

    def find(self, reference: str) -> Account:
        """An account by public id or any login identifier (CLI); AccountInputError if none."""
        with self.database.session() as session:
            account = session.scalars(
                select(Account).where(Account.public_id == reference.strip())
            ).one_or_none()
            if account is None:
                account = self._identified(session, reference)
            if account is None:
                raise AccountInputError(f"account {mask_identifier(reference)!r}: not found")
            account.bindings  # noqa: B018 - load while the session is open
            return account

    def find_for_login(
        self, public_id: str, *, directory: SqlAccountDirectory | None = None
    ) -> LoginAccount:
        """The account a certificate was mapped to, as a ``LoginAccount`` read with one
        prebuilt Core statement.

        A login needs only the account's state and ``account_summary``. An ORM query here also
        loaded the bindings (``lazy="selectin"``, a second query) inside a unit of work, the
        largest single cost of a certificate login (bench/bench_login.py); even building a
        detached ``Account`` from the row (instrumented attributes, one event per column) cost
        more than reading it.

        ``directory``: the look-ups that mapped the certificate already read the account's row
        (SqlAccountDirectory keeps it), so no statement at all is needed then."""
        row = directory.rows.get(public_id) if directory is not None else None
        if row is None:
            with self.database.connection() as connection:
                row = _ACCOUNT_BY_PUBLIC_ID.execute(
                    connection, {"public_id": public_id}
                ).one_or_none()
        if row is None:
            raise AccountNotFound("the mapped account no longer exists")
        return LoginAccount(
            id=row.id,
            public_id=row.public_id,
            kind=row.kind,
            status=row.status,
            display_name=self.cipher.open(REAL_NAME_COLUMN, row.real_name_sealed)
            if row.real_name_sealed
            else row.display_name,
            unified_social_credit_code=row.unified_social_credit_code,
            locked_until=row.locked_until,
        )

    def get(self, account_id: int) -> Account | None:
        with self.database.session() as session:
            return session.get(Account, account_id)

    def record(self, account_id: int) -> AccountRecord | None:
        """The account as single sign-on reads it on every authorization, token and userinfo
        request: one prebuilt statement, without the ORM unit of work and the bindings an
        ``Account`` loads with it (bench/bench_sso.py)."""
        with self.database.connection() as connection:
            row = _ACCOUNT_RECORD.execute(connection, {"account_id": account_id}).one_or_none()
        return AccountRecord(*row) if row is not None else None

    def list(self, *, kind: str | None = None) -> list[AccountView]:
        with self.database.session() as session:
            query = select(Account).order_by(Account.id)
            if kind:
                query = query.where(Account.kind == kind)
            return [self.view(account) for account in session.scalars(query).all()]

    # --- state --------------------------------------------------------------------------------

    def set_status(self, reference: str, status: str, *, at: datetime) -> AccountView:
        """Freeze, suspend, terminate or reactivate; a cancelled account stays cancelled."""
        if status not in ACCOUNT_STATES or status == CANCELLED:
            raise AccountInputError(
                f"status: one of {', '.join(s for s in ACCOUNT_STATES if s != CANCELLED)}"
            )
        account_id = self.find(reference).id
        with self.database.session() as session:
            account = session.get_one(Account, account_id)
            if account.status == CANCELLED:
                raise AccountInputError("status: a cancelled account cannot be changed")
            account.status = status
            account.updated_at = at
            if status == ACTIVE:
                account.locked_until = None
            return self.view(account)

    def cancel(self, reference: str, *, at: datetime) -> AccountView:
        """Cancellation (注销): personal data and bindings are deleted, the row stays as a
        tombstone so the audit trail keeps pointing at the account's id."""
        account_id = self.find(reference).id
        with self.database.session() as session:
            account = session.get_one(Account, account_id)
            if account.status == CANCELLED:
                raise AccountInputError("status: the account is already cancelled")
            for column in (
                "login_name",
                "real_name_sealed",
                "id_card_number_sealed",
                "id_card_number_hash",
                "phone_sealed",
                "phone_hash",
                "email",
                "unified_social_credit_code",
                "legal_representative_sealed",
                "password_hash",
                "locked_until",
            ):
                setattr(account, column, None)
            account.display_name = CANCELLED_DISPLAY_NAME
            account.status = CANCELLED
            account.cancelled_at = at
            account.updated_at = at
            account.bindings.clear()
            session.flush()
            return self.view(account)

    def lock(self, account_id: int, *, until: datetime, at: datetime) -> None:
        """Lock the account's password sign-in until ``until`` (``locked_until``); certificate
        logins are not stopped by it (docs/gateway.md "Abuse limits")."""
        with self.database.session() as session:
            account = session.get_one(Account, account_id)
            account.locked_until = until
            account.updated_at = at

    # --- bindings -----------------------------------------------------------------------------

    def bind(
        self, reference: str, kind: str, value: str, *, at: datetime, label: str | None = None
    ) -> AccountView:
        kind_value = _normalize_binding(kind, value)
        account_id = self.find(reference).id
        with self.database.session() as session:
            existing = session.scalars(
                select(CertificateBinding).where(
                    CertificateBinding.kind == kind, CertificateBinding.value == kind_value
                )
            ).one_or_none()
            if existing is not None:
                raise AccountInputError("binding: this certificate is already bound to an account")
            session.add(
                CertificateBinding(
                    account_id=account_id, kind=kind, value=kind_value, label=label, created_at=at
                )
            )
            # Bound again after an unbinding: the certificate signs in to this account again.
            session.execute(
                delete(RefusedCertificate).where(
                    RefusedCertificate.account_id == account_id,
                    RefusedCertificate.thumbprint.in_(_thumbprints(session, kind, kind_value)),
                )
            )
            session.flush()
            account = session.get_one(Account, account_id)
            session.refresh(account)
            return self.view(account)

    def unbind(
        self, reference: str, kind: str, value: str, *, at: datetime | None = None
    ) -> AccountView:
        """Remove a binding. The certificate is refused for this account from then on, also
        when a lookup (credit code, ID-card number, e-mail) would find the account: unbinding
        means that key no longer signs in here. (Its thumbprint is what is refused; for an
        issuer+serial binding, the thumbprints of the certificates with that issuer and serial
        the gateway has seen.)"""
        kind_value = _normalize_binding(kind, value)
        account_id = self.find(reference).id
        with self.database.session() as session:
            binding = session.scalars(
                select(CertificateBinding).where(
                    CertificateBinding.account_id == account_id,
                    CertificateBinding.kind == kind,
                    CertificateBinding.value == kind_value,
                )
            ).one_or_none()
            if binding is None:
                raise AccountInputError("binding: this account has no such binding")
            session.delete(binding)
            refused_at = at or binding.created_at
            for thumbprint in _thumbprints(session, kind, kind_value):
                if session.get(RefusedCertificate, (account_id, thumbprint)) is None:
                    session.add(
                        RefusedCertificate(
                            account_id=account_id, thumbprint=thumbprint, refused_at=refused_at
                        )
                    )
            session.flush()
            account = session.get_one(Account, account_id)
            session.refresh(account)
            return self.view(account)


def _thumbprints(session: Session, kind: str, value: str) -> list[str]:
    """The SHA-256 thumbprints a binding names: its value, or the certificates with that issuer
    and serial the gateway has recorded."""
    if kind == BindingKind.SHA256:
        return [value]
    return list(
        session.scalars(
            select(CertificateDetails.thumbprint).where(CertificateDetails.issuer_serial == value)
        ).all()
    )


def _normalize_binding(kind: str, value: str) -> str:
    if kind == BindingKind.SHA256:
        thumbprint = re.sub(r"[\s:]", "", value).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", thumbprint):
            raise AccountInputError("binding: a SHA-256 thumbprint is 64 hexadecimal characters")
        return thumbprint
    if kind == BindingKind.ISSUER_SERIAL:
        # Stored exactly as ``CertificateIdentity.issuer_serial`` spells it (lower-case hex serial,
        # canonical issuer DN), which is what ``resolve_account`` looks up: an operator may type
        # "00:AB:12@CN=Example CA, O=Example, C=CN" in any case and spacing.
        serial, sep, issuer = value.partition("@")
        if not sep or not issuer.strip():
            raise AccountInputError("binding: issuer_serial is '<serial hex>@<issuer DN>'")
        try:
            return normalize_issuer_serial(value)
        except ValueError as exc:
            raise AccountInputError(f"binding: {exc}") from None
    raise AccountInputError(f"binding kind: one of {', '.join(k.value for k in BindingKind)}")


class SqlAccountDirectory:
    """``certs.mapping.AccountDirectory`` over the gateway's tables."""

    def __init__(self, service: AccountService, *, thumbprint: str | None = None) -> None:
        """``thumbprint``: the leaf's SHA-256 thumbprint; lookups then leave out the accounts
        it was unbound from (``refused_certificates``)."""
        self.service = service
        self.thumbprint = thumbprint
        # Every account row the look-up returned, by public id: the probes read what the login
        # needs of the account, so that its account read (find_for_login) is served from here
        # rather than by one more statement (bench/bench_login.py).
        self.rows: dict[str, Any] = {}

    def look_up(self, probes: Sequence[Probe]) -> dict[Probe, set[AccountRef]]:
        """All probes in one statement (a UNION ALL with one branch per probe).

        A certificate login used to run one statement per probe (thumbprint binding,
        issuer+serial binding, then each lookup), and each cost more than the rest of the
        mapping; one round trip answers them all (bench/bench_login.py)."""
        asked = [probe for probe in probes if _probe_kind(probe) is not None]
        found: dict[Probe, set[AccountRef]] = {probe: set() for probe in probes}
        if not asked:
            return found
        parameters: dict[str, str] = {}
        for index, probe in enumerate(asked):
            parameters[f"kind{index}"], parameters[f"value{index}"] = self._stored(probe)
        if self.thumbprint is not None:
            parameters["refused_thumbprint"] = self.thumbprint
        statement = _probe_statement(
            tuple(_probe_kind(probe) for probe in asked), refusals=self.thumbprint is not None
        )
        with self.service.database.connection() as connection:
            rows = statement.execute(connection, parameters).rows
        for row in rows:
            self.rows[row.public_id] = row
            found[asked[row.probe]].add(AccountRef(AccountKind(row.kind), row.public_id))
        return found

    def _stored(self, probe: Probe) -> tuple[str, str]:
        """The probe's kind and value as the tables store them."""
        if isinstance(probe.step, BindingKind):
            return str(probe.step), probe.value
        _column, stored_form = _FIELD_LOOKUPS[probe.step.identity_field]
        return str(probe.step.account_kind), stored_form(self.service, probe.value)


# Identity field -> (accounts column, the value as that column stores it).
_FIELD_LOOKUPS: Mapping[IdentityField, tuple[Any, Callable[[AccountService, str], str]]] = {
    IdentityField.UNIFIED_SOCIAL_CREDIT_CODE: (Account.unified_social_credit_code, lambda _s, v: v),
    IdentityField.ID_CARD_NUMBER: (
        Account.id_card_number_hash,
        lambda s, v: s.cipher.lookup_hash("id_card_number", v),
    ),
    IdentityField.EMAIL: (Account.email, lambda _s, v: v.lower()),
}
# Built once with bind parameters: a statement built per call costs more than running it.
# What signing in reads of an account (``LoginAccount``): no sealed personal data, and no
# column the login would only convert and drop.
_LOGIN_COLUMNS = (
    Account.id,
    Account.public_id,
    Account.kind,
    Account.status,
    Account.display_name,
    Account.real_name_sealed,  # a person's name, opened for the login's answer
    Account.unified_social_credit_code,
    Account.locked_until,
)
_ACCOUNT_BY_PUBLIC_ID = Prepared(
    select(*_LOGIN_COLUMNS).where(Account.public_id == bindparam("public_id"))
)


_ACCOUNT_RECORD = Prepared(
    select(
        Account.id,
        Account.public_id,
        Account.kind,
        Account.status,
        Account.display_name,
        Account.real_name_sealed,
        Account.real_name_level,
        Account.phone_sealed,
        Account.email,
        Account.unified_social_credit_code,
    ).where(Account.id == bindparam("account_id"))
)


def _probe_kind(probe: Probe) -> BindingKind | IdentityField | None:
    """What decides the shape of a probe's branch; None when no column holds its field (yet)."""
    if isinstance(probe.step, BindingKind):
        return probe.step
    field = probe.step.identity_field
    return field if field in _FIELD_LOOKUPS else None


@functools.lru_cache(maxsize=256)
def _probe_statement(
    shape: tuple[BindingKind | IdentityField | None, ...], *, refusals: bool = False
) -> Prepared:
    """One SELECT per probe, tagged with the probe's position, as one statement. Built once per
    shape (a trust anchor's rule gives the same shape on every login); values are parameters
    ``kind<n>`` and ``value<n>`` (and ``refused_thumbprint`` with ``refusals``)."""
    branches: list[Any] = []
    for index, kind in enumerate(shape):
        # Login rows (see SqlAccountDirectory.rows); the tag says which probe found the row.
        branch: Any = select(literal_column(str(index)).label("probe"), *_LOGIN_COLUMNS)
        if isinstance(kind, BindingKind):
            branch = branch.join(
                CertificateBinding, CertificateBinding.account_id == Account.id
            ).where(
                CertificateBinding.kind == bindparam(f"kind{index}"),
                CertificateBinding.value == bindparam(f"value{index}"),
            )
        else:
            assert kind is not None
            column, _stored_form = _FIELD_LOOKUPS[kind]
            branch = branch.where(
                Account.kind == bindparam(f"kind{index}"), column == bindparam(f"value{index}")
            )
            if refusals:
                # A certificate unbound from the account does not find it by lookup either.
                branch = branch.where(
                    ~exists().where(
                        RefusedCertificate.account_id == Account.id,
                        RefusedCertificate.thumbprint == bindparam("refused_thumbprint"),
                    )
                )
        branches.append(branch)
    return Prepared(branches[0] if len(branches) == 1 else union_all(*branches))


@dataclass(frozen=True)
class LoginAccount:
    """What signing in needs of an account (its state and ``account_summary``), without the
    ORM: see ``AccountService.find_for_login``."""

    id: int
    public_id: str
    kind: str
    status: str
    display_name: str  # as shown: a person's real name already opened
    unified_social_credit_code: str | None
    locked_until: datetime | None


@dataclass(frozen=True)
class AccountRecord:
    """What single sign-on needs of an account (its state and the claims it releases), read
    with one prebuilt statement and no ORM: see ``AccountService.record``."""

    id: int
    public_id: str
    kind: str
    status: str
    display_name: str
    real_name_sealed: bytes | None
    real_name_level: int
    phone_sealed: bytes | None
    email: str | None
    unified_social_credit_code: str | None


def account_summary(account: Account | LoginAccount, display_name: str) -> dict[str, str]:
    """What the login API shows of an account: ``AccountView.to_api`` without opening the
    sealed numbers or loading bindings; ``display_name`` from ``AccountService.shown_name``."""
    data = {"id": account.public_id, "kind": account.kind, "display_name": display_name}
    if account.unified_social_credit_code:
        data["uscc"] = account.unified_social_credit_code
    return data


def account_is_usable(account: Account | LoginAccount | AccountRecord) -> bool:
    return account.status not in DISABLED_STATES


def init_app(app: Flask, database: Database, cipher: PersonalDataCipher) -> AccountService:
    passwords = Passwords(
        memory_cost=app.config["PASSWORD_MEMORY_COST"], time_cost=app.config["PASSWORD_TIME_COST"]
    )
    service = AccountService(database, cipher, passwords)
    app.extensions[EXTENSION] = service
    return service


def get_accounts(app: Flask | None = None) -> AccountService:
    return (app or current_app).extensions[EXTENSION]
