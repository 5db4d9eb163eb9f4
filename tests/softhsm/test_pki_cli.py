"""`certgate pki` through click's CliRunner: every command, every refusal (status 2, one line)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.cli import main
from softhsm.pki import TestPki
from softhsm.pki_files import serial_hex
from tests.fixtures_pki import create_test_pki, free_port, free_port_block

USCC = "9144030071526726XG"
ID_NUMBER = "360426199101010071"


def certgate(*arguments: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in arguments], catch_exceptions=False)


@pytest.fixture(scope="module")
def cli_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return create_test_pki(tmp_path_factory.mktemp("cli-pki"))


def issued_serial(result: Result) -> int:
    line = next(row for row in result.stdout.splitlines() if row.startswith("serial"))
    return int(line.split("(")[1].rstrip(")"))


def test_init_creates_the_pki_and_warns(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    crl_port, ocsp_port = free_port(), free_port_block(4)
    result = certgate(
        "pki", "init", directory, "--crl-port", crl_port, "--ocsp-port", ocsp_port,
        "--at", "2026-01-01T00:00:00Z", "--crl-days", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "UNENCRYPTED" in result.stdout
    assert f"http://127.0.0.1:{ocsp_port + 2}/" in result.stdout
    pki = TestPki.open(directory)
    assert pki.crl_port == crl_port
    crl = pki.crl("root")
    assert crl.next_update_utc - crl.last_update_utc == pki.crl_validity
    assert pki.crl_validity.days == 3


def test_issue_enterprise_prints_serial_and_files(cli_pki: TestPki, tmp_path: Path) -> None:
    out = tmp_path / "enterprise.pem"
    result = certgate(
        "pki", "issue", cli_pki.directory, "--kind", "enterprise", "--name", "深圳某公司",
        "--uscc", USCC, "--key", "p256", "--ca", "p256", "--valid-days", "30",
        "--not-before", "2026-02-01", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    serial = issued_serial(result)
    assert serial_hex(serial) in result.stdout
    certificate = x509.load_pem_x509_certificate(out.read_bytes())
    assert certificate.serial_number == serial
    assert certificate.not_valid_before_utc.isoformat() == "2026-02-01T00:00:00+00:00"
    assert stat.S_IMODE(Path(f"{out}.key").stat().st_mode) == 0o600
    assert cli_pki.issuing_ca(serial) == "p256"


def test_issue_sm2_key_under_the_sm2_ca_verifies_with_openssl(
    cli_pki: TestPki, tmp_path: Path
) -> None:
    out = tmp_path / "sm2.pem"
    result = certgate(
        "pki", "issue", cli_pki.directory, "--kind", "person", "--name", "张三",
        "--id-number", ID_NUMBER, "--key", "sm2", "--ca", "sm2", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    certificate = x509.load_pem_x509_certificate(out.read_bytes())
    assert certificate.signature_algorithm_oid.dotted_string == "1.2.156.10197.1.501"
    assert cli_pki.crl("sm2").signature_algorithm_oid.dotted_string == "1.2.156.10197.1.501"

    def openssl(*arguments: str | Path) -> str:
        done = subprocess.run(
            ["openssl", *map(str, arguments)], capture_output=True, text=True, timeout=30
        )
        return done.stdout + done.stderr

    verdict = openssl(
        "verify", "-vfyopt", "distid:1234567812345678",
        "-CAfile", cli_pki.ca_certificate_path("root"),
        "-untrusted", cli_pki.ca_certificate_path("sm2"), out,
    )  # fmt: skip
    assert verdict.strip() == f"{out}: OK", verdict
    # The key file is the certificate's key, in a PEM OpenSSL reads.
    assert openssl("pkey", "-in", f"{out}.key", "-pubout") == openssl(
        "x509", "-in", out, "-pubkey", "-noout"
    )


def test_issue_for_a_public_key_file(cli_pki: TestPki, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "token.pub.pem"
    key_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    result = certgate(
        "pki", "issue", cli_pki.directory, "--kind", "person", "--name", "张三",
        "--id-number", ID_NUMBER.lower(), "--public-key", key_file, "--identity-in", "both",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "private key" not in result.stdout
    assert cli_pki.certificate(issued_serial(result)).public_key() == key.public_key()


@pytest.mark.parametrize("spelling", ["hex", "0x", "decimal"])
def test_revoke_by_serial_in_any_spelling(cli_pki: TestPki, spelling: str) -> None:
    serial = cli_pki.issue("person", "李四", id_number=ID_NUMBER).serial
    text = {"hex": serial_hex(serial), "0x": f"0x{serial:x}", "decimal": str(serial)}[spelling]
    result = certgate("pki", "revoke", cli_pki.directory, text, "--reason", "superseded")
    assert result.exit_code == 0, result.output
    assert f"revoked      {serial_hex(serial)} (superseded)" in result.stdout
    entry = cli_pki.crl("rsa").get_revoked_certificate_by_serial_number(serial)
    assert entry is not None


def test_list_shows_status(cli_pki: TestPki) -> None:
    valid = cli_pki.issue("person", "列表甲", id_number=ID_NUMBER).serial
    revoked = cli_pki.issue("person", "列表乙", id_number=ID_NUMBER).serial
    cli_pki.revoke(revoked)
    result = certgate("pki", "list", cli_pki.directory)
    assert result.exit_code == 0, result.output
    rows = {row.split()[0]: row for row in result.stdout.splitlines()}
    assert "valid" in rows[serial_hex(valid)]
    assert "revoked" in rows[serial_hex(revoked)]


ISSUE = ("--kind", "person", "--name", "某人")

REFUSALS = [
    (
        "missing folder (issue)",
        ["issue", "{missing}", *ISSUE, "--id-number", ID_NUMBER],
        "does not exist",
    ),
    ("missing folder (revoke)", ["revoke", "{missing}", "01"], "does not exist"),
    ("missing folder (serve)", ["serve", "{missing}"], "does not exist"),
    ("missing folder (list)", ["list", "{missing}"], "does not exist"),
    (
        "bad USCC",
        [
            "issue",
            "{pki}",
            "--kind",
            "enterprise",
            "--name",
            "某公司",
            "--uscc",
            "9144030071526726XH",
        ],
        "invalid unified social credit code",
    ),
    (
        "bad ID number",
        ["issue", "{pki}", *ISSUE, "--id-number", "360426199101010072"],
        "invalid ID-card number",
    ),
    (
        "both identifiers",
        ["issue", "{pki}", *ISSUE, "--id-number", ID_NUMBER, "--uscc", USCC],
        "exactly one",
    ),
    ("neither identifier", ["issue", "{pki}", *ISSUE], "exactly one"),
    (
        "identifier for the other kind",
        ["issue", "{pki}", *ISSUE, "--uscc", USCC],
        "needs --id-number",
    ),
    ("unknown serial", ["revoke", "{pki}", "0xABCDEF"], "no certificate with serial"),
    ("malformed serial", ["revoke", "{pki}", "xyz"], "invalid serial"),
    (
        "bad --not-before",
        ["issue", "{pki}", *ISSUE, "--id-number", ID_NUMBER, "--not-before", "yesterday"],
        "invalid --not-before",
    ),
    ("bad --at", ["revoke", "{pki}", "01", "--at", "2026-13-01"], "invalid --at"),
    (
        "bad --valid-days",
        ["issue", "{pki}", *ISSUE, "--id-number", ID_NUMBER, "--valid-days", "0"],
        "at least 1",
    ),
    (
        "unknown --key",
        ["issue", "{pki}", *ISSUE, "--id-number", ID_NUMBER, "--key", "dsa"],
        "--key",
    ),
    ("missing --kind", ["issue", "{pki}", "--name", "x", "--id-number", ID_NUMBER], "--kind"),
    (
        "unreadable public key",
        ["issue", "{pki}", *ISSUE, "--id-number", ID_NUMBER, "--public-key", "{missing}"],
        "cannot read public key",
    ),
    (
        "not a public key",
        ["issue", "{pki}", *ISSUE, "--id-number", ID_NUMBER, "--public-key", "{state}"],
        "no PEM public key",
    ),
    ("init over a PKI", ["init", "{pki}"], "already holds a test PKI"),
    ("init with a bad port", ["init", "{missing}", "--crl-port", "70000"], "out of range"),
    ("unknown command", ["renew", "{pki}"], "No such command"),
]


@pytest.mark.parametrize(
    ("arguments", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_bad_input_gives_one_line_and_status_2(
    cli_pki: TestPki, tmp_path: Path, arguments: list[str], message: str
) -> None:
    places = {
        "pki": str(cli_pki.directory),
        "missing": str(tmp_path / "missing"),
        "state": str(cli_pki.directory / "pki.json"),
    }
    result = certgate("pki", *[a.format(**places) for a in arguments])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
