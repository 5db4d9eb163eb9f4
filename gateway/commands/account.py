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
@_with_common
def create_enterprise(
    unified_social_credit_code: str,
    name: str,
    legal_representative: str | None,
    login_name: str | None,
    phone: str | None,
    password_stdin: bool,
    prompt_password: bool,
    real_name_level: int,
    agreement_version: str | None,
) -> None:
    """Create an enterprise account identified by UNIFIED_SOCIAL_CREDIT_CODE (GB 32100-2015)."""
    _create_account(
        "enterprise",
        password_stdin,
        prompt_password,
        unified_social_credit_code=unified_social_credit_code,
        name=name,
        legal_representative=legal_representative,
        login_name=login_name,
        phone=phone,
        real_name_level=real_name_level,
        agreement_version=agreement_version,
    )


def _create_account(kind: str, password_stdin: bool, prompt_password: bool, **fields: Any) -> None:
    """Create a ``kind`` account from the command's fields, audit it and show it."""
    from gateway.accounts import get_accounts

    password = _password(password_stdin, prompt_password)
    app = operator_app()
    create = getattr(get_accounts(app), f"create_{kind}")
    view = _run(lambda: create(at=now(app), password=password, **fields))
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


@account.command("freeze")
@click.argument("account_ref", metavar="ACCOUNT")
@click.option(
    "--status",
    type=click.Choice(FREEZE_STATES),
    default="frozen",
    show_default=True,
    help="frozen (冻结), suspended (暂停) or terminated (终止).",
)
def freeze(account_ref: str, status: str) -> None:
    """Stop ACCOUNT from signing in, and end its sessions."""
    from gateway.accounts import get_accounts
    from gateway.sessions import get_sessions

    app = operator_app()
    accounts = get_accounts(app)
    view = _run(lambda: accounts.set_status(account_ref, status, at=now(app)))
    ended = get_sessions(app).store.delete_for_account(accounts.find(view.id).id)
    audit_operator(
        app, "account_frozen", account=view.id, detail=f"{status}; ended {ended} session(s)"
    )
    _show(view)


@account.command("unfreeze")
@click.argument("account_ref", metavar="ACCOUNT")
def unfreeze(account_ref: str) -> None:
    """Let ACCOUNT sign in again (also clears a lockout)."""
    from gateway.accounts import get_accounts

    app = operator_app()
    view = _run(lambda: get_accounts(app).set_status(account_ref, "active", at=now(app)))
    audit_operator(app, "account_unfrozen", account=view.id)
    _show(view)


@account.command("cancel")
@click.argument("account_ref", metavar="ACCOUNT")
@click.option("--yes", is_flag=True, help="Confirm: personal data is deleted for good.")
def cancel(account_ref: str, yes: bool) -> None:
    """Cancel (注销) ACCOUNT: delete its personal data and bindings, end its sessions, keep its
    audit trail. It cannot be undone."""
    from gateway.accounts import get_accounts
    from gateway.sessions import get_sessions

    if not yes:
        raise OperatorInputError("cancel: personal data is deleted for good; add --yes")
    app = operator_app()
    accounts = get_accounts(app)
    view = _run(lambda: accounts.cancel(account_ref, at=now(app)))
    ended = get_sessions(app).store.delete_for_account(accounts.find(view.id).id)
    audit_operator(app, "account_cancelled", account=view.id, detail=f"ended {ended} session(s)")
    _show(view)
