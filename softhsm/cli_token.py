"""`certgate softhsm`: SoftHSM token provisioning.

Every command works on one token directory: ``--dir``, else ``$CERTGATE_SOFTHSM_DIR``, else
``~/.local/share/certgate/softhsm``. Refused input (unknown label, wrong PIN, full token, missing
PKI folder, SoftHSM not installed) prints one ``Error: ...`` line and exits with status 2.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from softhsm.kit import (
    KEY_TYPES,
    SOFTHSM_MODULE,
    ProvisionedCertificate,
    SoftHsmError,
    SoftHsmKit,
    SoftHsmToken,
    open_pki,
)
from softhsm.sm2_ukey import (
    DEFAULT_MAX_TRIES,
    SM2_MECHANISM,
    SM2_SM3_MECHANISM,
    Sm2UkeyDirectory,
)
from softhsm.sm2_ukey import DIRECTORY_ENVIRONMENT_VARIABLE as SM2_DIRECTORY_ENVIRONMENT_VARIABLE

DEFAULT_DIRECTORY = Path("~/.local/share/certgate/softhsm")
DIRECTORY_ENVIRONMENT_VARIABLE = "CERTGATE_SOFTHSM_DIR"
MODULE_ENVIRONMENT_VARIABLE = "CERTGATE_SOFTHSM_MODULE"
USAGE_ERROR_EXIT_CODE = 2

Command = TypeVar("Command", bound=Callable[..., Any])


class RefusedInput(click.ClickException):
    """One ``Error: ...`` line on stderr and exit status 2."""

    exit_code = USAGE_ERROR_EXIT_CODE


def kit_options(command: Command) -> Command:
    command = click.option(
        "--module",
        envvar=MODULE_ENVIRONMENT_VARIABLE,
        default=SOFTHSM_MODULE,
        show_default=True,
        help=f"SoftHSM PKCS#11 module (or ${MODULE_ENVIRONMENT_VARIABLE}).",
    )(command)
    command = click.option(
        "--dir",
        "directory",
        envvar=DIRECTORY_ENVIRONMENT_VARIABLE,
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DIRECTORY,
        show_default=True,
        help=f"Token directory (or ${DIRECTORY_ENVIRONMENT_VARIABLE}).",
    )(command)
    return command


def _kit(directory: Path, module: str) -> SoftHsmKit:
    return SoftHsmKit(directory, module=module)


def _export_line(kit: SoftHsmKit) -> str:
    return f"export SOFTHSM2_CONF={shlex.quote(kit.environ()['SOFTHSM2_CONF'])}"


def _parse_moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RefusedInput(f"--not-before {value!r} is not an ISO 8601 date or time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@click.group()
def softhsm() -> None:
    """Create SoftHSM tokens holding test certificates and their keys."""


@softhsm.command("init")
@click.option("--label", required=True, help="Token label (at most 32 bytes).")
@click.option("--pin", required=True, help="User PIN (4 to 255 characters).")
@click.option("--so-pin", required=True, help="Security officer PIN.")
@kit_options
def init_command(label: str, pin: str, so_pin: str, directory: Path, module: str) -> None:
    """Create a token in the token directory."""
    kit = _kit(directory, module)
    try:
        token = kit.init_token(label, pin, so_pin)
    except SoftHsmError as error:
        raise RefusedInput(error.message) from error
    click.echo(f"Token {token.label!r} created in slot {token.slot_id} (serial {token.serial}).")
    click.echo(_export_line(kit))


def certificate_subject_options(command: Command) -> Command:
    """The options both issue commands share: the test PKI and whom the certificate is for."""
    options = (
        click.option(
            "--pki",
            "pki_directory",
            required=True,
            type=click.Path(path_type=Path),
            help="Test PKI folder (certgate pki init).",
        ),
        click.option("--kind", required=True, type=click.Choice(["person", "enterprise"])),
        click.option(
            "--name", required=True, help="Real name of the person or name of the enterprise."
        ),
        click.option("--id-number", help="ID-card number (person certificates)."),
        click.option("--uscc", help="Unified social credit code (enterprise certificates)."),
        click.option("--valid-days", type=int, default=365, show_default=True),
        click.option("--not-before", help="Start of validity, ISO 8601 (default: now)."),
    )
    for option in reversed(options):
        command = option(command)
    return command


@softhsm.command("issue")
@click.option("--label", required=True, help="Label of the token that receives the key pair.")
@click.option("--pin", required=True, help="User PIN of the token.")
@certificate_subject_options
@click.option("--key", type=click.Choice(KEY_TYPES), default="rsa2048", show_default=True)
@click.option(
    "--ca",
    type=click.Choice(["rsa", "p256", "sm2"]),
    default="rsa",
    show_default=True,
    help="Issuing CA (sm2 signs SM2-with-SM3; SoftHSM itself holds no SM2 keys).",
)
@click.option("--object-label", help="CKA_LABEL of key pair and certificate (default: --name).")
@kit_options
def issue_command(
    label: str,
    pin: str,
    pki_directory: Path,
    kind: str,
    name: str,
    id_number: str | None,
    uscc: str | None,
    valid_days: int,
    not_before: str | None,
    key: str,
    ca: str,
    object_label: str | None,
    directory: Path,
    module: str,
) -> None:
    """Generate a key pair on a token and store its test-CA certificate next to it."""
    kit = _kit(directory, module)
    try:
        pki = open_pki(pki_directory)
        provisioned = kit.issue(
            label=label,
            pin=pin,
            pki=pki,
            kind=kind,
            name=name,
            id_number=id_number,
            uscc=uscc,
            key=key,
            ca=ca,
            valid_days=valid_days,
            not_before=_parse_moment(not_before),
            object_label=object_label,
        )
    except SoftHsmError as error:
        raise RefusedInput(error.message) from error
    _echo_provisioned(provisioned)
    click.echo(_export_line(kit))


def _echo_provisioned(provisioned: ProvisionedCertificate) -> None:
    certificate = provisioned.certificate
    click.echo(
        f"Stored {provisioned.key} key pair and certificate on token "
        f"{provisioned.token_label!r}: CKA_ID {provisioned.cert_id.hex()}, "
        f"label {provisioned.label!r}"
    )
    click.echo(f"  subject  {certificate.subject.rfc4514_string()}")
    click.echo(f"  serial   {certificate.serial_number:x}")
    click.echo(
        f"  valid    {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC to "
        f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    )
    click.echo(f"  PEM      {provisioned.cert_path} (chain {provisioned.chain_path})")


@softhsm.command("list")
@click.option("--label", help="Show only this token.")
@click.option("--pin", help="User PIN: log in to show private keys too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kit_options
def list_command(
    label: str | None, pin: str | None, as_json: bool, directory: Path, module: str
) -> None:
    """Show tokens, their certificates and keys."""
    kit = _kit(directory, module)
    try:
        tokens = kit.list_tokens(label=label, pin=pin)
    except SoftHsmError as error:
        raise RefusedInput(error.message) from error
    if as_json:
        listing = {
            "softhsm2_conf": str(kit.conf_path),
            "tokens": [token_as_json(token) for token in tokens],
        }
        click.echo(json.dumps(listing, ensure_ascii=False, indent=2))
        return
    click.echo(f"Token directory {kit.directory}")
    click.echo(_export_line(kit))
    if not tokens:
        click.echo("No tokens yet: certgate softhsm init --label ... --pin ... --so-pin ...")
    for token in tokens:
        _echo_token(token)


def token_as_json(token: SoftHsmToken) -> dict[str, Any]:
    return {
        "label": token.label,
        "serial": token.serial,
        "slot_id": token.slot_id,
        "model": token.model,
        "logged_in": token.logged_in,
        "certificates": [
            {
                "cert_id": certificate.cert_id.hex(),
                "label": certificate.label,
                "subject": certificate.subject,
                "issuer": certificate.issuer,
                "serial": f"{certificate.serial_number:x}",
                "not_after": certificate.not_after.isoformat(),
            }
            for certificate in token.certificates
        ],
        "keys": [
            {
                "cert_id": key.cert_id.hex(),
                "label": key.label,
                "key_class": key.key_class,
                "key_type": key.key_type,
                "sensitive": key.sensitive,
                "extractable": key.extractable,
            }
            for key in token.keys
        ],
    }


def _echo_token(token: SoftHsmToken) -> None:
    click.echo(
        f"\nToken {token.label!r}  slot {token.slot_id}  serial {token.serial}  ({token.model})"
    )
    for certificate in token.certificates:
        click.echo(
            f"  certificate  {certificate.cert_id.hex()}  {certificate.label!r}  "
            f"{certificate.subject}  until {certificate.not_after:%Y-%m-%d}"
        )
    for key in token.keys:
        protection = ""
        if key.key_class == "private":
            protection = "  " + ", ".join(
                (
                    "sensitive" if key.sensitive else "not sensitive",
                    "extractable" if key.extractable else "not extractable",
                )
            )
        click.echo(
            f"  {key.key_class + ' key':<11}  {key.cert_id.hex()}  {key.label!r}  "
            f"{key.key_type}{protection}"
        )
    if not token.logged_in:
        click.echo("  (private keys are shown with --pin)")


@softhsm.command("delete")
@click.option("--label", required=True, help="Label of the token to delete.")
@kit_options
def delete_command(label: str, directory: Path, module: str) -> None:
    """Delete a token with its keys and certificates (the USB key is gone)."""
    kit = _kit(directory, module)
    try:
        kit.delete_token(label)
    except SoftHsmError as error:
        raise RefusedInput(error.message) from error
    click.echo(f"Token {label!r} deleted.")


@softhsm.command("env")
@kit_options
def env_command(directory: Path, module: str) -> None:
    """Print the export line that points PKCS#11 tools at the token directory."""
    click.echo(_export_line(_kit(directory, module)))


# ---- SM2 USB keys (softhsm/sm2_ukey.py): SoftHSM has no SM2, so a module of our own stands in


DEFAULT_SM2_DIRECTORY = Path("~/.local/share/certgate/sm2-ukey")


def sm2_directory_option(command: Command) -> Command:
    return click.option(
        "--dir",
        "directory",
        envvar=SM2_DIRECTORY_ENVIRONMENT_VARIABLE,
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_SM2_DIRECTORY,
        show_default=True,
        help=f"SM2 token directory (or ${SM2_DIRECTORY_ENVIRONMENT_VARIABLE}).",
    )(command)


def _sm2_export_lines(ukeys: Sm2UkeyDirectory) -> list[str]:
    return [
        f"export {SM2_DIRECTORY_ENVIRONMENT_VARIABLE}={shlex.quote(str(ukeys.directory))}",
        f"# module {shlex.quote(str(ukeys.module_path))}: SM2 with SM3 as mechanism "
        f"{SM2_SM3_MECHANISM:#x} (certgate agent serve --module ... --sm2-mechanism "
        f"{SM2_SM3_MECHANISM:#x}), bare SM2 over e as {SM2_MECHANISM:#x}",
    ]


@softhsm.command("sm2-init")
@click.option("--label", required=True, help="Token label (at most 32 bytes).")
@click.option("--pin", required=True, help="User PIN (4 to 64 bytes).")
@click.option(
    "--max-tries",
    type=int,
    default=DEFAULT_MAX_TRIES,
    show_default=True,
    help="Wrong PINs in a row that lock the token.",
)
@sm2_directory_option
def sm2_init_command(label: str, pin: str, max_tries: int, directory: Path) -> None:
    """Create an SM2 USB key (and build its PKCS#11 module on first use)."""
    ukeys = Sm2UkeyDirectory(directory)
    try:
        module = ukeys.module()
        token = ukeys.init_token(label, pin, max_tries=max_tries)
    except SoftHsmError as error:
        raise RefusedInput(error.message) from error
    click.echo(
        f"SM2 token {token.label!r} created in slot {token.slot_id} (serial {token.serial}, "
        f"locks after {token.max_tries} wrong PINs); module {module}."
    )
    for line in _sm2_export_lines(ukeys):
        click.echo(line)


@softhsm.command("sm2-issue")
@click.option("--label", required=True, help="Label of the SM2 token that receives the key.")
@click.option("--pin", required=True, help="User PIN of the token.")
@certificate_subject_options
@click.option(
    "--ca",
    type=click.Choice(["sm2", "rsa", "p256"]),
    default="sm2",
    show_default=True,
    help="Issuing CA (sm2: SM2-with-SM3 all the way to the RSA root's SM2 CA).",
)
@click.option("--object-label", help="CKA_LABEL of key and certificate (default: --name).")
@sm2_directory_option
def sm2_issue_command(
    label: str,
    pin: str,
    pki_directory: Path,
    kind: str,
    name: str,
    id_number: str | None,
    uscc: str | None,
    valid_days: int,
    not_before: str | None,
    ca: str,
    object_label: str | None,
    directory: Path,
) -> None:
    """Put an SM2 key on an SM2 token with its certificate from the test PKI."""
    ukeys = Sm2UkeyDirectory(directory)
    try:
        pki = open_pki(pki_directory)
        provisioned = ukeys.issue(
            label=label,
            pin=pin,
            pki=pki,
            kind=kind,
            name=name,
            id_number=id_number,
            uscc=uscc,
            ca=ca,
            valid_days=valid_days,
            not_before=_parse_moment(not_before),
            object_label=object_label,
        )
    except SoftHsmError as error:
        raise RefusedInput(error.message) from error
    certificate = provisioned.certificate
    click.echo(
        f"Stored sm2 key and certificate on SM2 token {provisioned.token_label!r}: "
        f"CKA_ID {provisioned.cert_id.hex()}, label {provisioned.label!r}"
    )
    click.echo(f"  subject  {certificate.subject.rfc4514_string()}")
    click.echo(f"  issuer   {certificate.issuer.rfc4514_string()}")
    click.echo(f"  serial   {certificate.serial_number:x}")
    click.echo(f"  PEM      {provisioned.cert_path} (chain {provisioned.chain_path})")
    for line in _sm2_export_lines(ukeys):
        click.echo(line)


@softhsm.command("sm2-list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@sm2_directory_option
def sm2_list_command(as_json: bool, directory: Path) -> None:
    """Show the SM2 tokens, their PIN counters and certificates."""
    ukeys = Sm2UkeyDirectory(directory)
    tokens = ukeys.list_tokens()
    if as_json:
        listing = {
            "directory": str(ukeys.directory),
            "module": str(ukeys.module_path),
            "tokens": [
                {
                    "label": token.label,
                    "serial": token.serial,
                    "slot_id": token.slot_id,
                    "max_tries": token.max_tries,
                    "pin_failures": token.pin_failures,
                    "certificates": [
                        {
                            "cert_id": entry.cert_id.hex(),
                            "label": entry.label,
                            "subject": entry.certificate.subject.rfc4514_string(),
                            "has_private_key": entry.has_private_key,
                        }
                        for entry in token.certificates
                    ],
                }
                for token in tokens
            ],
        }
        click.echo(json.dumps(listing, ensure_ascii=False, indent=2))
        return
    for line in _sm2_export_lines(ukeys):
        click.echo(line)
    if not tokens:
        click.echo("No SM2 tokens yet: certgate softhsm sm2-init --label ... --pin ...")
    for token in tokens:
        click.echo(
            f"\nSM2 token {token.label!r}  slot {token.slot_id}  serial {token.serial}  "
            f"wrong PINs {token.pin_failures}/{token.max_tries}"
        )
        for entry in token.certificates:
            kind = "key + certificate" if entry.has_private_key else "certificate"
            click.echo(
                f"  {kind:<17}  {entry.cert_id.hex()}  {entry.label!r}  "
                f"{entry.certificate.subject.rfc4514_string()}"
            )


@softhsm.command("sm2-delete")
@click.option("--label", required=True, help="Label of the SM2 token to delete.")
@sm2_directory_option
def sm2_delete_command(label: str, directory: Path) -> None:
    """Delete an SM2 token with its keys and certificates (the USB key is gone)."""
    try:
        Sm2UkeyDirectory(directory).delete_token(label)
    except SoftHsmError as error:
        raise RefusedInput(error.message) from error
    click.echo(f"SM2 token {label!r} deleted.")
