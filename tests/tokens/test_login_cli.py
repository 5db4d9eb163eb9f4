"""``certgate agent login`` against a small gateway that really verifies the signature."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures_softhsm import SoftHsmCredential
from tests.tokens.login_server import LoginGateway, serve_login_gateway
from tokens.cli import agent
from tokens.pkcs11 import SOFTHSM_MODULE

ACCOUNT = {"id": "acct-1", "kind": "person", "display_name": "张三"}


@pytest.fixture
def gateway() -> Iterator[tuple[LoginGateway, str]]:
    state = LoginGateway()
    with serve_login_gateway(state) as url:
        yield state, url


def run_login(
    url: str, credential: SoftHsmCredential, *extra: str, pin: str | None = None, **env: str
) -> tuple[int, str, str]:
    arguments = [
        "login",
        url,
        "--module",
        SOFTHSM_MODULE,
        "--token",
        credential.token_label,
        "--cert-id",
        credential.cert_id.hex(),
        *extra,
    ]
    result = CliRunner().invoke(
        agent, arguments, input=pin, env={"CERTGATE_PIN": None, **env}, catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("fixture", "algorithm"),
    [
        ("rsa_token", None),
        ("rsa_token", "rsa-pss-sha256"),
        ("p256_token", None),
        ("ed25519_token", None),
    ],
)
def test_login_succeeds_with_a_verified_signature(
    request: pytest.FixtureRequest,
    gateway: tuple[LoginGateway, str],
    tmp_path: Path,
    fixture: str,
    algorithm: str | None,
) -> None:
    state, url = gateway
    credential: SoftHsmCredential = request.getfixturevalue(fixture)
    state.bind(credential.provisioned.certificate, ACCOUNT)
    pin_file = tmp_path / "pin"
    pin_file.write_text(credential.pin + "\n", encoding="utf-8")
    extra = ["--pin-file", str(pin_file)]
    if algorithm:
        extra += ["--signature-algorithm", algorithm]
    code, out, err = run_login(url, credential, *extra)
    assert code == 0, err
    assert "account: 张三 (kind person, id acct-1)" in out
    assert "cookie: certgate_session=" in out
    (message,) = state.verified_messages
    assert message.startswith(f"certgate-login-v1\n{url}\n".encode())
    assert credential.pin not in out + err


def test_pin_from_environment_and_json_output(
    gateway: tuple[LoginGateway, str], p256_token: SoftHsmCredential
) -> None:
    state, url = gateway
    state.bind(p256_token.provisioned.certificate, {**ACCOUNT, "kind": "enterprise"})
    code, out, _ = run_login(url, p256_token, "--json", CERTGATE_PIN=p256_token.pin)
    assert code == 0
    answer = json.loads(out)
    assert answer["ok"] is True
    assert answer["account"]["kind"] == "enterprise"
    assert "certgate_session" in answer["session"]


def test_pin_from_prompt(gateway: tuple[LoginGateway, str], rsa_token: SoftHsmCredential) -> None:
    state, url = gateway
    state.bind(rsa_token.provisioned.certificate, ACCOUNT)
    code, out, err = run_login(url, rsa_token, pin=rsa_token.pin + "\n")
    assert code == 0, err
    assert "PIN" in err
    assert rsa_token.pin not in out + err  # the prompt hides what is typed


@pytest.mark.parametrize(
    ("case", "code_text"),
    [
        ("wrong_pin", "pin_incorrect"),
        ("not_bound", "account_not_found"),
        ("unknown_cert", "certificate_not_found"),
        ("unknown_token", "token_not_present"),
        ("expired_challenge", "challenge_expired"),
        ("gateway_other_origin", "origin_mismatch"),
        ("gateway_down", "unavailable"),
    ],
)
def test_login_failures_print_code_and_exit_1(
    gateway: tuple[LoginGateway, str],
    rsa_token: SoftHsmCredential,
    case: str,
    code_text: str,
) -> None:
    state, url = gateway
    state.bind(rsa_token.provisioned.certificate, ACCOUNT)
    pin, extra = rsa_token.pin, []
    if case == "wrong_pin":
        pin = "000000"
    elif case == "not_bound":
        state.accounts.clear()
    elif case == "unknown_cert":
        extra = ["--cert-id", "00ff00ff"]
    elif case == "unknown_token":
        extra = ["--token", "no-such-token"]
    elif case == "expired_challenge":
        later = datetime.now(UTC) + timedelta(minutes=5)
        real_now = state.now
        issued: list[bool] = []

        def clock() -> datetime:
            # The challenge is issued now and answered five minutes later.
            moment = later if issued else real_now()
            issued.append(True)
            return moment

        state.now = clock
    elif case == "gateway_other_origin":
        state.origin = "https://elsewhere.example.test"
    elif case == "gateway_down":
        url = "http://127.0.0.1:9"
    code, out, err = run_login(url, rsa_token, *extra, CERTGATE_PIN=pin)
    assert code == 1
    assert err.startswith(f"error: {code_text}: ")
    assert out == ""
    if case == "gateway_other_origin":
        assert state.verified_messages == []


def test_origin_option_for_a_gateway_behind_a_proxy(
    gateway: tuple[LoginGateway, str], rsa_token: SoftHsmCredential
) -> None:
    state, url = gateway
    state.origin = "https://sso.example.test"
    state.bind(rsa_token.provisioned.certificate, ACCOUNT)
    code, _, err = run_login(
        url, rsa_token, "--origin", "https://sso.example.test", CERTGATE_PIN=rsa_token.pin
    )
    assert code == 0, err
    (message,) = state.verified_messages
    assert message.startswith(b"certgate-login-v1\nhttps://sso.example.test\n")


def test_bad_cert_id_is_a_usage_error(
    gateway: tuple[LoginGateway, str], rsa_token: SoftHsmCredential
) -> None:
    _, url = gateway
    code, _, err = run_login(url, rsa_token, "--cert-id", "xyz", CERTGATE_PIN="123456")
    assert code == 2
    assert "--cert-id" in err


def test_several_certificates_need_a_cert_id(
    gateway: tuple[LoginGateway, str],
    rsa_token: SoftHsmCredential,
    p256_token: SoftHsmCredential,
) -> None:
    _, url = gateway
    result = CliRunner().invoke(
        agent,
        ["login", url, "--module", SOFTHSM_MODULE, "--lang", "en"],
        env={"CERTGATE_PIN": rsa_token.pin},
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: bad_request: ")
    assert "--cert-id" in result.stderr
    assert rsa_token.cert_id.hex() in result.stderr
