"""SM2 on the user's side: the SM2 UKey module (softhsm/sm2_ukey.c, built at test time) offers
SM2 under vendor mechanisms, the agent lists its certificate and signs the login message with it,
and the signature verifies with certs.sm2 and with OpenSSL's own SM2 (distid)."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from certs.keys import sm2_public_key
from softhsm.cli_token import softhsm
from softhsm.pki import TestPki
from softhsm.sm2_ukey import SM2_SM3_MECHANISM, Sm2UkeyDirectory
from tests.fixtures_sm2_ukey import (
    SM2_IN_TOKEN,
    SM2_OVER_DIGEST,
    MakeSm2Token,
    Sm2Credential,
)
from tests.tokens.conftest import ALLOWED_ORIGIN, AgentClient
from tokens.agent import AgentConfig, AgentConfigError, SigningAgent
from tokens.cli import agent as agent_command
from tokens.login_message import login_message
from tokens.pin_guard import PinPolicy
from tokens.pkcs11 import TokenLibrary
from tokens.sm2 import Sm2Mechanism

NONCE = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()
QUICK = PinPolicy(backoff_seconds=0.01, backoff_max_seconds=0.05)


@pytest.fixture
def sm2_agent(sm2_token: Sm2Credential) -> Iterator[Callable[..., AgentClient]]:
    started: list[SigningAgent] = []

    def start(sm2: Sm2Mechanism | None = SM2_IN_TOKEN) -> AgentClient:
        library = TokenLibrary([sm2_token.module], {sm2_token.module: sm2} if sm2 else None)
        config = AgentConfig(allowed_origins=frozenset({ALLOWED_ORIGIN}), port=0, pin_policy=QUICK)
        started.append(SigningAgent(config, library, use_pcsc=False).start())
        return AgentClient(started[-1].url)

    yield start
    for running in started:
        running.stop()


def sign(client: AgentClient, credential: Sm2Credential, pin: str, **extra: object) -> object:
    return client.post(
        "/v1/sign",
        {
            "cert_id": credential.cert_id.hex(),
            "pin": pin,
            "challenge_id": "sm2-challenge",
            "nonce": NONCE,
            **extra,
        },
        headers={"Accept-Language": "en"},
    )


def openssl_verifies(
    directory: Path, credential: Sm2Credential, signature: bytes, message: bytes, distid: str
) -> bool:
    certificate = directory / "leaf.pem"
    certificate.write_bytes(credential.provisioned.certificate.public_bytes(Encoding.PEM))
    public_key = directory / "public.pem"
    subprocess.run(
        ["openssl", "x509", "-in", str(certificate), "-pubkey", "-noout", "-out", str(public_key)],
        check=True,
        capture_output=True,
    )
    (directory / "message").write_bytes(message)
    (directory / "signature").write_bytes(signature)
    done = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(public_key), "-rawin",
         "-digest", "sm3", "-pkeyopt", f"distid:{distid}",
         "-in", str(directory / "message"), "-sigfile", str(directory / "signature")],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    return done.returncode == 0 and "Signature Verified Successfully" in done.stdout


def test_agent_lists_the_sm2_certificate(
    sm2_agent: Callable[..., AgentClient], sm2_token: Sm2Credential
) -> None:
    listed = sm2_agent().get("/v1/certificates")
    assert listed.status == 200
    entry = next(e for e in listed.body if e["cert_id"] == sm2_token.cert_id.hex())
    assert entry["key_type"] == "sm2"
    assert entry["token_label"] == sm2_token.token_label
    assert entry["subject"] == "CN=李四,C=CN"
    assert entry["issuer"].startswith("CN=CertGate Test SM2 CA")
    # The SM2 CA's certificate on the token is not offered for login.
    assert [e["cert_id"] for e in listed.body if e["token_label"] == sm2_token.token_label] == [
        sm2_token.cert_id.hex()
    ]


@pytest.mark.parametrize("mechanism", [SM2_IN_TOKEN, SM2_OVER_DIGEST], ids=["message", "digest"])
def test_agent_signs_sm2_sm3_that_certs_and_openssl_verify(
    sm2_agent: Callable[..., AgentClient],
    sm2_token: Sm2Credential,
    test_pki: TestPki,
    tmp_path: Path,
    mechanism: Sm2Mechanism,
) -> None:
    answer = sign(sm2_agent(mechanism), sm2_token, sm2_token.pin)
    assert answer.status == 200, answer.body
    assert answer.body["signature_algorithm"] == "sm2-sm3"
    signature = base64.b64decode(answer.body["signature"])
    assert signature[0] == 0x30  # DER SEQUENCE {r, s}, as the login protocol takes it
    message = login_message(ALLOWED_ORIGIN, "sm2-challenge", NONCE)
    public_key = sm2_public_key(sm2_token.provisioned.certificate)
    assert public_key is not None
    assert public_key.verify(signature, message)
    assert not public_key.verify(signature, message, b"another signer ID")
    assert not public_key.verify(signature, message + b"x")
    assert openssl_verifies(tmp_path, sm2_token, signature, message, "1234567812345678")
    assert not openssl_verifies(tmp_path, sm2_token, signature, message, "1234567812345679")
    sm2_ca = test_pki.intermediate_certificate("sm2").public_bytes(Encoding.DER)
    assert [base64.b64decode(c) for c in answer.body["chain"]] == [sm2_ca]


def test_signer_id_reaches_the_token(
    sm2_agent: Callable[..., AgentClient], sm2_token: Sm2Credential
) -> None:
    agreed = Sm2Mechanism(SM2_SM3_MECHANISM, signer_id=b"ALICE123@YAHOO.COM")
    answer = sign(sm2_agent(agreed), sm2_token, sm2_token.pin)
    assert answer.status == 200
    signature = base64.b64decode(answer.body["signature"])
    message = login_message(ALLOWED_ORIGIN, "sm2-challenge", NONCE)
    public_key = sm2_public_key(sm2_token.provisioned.certificate)
    assert public_key is not None
    assert public_key.verify(signature, message, b"ALICE123@YAHOO.COM")
    assert not public_key.verify(signature, message)


@pytest.mark.parametrize(
    ("mechanism", "status", "code"),
    [
        (None, 400, "bad_request"),  # no SM2 mechanism configured for the module
        (Sm2Mechanism(0x80001234), 503, "unavailable"),  # the module does not offer it
    ],
    ids=["not-configured", "wrong-number"],
)
def test_sm2_without_the_right_mechanism(
    sm2_agent: Callable[..., AgentClient],
    sm2_token: Sm2Credential,
    mechanism: Sm2Mechanism | None,
    status: int,
    code: str,
) -> None:
    answer = sign(sm2_agent(mechanism), sm2_token, sm2_token.pin)
    assert (answer.status, answer.body["error"]) == (status, code)


def test_wrong_pins_count_on_the_sm2_token_until_it_locks(
    sm2_agent: Callable[..., AgentClient], make_sm2_token: MakeSm2Token
) -> None:
    credential = make_sm2_token(max_tries=3)
    client = sm2_agent()

    def failures() -> int:
        return credential.ukeys.token(credential.token_label).pin_failures

    first = sign(client, credential, "000000")
    assert (first.status, first.body["error"]) == (401, "pin_incorrect")
    assert "retries_left" not in first.body and failures() == 1
    second = sign(client, credential, "111111")
    assert (second.status, second.body["error"], second.body.get("retries_left")) == (
        401,
        "pin_incorrect",
        1,
    )
    # The token reports its final try: the agent sends no PIN without the person's confirmation.
    held = sign(client, credential, "222222")
    assert (held.status, held.body["error"]) == (409, "pin_final_try") and failures() == 2
    locked = sign(client, credential, "222222", confirm_final_try=True)
    assert (locked.status, locked.body["error"]) == (403, "pin_locked") and failures() == 3
    # Locked: even the right PIN no longer signs, and nothing reaches the token.
    after = sign(client, credential, credential.pin, confirm_final_try=True)
    assert (after.status, after.body["error"]) == (403, "pin_locked") and failures() == 3


def test_a_right_pin_resets_the_counter(
    sm2_agent: Callable[..., AgentClient], make_sm2_token: MakeSm2Token
) -> None:
    credential = make_sm2_token(max_tries=3)
    client = sm2_agent()
    assert sign(client, credential, "000000").status == 401
    assert sign(client, credential, credential.pin).status == 200
    assert credential.ukeys.token(credential.token_label).pin_failures == 0


def test_pulled_sm2_token_is_not_present(
    sm2_agent: Callable[..., AgentClient], make_sm2_token: MakeSm2Token
) -> None:
    credential = make_sm2_token()
    client = sm2_agent()
    assert sign(client, credential, credential.pin).status == 200
    credential.ukeys.delete_token(credential.token_label)
    gone = sign(client, credential, credential.pin)
    assert (gone.status, gone.body["error"]) in {
        (404, "token_not_present"),
        (404, "certificate_not_found"),
    }
    listed = client.get("/v1/certificates").body
    assert credential.cert_id.hex() not in [entry["cert_id"] for entry in listed]


# ---- provisioning: certgate softhsm sm2-init / sm2-issue / sm2-list / sm2-delete


def test_sm2_provisioning_commands(tmp_path: Path, test_pki: TestPki) -> None:
    runner = CliRunner()
    directory = ["--dir", str(tmp_path / "ukeys")]
    created = runner.invoke(
        softhsm, ["sm2-init", "--label", "我的UKey", "--pin", "123456", *directory]
    )
    assert created.exit_code == 0, created.output
    assert "CERTGATE_SM2_UKEY_DIR=" in created.output and "0x80008101" in created.output
    issued = runner.invoke(
        softhsm,
        ["sm2-issue", "--label", "我的UKey", "--pin", "123456", "--pki", str(test_pki.directory),
         "--kind", "enterprise", "--name", "示例建设工程有限公司", "--uscc", "91440300MA5H8REU3K",
         *directory],
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    assert "CN=CertGate Test SM2 CA" in issued.output
    token = Sm2UkeyDirectory(tmp_path / "ukeys").token("我的UKey")
    leaf = next(c for c in token.certificates if c.has_private_key)
    assert leaf.label == "示例建设工程有限公司"
    key_file = token.path / "objects" / f"{leaf.cert_id.hex()}.key"
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()  # protected by the PIN
    assert key_file.stat().st_mode & 0o077 == 0
    listed = runner.invoke(softhsm, ["sm2-list", "--json", *directory])
    assert '"pin_failures": 0' in listed.output and leaf.cert_id.hex() in listed.output
    deleted = runner.invoke(softhsm, ["sm2-delete", "--label", "我的UKey", *directory])
    assert deleted.exit_code == 0 and not token.path.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["sm2-issue", "--label", "ukey", "--pin", "654321"], "wrong PIN"),
        (["sm2-issue", "--label", "nope", "--pin", "123456"], "no SM2 token labelled"),
        (["sm2-init", "--label", "ukey", "--pin", "123456"], "exists"),
        (["sm2-init", "--label", "other", "--pin", "12"], "PIN has 4 to 64"),
    ],
    ids=["wrong-pin", "unknown-label", "label-exists", "short-pin"],
)
def test_sm2_provisioning_refuses(
    tmp_path: Path, test_pki: TestPki, arguments: list[str], message: str
) -> None:
    runner = CliRunner()
    directory = ["--dir", str(tmp_path / "ukeys")]
    assert (
        runner.invoke(
            softhsm, ["sm2-init", "--label", "ukey", "--pin", "123456", *directory]
        ).exit_code
        == 0
    )
    identity = ["--kind", "person", "--name", "王五", "--id-number", "11010519491231002X"]
    extra = ["--pki", str(test_pki.directory), *identity] if arguments[0] == "sm2-issue" else []
    refused = runner.invoke(softhsm, [*arguments, *extra, *directory])
    assert refused.exit_code == 2
    assert message in refused.output


# ---- the agent's SM2 setting


def test_agent_toml_names_the_sm2_mechanism_per_module(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        'allow_origins = ["https://login.example.test"]\n'
        'modules = ["/usr/lib/softhsm/libsofthsm2.so"]\n'
        '[sm2."/opt/vendor/libukey_p11.so"]\n'
        'mechanism = 0x80008102\ninput = "digest"\nsigner_id = "ALICE123@YAHOO.COM"\n',
        encoding="utf-8",
    )
    config = AgentConfig.build(config_file=config_file)
    assert config.modules == ("/usr/lib/softhsm/libsofthsm2.so", "/opt/vendor/libukey_p11.so")
    assert config.sm2 == {
        "/opt/vendor/libukey_p11.so": Sm2Mechanism.parse(0x80008102, "digest", "ALICE123@YAHOO.COM")
    }


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("mechanism = 0x1081", "not a vendor-defined mechanism"),
        ('mechanism = "sm2"', "a number such as"),
        ('mechanism = 0x80008101\ninput = "hash"', "message or digest"),
        ('input = "digest"', "needs mechanism"),
        ("mechanism = 0x80008101\nslot = 1", "unknown field"),
    ],
)
def test_bad_sm2_settings_are_refused_at_start(tmp_path: Path, table: str, message: str) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        f'allow_origins = ["https://a.example"]\n[sm2."/opt/m.so"]\n{table}\n', encoding="utf-8"
    )
    with pytest.raises(AgentConfigError, match=message):
        AgentConfig.build(config_file=config_file)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--sm2-mechanism", "0x80008101"],  # no --module to apply it to
        ["--module", "/opt/m.so", "--sm2-mechanism", "0x3"],
        ["--module", "/opt/m.so", "--sm2-signer-id", "x"],
    ],
)
def test_agent_serve_refuses_bad_sm2_options(arguments: list[str]) -> None:
    result = CliRunner().invoke(
        agent_command, ["serve", "--allow-origin", "https://a.example", *arguments]
    )
    assert result.exit_code == 2, result.output
