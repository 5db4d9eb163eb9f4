"""Property-based input tests: no body sent to a JSON route of the gateway or of the signing agent
gets a 5xx answer (an unhandled error), whatever its bytes.

Routes are enumerated from each app's URL map, so a new route is fuzzed without changing this
file. Bodies are random bytes, random JSON, deeply nested JSON, and objects built from each
route's own field names (the gateway learns them from ``json_body``, the agent declares them in
``tokens.agent.JSON_ROUTES``) holding nulls, wrong types, huge or deep values, lone surrogates,
NUL and plausible strings. The gateway's account routes are fuzzed signed in, with the CSRF
token, so bodies get past the session checks to the parser.

``CERTGATE_FUZZ_EXAMPLES`` sets the number of bodies per test (default 1500, about 20 s each
here); ``make fuzz`` runs a longer campaign. The bodies per route and the server errors are
printed at the end of each test.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.accounts import AccountService
from gateway.clock import FixedClock
from gateway.http import JSON_FIELDS_KEY, JSON_OPTIONAL_FIELDS_KEY
from gateway.sessions import CSRF_HEADER
from tests.fixtures_softhsm import MakeSoftHsmToken
from tests.gateway.conftest import ORIGIN, PASSWORD
from tokens.agent import JSON_ROUTES, AgentConfig, SigningAgent
from tokens.pin_guard import PinPolicy
from tokens.pkcs11 import SOFTHSM_MODULE, TokenLibrary

EXAMPLES = int(os.environ.get("CERTGATE_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
AGENT_ORIGIN = "https://login.example.test"
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

# --- bodies ----------------------------------------------------------------------------------

# Text with everything JSON can carry: lone surrogates (category Cs, written "\ud800" by
# json.dumps), NUL and other controls, CJK, emoji.
nasty_text = st.text(st.characters(codec=None), max_size=40) | st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "", " ", "\n", "null", "😀", "张三", "0" * 200]
)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | nasty_text
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(nasty_text, children, max_size=4)
    ),
    max_leaves=12,
)


def _deep(levels: int, opening: str) -> str:
    closing = "]" if opening == "[" else "}"
    return opening * levels + "0" + closing * levels


deep_text = st.builds(_deep, st.integers(1, 1500), st.sampled_from(["[", '{"a":']))
huge_values = st.sampled_from(["x" * 70_000, "\ud800" * 1000, list(range(5000)), {"k": "v" * 9000}])


def field_values(kind: type | tuple[type, ...] | None) -> st.SearchStrategy[Any]:
    """Values for a field: mostly wrong (null, other types, huge, surrogates), sometimes right."""
    right: st.SearchStrategy[Any] = st.nothing()
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if str in kinds:
        right = st.text(max_size=60) | nasty_text
    if bool in kinds:
        right = right | st.booleans()
    if list in kinds:
        right = right | st.lists(nasty_text, max_size=5)
    return st.one_of(right, st.none(), json_values, huge_values)


def structured_bodies(fields: Mapping[str, Any]) -> st.SearchStrategy[str]:
    """A JSON object over the route's own fields (plus a stranger), serialised with escapes."""
    names = list(fields) + ["origin", "extra"]
    pairs = st.fixed_dictionaries(
        {}, optional={name: field_values(fields.get(name)) for name in names}
    )
    return pairs.map(lambda body: json.dumps(body, ensure_ascii=True))


def deep_in_a_field(fields: Mapping[str, Any]) -> st.SearchStrategy[str]:
    names = list(fields) or ["field"]
    return st.builds(lambda name, deep: f'{{"{name}": {deep}}}', st.sampled_from(names), deep_text)


def bodies(fields: Mapping[str, Any]) -> st.SearchStrategy[tuple[str, bytes, str]]:
    """(kind, body, content type) for a route with these fields."""
    as_json = "application/json"
    return st.one_of(
        st.tuples(
            st.just("structured"), structured_bodies(fields).map(str.encode), st.just(as_json)
        ),
        st.tuples(st.just("deep"), deep_in_a_field(fields).map(str.encode), st.just(as_json)),
        st.tuples(st.just("deep"), deep_text.map(str.encode), st.just(as_json)),
        st.tuples(
            st.just("json"),
            json_values.map(lambda v: json.dumps(v, ensure_ascii=True).encode()),
            st.just(as_json),
        ),
        st.tuples(
            st.just("bytes"),
            st.binary(max_size=300),
            st.sampled_from([as_json, "text/plain", "application/json; charset=latin-1"]),
        ),
    )


class Tally:
    def __init__(self, name: str) -> None:
        self.name = name
        self.bodies: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.server_errors: list[tuple[str, int, bytes]] = []

    def report(self, capsys: pytest.CaptureFixture[str]) -> None:
        with capsys.disabled():
            print(f"\n{self.name}: {sum(self.bodies.values())} bodies, {dict(self.kinds)}")
            for route, count in sorted(self.bodies.items()):
                print(f"  {route:45} {count:6}")
            print(f"  server errors: {len(self.server_errors)}")


def body_routes(app: Flask, prefix: str) -> list[tuple[str, str]]:
    """(method, path) of every route under ``prefix`` (the URL map, so new routes come in)."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix) or rule.arguments:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule))
    return found


# --- the gateway -----------------------------------------------------------------------------


class SignedIn:
    """A client with a password session and its CSRF token, signed in again when a fuzzed body
    ended the session (logout, sessions/end)."""

    def __init__(self, client: FlaskClient, identifier: str) -> None:
        self.client = client
        self.identifier = identifier
        self.csrf = ""
        self.sign_in()

    def sign_in(self) -> None:
        answer = self.client.post(
            "/api/v1/login/password",
            json={"identifier": self.identifier, "password": PASSWORD},
            headers={"Origin": ORIGIN},
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        self.csrf = answer.json["csrf_token"]

    def send(self, method: str, path: str, body: bytes, content_type: str) -> Any:
        return self.client.open(
            path,
            method=method,
            data=body,
            headers={"Origin": ORIGIN, CSRF_HEADER: self.csrf, "Content-Type": content_type},
        )


@pytest.fixture
def fuzz_app(make_app: Callable[..., Flask]) -> Flask:
    # Limits out of the way, so bodies keep reaching the parser instead of rate_limited.
    return make_app(
        ADDRESS_ATTEMPT_LIMIT=10**9,
        ACCOUNT_ATTEMPT_LIMIT=10**9,
        CHALLENGE_LIMIT=10**9,
        LOCKOUT_THRESHOLD=10**9,
    )


@pytest.fixture
def signed_in(fuzz_app: Flask, clock: FixedClock) -> SignedIn:
    from gateway.accounts import get_accounts

    accounts: AccountService = get_accounts(fuzz_app)
    accounts.create_person(
        real_name="张三",
        id_card_number="11010519491231002X",
        at=clock.now(),
        login_name="zhangsan",
        password=PASSWORD,
    )
    return SignedIn(fuzz_app.test_client(), "zhangsan")


def test_no_gateway_json_route_answers_5xx(
    fuzz_app: Flask, signed_in: SignedIn, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = body_routes(fuzz_app, "/api/")
    assert ("POST", "/api/v1/login/password") in routes
    # Each route tells which fields it reads the first time it parses a body.
    for method, path in routes:
        if method in BODY_METHODS:
            signed_in.send(method, path, b"{}", "application/json")
            signed_in.sign_in()  # in case that body ended the session (logout)
    learnt: Mapping[str, Mapping[str, Any]] = fuzz_app.extensions.get(JSON_FIELDS_KEY, {})
    endpoints = {rule.rule: rule.endpoint for rule in fuzz_app.url_map.iter_rules()}
    assert set(learnt[endpoints["/api/v1/login/token"]]) >= {"challenge_id", "signature"}
    assert "version" in learnt[endpoints["/api/v1/account/consent"]]
    tally = Tally("gateway")

    @FUZZ
    @given(st.data())
    def one_body(data: st.DataObject) -> None:
        method, path = data.draw(st.sampled_from(routes))
        fields = learnt.get(endpoints[path], {})
        kind, body, content_type = data.draw(bodies(fields))
        answer = signed_in.send(method, path, body, content_type)
        tally.bodies[f"{method} {path}"] += 1
        tally.kinds[kind] += 1
        if answer.status_code >= 500:
            tally.server_errors.append((path, answer.status_code, body[:200]))
        assert answer.status_code < 500, (path, body[:200], answer.get_data(as_text=True))
        if answer.status_code == 400:
            assert answer.json["ok"] is False and answer.json["error"] == "bad_request"
        if answer.status_code == 200 and path in ("/api/v1/logout", "/api/v1/account/sessions/end"):
            signed_in.sign_in()

    try:
        one_body()
    finally:
        tally.report(capsys)
    assert not tally.server_errors
    assert all(tally.bodies[f"{method} {path}"] for method, path in routes)


# --- the signing agent -------------------------------------------------------------------------


@pytest.fixture
def agent_app(make_softhsm_token: MakeSoftHsmToken) -> Iterator[tuple[Flask, str]]:
    credential = make_softhsm_token(key="p256")
    config = AgentConfig(
        allowed_origins=frozenset({AGENT_ORIGIN}),
        port=0,
        pin_policy=PinPolicy(backoff_seconds=0.001, backoff_max_seconds=0.01),
    )
    agent = SigningAgent(config, TokenLibrary([SOFTHSM_MODULE]), use_pcsc=False)
    try:
        yield agent.app, credential.cert_id.hex()
    finally:
        agent.hub.close()


def test_no_agent_route_answers_5xx(
    agent_app: tuple[Flask, str], capsys: pytest.CaptureFixture[str]
) -> None:
    app, cert_id = agent_app
    routes = body_routes(app, "/v1/")
    assert ("POST", "/v1/sign") in routes
    client = app.test_client()
    tally = Tally("agent")
    # The agent's own field names, plus the certificate on the token so a PIN can be reached.
    known = {path: dict(fields) for path, fields in JSON_ROUTES.items()}

    @FUZZ
    @given(st.data())
    def one_body(data: st.DataObject) -> None:
        method, path = data.draw(st.sampled_from(routes))
        fields = {name: kind for name, (kind, _) in known.get(path, {}).items()}
        kind, body, content_type = data.draw(bodies(fields))
        if kind == "structured" and data.draw(st.booleans()):
            parsed = json.loads(body)
            parsed["cert_id"] = cert_id  # past the certificate lookup, to the PIN guard
            body = json.dumps(parsed).encode()
        answer = client.open(
            path,
            method=method,
            data=body,
            base_url="http://127.0.0.1:21790",
            headers={"Origin": AGENT_ORIGIN, "Content-Type": content_type},
            buffered=False,
        )
        try:
            status = answer.status_code
            payload = answer.get_data() if path != "/v1/events" else b""
        finally:
            answer.close()
        tally.bodies[f"{method} {path}"] += 1
        tally.kinds[kind] += 1
        if status >= 500:
            tally.server_errors.append((path, status, body[:200]))
        assert status < 500, (path, body[:200], payload[:300])
        if status == 400:
            assert json.loads(payload)["error"] == "bad_request"

    try:
        one_body()
    finally:
        tally.report(capsys)
    assert not tally.server_errors
    assert all(tally.bodies[f"{method} {path}"] for method, path in routes)


# --- the three bodies that used to answer 503, on every route that reads a body ---------------


def learnt_routes(fuzz_app: Flask, signed_in: SignedIn) -> dict[str, Mapping[str, Any]]:
    """path -> fields, for every route of the URL map that parses a JSON body."""
    for method, path in body_routes(fuzz_app, "/api/"):
        if method in BODY_METHODS:
            signed_in.send(method, path, b"{}", "application/json")
            signed_in.sign_in()
    learnt: Mapping[str, Mapping[str, Any]] = fuzz_app.extensions[JSON_FIELDS_KEY]
    optional: Mapping[str, frozenset[str]] = fuzz_app.extensions[JSON_OPTIONAL_FIELDS_KEY]
    by_endpoint = {rule.endpoint: rule.rule for rule in fuzz_app.url_map.iter_rules()}
    # An optional field's null counts as absent (no error): only required fields are kept here.
    return {
        by_endpoint[endpoint]: {
            name: kind for name, kind in fields.items() if name not in optional[endpoint]
        }
        for endpoint, fields in learnt.items()
    }


def test_null_deep_and_surrogate_bodies_are_bad_request(
    fuzz_app: Flask, signed_in: SignedIn
) -> None:
    routes = learnt_routes(fuzz_app, signed_in)
    assert {"/api/v1/login/password", "/api/v1/login/token", "/api/v1/account/consent"} <= set(
        routes
    )
    checked = 0
    for path, fields in routes.items():
        strings = [name for name, kind in fields.items() if kind is str]
        plausible = {name: "x" for name in strings}
        bodies_for_route = [json.dumps({**plausible, name: None}) for name in strings]
        bodies_for_route += [json.dumps({**plausible, name: "a\ud800"}) for name in strings]
        bodies_for_route += [
            json.dumps(plausible)[:-1]
            + (", " if plausible else "")
            + '"x": '
            + _deep(1000, "[")
            + "}",
            _deep(1000, '{"a":'),
        ]
        for body in bodies_for_route:
            answer = signed_in.send("POST", path, body.encode(), "application/json")
            assert (answer.status_code, answer.json["error"]) == (400, "bad_request"), (path, body)
            checked += 1
    assert checked >= 20
