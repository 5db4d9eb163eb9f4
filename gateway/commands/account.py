"""`certgate account`: personal and enterprise accounts and their certificate bindings."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certs.mapping import BindingKind
from gateway.accounts import AccountView
from gateway.commands.common import OperatorInputError, audit_operator, now, operator_app

FREEZE_STATES = ("frozen", "suspended", "terminated")
ResultT = TypeVar("ResultT")
CommandT = TypeVar("CommandT", bound=Callable[..., Any])


def _password(password_stdin: bool, prompt_password: bool) -> str | None:
    if password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise OperatorInputError("password: nothing on standard input")
        return line
    if prompt_password:
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return None


def _run(action: Callable[[], ResultT]) -> ResultT:
    from gateway.accounts import AccountInputError

    try:
        return action()
    except AccountInputError as exc:
        raise OperatorInputError(str(exc)) from None


def _show(view: AccountView, as_json: bool = False) -> None:
    fields = {
        "id": view.id,
        "kind": view.kind,
        "status": view.status,
        "name": view.display_name,
        "login_name": view.login_name,
        "uscc": view.unified_social_credit_code,
        "id_card_number": view.id_card_number_masked,
        "phone": view.phone_masked,
        "real_name_level": view.real_name_level,
        "locked_until": view.locked_until.isoformat() if view.locked_until else None,
        "bindings": [f"{kind}:{value}" for kind, value in view.bindings],
    }
    if as_json:
        click.echo(json.dumps(fields, ensure_ascii=False))
    else:
        click.echo("  ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, [])))


_common_options = [
    click.option("--login-name", help="Login name (letters, digits, _ . -)."),
    click.option("--phone", help="Mainland mobile number (stored encrypted)."),
    click.option("--password-stdin", is_flag=True, help="Read a password from standard input."),
    click.option("--password", "prompt_password", is_flag=True, help="Prompt for a password."),
    click.option(
        "--real-name-level",
        type=click.IntRange(0, 3),
        default=0,
        show_default=True,
        help="0 none, 1 checked, 2 in person or CA certificate, 3 face.",
    ),
    click.option("--agreement-version", help="Service agreement version consented to."),
]


def _with_common(command: CommandT) -> CommandT:
    for option in reversed(_common_options):
        command = option(command)
    return command


@click.group()
def account() -> None:
    """Accounts (person, enterprise) and certificate bindings."""


@account.group()
def create() -> None:
    """Create a person account (by ID-card number) or an enterprise (by credit code)."""


@create.command("person")
@click.argument("id_card_number")
@click.option("--real-name", required=True, help="The person's real name.")
@click.option("--email", help="E-mail address.")
@_with_common
def create_person(
    id_card_number: str,
    real_name: str,
    email: str | None,
    login_name: str | None,
    phone: str | None,
    password_stdin: bool,
    prompt_password: bool,
    real_name_level: int,
    agreement_version: str | None,
) -> None:
    """Create a person account identified by ID_CARD_NUMBER (GB 11643-1999)."""
    _create_account(
        "person",
        password_stdin,
        prompt_password,
        real_name=real_name,
        id_card_number=id_card_number,
        login_name=login_name,
        phone=phone,
        email=email,
        real_name_level=real_name_level,
        agreement_version=agreement_version,
    )


@create.command("enterprise")
@click.argument("unified_social_credit_code")
@click.option("--name", required=True, help="The enterprise's registered name.")
@click.option("--legal-representative", help="Name of the legal representative.")
@click.option(
    "--legal-representative-id-number",
    help="The legal representative's ID-card number (stored sealed): a person with this "
    "number and real-name level 2 may act for the enterprise.",
)
@_with_common
def create_enterprise(
    unified_social_credit_code: str,
    name: str,
    legal_representative: str | None,
    legal_representative_id_number: str | None,
    login_name: str | None,
    phone: str | None,
    password_stdin: bool,
    prompt_password: bool,
    real_name_level: int,
    agreement_version: str | None,
) -> None:
    """Create an enterprise account identified by UNIFIED_SOCIAL_CREDIT_CODE (GB 32100-2015)."""
    from certs.identifiers import is_valid_id_card_number, normalize_identifier

    representative_number = None
    if legal_representative_id_number is not None:
        if not legal_representative:
            raise OperatorInputError(
                "--legal-representative-id-number: give --legal-representative (the name) too"
            )
        representative_number = normalize_identifier(legal_representative_id_number)
        if not is_valid_id_card_number(representative_number):
            raise OperatorInputError(
                "--legal-representative-id-number: not valid (GB 11643-1999 check failed)"
            )
    _create_account(
        "enterprise",
        password_stdin,
        prompt_password,
        representative_number=representative_number,
        unified_social_credit_code=unified_social_credit_code,
        name=name,
        legal_representative=legal_representative,
        login_name=login_name,
        phone=phone,
        real_name_level=real_name_level,
        agreement_version=agreement_version,
    )


def _create_account(
    kind: str,
    password_stdin: bool,
    prompt_password: bool,
    *,
    representative_number: str | None = None,
    **fields: Any,
) -> None:
    """Create a ``kind`` account from the command's fields, audit it and show it."""
    from gateway.accounts import get_accounts

    password = _password(password_stdin, prompt_password)
    app = operator_app()
    accounts = get_accounts(app)
    create = getattr(accounts, f"create_{kind}")
    view = _run(lambda: create(at=now(app), password=password, **fields))
    if representative_number is not None:
        from gateway.roles.roles import get_roles

        enterprise_id = accounts.find(view.id).id
        _run(
            lambda: get_roles(app).set_legal_representative(
                enterprise_id,
                name=str(fields["legal_representative"]),
                id_card_number=representative_number,
                at=now(app),
            )
        )
    audit_operator(app, "account_created", account=view.id, detail=kind)
    _show(view)


@account.command("list")
@click.option("--kind", type=click.Choice(["person", "enterprise"]))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_accounts(kind: str | None, as_json: bool) -> None:
    """Accounts, with ID-card numbers and phones masked."""
    from gateway.accounts import get_accounts

    for view in get_accounts(operator_app()).list(kind=kind):
        _show(view, as_json)


def _binding(
    thumbprint: str | None, issuer_serial: str | None, certificate: str | None
) -> tuple[str, str, x509.Certificate | None]:
    """(kind, value, the certificate when a file was given) of the binding the options name."""
    given = [v for v in (thumbprint, issuer_serial, certificate) if v]
    if len(given) != 1:
        raise OperatorInputError(
            "binding: give exactly one of --thumbprint, --issuer-serial, --certificate"
        )
    if thumbprint:
        return BindingKind.SHA256.value, thumbprint, None
    if issuer_serial:
        return BindingKind.ISSUER_SERIAL.value, issuer_serial, None
    assert certificate is not None
    try:
        with open(certificate, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise OperatorInputError(
            f"--certificate: cannot read {certificate!r} ({exc.strerror})"
        ) from None
    try:
        cert = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        raise OperatorInputError("--certificate: not a PEM or DER certificate") from None
    return BindingKind.SHA256.value, cert.fingerprint(hashes.SHA256()).hex(), cert


_binding_options = [
    click.option("--thumbprint", help="SHA-256 thumbprint of the certificate (hex)."),
    click.option(
        "--issuer-serial",
        help="'<serial hex>@<issuer DN>' (RFC 4514; case and spacing do not matter).",
    ),
    click.option(
        "--certificate",
        type=click.Path(dir_okay=False),
        help="The certificate file (binds its thumbprint).",
    ),
]


def _with_binding(command: CommandT) -> CommandT:
    for option in reversed(_binding_options):
        command = option(command)
    return command


@account.command("bind")
@click.argument("account_ref", metavar="ACCOUNT")
@click.option("--label", help="A note for operators (e.g. the key's number).")
@_with_binding
def bind(
    account_ref: str,
    label: str | None,
    thumbprint: str | None,
    issuer_serial: str | None,
    certificate: str | None,
) -> None:
    """Bind a certificate to ACCOUNT (id, login name, credit code, ID-card number or phone)."""
    from gateway.accounts import get_accounts
    from gateway.certificates import get_certificates

    kind, value, bound_certificate = _binding(thumbprint, issuer_serial, certificate)
    app = operator_app()
    view = _run(lambda: get_accounts(app).bind(account_ref, kind, value, at=now(app), label=label))
    if bound_certificate is not None:
        # The account page shows the certificate's subject, issuer and expiry from now on.
        get_certificates(app).record(bound_certificate, at=now(app))
    audit_operator(
        app,
        "certificate_bound",
        account=view.id,
        thumbprint=value if kind == BindingKind.SHA256 else None,
        detail=kind,
    )
    _show(view)


@account.command("unbind")
@click.argument("account_ref", metavar="ACCOUNT")
@_with_binding
def unbind(
    account_ref: str, thumbprint: str | None, issuer_serial: str | None, certificate: str | None
) -> None:
    """Remove a certificate binding from ACCOUNT."""
    from gateway.accounts import get_accounts

    kind, value, _ = _binding(thumbprint, issuer_serial, certificate)
    app = operator_app()
    view = _run(lambda: get_accounts(app).unbind(account_ref, kind, value))
    audit_operator(
        app,
        "certificate_unbound",
        account=view.id,
        thumbprint=value if kind == BindingKind.SHA256 else None,
        detail=kind,
    )
    _show(view)


REASON_HELP = "Why (recorded, audited, and told to the account in its notice)."
MAX_REASON = 500


def _change_status(account_ref: str, status: str, reason: str | None) -> None:
    """Set ACCOUNT's status with the operator's reason: recorded, audited, the account notified
    (in-site message, and SMS or e-mail through the senders); a stopping status ends its
    sessions."""
    from gateway.accounts import get_accounts
    from gateway.lifecycle.cancellation import end_sessions_everywhere
    from gateway.lifecycle.models import AccountStatusChange
    from gateway.lifecycle.notices import get_notices

    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise OperatorInputError(f"--reason: at most {MAX_REASON} characters")
    app = operator_app()
    accounts = get_accounts(app)
    at = now(app)
    view = _run(lambda: accounts.set_status(account_ref, status, at=at))
    account_id = accounts.find(view.id).id
    with accounts.database.session() as session:
        session.add(
            AccountStatusChange(
                account_id=account_id, status=status, reason=reason or "—", changed_at=at
            )
        )
    ended = (
        0
        if status == "active"
        else end_sessions_everywhere(app, account_id, at=at, reason="account_frozen")
    )
    get_notices(app).post(account_id, NOTICE_BY_STATUS[status], at=at, reason=reason or "—")
    event = "account_unfrozen" if status == "active" else "account_frozen"
    detail = status if status != "active" else None
    if status != "active":
        detail = f"{status}; ended {ended} session(s)"
    if reason:
        detail = f"{detail}; reason: {reason}" if detail else f"reason: {reason}"
    audit_operator(app, event, account=view.id, detail=detail)
    _show(view)


NOTICE_BY_STATUS = {
    "frozen": "account_frozen",
    "suspended": "account_suspended",
    "terminated": "account_terminated",
    "active": "account_reactivated",
}


@account.command("freeze")
@click.argument("account_ref", metavar="ACCOUNT")
@click.option(
    "--status",
    type=click.Choice(FREEZE_STATES),
    default="frozen",
    show_default=True,
    help="frozen (冻结), suspended (暂停) or terminated (终止).",
)
@click.option("--reason", help=REASON_HELP)
def freeze(account_ref: str, status: str, reason: str | None) -> None:
    """Freeze (冻结) ACCOUNT: it cannot sign in, its sessions end, it is notified."""
    _change_status(account_ref, status, reason)


@account.command("suspend")
@click.argument("account_ref", metavar="ACCOUNT")
@click.option("--reason", required=True, help=REASON_HELP)
def suspend(account_ref: str, reason: str) -> None:
    """Suspend (暂停) ACCOUNT: it cannot sign in, its sessions end, it is notified."""
    _change_status(account_ref, "suspended", reason)


@account.command("terminate")
@click.argument("account_ref", metavar="ACCOUNT")
@click.option("--reason", required=True, help=REASON_HELP)
def terminate(account_ref: str, reason: str) -> None:
    """Terminate (终止) ACCOUNT's service: it cannot sign in, its sessions end, it is
    notified. Unlike cancellation, its data stays (an operator can reactivate it)."""
    _change_status(account_ref, "terminated", reason)


@account.command("unfreeze")
@click.argument("account_ref", metavar="ACCOUNT")
@click.option("--reason", help=REASON_HELP)
def unfreeze(account_ref: str, reason: str | None) -> None:
    """Let ACCOUNT sign in again (also clears a lockout); it is notified."""
    _change_status(account_ref, "active", reason)


@account.command("set-real-name-level")
@click.argument("account_ref", metavar="ACCOUNT")
@click.argument("level", type=click.IntRange(0, 3))
@click.option("--reason", required=True, help="How the identity was checked (e.g. 柜台核验).")
def set_real_name_level(account_ref: str, level: int, reason: str) -> None:
    """Set ACCOUNT's real-name level (0-3) after checking the holder's identity, e.g. in
    person (level 2) or by face (level 3); audited with the reason, the account notified."""
    from sqlalchemy import update

    from gateway.accounts import get_accounts
    from gateway.lifecycle.notices import get_notices
    from gateway.storage.models import Account

    app = operator_app()
    accounts = get_accounts(app)
    found = _run(lambda: accounts.find(account_ref))
    if found.status == "cancelled":
        raise OperatorInputError("set-real-name-level: the account is cancelled")
    at = now(app)
    with accounts.database.session() as session:
        session.execute(
            update(Account)
            .where(Account.id == found.id)
            .values(real_name_level=level, updated_at=at)
        )
    get_notices(app).post(found.id, "real_name_level", at=at, level=level)
    audit_operator(
        app,
        "real_name_level_set",
        account=found.public_id,
        detail=f"level {found.real_name_level} -> {level}; reason: {reason.strip()[:MAX_REASON]}",
    )
    _show(_run(lambda: accounts.view(accounts.find(found.public_id))))


@account.command("set-legal-representative")
@click.argument("account_ref", metavar="ENTERPRISE")
@click.option("--name", required=True, help="The legal representative's name.")
@click.option("--id-number", required=True, help="The legal representative's ID-card number.")
@click.option("--reason", required=True, help="Why (e.g. 工商变更登记); audited and notified.")
def set_legal_representative(account_ref: str, name: str, id_number: str, reason: str) -> None:
    """Record ENTERPRISE's legal representative. It takes effect at once: the former
    representative can no longer act for the enterprise, the new one can (with real-name
    level 2). Audited with the reason; the enterprise is notified."""
    from gateway.accounts import get_accounts
    from gateway.lifecycle.notices import get_notices
    from gateway.roles.roles import get_roles

    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise OperatorInputError(f"--reason: 1-{MAX_REASON} characters")
    app = operator_app()
    accounts = get_accounts(app)
    found = _run(lambda: accounts.find(account_ref))
    if found.kind != "enterprise":
        raise OperatorInputError("set-legal-representative: the account is not an enterprise")
    at = now(app)
    changed = _run(
        lambda: get_roles(app).set_legal_representative(
            found.id, name=name, id_card_number=id_number, at=at
        )
    )
    get_notices(app).post(found.id, "legal_representative_changed", at=at, reason=reason)
    audit_operator(
        app,
        "legal_representative_set",
        account=found.public_id,
        detail=("another person" if changed else "same person, name updated")
        + f"; reason: {reason}",
    )
    _show(accounts.view(accounts.find(found.public_id)))


@account.command("cancel")
@click.argument("account_ref", metavar="ACCOUNT")
@click.option("--yes", is_flag=True, help="Confirm: personal data is deleted for good.")
def cancel(account_ref: str, yes: bool) -> None:
    """Cancel (注销) ACCOUNT: delete its personal data and bindings, end its sessions, keep its
    audit trail. It cannot be undone."""
    from gateway.accounts import get_accounts

    if not yes:
        raise OperatorInputError("cancel: personal data is deleted for good; add --yes")
    app = operator_app()
    accounts = get_accounts(app)
    from gateway.lifecycle.cancellation import end_sessions_everywhere, erase_account

    found = _run(lambda: accounts.find(account_ref))
    if found.status == "cancelled":
        raise OperatorInputError("status: the account is already cancelled")
    at = now(app)
    ended = end_sessions_everywhere(app, found.id, at=at, reason="account_cancelled")
    _run(lambda: erase_account(app, found, at=at))
    audit_operator(
        app, "account_cancelled", account=found.public_id, detail=f"ended {ended} session(s)"
    )
    _show(accounts.view(accounts.find(found.public_id)))
