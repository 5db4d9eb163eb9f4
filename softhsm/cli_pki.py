"""`certgate pki`: create, use and serve a test PKI (softhsm.pki).

Refused input (missing PKI folder, invalid identifier, unknown serial, bad date, ...) prints one
``Error: ...`` line on stderr and exits with status 2.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from softhsm.pki import (
    CA_NAMES,
    INTERMEDIATE_CAS,
    REVOCATION_REASONS,
    IssuedCertificate,
    PkiError,
    PkiInputError,
    TestPki,
    UnknownSerial,
)
from softhsm.pki_files import PRIVATE_FILE_MODE, serial_hex, write_atomically
from softhsm.pki_sm2 import private_key_pem

USAGE_ERROR_STATUS = 2
TEST_ONLY_WARNING = (
    "WARNING: this is a TEST PKI. Its private keys are stored UNENCRYPTED in {directory}; "
    "never trust it outside tests."
)


def fail(message: str) -> NoReturn:
    """One clear line on stderr, exit status 2."""
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    sys.exit(USAGE_ERROR_STATUS)


class PkiCommandGroup(click.Group):
    """Turns every refusal, click's own usage errors included, into one line and status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            fail(error.format_message())
        except PkiError as error:
            fail(str(error))


def parse_moment(option: str, value: str | None) -> datetime | None:
    """ISO 8601 date or date-time; no zone means UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PkiInputError(
            f"invalid {option} {value!r}: use ISO 8601, e.g. 2026-01-01T00:00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse_serial(pki: TestPki, text: str) -> int:
    """A serial as `pki issue` prints it: hex (0x prefix and colons allowed) or decimal."""
    cleaned = text.strip().replace(":", "")
    candidates: list[int] = []
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    elif cleaned.isdigit():
        candidates.append(int(cleaned))
    try:
        candidates.append(int(cleaned, 16))
    except ValueError:
        raise PkiInputError(f"invalid serial {text!r}: give it in hex or decimal") from None
    known = pki.issued_serials()
    for serial in candidates:
        if serial in known:
            return serial
    raise UnknownSerial(f"no certificate with serial {text} in {pki.directory}")


def load_public_key(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PkiInputError(f"cannot read public key {path}: {error.strerror}") from None
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        raise PkiInputError(f"{path} holds no PEM public key") from None


def directory_argument(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("directory", type=click.Path(path_type=Path))(function)


@click.group(cls=PkiCommandGroup)
def pki() -> None:
    """Create and run a test PKI (root and intermediate CAs, CRLs, OCSP)."""


@pki.command()
@directory_argument
@click.option("--host", default="127.0.0.1", show_default=True, help="Host in CRL/OCSP URLs.")
@click.option("--crl-port", type=int, default=18701, show_default=True)
@click.option(
    "--ocsp-port",
    type=int,
    default=18702,
    show_default=True,
    help="First OCSP port: rsa, p256 and root responders use this port and the next two.",
)
@click.option("--crl-days", type=int, default=7, show_default=True, help="CRL nextUpdate.")
@click.option("--at", "at_text", help="Creation time (ISO 8601); default now.")
def init(
    directory: Path, host: str, crl_port: int, ocsp_port: int, crl_days: int, at_text: str | None
) -> None:
    """Create a test PKI in DIRECTORY: root CA, RSA-2048 and P-256 intermediates, CRLs, OCSP."""
    if crl_days < 1:
        raise PkiInputError(f"--crl-days must be at least 1, not {crl_days}")
    created = TestPki.create(
        directory,
        crl_port=crl_port,
        ocsp_port=ocsp_port,
        host=host,
        at=parse_moment("--at", at_text),
        crl_validity=timedelta(days=crl_days),
    )
    click.echo(f"Created a test PKI in {directory}")
    for ca in CA_NAMES:
        click.echo(f"  {ca:<5} CA {created.ca_certificate_path(ca)}")
    _echo_urls(created)
    click.echo(TEST_ONLY_WARNING.format(directory=directory))


@pki.command()
@directory_argument
@click.option("--kind", type=click.Choice(["person", "enterprise"]), required=True)
@click.option("--name", required=True, help="Person's or enterprise's name (CN, and O).")
@click.option("--id-number", help="ID-card number (person), GB 11643-1999.")
@click.option("--uscc", help="Unified social credit code (enterprise), GB 32100-2015.")
@click.option(
    "--key",
    type=click.Choice(["rsa2048", "p256", "ed25519", "sm2"]),
    default="rsa2048",
    show_default=True,
    help="Key of the certificate (sm2: an SM2 key, usually with --ca sm2).",
)
@click.option("--ca", type=click.Choice(INTERMEDIATE_CAS), default="rsa", show_default=True)
@click.option("--valid-days", type=int, default=365, show_default=True)
@click.option("--not-before", "not_before_text", help="ISO 8601; default now.")
@click.option(
    "--public-key",
    type=click.Path(path_type=Path),
    help="PEM public key held elsewhere (a token); no private key is made.",
)
@click.option("--common-name", help="CN instead of the name, e.g. CFCA-style 041@0<ID>@<name>@1.")
@click.option(
    "--identity-in",
    type=click.Choice(["extension", "subject", "both"]),
    default="extension",
    show_default=True,
    help="Where the 1.2.156.10260.4.1.x identifier goes.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Also write the certificate here (and a new private key to OUT.key).",
)
def issue(
    directory: Path,
    kind: str,
    name: str,
    id_number: str | None,
    uscc: str | None,
    key: str,
    ca: str,
    valid_days: int,
    not_before_text: str | None,
    public_key: Path | None,
    common_name: str | None,
    identity_in: str,
    out: Path | None,
) -> None:
    """Issue a client certificate shaped like a Chinese CA's."""
    test_pki = TestPki.open(directory)
    if (id_number is None) == (uscc is None):
        raise PkiInputError("give exactly one of --id-number (person) or --uscc (enterprise)")
    issued = test_pki.issue(
        kind,  # type: ignore[arg-type]
        name,
        id_number=id_number,
        uscc=uscc,
        key=key,  # type: ignore[arg-type]
        ca=ca,
        valid_days=valid_days,
        not_before=parse_moment("--not-before", not_before_text),
        public_key=load_public_key(public_key) if public_key else None,
        common_name=common_name,
        identity_in=identity_in,  # type: ignore[arg-type]
    )
    _echo_issued(issued)
    if out is not None:
        _write_out(issued, out)


def _echo_issued(issued: IssuedCertificate) -> None:
    click.echo(f"serial       {serial_hex(issued.serial)} ({issued.serial})")
    click.echo(f"certificate  {issued.cert_path}")
    click.echo(f"chain        {issued.chain_path}")
    if issued.key_path is not None:
        click.echo(f"private key  {issued.key_path} (unencrypted)")


def _write_out(issued: IssuedCertificate, out: Path) -> None:
    write_atomically(out, issued.cert_path.read_bytes())
    click.echo(f"written      {out}")
    if issued.private_key is not None:
        key_out = Path(f"{out}.key")
        write_atomically(key_out, private_key_pem(issued.private_key), PRIVATE_FILE_MODE)
        click.echo(f"written      {key_out} (unencrypted)")


@pki.command()
@directory_argument
@click.argument("serial")
@click.option(
    "--reason",
    type=click.Choice(list(REVOCATION_REASONS)),
    default="unspecified",
    show_default=True,
)
@click.option("--at", "at_text", help="Revocation time (ISO 8601); default now.")
def revoke(directory: Path, serial: str, reason: str, at_text: str | None) -> None:
    """Revoke SERIAL (hex as printed by `issue`, or decimal): new CRL, OCSP says revoked."""
    at = parse_moment("--at", at_text)
    test_pki = TestPki.open(directory)
    serial_number = parse_serial(test_pki, serial)
    test_pki.revoke(serial_number, reason=reason, at=at)
    ca = test_pki.issuing_ca(serial_number)
    crl_number = test_pki.crl(ca).extensions.get_extension_for_class(x509.CRLNumber)
    click.echo(f"revoked      {serial_hex(serial_number)} ({reason})")
    click.echo(f"CRL          {test_pki.crl_path(ca)} (number {crl_number.value.crl_number})")


@pki.command(name="list")
@directory_argument
def list_certificates(directory: Path) -> None:
    """List every certificate the PKI issued, with its status."""
    test_pki = TestPki.open(directory)
    for serial, record in sorted(test_pki.issued_serials().items()):
        status = f"revoked {record['revoked_at']}" if record.get("revoked_at") else "valid"
        click.echo(
            f"{serial_hex(serial)}  {record['ca']:<5} {record['kind']:<11} {status:<8} "
            f"{record['subject']}"
        )


@pki.command()
@directory_argument
def serve(directory: Path) -> None:
    """Serve the CRLs over HTTP and run the OCSP responders until Ctrl-C."""
    test_pki = TestPki.open(directory)
    with _stop_requested_by_signals() as stop_requested, test_pki.serve():
        _echo_urls(test_pki)
        click.echo(f"Serving the test PKI in {directory}; press Ctrl-C to stop.")
        while not stop_requested.wait(0.5):
            pass
    click.echo("Stopped.")


def _echo_urls(test_pki: TestPki) -> None:
    for ca in CA_NAMES:
        click.echo(f"  {ca:<5} CRL  {test_pki.crl_url(ca)}")
    for ca in CA_NAMES:
        click.echo(f"  {ca:<5} OCSP {test_pki.ocsp_url(ca)}")


@contextmanager
def _stop_requested_by_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM; the previous handlers come back afterwards."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop_requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
