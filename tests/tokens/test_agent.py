"""The signing agent over HTTP: origin allow-list, CORS and Private Network Access, signing, errors,
events, and the PIN never reaching a log."""

from __future__ import annotations

import base64
import json
import logging
import threading
from pathlib import Path

import pytest
from cryptography import x509

from tests.fixtures_softhsm import MakeSoftHsmToken, SoftHsmCredential
from tests.tokens.conftest import ALLOWED_ORIGIN, OTHER_ORIGIN, AgentClient
from tests.tokens.test_pkcs11 import verify
from tokens.agent import (
    MAX_BODY_BYTES,
    AgentConfig,
    AgentConfigError,
    SigningAgent,
    check_loopback,
)
from tokens.login_message import login_message
from tokens.pkcs11 import TokenLibrary

NONCE = base64.urlsafe_b64encode(bytes(range(100, 132))).rstrip(b"=").decode()
ROUTES = [("GET", "/v1/certificates"), ("POST", "/v1/sign"), ("GET", "/v1/events")]


def sign_request(credential: SoftHsmCredential, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "cert_id": credential.cert_id.hex(),
        "pin": credential.pin,
        "challenge_id": "challenge-42",
        "nonce": NONCE,
    }
    body.update(changes)
    return body


def test_lists_certificates_for_an_allowed_origin(
    agent_client: AgentClient, rsa_token: SoftHsmCredential, p256_token: SoftHsmCredential
) -> None:
    answer = agent_client.get("/v1/certificates")
    assert answer.status == 200
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Origin" in answer.headers["Vary"]
    by_label = {entry["token_label"]: entry for entry in answer.body}
    rsa_entry = by_label[rsa_token.token_label]
    assert rsa_entry["cert_id"] == rsa_token.cert_id.hex()
    assert rsa_entry["key_type"] == "rsa"
    assert by_label[p256_token.token_label]["key_type"] == "ec-p256"
    certificate = x509.load_der_x509_certificate(base64.b64decode(rsa_entry["certificate"]))
    assert certificate == rsa_token.provisioned.certificate
    assert set(rsa_entry) == {
        "token_label", "cert_id", "subject", "issuer", "serial", "not_after", "key_type",
        "certificate",
    }  # fmt: skip


@pytest.mark.parametrize(("method", "path"), [*ROUTES, ("OPTIONS", "/v1/sign")])
@pytest.mark.parametrize(
    "origin",
    [
        None,
        OTHER_ORIGIN,
        "null",
        "https://login.example.test.evil.test",
        "http://login.example.test",
        "https://login.example.test:8443",
        "https://LOGIN.example.test",
    ],
)
def test_every_route_refuses_a_missing_or_foreign_origin(
    agent_client: AgentClient, method: str, path: str, origin: str | None
) -> None:
    answer = agent_client.request(
        method,
        path,
        origin=origin,
        body=b"{}" if method == "POST" else None,
        headers={
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert answer.status == 403
    assert answer.body["error"] == "origin_not_allowed"
    assert answer.body["ok"] is False
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert "Access-Control-Allow-Private-Network" not in answer.headers


def test_preflight_with_private_network_access(agent_client: AgentClient) -> None:
    answer = agent_client.request(
        "OPTIONS",
        "/v1/sign",
        headers={
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert answer.headers["Access-Control-Allow-Private-Network"] == "true"
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in answer.headers["Access-Control-Allow-Headers"]


def test_preflight_without_private_network_request(agent_client: AgentClient) -> None:
    answer = agent_client.request(
        "OPTIONS", "/v1/sign", headers={"Access-Control-Request-Method": "POST"}
    )
    assert answer.status == 204
    assert "Access-Control-Allow-Private-Network" not in answer.headers


def test_foreign_host_header_is_refused(agent_client: AgentClient) -> None:
    # DNS rebinding: a page on evil.test re-resolved to 127.0.0.1 sends Host: evil.test.
    answer = agent_client.get("/v1/certificates", headers={"Host": "evil.test:21790"})
    assert answer.status == 403
    assert answer.body["error"] == "origin_not_allowed"


@pytest.mark.parametrize("key", ["rsa2048", "p256", "ed25519"])
def test_signature_is_over_the_header_origin_not_the_body(
    request: pytest.FixtureRequest, agent_client: AgentClient, key: str
) -> None:
    credential: SoftHsmCredential = request.getfixturevalue(
        {"rsa2048": "rsa_token", "p256": "p256_token", "ed25519": "ed25519_token"}[key]
    )
    answer = agent_client.post(
        "/v1/sign", sign_request(credential, origin=OTHER_ORIGIN, message="anything else")
    )
    assert answer.status == 200, answer.body
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    certificate = x509.load_der_x509_certificate(base64.b64decode(answer.body["certificate"]))
    assert certificate == credential.provisioned.certificate
    assert isinstance(answer.body["chain"], list)
    signature = base64.b64decode(answer.body["signature"])
    expected = f"certgate-login-v1\n{ALLOWED_ORIGIN}\nchallenge-42\n{NONCE}\n".encode()
    assert expected == login_message(ALLOWED_ORIGIN, "challenge-42", NONCE)
    verify(certificate, answer.body["signature_algorithm"], signature, expected)


def test_rsa_pss_on_request(agent_client: AgentClient, rsa_token: SoftHsmCredential) -> None:
    answer = agent_client.post(
        "/v1/sign", sign_request(rsa_token, signature_algorithm="rsa-pss-sha256")
    )
    assert answer.status == 200
    assert answer.body["signature_algorithm"] == "rsa-pss-sha256"
    verify(
        rsa_token.provisioned.certificate,
        "rsa-pss-sha256",
        base64.b64decode(answer.body["signature"]),
        login_message(ALLOWED_ORIGIN, "challenge-42", NONCE),
    )


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"pin": "000000"}, 401, "pin_incorrect"),
        ({"cert_id": "00ff00ff00ff"}, 404, "certificate_not_found"),
        ({"token_label": "no-such-token"}, 404, "token_not_present"),
        ({"cert_id": "zz"}, 400, "bad_request"),
        ({"cert_id": ""}, 400, "bad_request"),
        ({"cert_id": None}, 400, "bad_request"),
        ({"pin": ""}, 400, "bad_request"),
        ({"pin": 123456}, 400, "bad_request"),
        ({"pin": None}, 400, "bad_request"),
        ({"nonce": "short"}, 400, "bad_request"),
        ({"nonce": None}, 400, "bad_request"),
        ({"challenge_id": "a\nb"}, 400, "bad_request"),
        ({"challenge_id": None}, 400, "bad_request"),
        ({"signature_algorithm": "ed25519"}, 400, "bad_request"),
        ({"signature_algorithm": 7}, 400, "bad_request"),
    ],
)
def test_sign_errors(
    agent_client: AgentClient,
    rsa_token: SoftHsmCredential,
    changes: dict[str, object],
    status: int,
    code: str,
) -> None:
    answer = agent_client.post("/v1/sign", sign_request(rsa_token, **changes))
    assert (answer.status, answer.body["error"]) == (status, code)
    assert answer.body["ok"] is False
    assert answer.body["message"]


def test_pin_incorrect_message_follows_accept_language(
    agent_client: AgentClient, rsa_token: SoftHsmCredential
) -> None:
    english = agent_client.post(
        "/v1/sign", sign_request(rsa_token, pin="000000"), headers={"Accept-Language": "en"}
    )
    chinese = agent_client.post("/v1/sign", sign_request(rsa_token, pin="000000"))
    # SoftHSM raises USER_PIN_COUNT_LOW after failures, which may lengthen the sentence.
    assert english.body["message"].startswith("The PIN is incorrect")
    assert chinese.body["message"].startswith("PIN 码错误")


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"cert_id": "00"}', "text/plain", 400),
        (b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}", "application/json", 413),
    ],
)
def test_malformed_or_oversized_body_is_bad_request(
    agent_client: AgentClient, body: bytes, content_type: str, status: int
) -> None:
    answer = agent_client.request(
        "POST", "/v1/sign", body=body, headers={"Content-Type": content_type}
    )
    assert answer.status == status
    assert answer.body["error"] == "bad_request"


def test_unknown_route_and_method(agent_client: AgentClient) -> None:
    assert agent_client.get("/v1/nothing").body["error"] == "bad_request"
    answer = agent_client.request("DELETE", "/v1/certificates")
    assert answer.status == 405
    assert answer.body["error"] == "bad_request"


def test_concurrent_requests_to_one_token(
    agent_client: AgentClient, ed25519_token: SoftHsmCredential
) -> None:
    statuses: list[int] = []

    def sign() -> None:
        statuses.append(agent_client.post("/v1/sign", sign_request(ed25519_token)).status)

    threads = [threading.Thread(target=sign) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6


def test_pin_never_reaches_a_log(
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    agent_client: AgentClient,
    rsa_token: SoftHsmCredential,
    make_softhsm_token: MakeSoftHsmToken,
) -> None:
    secret = "Pq7Rk2Wm9X"
    credential = make_softhsm_token(key="p256", pin=secret)
    caplog.set_level(logging.DEBUG)
    assert agent_client.post("/v1/sign", sign_request(credential)).status == 200
    assert agent_client.post("/v1/sign", sign_request(rsa_token, pin=secret)).status == 401
    wrong = secret[::-1]
    assert agent_client.post("/v1/sign", sign_request(credential, pin=wrong)).status == 401
    assert agent_client.post("/v1/sign", sign_request(credential, pin=secret, nonce="x")).status
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "/v1/sign" in caplog.text  # requests are logged...
    assert secret not in logged and wrong not in logged  # ...PINs are not


def test_events_report_token_removed_and_inserted(
    agent_client: AgentClient, make_softhsm_token: MakeSoftHsmToken
) -> None:
    credential = make_softhsm_token(key="p256")
    stream = agent_client.events()
    try:
        assert stream.response.status == 200
        assert stream.response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
        assert stream.response.headers["Content-Type"].startswith("text/event-stream")
        name, ready = stream.next_event()
        assert name == "ready"
        assert ready["pcsc"] is False
        if credential.token_label not in ready["tokens"]:
            stream.wait_for("token_inserted", token_label=credential.token_label)
        credential.kit.delete_token(credential.token_label)
        removed = stream.wait_for("token_removed", token_label=credential.token_label)
        assert removed["source"] == "pkcs11"
        inserted = make_softhsm_token(key="ed25519")
        event = stream.wait_for("token_inserted", token_label=inserted.token_label)
        assert event["serial"]
    finally:
        stream.close()


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::1", "::", "192.168.1.10", "127.0.0.2", "localhost", ""]
)
def test_only_loopback_binds(host: str, token_library: TokenLibrary) -> None:
    with pytest.raises(AgentConfigError):
        check_loopback(host)
    with pytest.raises(AgentConfigError):
        AgentConfig(allowed_origins=frozenset({ALLOWED_ORIGIN}), host=host, port=0)


def test_config_file_adds_origins_and_modules(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        'allow_origins = ["https://Portal.example.test:443"]\n'
        'modules = ["/usr/lib/softhsm/libsofthsm2.so"]\n'
        "port = 0\n",
        encoding="utf-8",
    )
    config = AgentConfig.build(allow_origins=[ALLOWED_ORIGIN], config_file=config_file)
    assert config.allowed_origins == {ALLOWED_ORIGIN, "https://portal.example.test"}
    assert config.modules == ("/usr/lib/softhsm/libsofthsm2.so",)
    assert config.port == 0


@pytest.mark.parametrize(
    "text",
    [
        'allow_origins = "https://a.test"\n',
        'allow_origins = ["https://a.test/path"]\n',
        "allow_origins = []\n",
        'allow_origin = ["https://a.test"]\n',
        'allow_origins = ["https://a.test"]\nport = "80"\n',
        "not toml [",
    ],
)
def test_bad_config_file_names_file_and_field(tmp_path: Path, text: str) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(text, encoding="utf-8")
    with pytest.raises(AgentConfigError):
        AgentConfig.build(config_file=config_file)


def test_config_file_origin_is_allowed_over_http(
    tmp_path: Path, token_library: TokenLibrary, rsa_token: SoftHsmCredential
) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(json.dumps({}).replace("{}", 'allow_origins = ["https://b.test"]'))
    config = AgentConfig.build(config_file=config_file, port=0)
    running = SigningAgent(config, token_library, use_pcsc=False).start()
    try:
        client = AgentClient(running.url)
        assert client.get("/v1/certificates", origin="https://b.test").status == 200
        assert client.get("/v1/certificates").status == 403
    finally:
        running.stop()
