"""Malformed sign requests and too many connections: each is a clear answer, never a crash."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.fixtures_softhsm import SoftHsmCredential
from tests.tokens.conftest import ALLOWED_ORIGIN, AgentClient
from tests.tokens.test_agent import sign_request
from tokens.agent import SIGN_FIELDS, AgentConfig, SigningAgent
from tokens.pkcs11 import TokenLibrary

STRING_FIELDS = [name for name, (kind, _) in SIGN_FIELDS.items() if kind is str]


def post_raw(client: AgentClient, body: bytes) -> tuple[int, dict[str, object]]:
    answer = client.request("POST", "/v1/sign", body=body, headers={"Accept-Language": "en"})
    return answer.status, answer.body


@pytest.mark.parametrize("name", STRING_FIELDS)
def test_null_for_a_string_field_is_bad_request(
    agent_client: AgentClient, rsa_token: SoftHsmCredential, name: str
) -> None:
    body = json.dumps(sign_request(rsa_token, **{name: None}))
    status, answer = post_raw(agent_client, body.encode())
    if name in ("token_label", "signature_algorithm"):  # optional: null is absent
        assert status == 200
    else:
        assert (status, answer["error"]) == (400, "bad_request")


@pytest.mark.parametrize("name", STRING_FIELDS)
def test_lone_surrogate_is_bad_request(
    agent_client: AgentClient, rsa_token: SoftHsmCredential, name: str
) -> None:
    body = json.dumps(sign_request(rsa_token, **{name: "12\ud80034"}))  # "\\ud800" on the wire
    assert "\\ud800" in body
    status, answer = post_raw(agent_client, body.encode())
    assert (status, answer["error"]) == (400, "bad_request")
    assert "not Unicode" in str(answer["message"])


# 1,000 deep arrays; objects as deep as the 4 KiB body limit allows.
@pytest.mark.parametrize(("opening", "levels"), [("[", 1000), ('{"":', 700)])
def test_thousand_deep_json_is_bad_request(
    agent_client: AgentClient, rsa_token: SoftHsmCredential, opening: str, levels: int
) -> None:
    deep = opening * levels + "1" + ("]" if opening == "[" else "}") * levels
    body = json.dumps(sign_request(rsa_token))[:-1] + f', "extra": {deep}}}'
    status, answer = post_raw(agent_client, body.encode())
    assert (status, answer["error"]) == (400, "bad_request")
    # Nested just past the limit is refused the same way, below the parser's own recursion.
    shallow = "[" * 5 + "]" * 5
    body = json.dumps(sign_request(rsa_token))[:-1] + f', "extra": {shallow}}}'
    assert post_raw(agent_client, body.encode())[0] == 400


@pytest.mark.parametrize(
    "changes",
    [{"cert_id": True}, {"pin": 123456.0}, {"confirm_final_try": "yes"}, {"nonce": ["x"]}],
)
def test_wrong_types_are_bad_request(
    agent_client: AgentClient, rsa_token: SoftHsmCredential, changes: dict[str, object]
) -> None:
    status, answer = post_raw(agent_client, json.dumps(sign_request(rsa_token, **changes)).encode())
    assert (status, answer["error"]) == (400, "bad_request")


def test_connections_are_capped(token_library: TokenLibrary) -> None:
    config = AgentConfig(allowed_origins=frozenset({ALLOWED_ORIGIN}), port=0, max_connections=3)
    running = SigningAgent(config, token_library, use_pcsc=False).start()
    held = []
    try:
        client = AgentClient(running.url)
        for _ in range(3):
            held.append(socket.create_connection((client.host, client.port), timeout=10))
        # Every place is taken (idle connections): the next one is told so and closed.
        refused = client.get("/v1/certificates")
        assert (refused.status, refused.body["error"]) == (503, "unavailable")
        held.pop().close()
        for _ in range(50):  # the freed place comes back once the server has seen the close
            answer = client.get("/v1/certificates")
            if answer.status == 200:
                break
            time.sleep(0.05)
        assert answer.status == 200
    finally:
        for connection in held:
            connection.close()
        running.stop()
