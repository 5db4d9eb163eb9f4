"""``certgate agent serve`` as a process: options, loopback only, life without a PC/SC daemon."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures_softhsm import SoftHsmCredential
from tests.tokens.conftest import ALLOWED_ORIGIN, OTHER_ORIGIN, AgentClient
from tokens.cli import agent
from tokens.pkcs11 import SOFTHSM_MODULE

CERTGATE = str(Path(sys.executable).with_name("certgate"))


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        (["--host", "0.0.0.0", "--allow-origin", ALLOWED_ORIGIN], "only 127.0.0.1"),
        (["--host", "::1", "--allow-origin", ALLOWED_ORIGIN], "only 127.0.0.1"),
        ([], "no allowed origin"),
        (["--allow-origin", "https://a.test/path"], "not a web origin"),
        (["--allow-origin", ALLOWED_ORIGIN, "--module", "/nonexistent.so"], "unavailable"),
    ],
)
def test_serve_refuses_bad_options(arguments: list[str], text: str) -> None:
    result = CliRunner().invoke(agent, ["serve", "--port", "0", *arguments])
    assert result.exit_code in (1, 2)
    assert text in result.stderr


def test_serve_without_pcsc_daemon_works_and_says_so_once(rsa_token: SoftHsmCredential) -> None:
    process = subprocess.Popen(
        [CERTGATE, "agent", "serve", "--port", "0", "--module", SOFTHSM_MODULE,
         "--allow-origin", ALLOWED_ORIGIN],
        env={**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"},
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        url, lines = _listening(process)
        client = AgentClient(url)
        answer = client.get("/v1/certificates")
        assert answer.status == 200
        assert rsa_token.token_label in {entry["token_label"] for entry in answer.body}
        assert client.get("/v1/certificates", origin=OTHER_ORIGIN).status == 403
    finally:
        process.send_signal(signal.SIGINT)
        rest = _stopped(process)
    log = "".join(lines) + rest
    assert log.count("PC/SC unavailable") == 1, log
    assert "slot polling alone" in log
    assert log.rstrip().endswith("certgate agent stopped"), log


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_the_agent_even_when_started_with_ctrl_c_ignored(
    stop: signal.Signals,
) -> None:
    """A script's background job starts with SIGINT ignored, and a service manager stops with
    SIGTERM: either way the agent stops in order and says so."""
    process = subprocess.Popen(
        [CERTGATE, "agent", "serve", "--port", "0", "--module", SOFTHSM_MODULE,
         "--allow-origin", ALLOWED_ORIGIN, "--no-pcsc"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )  # fmt: skip
    try:
        _listening(process)
    finally:
        process.send_signal(stop)
        rest = _stopped(process)
    assert process.returncode == 0, rest
    assert rest.rstrip().endswith("certgate agent stopped"), rest


def _listening(process: subprocess.Popen[str]) -> tuple[str, list[str]]:
    """The agent's URL once it says it listens, and the lines it wrote until then."""
    assert process.stderr is not None
    lines = []
    while True:
        line = process.stderr.readline()
        assert line, "agent exited: " + "".join(lines)
        lines.append(line)
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if found:
            return found.group(1), lines


def _stopped(process: subprocess.Popen[str], timeout: float = 30) -> str:
    """The rest of the agent's standard error once Ctrl-C has stopped it; an agent still running
    after ``timeout`` is asked for its threads' stacks (SIGUSR1), killed, and the test fails
    with them."""
    try:
        return process.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(1)
        process.kill()
        stderr = process.communicate()[1]
        pytest.fail(f"the agent did not stop within {timeout:.0f} s of Ctrl-C:\n{stderr}")


def test_tokens_command_lists_tokens_and_certificates(
    rsa_token: SoftHsmCredential, p256_token: SoftHsmCredential
) -> None:
    result = CliRunner().invoke(agent, ["tokens", "--module", SOFTHSM_MODULE, "--json"])
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)
    labels = {token["token_label"] for token in listed["tokens"]}
    assert rsa_token.token_label in {slot["token_label"] for slot in listed["slots"]}
    assert {rsa_token.token_label, p256_token.token_label} <= labels
    by_id = {entry["cert_id"]: entry for entry in listed["certificates"]}
    assert by_id[p256_token.cert_id.hex()]["key_type"] == "ec-p256"
    text = CliRunner().invoke(agent, ["tokens", "--module", SOFTHSM_MODULE])
    assert f"token {rsa_token.token_label!r}" in text.stdout
    assert f"  {rsa_token.cert_id.hex()}  rsa  " in text.stdout


def test_tokens_command_with_a_module_that_cannot_load() -> None:
    result = CliRunner().invoke(agent, ["tokens", "--module", "/nonexistent.so", "--lang", "en"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unavailable: No usable USB key driver")


def test_serve_on_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(
            agent,
            ["serve", "--module", SOFTHSM_MODULE, "--allow-origin", ALLOWED_ORIGIN, "--port", port],
        )
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
