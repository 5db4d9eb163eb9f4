"""Scopes and the claims each releases (DESIGN.md "Single sign-on"), and assurance levels as
OpenID Connect asks for them (``acr_values``).

One table says which claim a scope releases; ``user_claims`` fills them from an account. A
person's phone is released only when verified: real-name verification at level 1 and up checks
the name, ID-card number and phone together with an authority, so below that the gateway does
not vouch for the number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.accounts import PHONE_COLUMN, AccountRecord, AccountService
from gateway.assurance import LEVELS
from gateway.storage.models import ENTERPRISE

OPENID = "openid"
OFFLINE_ACCESS = "offline_access"
PHONE_VERIFIED_FROM_LEVEL = 1

ClaimSource = Callable[[AccountRecord, AccountService], Mapping[str, Any]]


def _profile(account: AccountRecord, accounts: AccountService) -> Mapping[str, Any]:
    return {
        "name": accounts.shown_name(account),
        "account_kind": account.kind,
        "real_name_level": account.real_name_level,
    }


def _phone(account: AccountRecord, accounts: AccountService) -> Mapping[str, Any]:
    if account.phone_sealed is None or account.real_name_level < PHONE_VERIFIED_FROM_LEVEL:
        return {}
    return {
        "phone_number": "+86" + accounts.cipher.open(PHONE_COLUMN, account.phone_sealed),
        "phone_number_verified": True,
    }


def _email(account: AccountRecord, accounts: AccountService) -> Mapping[str, Any]:
    return {"email": account.email} if account.email else {}


def _enterprise(account: AccountRecord, accounts: AccountService) -> Mapping[str, Any]:
    if account.kind != ENTERPRISE:
        return {}
    return {
        "uscc": account.unified_social_credit_code,
        "enterprise_name": accounts.shown_name(account),
    }


# scope -> what it releases (openid and offline_access release no claim of their own).
SCOPE_CLAIMS: Mapping[str, ClaimSource | None] = {
    OPENID: None,
    "profile": _profile,
    "phone": _phone,
    "email": _email,
    "certgate.enterprise": _enterprise,
    OFFLINE_ACCESS: None,
}
SCOPES = tuple(SCOPE_CLAIMS)
CLAIMS_SUPPORTED = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "sid",
    "name",
    "account_kind",
    "real_name_level",
    "phone_number",
    "phone_number_verified",
    "email",
    "uscc",
    "enterprise_name",
    "acting_for",
)


def user_claims(account: AccountRecord, accounts: AccountService, scope: str) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": account.public_id}
    for name in scope.split():
        source = SCOPE_CLAIMS.get(name)
        if source is not None:
            claims.update(source(account, accounts))
    return claims


def session_claims(gateway_session_id: str, scope: str) -> dict[str, Any]:
    """Claims of the gateway session the token descends from: ``acting_for`` ``{"uscc",
    "name", "role"}`` under ``certgate.enterprise`` while the person acts for an enterprise
    with a current role (gateway/roles/acting.py)."""
    if "certgate.enterprise" not in scope.split():
        return {}
    from gateway.roles.acting import acting_for_claim

    acting_for = acting_for_claim(gateway_session_id)
    return {"acting_for": acting_for} if acting_for else {}


def level_rank(acr: str) -> int:
    return LEVELS.index(acr) if acr in LEVELS else -1


def required_level(acr_values: str | None) -> str | None:
    """The level an ``acr_values`` request asks for: the lowest of the values it names that
    the gateway knows (the values are alternatives, any of them satisfies); None if none."""
    known = [value for value in (acr_values or "").split() if value in LEVELS]
    return min(known, key=level_rank) if known else None


def satisfies(session_acr: str, required: str | None) -> bool:
    return required is None or level_rank(session_acr) >= level_rank(required)
