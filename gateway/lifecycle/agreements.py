"""Service agreement versions and consent: ``certgate agreement publish``, the current version,
every consent kept, and the consent gate.

The current agreement is the newest one published. Until the first publish, the configured
``agreement_version`` is shown and recorded as before but not enforced. Once a version is
published, a session whose account's last consent is to an older version (or to none) can do
nothing but read the agreement (``GET /api/v1/agreement``, the /agreement page), consent
(``POST /api/v1/account/consent``), see who it is (``GET /api/v1/session``), sign out, or
cancel the account. The gate is one ``before_request`` hook over every route, so a route added
later is covered without doing anything: JSON routes answer ``403 consent_required`` with the
version and summary, pages go to ``/consent``. A login answer of such an account carries
``"consent_required": {"version", "summary"}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, request
from sqlalchemy import bindparam, select
from werkzeug.wrappers import Response as BaseResponse

from gateway import clock
from gateway.lifecycle.errors import AgreementOutdated, ConsentRequired
from gateway.lifecycle.models import AgreementConsent, AgreementVersion
from gateway.sessions import get_sessions
from gateway.storage.database import Database, get_database
from gateway.storage.models import Account
from gateway.storage.prepared import Prepared

EXTENSION = "certgate.agreements"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
MAX_SUMMARY = 2000
MAX_TEXT = 512 * 1024

# What a session waiting for consent may still reach (Flask endpoint names). Everything else
# that carries its session cookie is refused. Routes that do not act on a session (the login
# and registration routes, the login and registration pages, the assets) are listed too: a
# person waiting for consent may sign in again or as someone else.
ALLOWED_WHILE_PENDING = frozenset(
    {
        "static",
        "web.static",
        "web.index",
        "web.login_page",
        "web.agreement_page",
        "account_api.consent",
        "account_api.cancel",  # cancellation, when it exists
        "login.challenge",
        "login.token_login",
        "login.tls_login",
        "login.password_login",
        "login.session_info",
        "login.logout",
        "agreements.agreement",
        "codes.request_code",
        "credentials.sms_login",
        "credentials.reset_password",
        "registration.register_person",
        "registration.register_enterprise",
        "lifecycle_pages.consent_page",
        "lifecycle_pages.register_page",
        "lifecycle_pages.reset_page",
    }
)
# The login answers that get ``consent_required`` added (their JSON names the account).
LOGIN_ENDPOINTS = frozenset(
    {"login.token_login", "login.tls_login", "login.password_login", "credentials.sms_login"}
)


def newest_version() -> Any:
    """The newest published version's name as a scalar subquery (NULL before the first)."""
    return (
        select(AgreementVersion.version)
        .order_by(AgreementVersion.published_at.desc(), AgreementVersion.id.desc())
        .limit(1)
        .scalar_subquery()
        .label("newest")
    )


# The account's last consent beside the newest published version.
_CONSENT_AND_NEWEST = Prepared(
    select(Account.agreement_version, newest_version()).where(Account.id == bindparam("account_id"))
)


class AgreementInputError(ValueError):
    """Operator input refused (``certgate agreement publish``)."""


@dataclass(frozen=True)
class Agreement:
    version: str
    summary: str | None
    text: str | None  # None: the built-in text of the /agreement page
    published_at: datetime | None  # None: the configured version, never published

    @property
    def enforced(self) -> bool:
        return self.published_at is not None

    def to_api(self) -> dict[str, Any]:
        return {"version": self.version, "summary": self.summary}


class AgreementService:
    def __init__(self, database: Database, configured_version: str) -> None:
        self.database = database
        self.configured_version = configured_version

    def publish(self, version: str, text: str, *, summary: str | None, at: datetime) -> Agreement:
        if not VERSION_RE.match(version):
            raise AgreementInputError(
                "VERSION: 1-32 letters, digits, '.', '_' or '-', such as 2027-01"
            )
        if not text.strip():
            raise AgreementInputError("--file: the agreement text is empty")
        if len(text) > MAX_TEXT:
            raise AgreementInputError(f"--file: longer than {MAX_TEXT} characters")
        if summary is not None and len(summary) > MAX_SUMMARY:
            raise AgreementInputError(f"--summary: longer than {MAX_SUMMARY} characters")
        with self.database.session() as session:
            if session.scalar(
                select(AgreementVersion.id).where(AgreementVersion.version == version)
            ):
                raise AgreementInputError(f"VERSION: {version} is already published")
            session.add(
                AgreementVersion(version=version, summary=summary, text=text, published_at=at)
            )
        return Agreement(version, summary, text, at)

    def current(self) -> Agreement:
        with self.database.session() as session:
            row = session.scalars(
                select(AgreementVersion)
                .order_by(AgreementVersion.published_at.desc(), AgreementVersion.id.desc())
                .limit(1)
            ).one_or_none()
        if row is None:
            return Agreement(self.configured_version, None, None, None)
        return Agreement(row.version, row.summary, row.text, row.published_at)

    def published(self) -> list[Agreement]:
        with self.database.session() as session:
            rows = session.scalars(
                select(AgreementVersion).order_by(
                    AgreementVersion.published_at, AgreementVersion.id
                )
            ).all()
        return [Agreement(r.version, r.summary, r.text, r.published_at) for r in rows]

    def pending(self, consented_version: str | None) -> Agreement | None:
        """The agreement an account must accept before anything else, or None."""
        current = self.current()
        if current.enforced and consented_version != current.version:
            return current
        return None

    def pending_for(self, account_id: int) -> Agreement | None:
        """``pending`` for an account: one statement reads its consent and the newest
        version's name (the gate asks this on every request with a session); the whole
        agreement is read only when it is pending."""
        with self.database.connection() as connection:
            row = _CONSENT_AND_NEWEST.execute(connection, {"account_id": account_id}).one_or_none()
        if row is None or row.newest is None or row.agreement_version == row.newest:
            return None
        return self.pending(row.agreement_version)

    def record(self, account_id: int, version: str, *, how: str, at: datetime) -> bool:
        """Record consent to ``version`` (the current one); False when already recorded."""
        current = self.current()
        if version != current.version:
            raise AgreementOutdated(
                "not the current agreement version",
                version=current.version,
                summary=current.summary,
            )
        with self.database.session() as session:
            account = session.get_one(Account, account_id)
            if account.agreement_version == version:
                return False
            account.agreement_version = version
            account.agreement_consented_at = at
            account.updated_at = at
            session.add(
                AgreementConsent(account_id=account_id, version=version, consented_at=at, how=how)
            )
        return True

    def history(self, account_id: int) -> list[AgreementConsent]:
        with self.database.session() as session:
            return list(
                session.scalars(
                    select(AgreementConsent)
                    .where(AgreementConsent.account_id == account_id)
                    .order_by(AgreementConsent.consented_at.desc(), AgreementConsent.id.desc())
                ).all()
            )


def get_agreements(app: Flask | None = None) -> AgreementService:
    return (app or current_app).extensions[EXTENSION]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


# --- routes ---------------------------------------------------------------------------------------

bp = Blueprint("agreements", __name__, url_prefix="/api/v1")


@bp.get("/agreement")
def agreement() -> Response:
    current = get_agreements().current()
    return jsonify(
        {
            "ok": True,
            **current.to_api(),
            "published_at": _iso(current.published_at),
            "text": current.text,
        }
    )


@bp.get("/account/consents")
def consent_history() -> Response:
    from gateway.account_api import _session

    _, account = _session()
    entries = [
        {"version": row.version, "consented_at": _iso(row.consented_at), "how": row.how}
        for row in get_agreements().history(account.id)
    ]
    return jsonify({"ok": True, "consents": entries})


# --- the gate -------------------------------------------------------------------------------------


def _pending_for_request() -> Agreement | None:
    """The agreement the session of this request still has to accept, or None (also when
    there is no live session: the route itself answers that)."""
    record = get_sessions().read(request)
    if record is None or clock.now() >= record.expires_at:
        return None
    return get_agreements().pending_for(record.account_id)


def consent_gate() -> BaseResponse | None:
    if request.endpoint is None or request.endpoint in ALLOWED_WHILE_PENDING:
        return None
    pending = _pending_for_request()
    if pending is None:
        return None
    if request.path.startswith("/api/") or request.method != "GET":
        raise ConsentRequired(
            f"{request.endpoint} while consent is pending",
            version=pending.version,
            summary=pending.summary,
        )
    target = request.full_path.rstrip("?")
    return redirect("/consent?next=" + quote(target, safe="/"))


def init_app(app: Flask) -> AgreementService:
    from gateway.account_api import DEFAULT_AGREEMENT_VERSION

    service = AgreementService(
        get_database(app),
        str(app.config.get("AGREEMENT_VERSION") or DEFAULT_AGREEMENT_VERSION),
    )
    app.extensions[EXTENSION] = service
    app.register_blueprint(bp)
    app.before_request(consent_gate)

    @app.context_processor
    def published_agreement() -> dict[str, Any]:
        return {"published_agreement": service.current()}

    return service
