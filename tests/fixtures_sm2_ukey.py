"""Fixtures for SM2 USB keys: the SM2 UKey module (softhsm/sm2_ukey.c) built at test time, one
token directory per test session, tokens holding an SM2 key and its certificate from the test
PKI's SM2 CA.

``CERTGATE_SM2_UKEY_DIR`` is set for the whole session (the module reads it at every slot scan),
so an in-process agent and child processes see the same tokens.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pytest

from softhsm.pki import TestPki
from softhsm.sm2_ukey import (
    DIRECTORY_ENVIRONMENT_VARIABLE,
    SM2_MECHANISM,
    SM2_SM3_MECHANISM,
    ModuleBuildFailed,
    Sm2Provisioned,
    Sm2UkeyDirectory,
)
from tests.fixtures_pki import PKI_EPOCH
from tokens.sm2 import Sm2Input, Sm2Mechanism

SM2_PIN = "246810"
# The module's two ways of signing, as the agent is told them (docs/agent.md).
SM2_IN_TOKEN = Sm2Mechanism(SM2_SM3_MECHANISM, Sm2Input.MESSAGE)
SM2_OVER_DIGEST = Sm2Mechanism(SM2_MECHANISM, Sm2Input.DIGEST)


@dataclass(frozen=True)
class Sm2Credential:
    ukeys: Sm2UkeyDirectory
    module: str
    token_label: str
    pin: str
    provisioned: Sm2Provisioned

    @property
    def cert_id(self) -> bytes:
        return self.provisioned.cert_id


MakeSm2Token = Callable[..., Sm2Credential]


@pytest.fixture(scope="session")
def sm2_ukeys(tmp_path_factory: pytest.TempPathFactory) -> Sm2UkeyDirectory:
    ukeys = Sm2UkeyDirectory(tmp_path_factory.mktemp("sm2-ukey"))
    try:
        ukeys.module()
    except ModuleBuildFailed as error:
        pytest.skip(f"SM2 UKey module not built: {error.message}")
    os.environ[DIRECTORY_ENVIRONMENT_VARIABLE] = str(ukeys.directory)
    return ukeys


@pytest.fixture(scope="session")
def make_sm2_token(sm2_ukeys: Sm2UkeyDirectory, test_pki: TestPki) -> MakeSm2Token:
    """A new SM2 token (locks after ``max_tries`` wrong PINs) with one SM2 certificate."""

    def make(
        *,
        kind: str = "person",
        name: str = "李四",
        id_number: str | None = None,
        uscc: str | None = None,
        max_tries: int = 3,
        at: datetime | None = PKI_EPOCH,
    ) -> Sm2Credential:
        if kind == "person" and id_number is None:
            id_number = "11010519491231002X"
        label = f"s2-{secrets.token_hex(4)}"
        sm2_ukeys.init_token(label, SM2_PIN, max_tries=max_tries)
        provisioned = sm2_ukeys.issue(
            label=label,
            pin=SM2_PIN,
            pki=test_pki,
            kind=kind,
            name=name,
            id_number=id_number,
            uscc=uscc,
            at=at,
        )
        return Sm2Credential(sm2_ukeys, str(sm2_ukeys.module_path), label, SM2_PIN, provisioned)

    return make


@pytest.fixture(scope="session")
def sm2_token(make_sm2_token: MakeSm2Token) -> Sm2Credential:
    return make_sm2_token()
