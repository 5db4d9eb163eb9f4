"""PIN retry counter and lock, as real USB keys report them, through the agent.

SoftHSM never locks a PIN, so these tests put ``pin_lockout_module.c`` in front of it: a PKCS#11
module that forwards to a private copy of libsofthsm2 and keeps a retry counter, showing it through
the CK_TOKEN_INFO flags as a USB key does, and counts the PINs that reach the token. The module is
compiled at test time. The agent's own PIN limits (tokens/pin_guard.py) are checked against that
count: what the module did not see, the token never saw.
"""

from __future__ import annotations

import base64
import ctypes
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures_softhsm import MakeSoftHsmToken, SoftHsmCredential
from tests.tokens.conftest import ALLOWED_ORIGIN, AgentClient
from tokens.agent import AgentConfig, SigningAgent
from tokens.pin_guard import PinPolicy
from tokens.pkcs11 import SOFTHSM_MODULE, TokenLibrary

SOURCE = Path(__file__).with_name("pin_lockout_module.c")
PKCS11_HEADERS = Path("/usr/include/p11-kit-1")
NONCE = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()


@pytest.fixture(scope="session")
def lockout_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the PIN lockout module")
    if not (PKCS11_HEADERS / "p11-kit" / "pkcs11.h").is_file():
        pytest.skip("PKCS#11 headers missing (apt-get install libp11-kit-dev)")
    directory = tmp_path_factory.mktemp("pin-lockout")
    module = directory / "pin_lockout.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", f"-I{PKCS11_HEADERS}", str(SOURCE), "-o", str(module),
         "-ldl"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    # A copy under another path is a separate SoftHSM instance in this process.
    target = directory / "libsofthsm2-copy.so"
    shutil.copyfile(SOFTHSM_MODULE, target)
    previous = {name: os.environ.get(name) for name in ("PIN_LOCKOUT_TARGET", "PIN_LOCKOUT_TRIES")}
    os.environ["PIN_LOCKOUT_TARGET"] = str(target)
    os.environ["PIN_LOCKOUT_TRIES"] = "3"
    try:
        yield str(module)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class CountingModule:
    """The loaded PIN lockout module (ctypes finds the very library python-pkcs11 loaded)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._library = ctypes.CDLL(path)
        self._library.pin_lockout_login_calls.restype = ctypes.c_ulong
        self._library.pin_lockout_reset.argtypes = [ctypes.c_ulong]

    def reset(self, tries: int) -> None:
        self._library.pin_lockout_reset(tries)

    @property
    def login_calls(self) -> int:
        return int(self._library.pin_lockout_login_calls())


# Waits short enough for a test; the limits themselves are the defaults'.
QUICK = PinPolicy(backoff_seconds=0.01, backoff_max_seconds=0.05)


class Signer:
    def __init__(self, running: SigningAgent, credential: SoftHsmCredential) -> None:
        self.client = AgentClient(running.url)
        self.credential = credential

    def __call__(self, pin: str, **extra: object) -> tuple[int, dict[str, object]]:
        answer = self.client.post(
            "/v1/sign",
            {
                "cert_id": self.credential.cert_id.hex(),
                "pin": pin,
                "challenge_id": "c",
                "nonce": NONCE,
                **extra,
            },
            headers={"Accept-Language": "en"},
        )
        if answer.status == 429:
            assert answer.headers["Retry-After"] == str(answer.body["retry_after"])
        return answer.status, answer.body


@pytest.fixture
def counting(lockout_module: str) -> CountingModule:
    module = CountingModule(lockout_module)
    module.reset(3)
    return module


@pytest.fixture
def agent_on(
    counting: CountingModule,
) -> Iterator[Callable[..., SigningAgent]]:
    started: list[SigningAgent] = []

    def start(policy: PinPolicy = QUICK) -> SigningAgent:
        library = TokenLibrary([counting.path])
        config = AgentConfig(allowed_origins=frozenset({ALLOWED_ORIGIN}), port=0, pin_policy=policy)
        started.append(SigningAgent(config, library, use_pcsc=False).start())
        return started[-1]

    yield start
    for running in started:
        running.stop()


def test_retries_left_then_pin_locked(
    counting: CountingModule,
    agent_on: Callable[..., SigningAgent],
    make_softhsm_token: MakeSoftHsmToken,
) -> None:
    credential = make_softhsm_token(key="p256")
    sign = Signer(agent_on(), credential)
    assert sign(credential.pin)[0] == 200
    status, first = sign("000000")
    assert (status, first["error"]) == (401, "pin_incorrect")
    assert "retries_left" not in first
    assert "few attempts" in str(first["message"])  # USER_PIN_COUNT_LOW
    status, second = sign("000000")
    assert (status, second["error"], second["retries_left"]) == (401, "pin_incorrect", 1)
    status, third = sign("000000", confirm_final_try=True)
    assert (status, third["error"]) == (403, "pin_locked")
    library = TokenLibrary([counting.path])
    (token,) = [t for t in library.tokens() if t.label == credential.token_label]
    assert token.pin.locked
    sent = counting.login_calls
    status, after = sign(credential.pin, confirm_final_try=True)  # even the right PIN: locked
    assert (status, after["error"]) == (403, "pin_locked")
    assert counting.login_calls == sent  # a locked token is not even asked


def test_final_try_needs_the_persons_confirmation(
    counting: CountingModule,
    agent_on: Callable[..., SigningAgent],
    make_softhsm_token: MakeSoftHsmToken,
) -> None:
    credential = make_softhsm_token(key="p256")
    sign = Signer(agent_on(), credential)
    assert sign("000000")[0] == 401
    status, body = sign("000000")
    assert (status, body["retries_left"]) == (401, 1)  # the token reports USER_PIN_FINAL_TRY
    sent = counting.login_calls
    for extra in ({}, {"confirm_final_try": False}, {"confirm_final_try": None}):
        status, refused = sign(credential.pin, **extra)
        assert (status, refused["error"]) == (409, "pin_final_try")
        assert "one PIN try left" in str(refused["message"])
    assert counting.login_calls == sent  # not one PIN reached the token unconfirmed
    chinese = sign.client.post(  # the same refusal in the default language
        "/v1/sign",
        {"cert_id": credential.cert_id.hex(), "pin": "x", "challenge_id": "c", "nonce": NONCE},
    )
    assert chinese.body["error"] == "pin_final_try" and "最后一次" in chinese.body["message"]
    # Confirmed, the right PIN signs, and the token's counter (and the agent's record) resets.
    assert sign(credential.pin, confirm_final_try=True)[0] == 200
    assert counting.login_calls == sent + 1
    assert sign("000000")[0] == 401
    assert sign(credential.pin)[0] == 200  # one wrong PIN is far from the final try


def test_final_try_is_remembered_for_the_agents_lifetime(
    counting: CountingModule,
    agent_on: Callable[..., SigningAgent],
    make_softhsm_token: MakeSoftHsmToken,
) -> None:
    """Once the agent has seen a token at its final try it asks for confirmation until a right
    PIN, even when the token stops saying so (here: its counter reset behind the agent's back)."""
    credential = make_softhsm_token(key="p256")
    sign = Signer(agent_on(), credential)
    assert sign("000000")[0] == 401
    assert sign("000000")[1]["retries_left"] == 1
    counting.reset(3)  # the token no longer reports USER_PIN_FINAL_TRY
    assert sign(credential.pin)[1]["error"] == "pin_final_try"
    assert counting.login_calls == 0
    assert sign(credential.pin, confirm_final_try=True)[0] == 200


def test_fifty_wrong_pins_do_not_all_reach_the_token(
    counting: CountingModule,
    agent_on: Callable[..., SigningAgent],
    make_softhsm_token: MakeSoftHsmToken,
) -> None:
    """A page guessing PINs as fast as it can, with the default limits: the token sees a few."""
    counting.reset(1000)  # a key that would take every guess: only the agent stops them
    credential = make_softhsm_token(key="p256")
    policy = PinPolicy()
    sign = Signer(agent_on(policy), credential)
    answers = [sign(f"{guess:06d}") for guess in range(50)]
    wrong = [body for status, body in answers if status == 401]
    limited = [body for status, body in answers if status == 429]
    assert len(wrong) + len(limited) == 50
    assert counting.login_calls == len(wrong) <= policy.failures_per_window
    assert {body["error"] for body in limited} == {"pin_rate_limited"}
    assert all(int(str(body["retry_after"])) >= 1 for body in limited)
    assert "try again in" in str(limited[0]["message"])
    # The right PIN waits its turn too: nothing reaches the token until the back-off is over.
    status, body = sign(credential.pin)
    assert (status, body["error"]) == (429, "pin_rate_limited")
    assert counting.login_calls == len(wrong)
