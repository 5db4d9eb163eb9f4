"""What the console's routes do, over the gateway's own components: the trust store and the
certificate engine (gateway/trust.py, gateway/engine.py, certs.mapping), the accounts and the
operators' decisions with their notices (gateway/accounts.py, gateway/lifecycle), the SSO client
registry (gateway/sso/clients.py) and the audit trail (gateway/audit.py)."""

from __future__ import annotations

import importlib.util
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography import x509
from flask import current_app
from sqlalchemy import or_, select, update

from certs.errors import AccountNotFound, BadRequest, CertGateError
from certs.mapping import resolve_account
from gateway import clock
from gateway.accounts import (
    CANCELLED,
    ID_CARD_COLUMN,
    PHONE_COLUMN,
    AccountInputError,
    SqlAccountDirectory,
    get_accounts,
)
from gateway.admin.errors import ReviewClosed
from gateway.admin.models import APPROVED, PENDING, REJECTED, Operator, RealNameReview
from gateway.audit import (
    AuditTrailBroken,
    get_audit_log,
    parse_checkpoint,
    record_fields,
)
from gateway.config import ConfigError
from gateway.engine import CertificateEngine, crl_max_bytes_setting
from gateway.storage.database import get_database
from gateway.storage.models import Account, AuditRecord, CertificateBinding
from gateway.trust import (
    TrustInputError,
    get_trust_store,
    load_trust_configuration,
    thumbprint,
)

# --- trust anchors -------------------------------------------------------------------------------


def _crl_state(sources: tuple[str, ...], at: datetime) -> list[dict[str, Any]]:
    """Each CRL source as the running engine holds it: issuer, thisUpdate (and its age),
    nextUpdate, fresh or not."""
    engine = current_app.extensions.get("certgate.engine")
    loaded = engine.crls.loaded() if engine is not None and engine.crls is not None else {}
    shown = []
    for source in sources:
        crls = loaded.get(source, ())
        if not crls:
            shown.append({"source": source, "loaded": False})
        for crl in crls:
            shown.append(
                {
                    "source": source,
                    "loaded": True,
                    "issuer": crl.issuer.rfc4514_string(),
                    "this_update": _iso(crl.this_update),
                    "age_seconds": int((at - crl.this_update).total_seconds()),
                    "next_update": _iso(crl.next_update),
                    "fresh": crl.is_fresh(at),
                }
            )
    return shown


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def trust_anchors() -> list[dict[str, Any]]:
    """Every anchor, from the database and from certgate.toml: revocation policy, CRLs (age,
    next update), OCSP responder, mapping rule, and whether the running engine uses it yet
    (anchors are parsed at start-up: a new one applies after a restart)."""
    at = clock.now()
    engine = current_app.extensions.get("certgate.engine")
    running = {thumbprint(a.certificate) for a in engine.anchors} if engine is not None else set()
    anchors = []
    for listing in get_trust_store().listings():
        anchors.append(
            {
                "name": listing.name,
                "sha256": listing.thumbprint,
                "subject": listing.subject,
                "source": "database",
                "revocation": listing.revocation,
                "crl": _crl_state(listing.crl, at),
                "ocsp": listing.ocsp,
                "mapping": listing.mapping,
                "hardware_keys": listing.hardware_keys,
                "intermediates": list(listing.intermediates),
                "active": listing.thumbprint in running,
            }
        )
    database_prints = {a["sha256"] for a in anchors}
    for anchor in engine.anchors if engine is not None else ():
        digest = thumbprint(anchor.certificate)
        if digest in database_prints:
            continue
        rule = anchor.mapping_rule
        anchors.append(
            {
                "name": anchor.display_name,
                "sha256": digest,
                "subject": anchor.certificate.subject.rfc4514_string(),
                "source": "certgate.toml",
                "revocation": anchor.policy.revocation.value,
                "crl": _crl_state(tuple(anchor.policy.crl_sources), at),
                "ocsp": getattr(anchor.policy, "ocsp_url", None),
                "mapping": _rule_text(rule),
                "hardware_keys": bool(getattr(anchor, "hardware_keys", False)),
                "intermediates": [],
                "active": True,
            }
        )
    return anchors


def _rule_text(rule: Any) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {
        "lookups": [str(lookup) for lookup in getattr(rule, "lookups", ())],
        "explicit_bindings": bool(getattr(rule, "explicit_bindings", True)),
    }


def add_trust_anchor(body: Mapping[str, Any]) -> dict[str, Any]:
    crl = body.get("crl") or []
    if not all(isinstance(item, str) for item in crl):
        raise BadRequest("crl: a list of file paths or URLs")
    try:
        listing = get_trust_store().add(
            certificate_pem=body["pem"].encode("utf-8"),
            name=body.get("name") or None,
            revocation=body.get("revocation") or "hard-fail",
            crl=crl,
            ocsp=body.get("ocsp") or None,
            mapping=body.get("mapping"),
            at=clock.now(),
            hardware_keys=bool(body.get("hardware_keys")),
        )
    except TrustInputError as exc:
        raise BadRequest(str(exc)) from None
    return {
        "name": listing.name,
        "sha256": listing.thumbprint,
        "subject": listing.subject,
        "revocation": listing.revocation,
    }


def remove_trust_anchor(key: str) -> Any:
    try:
        return get_trust_store().remove(key)
    except TrustInputError as exc:
        raise BadRequest(str(exc)) from None


OCSP_PROBE_TIMEOUT = 3.0


def ocsp_health(key: str) -> dict[str, Any]:
    """Whether the anchor's configured OCSP responder answers HTTP at all, and how fast: a
    reachability probe (an empty POST; a responder answers it with an OCSP error), not a
    revocation check."""
    listing = next((a for a in trust_anchors() if a["sha256"] == key or a["name"] == key), None)
    if listing is None:
        raise BadRequest(f"trust anchor {key!r}: not found")
    responder = listing.get("ocsp")
    if not responder:
        return {"responder": None, "reachable": False, "status": "not configured"}
    started = time.monotonic()
    request = urllib.request.Request(
        responder, data=b"", headers={"Content-Type": "application/ocsp-request"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=OCSP_PROBE_TIMEOUT) as response:
            status: int | str = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return {
            "responder": responder,
            "reachable": False,
            "status": type(getattr(exc, "reason", exc)).__name__,
        }
    return {
        "responder": responder,
        "reachable": True,
        "status": status,
        "milliseconds": int((time.monotonic() - started) * 1000),
    }


def _certificates(pem: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except ValueError:
        raise BadRequest("pem: no PEM certificate found") from None
    if not certificates:
        raise BadRequest("pem: no PEM certificate found")
    return certificates


def test_mapping(pem: str) -> dict[str, Any]:
    """Which account a certificate (PEM; the leaf first, then any CA certificates) would reach:
    validated against the trust anchors as they are stored now (also those added since the
    gateway started) with every revocation check, then mapped by its anchor's rule. The
    result names the account or the stable error code a login would get."""
    leaf, *chain = _certificates(pem)
    digest = thumbprint(leaf)
    at = clock.now()
    try:
        configuration = load_trust_configuration(current_app.config, get_trust_store())
    except ConfigError as exc:
        raise BadRequest(f"trust configuration: {exc}") from None
    engine = CertificateEngine(
        configuration.anchors,
        intermediates=configuration.intermediates,
        crl_max_bytes=crl_max_bytes_setting(current_app),
    )
    accounts = get_accounts()
    try:
        verified = engine.validate(leaf, chain, at=at)
        match = resolve_account(
            verified,
            verified.anchor.mapping_rule,
            SqlAccountDirectory(accounts, thumbprint=digest),
            leaf_sha256=digest,
        )
    except CertGateError as error:
        return {
            "thumbprint": digest,
            "reaches": None,
            "code": error.code,
            "message": error.message(_language()),
        }
    finally:
        engine.close()
    account = accounts.find(match.account.account_id)
    return {
        "thumbprint": digest,
        "reaches": masked_account(account),
        "code": "ok",
        "matched_by": match.matched_by,
        "trust_anchor": match.trust_anchor,
        "message": "",
    }


def _language() -> str:
    from gateway.http import language

    return language()


# --- accounts ------------------------------------------------------------------------------------


def mask_name(name: str) -> str:
    """A person's name as the console lists it: the first character, the rest starred."""
    return name[:1] + "*" * max(1, len(name) - 1) if name else name


def mask_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    local, domain = email.split("@", 1)
    return f"{local[:1]}***@{domain}"


def masked_account(account: Account) -> dict[str, Any]:
    view = get_accounts().view(account)
    person = account.kind == "person"
    return {
        "id": view.id,
        "kind": view.kind,
        "display_name": mask_name(view.display_name) if person else view.display_name,
        "status": view.status,
        "real_name_level": view.real_name_level,
        "login_name": view.login_name,
        "uscc": view.unified_social_credit_code,
        "id_card_number": view.id_card_number_masked,
        "phone": view.phone_masked,
        "email": mask_email(account.email),
        "legal_representative": mask_name(view.legal_representative)
        if view.legal_representative
        else None,
        "locked_until": _iso(view.locked_until),
        "bindings": len(view.bindings),
    }


MAX_RESULTS = 50


def search_accounts(query: str) -> list[dict[str, Any]]:
    """Accounts by any identifier: public id, credit code, ID-card number, phone, login name
    (the look-up hashes find sealed ones), a bound certificate's SHA-256, or part of an
    enterprise's name."""
    if not query:
        return []
    accounts = get_accounts()
    found: dict[int, Account] = {}
    by_identifier = accounts.find_by_identifier(query)
    if by_identifier is not None:
        found[by_identifier.id] = by_identifier
    with accounts.database.session() as session:
        rows = session.scalars(
            select(Account)
            .outerjoin(CertificateBinding, CertificateBinding.account_id == Account.id)
            .where(
                or_(
                    Account.public_id == query,
                    CertificateBinding.value == query.lower(),
                    (Account.kind == "enterprise")
                    & Account.display_name.contains(query, autoescape=True),
                )
            )
            .order_by(Account.id)
            .limit(MAX_RESULTS)
        ).all()
        for row in rows:
            found.setdefault(row.id, row)
        return [masked_account(found[key]) for key in sorted(found)][:MAX_RESULTS]


def _account(public_id: str) -> Account:
    with get_database().session() as session:
        account = session.scalars(
            select(Account).where(Account.public_id == public_id)
        ).one_or_none()
        if account is None:
            raise AccountNotFound("no account with that id")
        account.bindings  # noqa: B018 - load while the session is open
        return account


def unmask(public_id: str) -> dict[str, Any]:
    """The account's personal data in clear (the caller audits the reason)."""
    account = _account(public_id)
    accounts = get_accounts()
    view = accounts.view(account)
    cipher = accounts.cipher
    shown = masked_account(account)
    shown.update(
        display_name=view.display_name,
        id_card_number=cipher.open(ID_CARD_COLUMN, account.id_card_number_sealed)
        if account.id_card_number_sealed
        else None,
        phone=cipher.open(PHONE_COLUMN, account.phone_sealed) if account.phone_sealed else None,
        email=account.email,
        legal_representative=view.legal_representative,
    )
    return shown


# Decision -> (status it sets or None, audit event).
DECISIONS: Mapping[str, str | None] = {
    "freeze": "frozen",
    "suspend": "suspended",
    "terminate": "terminated",
    "unfreeze": "active",
    "unlock": None,
}
DECISION_EVENTS: Mapping[str, str] = {
    "freeze": "account_frozen",
    "suspend": "account_frozen",
    "terminate": "account_frozen",
    "unfreeze": "account_unfrozen",
    "unlock": "account_unlocked",
}
NOTICE_BY_STATUS: Mapping[str, str] = {
    "frozen": "account_frozen",
    "suspended": "account_suspended",
    "terminated": "account_terminated",
    "active": "account_reactivated",
}


def decide(public_id: str, decision: str, reason: str, operator: str) -> tuple[dict[str, Any], int]:
    """An operator's decision on an account, as ``certgate account freeze|suspend|terminate|
    unfreeze`` takes it: the status and the reason recorded (account_status_changes), a
    stopping status ends every session with single logout, the account notified. ``unlock``
    lifts a password lockout. Returns the account (masked) and the sessions ended."""
    from gateway.lifecycle.cancellation import end_sessions_everywhere
    from gateway.lifecycle.models import AccountStatusChange
    from gateway.lifecycle.notices import get_notices

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    account = _account(public_id)
    at = clock.now()
    accounts = get_accounts()
    status = DECISIONS[decision]
    ended = 0
    if status is None:
        with accounts.database.session() as session:
            session.execute(
                update(Account)
                .where(Account.id == account.id)
                .values(locked_until=None, updated_at=at)
            )
    else:
        if account.status == CANCELLED:
            raise BadRequest("a cancelled account cannot be changed")
        try:
            accounts.set_status(public_id, status, at=at)
        except AccountInputError as exc:
            raise BadRequest(str(exc)) from None
        with accounts.database.session() as session:
            session.add(
                AccountStatusChange(
                    account_id=account.id,
                    status=status,
                    reason=f"{reason} (operator {operator})",
                    changed_at=at,
                )
            )
        if status != "active":
            ended = end_sessions_everywhere(app, account.id, at=at, reason="account_frozen")
        get_notices(app).post(account.id, NOTICE_BY_STATUS[status], at=at, reason=reason)
    return masked_account(_account(public_id)), ended


# --- real-name review queue ---------------------------------------------------------------------


def _review(row: RealNameReview, account: Account) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "note": row.note,
        "requested_at": _iso(row.requested_at),
        "decided_by": row.decided_by,
        "decided_at": _iso(row.decided_at),
        "decision_reason": row.decision_reason,
        "account": masked_account(account),
    }


def reviews(state: str) -> list[dict[str, Any]]:
    if state not in (PENDING, APPROVED, REJECTED):
        raise BadRequest("state: pending, approved or rejected")
    with get_database().session() as session:
        rows = session.execute(
            select(RealNameReview, Account)
            .join(Account, Account.id == RealNameReview.account_id)
            .where(RealNameReview.state == state)
            .order_by(RealNameReview.requested_at, RealNameReview.id)
            .limit(200)
        ).all()
        return [_review(row, account) for row, account in rows]


def decide_review(review_id: int, decision: str, reason: str, operator: str) -> dict[str, Any]:
    """Approve (real-name level 2, the account notified) or reject; once."""
    from gateway.lifecycle.notices import get_notices

    at = clock.now()
    state = APPROVED if decision == "approve" else REJECTED
    with get_database().session() as session:
        row = session.get(RealNameReview, review_id)
        if row is None:
            raise BadRequest(f"review {review_id}: not found")
        # Conditional: two reviewers deciding at once, one wins.
        claimed = session.execute(
            update(RealNameReview)
            .where(RealNameReview.id == review_id, RealNameReview.state == PENDING)
            .values(state=state, decided_by=operator, decided_at=at, decision_reason=reason)
        )
        if not getattr(claimed, "rowcount", 0):
            raise ReviewClosed(f"review {review_id} is {row.state}")
        account = session.get_one(Account, row.account_id)
        if state == APPROVED:
            if account.status == CANCELLED:
                raise BadRequest("the account is cancelled")
            account.real_name_level = max(account.real_name_level, 2)
            account.updated_at = at
        account_id = account.id
    if state == APPROVED:
        get_notices().post(account_id, "real_name_level", at=at, level=2)
    with get_database().session() as session:
        row = session.get_one(RealNameReview, review_id)
        return _review(row, session.get_one(Account, account_id))


# --- enterprise roles ----------------------------------------------------------------------------


def enterprise_roles(public_id: str) -> dict[str, Any]:
    """The enterprise's legal representative (recorded on the account, masked) and, when the
    enterprise roles capability (gateway/roles) is installed, its staff. Without it the answer
    says so: no staff list is made up."""
    account = _account(public_id)
    if account.kind != "enterprise":
        raise BadRequest("not an enterprise account")
    shown = masked_account(account)
    installed = importlib.util.find_spec("gateway.roles") is not None
    answer: dict[str, Any] = {
        "installed": installed,
        "enterprise": {"id": shown["id"], "name": shown["display_name"], "uscc": shown["uscc"]},
        "legal_representative": shown["legal_representative"],
    }
    if installed:
        answer["staff"] = _staff(account.id)
    return answer


def _staff(enterprise_id: int) -> list[dict[str, Any]]:
    """The enterprise's current staff (gateway/roles: ``staff_roles`` rows not ended and not
    past ``valid_until``), each person masked."""
    from gateway.roles.models import StaffRole

    at = clock.now()
    with get_database().session() as session:
        rows = session.execute(
            select(StaffRole, Account)
            .join(Account, Account.id == StaffRole.person_id)
            .where(
                StaffRole.enterprise_id == enterprise_id,
                StaffRole.ended_at.is_(None),
                StaffRole.valid_until > at,
            )
            .order_by(StaffRole.granted_at)
        ).all()
        return [
            {
                "person": {
                    "id": person.public_id,
                    "display_name": mask_name(get_accounts().shown_name(person)),
                },
                "role": "staff",
                "valid_until": _iso(role.valid_until),
            }
            for role, person in rows
        ]


# --- SSO clients ---------------------------------------------------------------------------------


def list_clients() -> list[dict[str, Any]]:
    from gateway.sso.clients import get_clients

    return [client.to_json() for client in get_clients().list()]


def _strings(body: Mapping[str, Any], field: str) -> tuple[str, ...]:
    values = body.get(field) or []
    if not all(isinstance(value, str) for value in values):
        raise BadRequest(f"{field}: a list of strings")
    return tuple(values)


def add_client(body: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    from gateway.sso.clients import ClientInputError, get_clients

    try:
        made = get_clients().add(
            body["name"],
            protocol=body["protocol"],
            at=clock.now(),
            redirect_uris=_strings(body, "redirect_uris"),
            post_logout_redirect_uris=_strings(body, "post_logout_redirect_uris"),
            backchannel_logout_uri=body.get("backchannel_logout_uri") or None,
            public=bool(body.get("public")),
            consent=body.get("consent") or "ask",
            services=_strings(body, "services"),
        )
    except ClientInputError as exc:
        raise BadRequest(str(exc)) from None
    return made.client.to_json(), made.client_secret


def _client_row(session: Any, client_id: str) -> Any:
    from gateway.sso.models import SsoClient

    row = session.scalars(select(SsoClient).where(SsoClient.client_id == client_id)).one_or_none()
    if row is None:
        raise BadRequest(f"client {client_id!r}: not found")
    return row


def rotate_client_secret(client_id: str) -> str:
    """A new secret for a confidential OpenID Connect client, shown once; the old one stops
    working at once."""
    from gateway.sso.clients import get_clients
    from gateway.sso.models import OIDC

    registry = get_clients()
    secret = secrets.token_urlsafe(32)
    with get_database().session() as session:
        row = _client_row(session, client_id)
        if row.protocol != OIDC or row.public:
            raise BadRequest("only a confidential OpenID Connect client has a secret")
        row.client_secret_hash = registry.hasher.hash(secret)
    return secret


def change_client(client_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Consent setting and logout URIs (an empty ``backchannel_logout_uri`` removes it)."""
    from gateway.sso.clients import ClientInputError, check_uri, get_clients
    from gateway.sso.models import CONSENT_MODES, OIDC

    with get_database().session() as session:
        row = _client_row(session, client_id)
        if row.protocol != OIDC and body:
            raise BadRequest("consent and logout URIs are OpenID Connect settings")
        try:
            if "consent" in body:
                if body["consent"] not in CONSENT_MODES:
                    raise BadRequest(f"consent: one of {', '.join(CONSENT_MODES)}")
                row.consent = body["consent"]
            if "post_logout_redirect_uris" in body:
                uris = _strings(body, "post_logout_redirect_uris")
                for uri in uris:
                    check_uri(uri, "post_logout_redirect_uris")
                row.post_logout_redirect_uris = json.dumps(list(dict.fromkeys(uris)))
            if "backchannel_logout_uri" in body:
                uri = body["backchannel_logout_uri"].strip()
                row.backchannel_logout_uri = (
                    check_uri(uri, "backchannel_logout_uri") if uri else None
                )
        except ClientInputError as exc:
            raise BadRequest(str(exc)) from None
    client = get_clients().get(client_id)
    assert client is not None
    return client.to_json()


# --- audit trail --------------------------------------------------------------------------------

MAX_AUDIT_ROWS = 500
MAX_EXPORT_ROWS = 100_000


def audit_records(args: Mapping[str, str]) -> list[dict[str, Any]]:
    """The newest records matching the filters: ``event``, ``outcome``, ``account`` (public
    id), ``operator`` (name), ``since``/``until`` (ISO 8601), ``limit``."""
    query = select(AuditRecord).order_by(AuditRecord.id.desc())
    for field, column in (
        ("event", AuditRecord.event),
        ("outcome", AuditRecord.outcome),
        ("account", AuditRecord.account_public_id),
    ):
        if args.get(field):
            query = query.where(column == args[field])
    if args.get("operator"):
        query = query.where(
            AuditRecord.detail.contains(f"operator {args['operator']}", autoescape=True)
        )
    for field, compare in (("since", "ge"), ("until", "le")):
        if args.get(field):
            try:
                moment = datetime.fromisoformat(args[field].replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest(f"{field}: an ISO 8601 time") from None
            if moment.tzinfo is None:
                raise BadRequest(f"{field}: give the time zone (Z or +08:00)")
            query = query.where(getattr(AuditRecord.at, f"__{compare}__")(moment))
    try:
        limit = min(int(args.get("limit", "100")), MAX_AUDIT_ROWS)
    except ValueError:
        raise BadRequest("limit: a number") from None
    with get_database().session() as session:
        rows = session.scalars(query.limit(max(limit, 1))).all()
        return [record_fields(row) for row in rows]


def verify_audit(checkpoint_line: str | None) -> dict[str, Any]:
    log = get_audit_log()
    checkpoint = None
    if checkpoint_line:
        try:
            checkpoint = parse_checkpoint(checkpoint_line)
        except ValueError as exc:
            raise BadRequest(f"checkpoint: {exc}") from None
        if not log.checkpoint_is_genuine(checkpoint):
            raise BadRequest("checkpoint: its MAC does not match")
    verdict = log.examine(checkpoint)
    return {
        "ok": not verdict.problems,
        "records": verdict.record_count,
        "problems": [
            {"record": problem.record_id, "problem": problem.problem}
            for problem in verdict.problems
        ],
    }


def export_audit(first: int | None, last: int | None) -> tuple[list[dict[str, Any]], int, int]:
    """Records ``first``..``last`` (ids; default the whole trail) as JSON lines, each with its
    ``previous_hash`` and ``chain_hash`` (HMAC-SHA256 under the audit key: the records are
    signed as a chain), then one line ``{"checkpoint": LINE}``: a signed checkpoint of the trail
    as it stands (``certgate audit verify --checkpoint LINE`` checks it later). Nothing is
    exported from a trail that does not verify."""
    log = get_audit_log()
    try:
        checkpoint = log.checkpoint(clock.now())
    except AuditTrailBroken:
        raise BadRequest("the audit trail does not verify: nothing exported") from None
    first = max(first or 1, 1)
    last = min(last or checkpoint.seq, checkpoint.seq)
    if last < first:
        raise BadRequest("from..to: an empty range")
    if last - first + 1 > MAX_EXPORT_ROWS:
        raise BadRequest(f"from..to: at most {MAX_EXPORT_ROWS} records at once")
    with get_database().session() as session:
        rows = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.id >= first, AuditRecord.id <= last)
            .order_by(AuditRecord.id)
        ).all()
        lines: list[dict[str, Any]] = [
            {**record_fields(row), "previous_hash": row.previous_hash, "chain_hash": row.chain_hash}
            for row in rows
        ]
    lines.append({"checkpoint": checkpoint.line()})
    return lines, first, last


def known_name(name: str) -> bool:
    with get_database().session() as session:
        return session.scalars(select(Operator.id).where(Operator.name == name)).first() is not None
