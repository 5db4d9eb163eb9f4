"""PIN retry counter and lock, as real USB keys report them, through the agent.

SoftHSM never locks a PIN, so these tests put ``pin_lockout_module.c`` in front of it: a PKCS#11
module that forwards to a private copy of libsofthsm2 and keeps a retry counter (3 tries), showing
it through the CK_TOKEN_INFO flags as a USB key does. The module is compiled at test time.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_softhsm import MakeSoftHsmToken
from tests.tokens.conftest import ALLOWED_ORIGIN, AgentClient
from tokens.agent import AgentConfig, SigningAgent
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


def test_retries_left_then_pin_locked(
    lockout_module: str, make_softhsm_token: MakeSoftHsmToken
) -> None:
    credential = make_softhsm_token(key="p256")
    library = TokenLibrary([lockout_module])
    config = AgentConfig(allowed_origins=frozenset({ALLOWED_ORIGIN}), port=0)
    running = SigningAgent(config, library, use_pcsc=False).start()
    client = AgentClient(running.url)

    def sign(pin: str) -> tuple[int, dict[str, object]]:
        answer = client.post(
            "/v1/sign",
            {"cert_id": credential.cert_id.hex(), "pin": pin, "challenge_id": "c", "nonce": NONCE},
            headers={"Accept-Language": "en"},
        )
        return answer.status, answer.body

    try:
        assert sign(credential.pin)[0] == 200
        status, first = sign("000000")
        assert (status, first["error"]) == (401, "pin_incorrect")
        assert "retries_left" not in first
        assert "few attempts" in str(first["message"])  # USER_PIN_COUNT_LOW
        status, second = sign("000000")
        assert (status, second["error"], second["retries_left"]) == (401, "pin_incorrect", 1)
        status, third = sign("000000")
        assert (status, third["error"]) == (403, "pin_locked")
        (token,) = [t for t in library.tokens() if t.label == credential.token_label]
        assert token.pin.locked
        status, after = sign(credential.pin)  # even the right PIN: the key is locked
        assert (status, after["error"]) == (403, "pin_locked")
    finally:
        running.stop()
