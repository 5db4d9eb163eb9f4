"""`certgate softhsm init|issue|list|delete|env` through the root command, on real tokens."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from gateway.cli import main
from softhsm.kit import SoftHsmKit
from softhsm.pki import TestPki
from tests.fixtures_softhsm import (
    ENTERPRISE_NAME,
    ENTERPRISE_USCC,
    PERSON_ID_CARD_NUMBER,
    PERSON_NAME,
    TOKEN_PIN,
    TOKEN_SO_PIN,
    SoftHsmCredential,
    unique_token_label,
)


def certgate(*arguments: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [str(argument) for argument in arguments], env=env)


def refused_line(result: Result) -> str:
    """The one line a refused command prints; asserts exit status 2 and nothing else printed."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.fixture
def token_directory(tmp_path: Path) -> Path:
    return tmp_path / "tokens"


def init_arguments(directory: Path, label: str, pin: str = TOKEN_PIN) -> list[str | Path]:
    return ["softhsm", "init", "--dir", directory, "--label", label, "--pin", pin]


def issue_arguments(directory: Path, label: str, pki: TestPki, *extra: str) -> list[str | Path]:
    """A person certificate on ``label``; later options in ``extra`` override earlier ones."""
    return [
        *("softhsm", "issue", "--dir", directory, "--label", label, "--pin", TOKEN_PIN),
        *("--pki", pki.directory, "--kind", "person", "--name", PERSON_NAME),
        *("--id-number", PERSON_ID_CARD_NUMBER, *extra),
    ]


@pytest.fixture
def initialised_label(token_directory: Path) -> str:
    label = unique_token_label()
    result = certgate(*init_arguments(token_directory, label), "--so-pin", TOKEN_SO_PIN)
    assert result.exit_code == 0, result.output
    return label


def test_init_creates_a_token_and_prints_softhsm2_conf(token_directory: Path) -> None:
    result = certgate(*init_arguments(token_directory, "alice"), "--so-pin", TOKEN_SO_PIN)
    assert result.exit_code == 0, result.output
    conf_path = token_directory / "softhsm2.conf"
    assert result.stdout.splitlines()[-1] == f"export SOFTHSM2_CONF={conf_path}"
    assert "Token 'alice' created in slot" in result.stdout
    assert "directories.tokendir" in conf_path.read_text(encoding="utf-8")
    assert [token.label for token in SoftHsmKit(token_directory).list_tokens()] == ["alice"]


@pytest.mark.parametrize("key", ["rsa2048", "p256", "ed25519"])
def test_issue_puts_key_pair_and_certificate_on_the_token(
    token_directory: Path, initialised_label: str, test_pki: TestPki, key: str
) -> None:
    result = certgate(*issue_arguments(token_directory, initialised_label, test_pki, "--key", key))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("export SOFTHSM2_CONF=")

    token = SoftHsmKit(token_directory).token(initialised_label, pin=TOKEN_PIN)
    (stored,) = token.certificates
    assert f"CKA_ID {stored.cert_id.hex()}" in result.stdout
    assert sorted((item.key_class, item.key_type, item.cert_id) for item in token.keys) == [
        ("private", key, stored.cert_id),
        ("public", key, stored.cert_id),
    ]
    pem_path = SoftHsmKit(token_directory).certificate_path(token, stored.cert_id)
    assert str(pem_path) in result.stdout
    assert x509.load_pem_x509_certificate(pem_path.read_bytes()) == stored.certificate


def test_issue_enterprise_with_validity_options(
    token_directory: Path, initialised_label: str, test_pki: TestPki
) -> None:
    result = certgate(
        "softhsm",
        "issue",
        "--dir",
        token_directory,
        "--label",
        initialised_label,
        "--pin",
        TOKEN_PIN,
        "--pki",
        test_pki.directory,
        "--kind",
        "enterprise",
        "--name",
        ENTERPRISE_NAME,
        "--uscc",
        ENTERPRISE_USCC,
        "--key",
        "p256",
        "--ca",
        "p256",
        "--valid-days",
        "10",
        "--not-before",
        "2026-05-01T00:00:00",
        "--object-label",
        "经办人",
    )
    assert result.exit_code == 0, result.output
    (stored,) = SoftHsmKit(token_directory).token(initialised_label).certificates
    assert stored.label == "经办人"
    assert stored.certificate.not_valid_before_utc.isoformat() == "2026-05-01T00:00:00+00:00"
    assert stored.not_after.isoformat() == "2026-05-11T00:00:00+00:00"


def test_list_shows_tokens_certificates_and_keys(softhsm_token: SoftHsmCredential) -> None:
    kit = softhsm_token.kit
    cert_id = softhsm_token.cert_id.hex()

    text = certgate("softhsm", "list", "--dir", kit.directory, "--label", softhsm_token.token_label)
    assert text.exit_code == 0, text.output
    assert f"export SOFTHSM2_CONF={kit.conf_path}" in text.stdout
    assert f"Token '{softhsm_token.token_label}'  slot {softhsm_token.slot_id}" in text.stdout
    assert f"certificate  {cert_id}" in text.stdout
    assert "(private keys are shown with --pin)" in text.stdout

    logged_in = certgate(
        "softhsm",
        "list",
        "--dir",
        kit.directory,
        "--label",
        softhsm_token.token_label,
        "--pin",
        TOKEN_PIN,
        "--json",
    )
    assert logged_in.exit_code == 0, logged_in.output
    listing = json.loads(logged_in.stdout)
    assert listing["softhsm2_conf"] == str(kit.conf_path)
    (token,) = listing["tokens"]
    assert token["slot_id"] == softhsm_token.slot_id
    (certificate,) = token["certificates"]
    assert certificate["cert_id"] == cert_id
    assert certificate["subject"] == softhsm_token.provisioned.certificate.subject.rfc4514_string()
    assert sorted((key["key_class"], key["cert_id"]) for key in token["keys"]) == [
        ("private", cert_id),
        ("public", cert_id),
    ]
    private = next(key for key in token["keys"] if key["key_class"] == "private")
    assert (private["key_type"], private["sensitive"], private["extractable"]) == (
        "rsa2048",
        True,
        False,
    )


def test_list_of_an_empty_directory(token_directory: Path) -> None:
    result = certgate("softhsm", "list", "--dir", token_directory)
    assert result.exit_code == 0, result.output
    assert "No tokens yet" in result.stdout


def test_delete_removes_the_token(token_directory: Path, initialised_label: str) -> None:
    result = certgate("softhsm", "delete", "--dir", token_directory, "--label", initialised_label)
    assert result.exit_code == 0, result.output
    assert SoftHsmKit(token_directory).list_tokens() == ()


def test_directory_comes_from_option_then_environment_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_option = tmp_path / "option"
    from_environment = tmp_path / "environment"
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CERTGATE_SOFTHSM_DIR", raising=False)

    def printed_conf(*arguments: str | Path, env: dict[str, str] | None = None) -> str:
        result = certgate("softhsm", "env", *arguments, env=env)
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    default = home / ".local/share/certgate/softhsm/softhsm2.conf"
    assert printed_conf() == f"export SOFTHSM2_CONF={default}"
    environment = {"CERTGATE_SOFTHSM_DIR": str(from_environment)}
    assert printed_conf(env=environment) == (
        f"export SOFTHSM2_CONF={from_environment / 'softhsm2.conf'}"
    )
    assert printed_conf("--dir", from_option, env=environment) == (
        f"export SOFTHSM2_CONF={from_option / 'softhsm2.conf'}"
    )
    assert (from_option / "softhsm2.conf").is_file()


@dataclass(frozen=True)
class RefusalSetting:
    """What a refused command works on: a directory holding one initialised token and a PKI."""

    directory: Path
    label: str
    pki: TestPki
    scratch: Path

    def issue(self, *extra: str | Path) -> list[str | Path]:
        return [*issue_arguments(self.directory, self.label, self.pki), *extra]

    def init(self, label: str, pin: str = TOKEN_PIN) -> list[str | Path]:
        return [*init_arguments(self.directory, label, pin), "--so-pin", TOKEN_SO_PIN]

    def empty_path(self) -> dict[str, str]:
        empty = self.scratch / "empty-path"
        empty.mkdir(exist_ok=True)
        return {"PATH": str(empty)}


Arguments = Callable[[RefusalSetting], list[str | Path]]
Environment = Callable[[RefusalSetting], dict[str, str] | None]


def no_environment(setting: RefusalSetting) -> None:
    return None


# (test id, command line, environment, the refusal's words)
REFUSALS: list[tuple[str, Arguments, Environment, str]] = [
    (
        "issue-unknown-label",
        lambda s: s.issue("--label", "no-such-token"),
        no_environment,
        "no token labelled 'no-such-token'",
    ),
    ("issue-wrong-pin", lambda s: s.issue("--pin", "654321"), no_environment, "wrong PIN"),
    (
        "issue-pki-missing",
        lambda s: s.issue("--pki", s.scratch / "no-pki"),
        no_environment,
        "does not exist",
    ),
    (
        "issue-bad-id-number",
        lambda s: s.issue("--id-number", "110105194912310021"),
        no_environment,
        "invalid ID-card number",
    ),
    (
        "issue-bad-not-before",
        lambda s: s.issue("--not-before", "next tuesday"),
        no_environment,
        "is not an ISO 8601",
    ),
    (
        "list-unknown-label",
        lambda s: ["softhsm", "list", "--dir", s.directory, "--label", "no-such-token"],
        no_environment,
        "no token labelled",
    ),
    (
        "list-wrong-pin",
        lambda s: ["softhsm", "list", "--dir", s.directory, "--label", s.label, "--pin", "0000"],
        no_environment,
        "wrong PIN",
    ),
    (
        "delete-unknown-label",
        lambda s: ["softhsm", "delete", "--dir", s.directory, "--label", "no-such-token"],
        no_environment,
        "no token labelled",
    ),
    ("init-existing-label", lambda s: s.init(s.label), no_environment, "already exists"),
    ("init-short-pin", lambda s: s.init("short", pin="12"), no_environment, "4 to 255 characters"),
    ("init-long-label", lambda s: s.init("x" * 33), no_environment, "longer than 32 bytes"),
    (
        "module-missing",
        lambda s: ["softhsm", "list", "--dir", s.directory, "--module", s.scratch / "none.so"],
        no_environment,
        "SoftHSM is not installed",
    ),
    (
        "softhsm2-util-missing",
        lambda s: s.init("no-util"),
        RefusalSetting.empty_path,
        "softhsm2-util not found",
    ),
]


@pytest.mark.parametrize(
    ("arguments", "environment", "expected"),
    [refusal[1:] for refusal in REFUSALS],
    ids=[refusal[0] for refusal in REFUSALS],
)
def test_bad_input_is_refused_with_one_line_and_exit_2(
    arguments: Arguments,
    environment: Environment,
    expected: str,
    token_directory: Path,
    initialised_label: str,
    test_pki: TestPki,
    tmp_path: Path,
) -> None:
    setting = RefusalSetting(token_directory, initialised_label, test_pki, tmp_path)
    line = refused_line(certgate(*arguments(setting), env=environment(setting)))
    assert expected in line


def test_refused_issue_leaves_no_key_on_the_token(
    token_directory: Path, initialised_label: str, test_pki: TestPki
) -> None:
    issue = issue_arguments(token_directory, initialised_label, test_pki)
    refused_line(certgate(*issue, "--id-number", "110105194912310021"))
    token = SoftHsmKit(token_directory).token(initialised_label, pin=TOKEN_PIN)
    assert token.keys == ()
    assert token.certificates == ()


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 128 KiB tmpfs: room for a token and a few objects, then full."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full token needs a small tmpfs, and mounting one needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_issue_to_a_full_token_is_refused(small_filesystem: Path, test_pki: TestPki) -> None:
    label = "full"
    init = certgate(
        "softhsm",
        "init",
        "--dir",
        small_filesystem,
        "--label",
        label,
        "--pin",
        TOKEN_PIN,
        "--so-pin",
        TOKEN_SO_PIN,
    )
    assert init.exit_code == 0, init.output
    issue = issue_arguments(small_filesystem, label, test_pki, "--key", "p256")
    issued = 0
    for _ in range(10):
        result = certgate(*issue)
        if result.exit_code != 0:
            break
        issued += 1
    line = refused_line(result)
    assert f"token '{label}' is full" in line
    assert issued >= 1
    token = SoftHsmKit(small_filesystem).token(label, pin=TOKEN_PIN)
    assert len(token.certificates) == issued
    assert {key.cert_id for key in token.keys} == {item.cert_id for item in token.certificates}
