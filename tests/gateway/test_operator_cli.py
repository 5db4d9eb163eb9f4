"""`certgate account` and `certgate trust`: operator commands, input checks, exit status 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import hashes

from gateway import create_app
from gateway.certificates import get_certificates
from gateway.cli import main
from softhsm.pki import TestPki, random_id_card_number
from tests.fixtures_pki import PKI_EPOCH
from tests.gateway.conftest import DATA_KEY, ORIGIN

ID_NUMBER = "11010519491231002X"
USCC = "9144030071526726XG"


@pytest.fixture
def certgate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    env = {
        "CERTGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
        "CERTGATE_PASSWORD_MEMORY_COST": "1024",
        "CERTGATE_PASSWORD_TIME_COST": "1",
    }
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), env=env, input=input)

    return run


def accounts(certgate: Any) -> list[dict[str, Any]]:
    result = certgate("account", "list", "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_create_and_list_accounts(certgate: Any) -> None:
    person = certgate(
        "account",
        "create",
        "person",
        ID_NUMBER.lower(),
        "--real-name",
        "张三",
        "--login-name",
        "zhangsan",
        "--phone",
        "13800138000",
        "--password-stdin",
        "--agreement-version",
        "2024-01",
        input="a good password\n",
    )
    assert person.exit_code == 0, person.output
    enterprise = certgate(
        "account",
        "create",
        "enterprise",
        USCC,
        "--name",
        "示例有限公司",
        "--legal-representative",
        "李四",
    )
    assert enterprise.exit_code == 0, enterprise.output
    listed = accounts(certgate)
    assert [a["kind"] for a in listed] == ["person", "enterprise"]
    assert listed[0]["id_card_number"] == "1101************2X"
    assert listed[0]["phone"] == "1380*****00"
    assert listed[1]["uscc"] == USCC
    # Personal data never appears in clear.
    output = certgate("account", "list").output
    assert ID_NUMBER not in output and "13800138000" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("person", "11010519491231002Y", "--real-name", "x"), "ID-card number: not valid"),
        (("person", "110105194913310028", "--real-name", "x"), "ID-card number: not valid"),
        (
            ("enterprise", "91110000600037341A", "--name", "x"),
            "unified social credit code: not valid",
        ),
        (("person", ID_NUMBER, "--real-name", "x", "--phone", "12345"), "phone: not a mainland"),
        (("person", ID_NUMBER, "--real-name", "x", "--login-name", "1x"), "login name"),
        (
            ("person", ID_NUMBER, "--real-name", "x", "--login-name", "y14403007152672601"),
            "login name: looks like",
        ),
        (("person", ID_NUMBER, "--real-name", "x", "--email", "nope"), "e-mail"),
        (("person", ID_NUMBER, "--real-name", " "), "real name: required"),
    ],
)
def test_create_refuses_bad_input(certgate: Any, args: tuple[str, ...], message: str) -> None:
    result = certgate("account", "create", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_create_refuses_short_password(certgate: Any) -> None:
    result = certgate(
        "account",
        "create",
        "person",
        ID_NUMBER,
        "--real-name",
        "张三",
        "--password-stdin",
        input="short\n",
    )
    assert result.exit_code == 2 and "password: at least 8" in result.output


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (
            ("person", ID_NUMBER, "--real-name", "a"),
            ("person", ID_NUMBER, "--real-name", "b"),
            "ID-card number: a person account with it exists",
        ),
        (
            ("enterprise", USCC, "--name", "a"),
            ("enterprise", USCC, "--name", "b"),
            "an enterprise with it exists",
        ),
        (
            ("person", ID_NUMBER, "--real-name", "a", "--login-name", "same"),
            ("enterprise", USCC, "--name", "b", "--login-name", "Same"),
            "login name: already taken",
        ),
        (
            ("person", ID_NUMBER, "--real-name", "a", "--phone", "13800138000"),
            ("enterprise", USCC, "--name", "b", "--phone", "+8613800138000"),
            "phone: already used",
        ),
    ],
)
def test_create_refuses_duplicates(
    certgate: Any, first: tuple[str, ...], second: tuple[str, ...], message: str
) -> None:
    assert certgate("account", "create", *first).exit_code == 0
    result = certgate("account", "create", *second)
    assert result.exit_code == 2 and message in result.output


def test_bind_unbind_freeze_unfreeze(certgate: Any, test_pki: TestPki, tmp_path: Path) -> None:
    certgate("account", "create", "enterprise", USCC, "--name", "示例有限公司")
    issued = test_pki.issue("enterprise", "示例有限公司", uscc=USCC, at=PKI_EPOCH)
    thumbprint = issued.certificate.fingerprint(hashes.SHA256()).hex()
    bound = certgate("account", "bind", USCC, "--certificate", str(issued.cert_path))
    assert bound.exit_code == 0, bound.output
    assert accounts(certgate)[0]["bindings"] == [f"sha256:{thumbprint}"]
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
            "DATA_KEY": DATA_KEY,
            "PUBLIC_ORIGIN": ORIGIN,
        },
        operator=True,
    )
    details = get_certificates(app).by_thumbprint(thumbprint)  # what the account page shows
    assert details is not None and details.subject == issued.certificate.subject.rfc4514_string()
    app.extensions["certgate.database"].close()
    again = certgate("account", "bind", USCC, "--thumbprint", thumbprint.upper())
    assert again.exit_code == 2 and "already bound" in again.output
    assert certgate("account", "unbind", USCC, "--thumbprint", thumbprint).exit_code == 0
    assert accounts(certgate)[0]["bindings"] == []
    missing = certgate("account", "unbind", USCC, "--thumbprint", thumbprint)
    assert missing.exit_code == 2 and "no such binding" in missing.output

    assert certgate("account", "freeze", USCC).exit_code == 0
    assert accounts(certgate)[0]["status"] == "frozen"
    assert certgate("account", "freeze", USCC, "--status", "suspended").exit_code == 0
    assert accounts(certgate)[0]["status"] == "suspended"
    assert certgate("account", "unfreeze", USCC).exit_code == 0
    assert accounts(certgate)[0]["status"] == "active"
    audit = certgate("audit", "list", "--json").output
    events = [json.loads(line)["event"] for line in audit.splitlines()]
    assert events == [
        "account_created",
        "certificate_bound",
        "certificate_unbound",
        "account_frozen",
        "account_frozen",
        "account_unfrozen",
    ]
    assert certgate("audit", "verify").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--thumbprint", "abc"), "64 hexadecimal"),
        (("--issuer-serial", "zz@CN=x"), "hexadecimal"),
        (("--issuer-serial", "01"), "issuer_serial is"),
        ((), "exactly one of"),
        (("--certificate", "/nonexistent.pem"), "cannot read"),
    ],
)
def test_bind_refuses_bad_input(certgate: Any, args: tuple[str, ...], message: str) -> None:
    certgate("account", "create", "enterprise", USCC, "--name", "x")
    result = certgate("account", "bind", USCC, *args)
    assert result.exit_code == 2 and message in result.output


def test_unknown_account(certgate: Any) -> None:
    result = certgate("account", "freeze", random_id_card_number())
    assert result.exit_code == 2 and "not found" in result.output


def test_trust_add_list_remove(certgate: Any, test_pki: TestPki) -> None:
    root = str(test_pki.ca_certificate_path("root"))
    added = certgate(
        "trust",
        "add",
        root,
        "--name",
        "Test Root",
        "--revocation",
        "soft-fail",
        "--crl",
        str(test_pki.crl_path("rsa")),
        "--ocsp",
        "http://127.0.0.1:1/",
        "--lookup",
        "enterprise: unified_social_credit_code",
        "--lookup",
        "person: id_card_number",
        "--intermediate",
        str(test_pki.ca_certificate_path("rsa")),
    )
    assert added.exit_code == 0, added.output
    listed = [json.loads(line) for line in certgate("trust", "list", "--json").output.splitlines()]
    assert [a["name"] for a in listed] == ["Test Root"]
    assert listed[0]["revocation"] == "soft-fail"
    assert listed[0]["mapping"]["lookups"][1] == "person: id_card_number"
    assert listed[0]["intermediates"] == [
        test_pki.intermediate_certificate("rsa").subject.rfc4514_string()
    ]
    duplicate = certgate("trust", "add", root)
    assert duplicate.exit_code == 2 and "already trusted" in duplicate.output
    assert certgate("trust", "remove", "Test Root").exit_code == 0
    assert certgate("trust", "list").output == ""
    gone = certgate("trust", "remove", "Test Root")
    assert gone.exit_code == 2 and "not found" in gone.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--lookup", "person: shoe_size"), "mapping.lookups[0].identity"),
        (("--ocsp", "ftp://x"), "ocsp"),
        (("--crl", "/nonexistent.crl"), "no such CRL file"),
        (("--intermediate", "/nonexistent.pem"), "intermediate: cannot read"),
    ],
)
def test_trust_add_refuses_bad_input(
    certgate: Any, test_pki: TestPki, extra: tuple[str, ...], message: str
) -> None:
    result = certgate("trust", "add", str(test_pki.ca_certificate_path("root")), *extra)
    assert result.exit_code == 2 and message in result.output


def test_trust_add_refuses_a_leaf_and_junk(
    certgate: Any, test_pki: TestPki, tmp_path: Path
) -> None:
    leaf = test_pki.issue("person", "x", id_number=random_id_card_number(), at=PKI_EPOCH)
    result = certgate("trust", "add", str(leaf.cert_path))
    assert result.exit_code == 2 and "not a CA certificate" in result.output
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    result = certgate("trust", "add", str(junk))
    assert result.exit_code == 2 and "not a PEM or DER certificate" in result.output


def test_configuration_errors_exit_2(certgate: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTGATE_DATA_KEY", raising=False)
    result = CliRunner().invoke(
        main, ["account", "list"], env={"CERTGATE_DATA_KEY": "", "CERTGATE_PUBLIC_ORIGIN": ORIGIN}
    )
    assert result.exit_code == 2 and "data_key" in result.output


def test_cancel_deletes_personal_data_and_keeps_the_trail(certgate: Any, tmp_path: Path) -> None:
    certgate(
        "account",
        "create",
        "person",
        ID_NUMBER,
        "--real-name",
        "张三",
        "--phone",
        "13800138000",
        "--login-name",
        "zhangsan",
    )
    account_id = accounts(certgate)[0]["id"]
    refused = certgate("account", "cancel", "zhangsan")
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert certgate("account", "cancel", "zhangsan", "--yes").exit_code == 0
    [cancelled] = accounts(certgate)
    assert cancelled["id"] == account_id and cancelled["status"] == "cancelled"
    assert "id_card_number" not in cancelled or cancelled["id_card_number"] is None
    assert cancelled["name"] == "已注销账户" and cancelled["login_name"] is None
    again = certgate("account", "unfreeze", account_id)
    assert again.exit_code == 2 and "cancelled" in again.output
    # The person may register again; the old trail still names the old account id.
    assert certgate("account", "create", "person", ID_NUMBER, "--real-name", "张三").exit_code == 0
    events = [json.loads(line) for line in certgate("audit", "list", "--json").output.splitlines()]
    assert [e["event"] for e in events if e["account"] == account_id] == [
        "account_created",
        "account_cancelled",
    ]
    assert certgate("audit", "verify").exit_code == 0


def test_trust_add_refuses_a_leaf_as_intermediate(certgate: Any, test_pki: TestPki) -> None:
    leaf = test_pki.issue("person", "x", id_number=random_id_card_number(), at=PKI_EPOCH)
    result = certgate(
        "trust",
        "add",
        str(test_pki.ca_certificate_path("root")),
        "--intermediate",
        str(leaf.cert_path),
    )
    assert result.exit_code == 2 and "intermediates[0]: not a CA certificate" in result.output


def test_anchors_added_by_the_cli_serve_logins(
    certgate: Any, test_pki: TestPki, tmp_path: Path
) -> None:
    from gateway import create_app

    root = str(test_pki.ca_certificate_path("root"))
    assert (
        certgate(
            "trust",
            "add",
            root,
            "--revocation",
            "off",
            "--intermediate",
            str(test_pki.ca_certificate_path("rsa")),
        ).exit_code
        == 0
    )
    app = create_app(
        {
            "CONFIG_FILE": None,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
            "DATA_KEY": DATA_KEY,
            "PUBLIC_ORIGIN": ORIGIN,
        }
    )
    engine = app.extensions["certgate.engine"]
    assert [a.display_name for a in engine.anchors] == [
        test_pki.root_certificate.subject.rfc4514_string()
    ]
    assert [c.subject for c in engine.intermediates] == [
        test_pki.intermediate_certificate("rsa").subject
    ]
    engine.close()
    app.extensions["certgate.database"].close()
