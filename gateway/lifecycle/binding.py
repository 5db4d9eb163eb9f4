"""Binding a USB key's certificate from the account page, and real-name level 2.

``POST /api/v1/account/certificates/bind {"challenge_id", "certificate", "signature",
"signature_algorithm", "chain"?, "label"?}`` (session, CSRF token, JSON): the same challenge and
signature as a USB-key login (``POST /api/v1/login/challenge``, then the agent signs), so the
person proves they hold the key now. The chain is validated like a login's. The certificate is
bound by its SHA-256 thumbprint; an account may bind several.

Refused with ``409 certificate_bound_elsewhere`` when the certificate is bound to, or by its
trust anchor's mapping rule identifies, another account. Binding a certificate the account had
unbound lifts that refusal.

Real-name level 2: when the bound certificate carries the person's own ID-card number (or, for
an enterprise, its own unified social credit code), the CA has checked the holder's identity,
and the account's real-name level rises to 2 (never lowers).
"""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives import hashes
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from sqlalchemy import update

from certs.errors import AccountAmbiguous, AccountNotFound, BadRequest
from certs.identity import CertificateIdentity, extract_identity
from certs.mapping import BindingKind, resolve_account
from gateway import clock
from gateway.accounts import AccountInputError, SqlAccountDirectory, get_accounts
from gateway.certificates import get_certificates
from gateway.engine import check_signing_key_usage, get_engine
from gateway.errors import ChallengeExpired, ChallengeUnknown, ChallengeUsed
from gateway.http import address, write_audit
from gateway.lifecycle.errors import CertificateBoundElsewhere
from gateway.lifecycle.notices import get_notices
from gateway.limits import get_guard
from gateway.signatures import ALGORITHMS, login_message, verify_login_signature
from gateway.storage.models import ENTERPRISE, PERSON, Account

bp = Blueprint("certificate_binding", __name__, url_prefix="/api/v1/account")

CERTIFICATE_LEVEL = 2
MAX_LABEL = 100


def identity_matches_account(identity: CertificateIdentity, account: Account) -> bool:
    """The certificate names this account's own identifier: the person's ID-card number or
    the enterprise's unified social credit code."""
    if account.kind == PERSON and identity.id_card_number and account.id_card_number_hash:
        digest = get_accounts().cipher.lookup_hash("id_card_number", identity.id_card_number)
        return digest == account.id_card_number_hash
    if account.kind == ENTERPRISE and identity.unified_social_credit_code:
        return identity.unified_social_credit_code == account.unified_social_credit_code
    return False


def raise_real_name_level(account_id: int, level: int, *, at: datetime) -> bool:
    """Set the level when it is higher than the account's; True when it changed."""
    accounts = get_accounts()
    with accounts.database.session() as session:
        changed = session.execute(
            update(Account)
            .where(Account.id == account_id, Account.real_name_level < level)
            .values(real_name_level=level, updated_at=at)
        ).rowcount  # type: ignore[attr-defined]
    return bool(changed)


@bp.post("/certificates/bind")
def bind_certificate() -> Response:
    from gateway.account_api import _state_change
    from gateway.login import (
        MAX_CHAIN,
        MAX_SIGNATURE_BYTES,
        _b64,
        _certificate,
        _challenges,
        prelogin_binding,
    )

    _, account, body = _state_change(
        "certificate_bound",
        {"challenge_id": str, "certificate": str, "signature": str, "signature_algorithm": str},
        optional={"chain": list, "label": str},
    )
    context = g.certgate_audit
    context.method = "token"
    now = clock.now()
    if body["signature_algorithm"] not in ALGORITHMS:
        raise BadRequest("unknown signature_algorithm")
    chain_items = body.get("chain") or []
    if len(chain_items) > MAX_CHAIN or not all(isinstance(c, str) for c in chain_items):
        raise BadRequest("chain is a short list of base64 certificates")
    label = (body.get("label") or "").strip()[:MAX_LABEL] or None
    leaf = _certificate(body["certificate"], "certificate")
    intermediates = [_certificate(item, "chain") for item in chain_items]
    signature = _b64(body["signature"], "signature", MAX_SIGNATURE_BYTES)
    challenge_id = body["challenge_id"]
    if not 0 < len(challenge_id) <= 128:
        raise BadRequest("challenge_id has the wrong length")
    thumbprint = leaf.fingerprint(hashes.SHA256()).hex()
    context.certificate_thumbprint = thumbprint
    get_guard().admit_address(address(), now)
    prelogin = request.cookies.get(current_app.config["PRELOGIN_COOKIE"], "")
    found = _challenges().consume(challenge_id, binding_hash=prelogin_binding(prelogin), at=now)
    if found is None:
        raise ChallengeUnknown("no such challenge for this pre-login cookie")
    if found.used_at is not None:
        raise ChallengeUsed("challenge already used")
    if now >= found.expires_at:
        raise ChallengeExpired("challenge expired")
    message = login_message(current_app.config["PUBLIC_ORIGIN"], found.id, found.nonce)
    verify_login_signature(leaf, body["signature_algorithm"], signature, message)
    check_signing_key_usage(leaf)
    chain = get_engine().validate(leaf, intermediates, at=now)

    accounts = get_accounts()
    # Whom the certificate signs in to today (refusals aside: an account may bind again a
    # certificate it unbound). Another account: refused.
    try:
        match = resolve_account(
            chain, chain.anchor.mapping_rule, SqlAccountDirectory(accounts), leaf_sha256=thumbprint
        )
    except AccountNotFound:
        match = None
    except AccountAmbiguous:
        raise CertificateBoundElsewhere("the certificate maps to several accounts") from None
    if match is not None and match.account.account_id != account.public_id:
        raise CertificateBoundElsewhere(f"the certificate maps by {match.matched_by} elsewhere")
    already = match is not None and match.matched_by == BindingKind.SHA256
    if not already:
        try:
            accounts.bind(account.public_id, BindingKind.SHA256, thumbprint, at=now, label=label)
        except AccountInputError:
            raise CertificateBoundElsewhere("bound to another account meanwhile") from None
    get_certificates().record(leaf, at=now, thumbprint=thumbprint)
    identity = extract_identity(
        chain.leaf, chain.anchor.mapping_rule.profile, issuer=chain.issuer, sha256=thumbprint
    )
    level_raised = identity_matches_account(identity, account) and raise_real_name_level(
        account.id, CERTIFICATE_LEVEL, at=now
    )
    if not already:
        get_notices().post(account.id, "certificate_bound", at=now, label=label or "USB Key")
    if level_raised:
        context.notes.append(f"real-name level {CERTIFICATE_LEVEL} by the bound certificate")
    context.notes.append("already bound" if already else "bound by thumbprint")
    write_audit("ok")
    fresh = accounts.get(account.id)
    return jsonify(
        {
            "ok": True,
            "already_bound": already,
            "thumbprint": thumbprint,
            "real_name_level": fresh.real_name_level if fresh else account.real_name_level,
        }
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
