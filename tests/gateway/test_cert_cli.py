"""`certgate cert verify`: usage errors (exit 2, one line, no traceback) and output shape.

These run before the engine is reached, so they need neither ``certs.validation`` nor the test
PKI; the engine end-to-end tests are in ``test_cert_cli_engine.py``.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.cli import main
from gateway.commands.cert import USAGE_MESSAGES, UsageProblem, parse_moment
from tests.certs.test_identity import CA_CERTIFICATE, issue_certificate


@pytest.fixture
def files(tmp_path):
    leaf = issue_certificate()
    paths = {
        "leaf.pem": leaf.public_bytes(Encoding.PEM),
        "leaf.der": leaf.public_bytes(Encoding.DER),
        "ca.pem": CA_CERTIFICATE.public_bytes(Encoding.PEM),
        "garbage.pem": b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        "garbage.der": b"\x30\x03\x02\x01",
        "empty.pem": b"",
        "text.crl": b"this is not a CRL\n",
        "key.pem": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    }
    for name, data in paths.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "folder").mkdir()
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(main, ["cert", "verify", *args])


USAGE_CASES = [
    # (scenario, arguments with {dir} for the files folder, fragment of the English message)
    ("missing certificate", ["{dir}/absent.pem", "--trust", "{dir}/ca.pem"],
     "cannot read certificate file"),
    ("certificate is a folder", ["{dir}/folder", "--trust", "{dir}/ca.pem"],
     "cannot read certificate file"),
    ("garbage PEM certificate", ["{dir}/garbage.pem", "--trust", "{dir}/ca.pem"],
     "is not a PEM or DER certificate"),
    ("garbage DER certificate", ["{dir}/garbage.der", "--trust", "{dir}/ca.pem"],
     "is not a PEM or DER certificate"),
    ("empty certificate file", ["{dir}/empty.pem", "--trust", "{dir}/ca.pem"],
     "is not a PEM or DER certificate"),
    ("a key, not a certificate", ["{dir}/key.pem", "--trust", "{dir}/ca.pem"],
     "is not a PEM or DER certificate"),
    ("missing chain file", ["{dir}/leaf.pem", "--chain", "{dir}/absent.pem", "--trust",
     "{dir}/ca.pem"], "cannot read --chain file"),
    ("garbage chain file", ["{dir}/leaf.pem", "--chain", "{dir}/garbage.pem", "--trust",
     "{dir}/ca.pem"], "--chain file"),
    ("no trust anchor", ["{dir}/leaf.pem"], "at least one trust anchor"),
    ("missing trust file", ["{dir}/leaf.pem", "--trust", "{dir}/absent.pem"],
     "cannot read --trust file"),
    ("garbage trust file", ["{dir}/leaf.pem", "--trust", "{dir}/garbage.der"],
     "--trust file"),
    ("missing CRL file", ["{dir}/leaf.pem", "--trust", "{dir}/ca.pem", "--crl",
     "{dir}/absent.crl"], "cannot read --crl file"),
    ("garbage CRL file", ["{dir}/leaf.pem", "--trust", "{dir}/ca.pem", "--crl",
     "{dir}/text.crl"], "is not a PEM or DER CRL"),
    ("a certificate given as CRL", ["{dir}/leaf.pem", "--trust", "{dir}/ca.pem", "--crl",
     "{dir}/ca.pem"], "is not a PEM or DER CRL"),
    ("--at is not a time", ["{dir}/leaf.pem", "--trust", "{dir}/ca.pem", "--at", "yesterday"],
     "--at takes an ISO 8601 time"),
    ("--ocsp is not an http URL", ["{dir}/leaf.pem", "--trust", "{dir}/ca.pem", "--ocsp",
     "ldap://ocsp.example"], "--ocsp takes an http"),
    ("--policy is not an OID", ["{dir}/leaf.pem", "--trust", "{dir}/ca.pem", "--policy",
     "1.2.x"], "--policy takes a certificate policy OID"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scenario", "arguments", "fragment"), USAGE_CASES, ids=[row[0] for row in USAGE_CASES]
)
def test_usage_errors_exit_2_with_one_line(files, scenario, arguments, fragment):
    result = run(*[a.format(dir=files) for a in arguments], "--lang", "en")
    assert result.exit_code == 2, (scenario, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("certgate cert verify: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_usage_errors_are_in_chinese_by_default(files):
    result = run(f"{files}/absent.pem", "--trust", f"{files}/ca.pem")
    assert result.exit_code == 2
    assert "无法读取证书文件" in result.stderr


def test_usage_errors_with_json_also_print_the_json_answer(files):
    result = run(f"{files}/leaf.pem", "--json", "--lang", "en")
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document == {
        "ok": False,
        "code": "bad_request",
        "message": "give at least one trust anchor with --trust",
        "chain": [],
        "identity": None,
    }


@pytest.mark.parametrize(
    ("option", "value"),
    [("--revocation", "sometimes"), ("--lang", "fr"), ("--no-such-option", None)],
)
def test_bad_options_are_usage_errors(files, option, value):
    arguments = [f"{files}/leaf.pem", "--trust", f"{files}/ca.pem", option]
    if value is not None:
        arguments.append(value)
    assert run(*arguments).exit_code == 2


def test_every_usage_message_has_both_languages():
    for key, messages in USAGE_MESSAGES.items():
        assert set(messages) == {"zh-CN", "en"}, key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05+00:00"),
        ("2026-01-02T03:04:05", "2026-01-02T03:04:05+00:00"),
        ("2026-01-02T11:04:05+08:00", "2026-01-02T03:04:05+00:00"),
        ("2026-01-02", "2026-01-02T00:00:00+00:00"),
    ],
)
def test_at_takes_iso_8601_in_utc(text, expected):
    assert parse_moment(text).isoformat() == expected


def test_bad_at_is_a_usage_problem():
    with pytest.raises(UsageProblem):
        parse_moment("02/01/2026")
