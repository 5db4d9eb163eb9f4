"""The token error tree: PKCS#11 exceptions and PIN flags to DESIGN.md codes, and their messages."""

from __future__ import annotations

import pytest
from pkcs11 import TokenFlag
from pkcs11 import exceptions as p11

from certs.errors import LANGUAGES, CertGateError
from tokens import errors, login_client
from tokens.agent import HTTP_STATUS
from tokens.pkcs11 import PinState

AGENT_CODES = {
    "origin_not_allowed",
    "pin_incorrect",
    "pin_locked",
    "pin_final_try",
    "pin_rate_limited",
    "token_not_present",
    "certificate_not_found",
    "bad_request",
    "unavailable",
}


@pytest.mark.parametrize(
    ("pkcs11_error", "code"),
    [
        (p11.PinIncorrect, "pin_incorrect"),
        (p11.PinLenRange, "pin_incorrect"),
        (p11.PinInvalid, "pin_incorrect"),
        (p11.PinLocked, "pin_locked"),
        (p11.PinExpired, "pin_locked"),
        (p11.TokenNotPresent, "token_not_present"),
        (p11.TokenNotRecognised, "token_not_present"),
        (p11.DeviceRemoved, "token_not_present"),
        (p11.SlotIDInvalid, "token_not_present"),
        (p11.NoSuchToken, "token_not_present"),
        (p11.SessionHandleInvalid, "token_not_present"),
        (p11.NoSuchKey, "certificate_not_found"),
        (p11.KeyHandleInvalid, "certificate_not_found"),
        (p11.MultipleTokensReturned, "bad_request"),
        (p11.GeneralError, "unavailable"),
        (p11.DeviceMemory, "unavailable"),
        (p11.MechanismInvalid, "unavailable"),
    ],
)
def test_pkcs11_error_becomes_token_error(pkcs11_error: type[Exception], code: str) -> None:
    converted = errors.from_pkcs11_error(pkcs11_error())
    assert isinstance(converted, errors.TokenError)
    assert isinstance(converted, CertGateError)
    assert converted.code == code
    assert pkcs11_error.__name__ in converted.detail


@pytest.mark.parametrize(
    ("flags", "code", "retries_left", "count_low"),
    [
        (0, "pin_incorrect", None, False),
        (TokenFlag.USER_PIN_COUNT_LOW, "pin_incorrect", None, True),
        (TokenFlag.USER_PIN_FINAL_TRY, "pin_incorrect", 1, False),
        (TokenFlag.USER_PIN_COUNT_LOW | TokenFlag.USER_PIN_FINAL_TRY, "pin_incorrect", 1, True),
        (TokenFlag.USER_PIN_LOCKED, "pin_locked", None, False),
    ],
)
def test_refused_pin_reads_the_token_flags(
    flags: int, code: str, retries_left: int | None, count_low: bool
) -> None:
    error = PinState.from_flags(int(flags)).incorrect_pin_error("t: PinIncorrect")
    assert error.code == code
    assert getattr(error, "retries_left", None) == retries_left
    assert getattr(error, "count_low", False) == count_low


def _all_error_classes() -> list[type[errors.TokenError]]:
    found, pending = [], [errors.TokenError]
    while pending:
        klass = pending.pop()
        found.append(klass)
        pending.extend(klass.__subclasses__())
    return found


@pytest.mark.parametrize("klass", _all_error_classes(), ids=lambda k: k.__name__)
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_error_has_a_message_and_a_status(
    klass: type[errors.TokenError], language: str
) -> None:
    kwargs: dict[str, object] = {}
    if klass is login_client.OriginMismatch:
        kwargs = {"origin": "https://a.test", "challenge_origin": "https://b.test"}
    if klass is errors.PinRateLimited:
        kwargs = {"retry_after": 30}
    if klass is login_client.GatewayRefused:
        error = klass("account_not_found", "no account", 401)  # type: ignore[call-arg]
    else:
        error = klass("detail", **kwargs)  # type: ignore[arg-type]
    assert error.message(language).strip()
    if error.code in AGENT_CODES:
        assert error.code in HTTP_STATUS


@pytest.mark.parametrize(
    ("error", "language", "text"),
    [
        (errors.PinIncorrect(retries_left=1), "zh-CN", "还可以尝试 1 次"),
        (errors.PinIncorrect(retries_left=1), "en", "1 attempt(s) left"),
        (errors.PinIncorrect(count_low=True), "en", "few attempts"),
        (errors.PinIncorrect(), "en", "The PIN is incorrect."),
        (errors.PinLocked(), "zh-CN", "锁定"),
        (errors.PinRateLimited(retry_after=30), "zh-CN", "30 秒后再试"),
        (errors.PinRateLimited(retry_after=30), "en", "try again in 30 s"),
        (errors.PinFinalTry(), "zh-CN", "最后一次"),
        (errors.PinFinalTry(), "en", "one PIN try left"),
    ],
)
def test_pin_messages(error: errors.TokenError, language: str, text: str) -> None:
    assert text in error.message(language)


def test_agent_status_table_covers_every_agent_code() -> None:
    assert set(HTTP_STATUS) == AGENT_CODES
