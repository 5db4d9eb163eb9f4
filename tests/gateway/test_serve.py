"""`certgate serve` as a real process answering HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fixtures_pki import free_port
from tests.gateway.conftest import DATA_KEY

CERTGATE = str(Path(sys.executable).parent / "certgate")
FAST_PASSWORDS = {"CERTGATE_PASSWORD_MEMORY_COST": "1024", "CERTGATE_PASSWORD_TIME_COST": "1"}


def clean_environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTGATE_")}
    env.update(FAST_PASSWORDS, **settings)
    return env


@contextmanager
def running_server(directory: Path, env: dict[str, str], port: int) -> Iterator[str]:
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [CERTGATE, "serve", "--port", str(port)],
        cwd=directory,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until it answers (not a timing assertion)
            if process.poll() is not None:
                assert process.stderr is not None
                pytest.fail(f"certgate serve exited: {process.stderr.read().decode()}")
            try:
                urllib.request.urlopen(f"{url}/api/v1/session", timeout=1)
            except urllib.error.HTTPError as answered:
                answered.close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = clean_environment(
        CERTGATE_DATA_KEY=DATA_KEY, CERTGATE_PUBLIC_ORIGIN=f"http://127.0.0.1:{port}"
    )
    # An account made by the operator command before the server starts.
    subprocess.run(
        [CERTGATE, "account", "create", "person", "11010519491231002X", "--real-name", "张三",
         "--login-name", "zhangsan", "--password-stdin"],
        cwd=tmp_path, env=env, input="correct horse battery\n", text=True, check=True,
        capture_output=True, timeout=60,
    )  # fmt: skip
    with running_server(tmp_path, env, port) as url:
        yield url


def post(url: str, body: object, origin: str) -> tuple[dict[str, object], str | None]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Origin": origin, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read()), response.headers["Set-Cookie"]


def test_serve_answers_http(server: str, tmp_path: Path) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server}/api/v1/session", timeout=5)
    assert caught.value.code == 401
    assert json.loads(caught.value.read())["error"] == "credentials_invalid"
    assert caught.value.headers["Server"] == "certgate"
    caught.value.close()
    body, _ = post(f"{server}/api/v1/login/challenge", {}, server)
    assert body["origin"] == server and len(str(body["nonce"])) == 43
    assert (tmp_path / "certgate.sqlite3").is_file()  # migrated at start-up


def test_password_login_over_http(server: str) -> None:
    answer, cookie = post(
        f"{server}/api/v1/login/password",
        {"identifier": "zhangsan", "password": "correct horse battery"},
        server,
    )
    assert answer["ok"] is True and answer["amr"] == ["pwd"]
    assert answer["account"]["display_name"] == "张三"  # type: ignore[index]
    assert cookie is not None and cookie.startswith("certgate_session=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_dev_mode_serves_its_own_address(tmp_path: Path) -> None:
    port = free_port()
    with running_server(tmp_path, clean_environment(CERTGATE_DEV_MODE="true"), port) as url:
        body, _ = post(f"{url}/api/v1/login/challenge", {}, url)
    assert body["origin"] == url
    assert (tmp_path / ".certgate-dev-data-key").is_file()


def test_serve_refuses_to_start_without_a_data_key(tmp_path: Path) -> None:
    env = clean_environment(CERTGATE_PUBLIC_ORIGIN="http://127.0.0.1:1")
    result = subprocess.run(
        [CERTGATE, "serve", "--port", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "data_key: required" in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_port_another_process_holds(tmp_path: Path, workers: str) -> None:
    """Several workers each open a socket with SO_REUSEPORT; a port already taken is still
    refused, rather than joined and its connections shared with whatever holds it."""
    port = free_port()
    env = clean_environment(
        CERTGATE_DATA_KEY=DATA_KEY,
        CERTGATE_PUBLIC_ORIGIN=f"http://127.0.0.1:{port}",
        CERTGATE_STATE_STORE="database",
    )
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = subprocess.run(
            [CERTGATE, "serve", "--port", str(port), "--workers", workers],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
