"""``certgate agent``: the local signing agent, token listing and a command-line login."""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from certs.errors import DEFAULT_LANGUAGE, LANGUAGES
from tokens.agent import DEFAULT_PORT, LOOPBACK_HOST, AgentConfig, AgentConfigError, SigningAgent
from tokens.errors import TokenError
from tokens.login_client import error_code, login
from tokens.pkcs11 import TokenLibrary
from tokens.sm2 import Sm2Input, Sm2Mechanism

PIN_ENVIRONMENT_VARIABLE = "CERTGATE_PIN"

Command = TypeVar("Command", bound=Callable[..., Any])

module_option = click.option(
    "--module",
    "modules",
    multiple=True,
    metavar="PATH",
    help="PKCS#11 module (repeatable; default: the platform's usual SoftHSM/OpenSC location).",
)


def sm2_options(command: Command) -> Command:
    """``--sm2-mechanism`` and its companions: how the ``--module``s sign with SM2 keys."""
    command = click.option(
        "--sm2-signer-id",
        metavar="ID",
        help="SM2 signer ID (Z_A); must match the gateway's trust anchor. "
        "Default 1234567812345678.",
    )(command)
    command = click.option(
        "--sm2-input",
        type=click.Choice([item.value for item in Sm2Input]),
        default=Sm2Input.MESSAGE.value,
        show_default=True,
        help="message: the token computes Z_A and SM3 (usual UKeys); "
        "digest: the token signs e = SM3(Z_A || M).",
    )(command)
    command = click.option(
        "--sm2-mechanism",
        metavar="NUMBER",
        help="Vendor-defined PKCS#11 mechanism the --module(s) offer SM2 under, e.g. 0x80008101.",
    )(command)
    return command


def _sm2_mechanism(
    mechanism: str | None, sm2_input: str, signer_id: str | None
) -> Sm2Mechanism | None:
    if mechanism is None:
        if signer_id is not None:
            raise click.UsageError("--sm2-signer-id needs --sm2-mechanism")
        return None
    try:
        return Sm2Mechanism.parse(mechanism, sm2_input, signer_id)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--sm2-mechanism") from None


def _library(modules: tuple[str, ...], sm2: Sm2Mechanism | None) -> TokenLibrary:
    if sm2 is not None and not modules:
        raise click.UsageError("--sm2-mechanism needs the --module it applies to")
    return TokenLibrary(modules or None, {path: sm2 for path in modules} if sm2 else None)


language_option = click.option(
    "--lang",
    "language",
    type=click.Choice(LANGUAGES),
    default=DEFAULT_LANGUAGE,
    show_default=True,
    help="Language of error messages.",
)


def _fail(error: TokenError, language: str) -> NoReturn:
    click.echo(f"error: {error_code(error)}: {error.message(language)}", err=True)
    sys.exit(1)


@click.group()
def agent() -> None:
    """The local signing agent for USB keys (PKCS#11) and a command-line login."""


@agent.command()
@module_option
@click.option(
    "--allow-origin",
    "allow_origins",
    multiple=True,
    metavar="ORIGIN",
    help="Web origin allowed to use the agent, e.g. https://login.example.com (repeatable).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file with allow_origins = [...], modules = [...], port = N.",
)
@click.option("--host", default=LOOPBACK_HOST, show_default=True, help="Only 127.0.0.1.")
@click.option("--port", type=int, default=None, help=f"TCP port (default {DEFAULT_PORT}; 0: any).")
@click.option("--no-pcsc", is_flag=True, help="Do not watch PC/SC readers.")
@sm2_options
def serve(
    modules: tuple[str, ...],
    allow_origins: tuple[str, ...],
    config_file: Path | None,
    host: str,
    port: int | None,
    no_pcsc: bool,
    sm2_mechanism: str | None,
    sm2_input: str,
    sm2_signer_id: str | None,
) -> None:
    """Serve the signing agent on http://127.0.0.1:PORT until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = AgentConfig.build(
            allow_origins=allow_origins,
            modules=modules,
            config_file=config_file,
            host=host,
            port=port,
            sm2_mechanism=_sm2_mechanism(sm2_mechanism, sm2_input, sm2_signer_id),
        )
    except AgentConfigError as error:
        raise click.UsageError(str(error)) from error
    try:
        library = TokenLibrary(config.modules or None, config.sm2)
        signing_agent = SigningAgent(config, library, use_pcsc=not no_pcsc)
        signing_agent.bind()
    except TokenError as error:
        _fail(error, DEFAULT_LANGUAGE)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{config.port}: {error}") from error
    # Ctrl-C and SIGTERM (a service manager's stop) both end the agent the same orderly way,
    # also when it was started with SIGINT ignored (a background job of a script). Set before the
    # "listening" line, so that whoever waits for that line can stop the agent at once.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # `kill -USR1 <pid>` prints every thread's stack to standard error: what a stuck agent is
    # waiting for, without stopping it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        for module in library.modules:
            if module.sm2 is not None:
                click.echo(f"SM2 on {module.path}: mechanism {module.sm2.describe()}", err=True)
        click.echo(
            f"certgate agent listening on {signing_agent.url} "
            f"(modules: {', '.join(m.path for m in library.modules)}; "
            f"origins: {', '.join(sorted(config.allowed_origins))})",
            err=True,
        )
        signing_agent.serve_forever()  # returns after Ctrl-C
    except KeyboardInterrupt:  # one that came before serving began, or during the stop
        signing_agent.stop()
    click.echo("certgate agent stopped", err=True)


@agent.command(name="tokens")
@module_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@language_option
def list_tokens(modules: tuple[str, ...], as_json: bool, language: str) -> None:
    """List slots, tokens (with their PIN flags) and login certificates."""
    try:
        library = TokenLibrary(modules or None)
        tokens = library.tokens()
        slots = library.slots()
        certificates = library.certificates()
    except TokenError as error:
        _fail(error, language)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "slots": [
                        {
                            "module": slot.module,
                            "slot_id": slot.slot_id,
                            "description": slot.description,
                            "token_label": slot.token.label if slot.token else None,
                        }
                        for slot in slots
                    ],
                    "tokens": [token.describe() for token in tokens],
                    "certificates": [entry.describe() for entry in certificates],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    for token in tokens:
        flags = [
            name
            for name, on in (
                ("pin-count-low", token.pin.count_low),
                ("pin-final-try", token.pin.final_try),
                ("pin-locked", token.pin.locked),
            )
            if on
        ]
        click.echo(
            f"token {token.label!r} serial {token.serial} slot {token.slot_id}"
            + (f" [{', '.join(flags)}]" if flags else "")
        )
        for entry in certificates:
            if entry.token == token:
                click.echo(
                    f"  {entry.cert_id.hex()}  {entry.key_type}  "
                    f"{entry.certificate.subject.rfc4514_string()}"
                )


def _read_pin(pin_file: Path | None) -> str:
    if pin_file is not None:
        return pin_file.read_text(encoding="utf-8").rstrip("\r\n")
    from_environment = os.environ.get(PIN_ENVIRONMENT_VARIABLE)
    if from_environment:
        return from_environment
    return str(click.prompt("PIN", hide_input=True, err=True))


@agent.command(name="login")
@click.argument("url")
@click.option("--token", "token_label", metavar="LABEL", help="Token label.")
@click.option("--cert-id", metavar="HEX", help="CKA_ID of the certificate (hex).")
@click.option(
    "--pin-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"File holding the PIN (else ${PIN_ENVIRONMENT_VARIABLE}, else a prompt).",
)
@click.option("--origin", help="Origin to sign for when the gateway's public origin is not URL's.")
@click.option(
    "--signature-algorithm",
    type=click.Choice(["rsa-pkcs1-sha256", "rsa-pss-sha256", "ecdsa-sha256", "ed25519", "sm2-sm3"]),
    help="Signature algorithm (default: the key type's first).",
)
@module_option
@sm2_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@language_option
def login_command(
    url: str,
    token_label: str | None,
    cert_id: str | None,
    pin_file: Path | None,
    origin: str | None,
    signature_algorithm: str | None,
    modules: tuple[str, ...],
    sm2_mechanism: str | None,
    sm2_input: str,
    sm2_signer_id: str | None,
    as_json: bool,
    language: str,
) -> None:
    """Log in to the gateway at URL with a certificate on a token (challenge login)."""
    try:
        cert_id_bytes = bytes.fromhex(cert_id) if cert_id is not None else None
    except ValueError:
        raise click.BadParameter("not hex", param_hint="--cert-id") from None
    sm2 = _sm2_mechanism(sm2_mechanism, sm2_input, sm2_signer_id)
    try:
        library = _library(modules, sm2)
        result = login(
            url,
            library,
            _read_pin(pin_file),
            token_label=token_label,
            cert_id=cert_id_bytes,
            origin=origin,
            signature_algorithm=signature_algorithm,
        )
    except TokenError as error:
        _fail(error, language)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "account": result.account,
                    "amr": result.amr,
                    "session": result.session_cookies,
                },
                ensure_ascii=False,
            )
        )
        return
    account = result.account
    details = ", ".join(
        f"{key} {account[key]}" for key in ("kind", "id", "uscc") if account.get(key)
    )
    click.echo(f"account: {account.get('display_name', '?')} ({details})")
    for name, value in result.session_cookies.items():
        click.echo(f"cookie: {name}={value}")
