"""The login message: exact bytes, and every field that could change them refused."""

from __future__ import annotations

import base64

import pytest

from tokens.errors import TokenError
from tokens.login_message import login_message, normalise_origin

NONCE = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()


def test_message_is_exactly_the_design_bytes() -> None:
    assert login_message("https://login.example.test", "c-1_a.b~", NONCE) == (
        b"certgate-login-v1\nhttps://login.example.test\nc-1_a.b~\n" + NONCE.encode() + b"\n"
    )


def test_padded_nonce_is_accepted_as_given() -> None:
    assert login_message("http://127.0.0.1:8080", "id", NONCE + "=").endswith(
        (NONCE + "=\n").encode()
    )


@pytest.mark.parametrize(
    ("written", "serialised"),
    [
        ("https://login.example.test", "https://login.example.test"),
        ("HTTPS://Login.Example.Test", "https://login.example.test"),
        ("https://login.example.test:443", "https://login.example.test"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_origin_normalisation(written: str, serialised: str) -> None:
    assert normalise_origin(written) == serialised


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "null",
        "file://",
        "https://login.example.test/",
        "https://login.example.test/path",
        "https://login.example.test?q=1",
        "https://user@login.example.test",
        "https://login.example.test\n",
        "https://login.example.test:99999",
        "ftp://login.example.test",
        "https://登录.example.test",
    ],
)
def test_malformed_origin_is_origin_not_allowed(origin: str) -> None:
    with pytest.raises(TokenError) as raised:
        normalise_origin(origin)
    assert raised.value.code == "origin_not_allowed"


def test_non_canonical_header_origin_is_not_signed_for() -> None:
    with pytest.raises(TokenError) as raised:
        login_message("https://Login.example.test", "id", NONCE)
    assert raised.value.code == "origin_not_allowed"


@pytest.mark.parametrize(
    ("challenge_id", "nonce"),
    [
        ("", NONCE),
        (None, NONCE),
        ("a\nb", NONCE),
        ("a b", NONCE),
        ("x" * 129, NONCE),
        ("id", ""),
        ("id", None),
        ("id", NONCE[:-1]),
        ("id", NONCE + "AA"),
        ("id", NONCE.replace(NONCE[0], "+", 1)),
        ("id", base64.urlsafe_b64encode(bytes(33)).decode()),
        ("id", NONCE + "\n"),
        ("id", 42),
    ],
)
def test_malformed_fields_are_bad_request(challenge_id: object, nonce: object) -> None:
    with pytest.raises(TokenError) as raised:
        login_message("https://login.example.test", challenge_id, nonce)
    assert raised.value.code == "bad_request"
