"""Login API v1 (DESIGN.md "Login protocol v1"): challenge, token, TLS, password, session,
logout."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from flask import Blueprint, Response, current_app, g, jsonify, request

from certs.errors import AccountAmbiguous, BadRequest
from certs.mapping import resolve_account
from gateway import clock
from gateway.accounts import (
    LoginAccount,
    SqlAccountDirectory,
    account_is_usable,
    account_summary,
    get_accounts,
)
from gateway.assurance import PASSWORD, Assurance, certificate_assurance
from gateway.certificates import get_certificates
from gateway.engine import check_signing_key_usage, get_engine
from gateway.errors import (
    AccountDisabled,
    ChallengeExpired,
    ChallengeUnknown,
    ChallengeUsed,
    CredentialsInvalid,
    NotSignedIn,
    OriginMismatch,
)
from gateway.housekeeping import run_housekeeping
from gateway.http import (
    address,
    begin_audit,
    check_origin,
    json_body,
    scrub_detail,
    write_audit,
)
from gateway.limits import certificate_key, get_guard, password_key, password_locked
from gateway.passwords import MAX_PASSWORD_LENGTH
from gateway.proxy import CertificateHeaders, client_certificate
from gateway.sessions import get_sessions, set_secure_cookie
from gateway.signatures import ALGORITHMS, login_message, verify_login_signature
from gateway.sso.logout import end_session_everywhere
from gateway.storage.database import get_database
from gateway.storage.models import Account
from gateway.stores import Admission, ChallengeRecord, ChallengeStore

bp = Blueprint("login", __name__, url_prefix="/api/v1")

CHALLENGE_STORE = "certgate.challenges"
MAX_CHAIN = 8
MAX_CERTIFICATE_BYTES = 16 * 1024
MAX_SIGNATURE_BYTES = 1024
MAX_IDENTIFIER_LENGTH = 64
PRELOGIN_COOKIE_AGE = 30 * 60


def _challenges() -> ChallengeStore:
    return current_app.extensions[CHALLENGE_STORE]


def prelogin_binding(prelogin: str) -> str:
    """What a challenge is bound to: a hash of the pre-login cookie it was issued with."""
    return hashlib.sha256(
        b"certgate prelogin\x00" + prelogin.encode("ascii", "replace")
    ).hexdigest()


def _b64(value: str, field: str, limit: int) -> bytes:
    """Standard or URL-safe base64, padded or not; nothing else is skipped over."""
    if len(value) > limit * 4 // 3 + 4:
        raise BadRequest(f"{field} is too long")
    standard = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{field} is not base64") from None


def _urlsafe(random: bytes) -> str:
    """``secrets.token_urlsafe`` of bytes already drawn: unpadded base64url."""
    return base64.urlsafe_b64encode(random).rstrip(b"=").decode("ascii")


def _certificate(value: str, field: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(_b64(value, field, MAX_CERTIFICATE_BYTES))
    except ValueError:
        raise BadRequest(f"{field} is not a DER certificate") from None


def _success(
    account: Account | LoginAccount, assurance: Assurance, admissions: list[Admission]
) -> Response:
    now = clock.now()
    sessions = get_sessions()
    # One transaction, one commit, for everything a login writes: the attempts given back (a
    # success does not count against limits; when the counters are in the database), the old
    # session's deletion, the new session and the audit record. Separately they were up to four
    # commits, each with its turn on SQLite's write lock (bench/bench_login.py). All or nothing:
    # a session never exists without its audit record.
    with get_database().connection():
        get_guard().succeeded(admissions)
        started = sessions.start(
            account.id,
            assurance.amr,
            acr=assurance.acr,
            at=now,
            previous_token=request.cookies.get(sessions.cookie_name),
        )
        write_audit("ok")
    response = jsonify(
        {
            "ok": True,
            "account": account_summary(account, get_accounts().shown_name(account)),
            "amr": list(assurance.amr),
            "acr": assurance.acr,
            "csrf_token": started.record.csrf_token,
        }
    )
    sessions.set_cookie(response, started.token)
    return response


def _certificate_login(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    admissions: list[Admission],
    route: str,
) -> Response:
    """Chain, revocation and mapping, then the login: the session for the account this
    certificate signs in to. ``route`` ("token" or "tls") and the anchor the chain ends at
    decide ``amr`` and ``acr`` (gateway/assurance.py)."""
    now = clock.now()
    # Validation first and outside any database transaction: revocation may wait on a CRL or
    # OCSP fetch, which must not hold a connection or SQLite's write turn.
    chain = get_engine().validate(leaf, intermediates, at=now)
    context = g.certgate_audit
    context.notes.extend(scrub_detail(warning) for warning in chain.warnings)
    accounts = get_accounts()
    # Knowing the leaf, the look-up leaves out accounts this certificate was unbound from.
    directory = SqlAccountDirectory(accounts, thumbprint=context.certificate_thumbprint)
    # The look-up and the login's writes share one connection and one transaction (the
    # look-up is a single statement, so the write turn is held only as long as the writes
    # need it); a connection of its own for the read cost a check-out and a check-in per login
    # (bench/bench_login.py).
    with accounts.database.connection():
        match = resolve_account(
            chain,
            chain.anchor.mapping_rule,
            directory,
            leaf_sha256=context.certificate_thumbprint,
        )
        context.account_public_id = match.account.account_id
        context.notes.append(f"matched by {match.matched_by} under {match.trust_anchor!r}")
        account = accounts.find_for_login(match.account.account_id, directory=directory)
        # Possession of the key is proven: a password lock (``locked_until``) does not stop
        # this login, and the account's password failures do not count here. Only an
        # operator's decision (frozen, suspended, terminated) does.
        if not account_is_usable(account):
            raise AccountDisabled(f"account status {account.status}")
        # Subject, issuer and expiry for the account page: written once per certificate (a
        # set lookup on later logins, so not a cost on the hot path).
        get_certificates().record(leaf, at=now, thumbprint=context.certificate_thumbprint)
        return _success(account, certificate_assurance(route, chain.anchor), admissions)


# --- challenge ------------------------------------------------------------------------------------


@bp.post("/login/challenge")
def challenge() -> Response:
    g.certgate_skip_audit = True  # issuing a challenge is not an attempt
    check_origin()
    now = clock.now()
    config = current_app.config
    prelogin = request.cookies.get(config["PRELOGIN_COOKIE"])
    fresh = not prelogin or len(prelogin) > 128
    # The id, the nonce and (when new) the pre-login cookie from one read of the system CSPRNG:
    # each read is a system call that lets go of the GIL, and under load getting it back costs
    # more than the read (bench/bench_login.py). The values are as independent as three reads.
    random = secrets.token_bytes(18 + 32 + 32)
    if fresh:
        prelogin = _urlsafe(random[50:])
    assert prelogin is not None
    record = ChallengeRecord(
        id=_urlsafe(random[:18]),
        nonce=_urlsafe(random[18:50]),
        binding_hash=prelogin_binding(prelogin),
        expires_at=now + timedelta(seconds=config["CHALLENGE_TTL"]),
        used_at=None,
    )
    run_housekeeping(now)
    get_guard().admit_challenge(address(), now)
    _challenges().put(record, created_at=now)
    response = jsonify(
        {
            "challenge_id": record.id,
            "nonce": record.nonce,
            "origin": config["PUBLIC_ORIGIN"],
            "expires_at": record.expires_at.isoformat().replace("+00:00", "Z"),
        }
    )
    if fresh:
        set_secure_cookie(
            response, config["PRELOGIN_COOKIE"], prelogin, max_age=PRELOGIN_COOKIE_AGE
        )
    return response


# --- token (challenge signed by a USB key through the agent) -------------------------------------


@bp.post("/login/token")
def token_login() -> Response:
    context = begin_audit("login", "token")
    check_origin()
    body = json_body(
        {"challenge_id": str, "certificate": str, "signature": str, "signature_algorithm": str},
        optional={"chain": list, "origin": str},
    )
    now = clock.now()
    guard = get_guard()
    algorithm = body["signature_algorithm"]
    if algorithm not in ALGORITHMS:
        raise BadRequest("unknown signature_algorithm")
    if "origin" in body and body["origin"] not in (None, current_app.config["PUBLIC_ORIGIN"]):
        raise OriginMismatch("body origin is not the public origin")
    chain_items = body.get("chain") or []
    if len(chain_items) > MAX_CHAIN or not all(isinstance(c, str) for c in chain_items):
        raise BadRequest("chain is a short list of base64 certificates")
    leaf = _certificate(body["certificate"], "certificate")
    intermediates = [_certificate(item, "chain") for item in chain_items]
    signature = _b64(body["signature"], "signature", MAX_SIGNATURE_BYTES)
    challenge_id = body["challenge_id"]
    if not 0 < len(challenge_id) <= 128:
        raise BadRequest("challenge_id has the wrong length")
    thumbprint = leaf.fingerprint(hashes.SHA256()).hex()
    context.certificate_thumbprint = thumbprint
    with guard.attempt() as admissions:
        admissions.append(guard.admit_address(address(), now))
        prelogin = request.cookies.get(current_app.config["PRELOGIN_COOKIE"], "")
        found = _challenges().consume(challenge_id, binding_hash=prelogin_binding(prelogin), at=now)
        if found is None:
            raise ChallengeUnknown("no such challenge for this pre-login cookie")
        if found.used_at is not None:
            raise ChallengeUsed("challenge already used")
        if now >= found.expires_at:
            raise ChallengeExpired("challenge expired")
        message = login_message(current_app.config["PUBLIC_ORIGIN"], found.id, found.nonce)
        verify_login_signature(leaf, algorithm, signature, message)
        # Only the key holder counts against the certificate: certificates are public, so
        # failures before this point (anyone's) count against the address alone.
        admissions.append(guard.admit_subject(certificate_key(thumbprint), now))
        check_signing_key_usage(leaf)
        return _certificate_login(leaf, intermediates, admissions, "token")


# --- TLS client certificate from a reverse proxy -------------------------------------------------


@bp.post("/login/tls")
def tls_login() -> Response:
    context = begin_audit("login", "tls")
    check_origin()
    config = current_app.config
    now = clock.now()
    guard = get_guard()
    believed = CertificateHeaders(config["TLS_CLIENT_CERT_FORM"], config["TLS_CLIENT_CERT_HEADER"])
    found = client_certificate(request, config["TRUSTED_PROXIES"], believed)
    if found.ignored:
        # Possibly a client's own header passed through (or around) the proxy: never read, always
        # recorded. Header names only; the values are the sender's and are not kept.
        sender = "a trusted proxy" if found.from_trusted_proxy else "an untrusted peer"
        write_audit(
            "ignored",
            event="tls_header_ignored",
            detail=f"client certificate header {', '.join(found.ignored)} from {sender} "
            f"(believed: {', '.join(believed.believed)} from a trusted proxy)",
        )
    if found.malformed is not None:
        raise BadRequest(f"client certificate header: {found.malformed}")
    presented = found.presented
    if presented is None:
        raise BadRequest("no client certificate from a trusted proxy")
    leaf, intermediates = presented
    thumbprint = leaf.fingerprint(hashes.SHA256()).hex()
    context.certificate_thumbprint = thumbprint
    with guard.attempt() as admissions:
        admissions.append(guard.admit_address(address(), now))
        admissions.append(guard.admit_subject(certificate_key(thumbprint), now))
        return _certificate_login(leaf, intermediates, admissions, "tls")


# --- password ------------------------------------------------------------------------------------


@bp.post("/login/password")
def password_login() -> Response:
    context = begin_audit("login", "password")
    check_origin()
    run_housekeeping(clock.now())
    body = json_body({"identifier": str, "password": str})
    identifier, password = body["identifier"], body["password"]
    if not 0 < len(identifier) <= MAX_IDENTIFIER_LENGTH:
        raise BadRequest("identifier has the wrong length")
    if not 0 < len(password) <= MAX_PASSWORD_LENGTH:
        raise BadRequest("password has the wrong length")
    now = clock.now()
    guard = get_guard()
    accounts = get_accounts()
    with guard.attempt() as admissions:
        admissions.append(guard.admit_address(address(), now))
        try:
            account = accounts.find_by_identifier(identifier)
        except AccountAmbiguous:
            # Two accounts answer to this string: no guess, and no answer that tells why.
            account = None
        if account is not None:
            context.account_public_id = account.public_id
        subject = password_key(accounts.password_subject(identifier, account))
        # A known account's lock is on its row (operators see and clear it, a restart keeps
        # it); an identifier that names no account has no row, so its lock is the counter's.
        # Both answer the same.
        if account is not None:
            locked_until = account.locked_until
        else:
            locked_until = guard.locked_until(subject, now)
        if locked_until is not None and locked_until > now:
            raise password_locked(locked_until)
        admissions.append(guard.admit_subject(subject, now))
        matches = accounts.passwords.verify(account.password_hash if account else None, password)
        # A frozen, suspended or terminated account answers a right password exactly as a wrong
        # one (and counts it as a failure), so the answer never confirms a guessed password; the
        # certificate login, which proves possession of the key, is told the account's state.
        if not matches or account is None or not account_is_usable(account):
            until = guard.failed(subject, now)
            if until is not None:
                if account is not None:
                    accounts.lock(account.id, until=until, at=now)
                raise password_locked(until)
            if account is None:
                raise CredentialsInvalid("no such account")
            if not matches:
                raise CredentialsInvalid("password does not match")
            raise CredentialsInvalid(f"right password, account status {account.status}")
        return _success(account, PASSWORD, admissions)


# --- session and logout -------------------------------------------------------------------------


@bp.get("/session")
def session_info() -> Response:
    g.certgate_skip_audit = True
    now = clock.now()
    sessions = get_sessions()
    record = sessions.current(request, at=now)
    if record is None:
        raise NotSignedIn("no live session")
    account = get_accounts().get(record.account_id)
    if account is None or not account_is_usable(account):
        sessions.end(record, everywhere=False)
        raise NotSignedIn("the account of this session can no longer sign in")
    return jsonify(
        {
            "ok": True,
            "account": get_accounts().view(account).to_api(),
            "amr": list(record.amr),
            "acr": record.acr,
            "csrf_token": record.csrf_token,
            "expires_at": record.expires_at.isoformat().replace("+00:00", "Z"),
        }
    )


@bp.post("/logout")
def logout() -> Response:
    context = begin_audit("logout")
    check_origin()
    now = clock.now()
    sessions = get_sessions()
    record = sessions.current(request, at=now)
    if record is None:
        g.certgate_skip_audit = True
        raise NotSignedIn("no live session")
    account = get_accounts().get(record.account_id)
    context.account_public_id = account.public_id if account else None
    if not sessions.csrf_ok(record, request):
        raise BadRequest("missing or wrong CSRF token")
    everywhere = False
    if request.content_length:
        everywhere = bool(json_body({}, optional={"everywhere": bool}).get("everywhere"))
    # Single logout first: the clients of the ending session(s) are told (queued).
    whose = record.account_id if everywhere else None
    end_session_everywhere("logout", session_id=record.id_hash, account_id=whose)
    ended = sessions.end(record, everywhere=everywhere)
    context.notes.append(f"ended {ended} session(s)" + (" everywhere" if everywhere else ""))
    write_audit("ok")
    response = jsonify({"ok": True})
    sessions.clear_cookie(response)
    return response
