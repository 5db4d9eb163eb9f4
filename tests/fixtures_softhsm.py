"""Fixtures that make real SoftHSM tokens in a private SOFTHSM2_CONF directory.

One token directory serves the whole test session. It is created when pytest starts, and
``SOFTHSM2_CONF`` points at it before any test can load libsofthsm2, so code under test that
loads the library in-process (the signing agent) sees the same tokens as the kit. Tokens get unique
labels of one length, so no label is a prefix of another (``pkcs11-tool --token-label`` matches
prefixes).

SoftHSM builds its slot list at ``C_Initialize``: a process that loaded the library before a token
was created must call ``pkcs11.lib(SOFTHSM_MODULE).reinitialize()`` to see it (docs/softhsm.md).

Fixtures:
- ``softhsm_kit`` (session): the ``SoftHsmKit`` of the session token directory.
- ``make_softhsm_token`` (session): factory making a fresh token with one certificate on it.
- ``softhsm_token`` (function): a fresh token holding a person certificate on an RSA-2048 key.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from softhsm.kit import ProvisionedCertificate, SoftHsmKit
from softhsm.pki import TestPki
from tests.fixtures_pki import PKI_EPOCH

TOKEN_PIN = "123456"
TOKEN_SO_PIN = "12345678"
PERSON_NAME = "张三"
PERSON_ID_CARD_NUMBER = "11010519491231002X"
ENTERPRISE_NAME = "示例科技有限公司"
ENTERPRISE_USCC = "91440300MA5H8REU3K"

_session_directory_key = pytest.StashKey[Path]()
_previous_conf_key = pytest.StashKey[str | None]()
_token_numbers = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    directory = Path(tempfile.mkdtemp(prefix="certgate-softhsm-"))
    config.stash[_session_directory_key] = directory
    config.stash[_previous_conf_key] = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = SoftHsmKit(directory).environ()["SOFTHSM2_CONF"]


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = config.stash.get(_session_directory_key, None)
    if directory is None:
        return
    previous = config.stash.get(_previous_conf_key, None)
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous
    shutil.rmtree(directory, ignore_errors=True)


def unique_token_label() -> str:
    """A fresh token label, 16 characters, never a prefix of another one."""
    return f"t{next(_token_numbers):05d}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class SoftHsmCredential:
    """A token made for one test and the certificate on it."""

    kit: SoftHsmKit
    token_label: str
    pin: str
    so_pin: str
    slot_id: int
    provisioned: ProvisionedCertificate

    @property
    def cert_id(self) -> bytes:
        return self.provisioned.cert_id


MakeSoftHsmToken = Callable[..., SoftHsmCredential]


@pytest.fixture(scope="session")
def softhsm_kit(request: pytest.FixtureRequest) -> SoftHsmKit:
    return SoftHsmKit(request.config.stash[_session_directory_key])


@pytest.fixture(scope="session")
def make_softhsm_token(softhsm_kit: SoftHsmKit, test_pki: TestPki) -> MakeSoftHsmToken:
    """``make_softhsm_token(key="p256", kind="enterprise", ...)`` → a new ``SoftHsmCredential``.

    The certificate comes from ``test_pki`` and starts at ``PKI_EPOCH`` unless ``at`` or
    ``not_before`` says otherwise, so it is valid at ``PKI_VALIDATION_TIME``.
    """

    def make(
        *,
        key: str = "rsa2048",
        kind: str = "person",
        name: str | None = None,
        id_number: str | None = None,
        uscc: str | None = None,
        ca: str = "rsa",
        valid_days: int = 365,
        not_before: datetime | None = None,
        at: datetime | None = PKI_EPOCH,
        pin: str = TOKEN_PIN,
        so_pin: str = TOKEN_SO_PIN,
        label: str | None = None,
    ) -> SoftHsmCredential:
        if kind == "person":
            name = name or PERSON_NAME
            id_number = id_number or PERSON_ID_CARD_NUMBER
        else:
            name = name or ENTERPRISE_NAME
            uscc = uscc or ENTERPRISE_USCC
        token_label = label or unique_token_label()
        token = softhsm_kit.init_token(token_label, pin, so_pin)
        provisioned = softhsm_kit.issue(
            label=token_label,
            pin=pin,
            pki=test_pki,
            kind=kind,
            name=name,
            id_number=id_number,
            uscc=uscc,
            key=key,
            ca=ca,
            valid_days=valid_days,
            not_before=not_before,
            at=at,
        )
        return SoftHsmCredential(
            kit=softhsm_kit,
            token_label=token_label,
            pin=pin,
            so_pin=so_pin,
            slot_id=token.slot_id,
            provisioned=provisioned,
        )

    return make


@pytest.fixture
def softhsm_token(make_softhsm_token: MakeSoftHsmToken) -> Iterator[SoftHsmCredential]:
    yield make_softhsm_token()
