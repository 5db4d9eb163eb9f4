"""Fixtures of the token tests: SoftHSM tokens per key type, an in-process agent, an HTTP client.

Tokens come from the shared SoftHSM fixtures (tests/fixtures_softhsm.py): one session token
directory, ``SOFTHSM2_CONF`` set before anything loads libsofthsm2. The token library re-scans
SoftHSM before each listing, so tokens the kit creates in its child processes are seen.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fixtures_softhsm import MakeSoftHsmToken, SoftHsmCredential
from tokens.agent import AgentConfig, SigningAgent
from tokens.pkcs11 import SOFTHSM_MODULE, TokenLibrary

ALLOWED_ORIGIN = "https://login.example.test"
OTHER_ORIGIN = "https://evil.example.test"
# Guards against a hung socket, not a performance claim: nothing asserts on elapsed time.
SOCKET_TIMEOUT_SECONDS = 30


@pytest.fixture(scope="session")
def rsa_token(make_softhsm_token: MakeSoftHsmToken) -> SoftHsmCredential:
    return make_softhsm_token(key="rsa2048")


@pytest.fixture(scope="session")
def p256_token(make_softhsm_token: MakeSoftHsmToken) -> SoftHsmCredential:
    return make_softhsm_token(key="p256", kind="enterprise")


@pytest.fixture(scope="session")
def ed25519_token(make_softhsm_token: MakeSoftHsmToken) -> SoftHsmCredential:
    return make_softhsm_token(key="ed25519")


@pytest.fixture(params=["rsa2048", "p256", "ed25519"])
def any_token(request: pytest.FixtureRequest) -> SoftHsmCredential:
    names = {"rsa2048": "rsa_token", "p256": "p256_token", "ed25519": "ed25519_token"}
    credential: SoftHsmCredential = request.getfixturevalue(names[request.param])
    return credential


@pytest.fixture
def token_library() -> TokenLibrary:
    return TokenLibrary([SOFTHSM_MODULE])


@pytest.fixture
def agent(token_library: TokenLibrary) -> Iterator[SigningAgent]:
    config = AgentConfig(allowed_origins=frozenset({ALLOWED_ORIGIN}), port=0, poll_seconds=0.1)
    running = SigningAgent(config, token_library, use_pcsc=False).start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class AgentAnswer:
    status: int
    headers: http.client.HTTPMessage
    body: Any


class AgentClient:
    """Raw HTTP to the agent, so tests choose every header (Origin, Host) themselves."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)

    def request(
        self,
        method: str,
        path: str,
        *,
        origin: str | None = ALLOWED_ORIGIN,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AgentAnswer:
        connection = http.client.HTTPConnection(
            self.host, self.port, timeout=SOCKET_TIMEOUT_SECONDS
        )
        try:
            sent = dict(headers or {})
            if origin is not None:
                sent["Origin"] = origin
            if body is not None:
                sent.setdefault("Content-Type", "application/json")
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            parsed = json.loads(raw) if raw else None
            return AgentAnswer(response.status, response.headers, parsed)
        finally:
            connection.close()

    def get(self, path: str, **options: Any) -> AgentAnswer:
        return self.request("GET", path, **options)

    def post(self, path: str, payload: Any, **options: Any) -> AgentAnswer:
        return self.request("POST", path, body=json.dumps(payload).encode(), **options)

    def events(self, origin: str = ALLOWED_ORIGIN) -> EventStream:
        return EventStream(self.host, self.port, origin)


class EventStream:
    """A ``GET /v1/events`` stream read event by event."""

    def __init__(self, host: str, port: int, origin: str) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=SOCKET_TIMEOUT_SECONDS)
        self.connection.request("GET", "/v1/events", headers={"Origin": origin})
        self.response = self.connection.getresponse()

    def next_event(self) -> tuple[str, dict[str, Any]]:
        name, data = "message", ""
        while True:
            line = self.response.readline().decode("utf-8")
            if not line:
                raise EOFError("event stream closed")
            line = line.rstrip("\n")
            if line == "":
                if data:
                    return name, json.loads(data)
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data += value

    def wait_for(self, name: str, **matching: Any) -> dict[str, Any]:
        while True:
            event, data = self.next_event()
            if event == name and all(data.get(k) == v for k, v in matching.items()):
                return data

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def agent_client(agent: SigningAgent) -> AgentClient:
    return AgentClient(agent.url)
