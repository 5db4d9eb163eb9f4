"""Certificate policies and key sizes of a trust anchor in certgate.toml: parsed at start-up,
refused when bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from certs.policy import PolicyInputs
from gateway import create_app
from gateway.config import ConfigError
from softhsm.pki import TestPki
from tests.gateway.test_config import anchors_toml, workdir, write_toml

__all__ = ["workdir"]  # the fixture, used by name

LOGIN_POLICY = "1.2.156.112559.1.1.1"


def test_an_anchors_policies_reach_the_engine(workdir: Path, test_pki: TestPki) -> None:
    write_toml(
        workdir,
        anchors_toml(test_pki)
        + f"[trust.anchors.policies]\ninitial = ['{LOGIN_POLICY}']\nrequire_explicit = true\n",
    )
    (anchor,) = create_app().extensions["certgate.engine"].anchors
    assert anchor.policy.certificate_policies == PolicyInputs(
        user_initial_policy_set=frozenset({LOGIN_POLICY}), initial_explicit_policy=True
    )


def test_without_policies_an_anchor_accepts_any(workdir: Path, test_pki: TestPki) -> None:
    write_toml(workdir, anchors_toml(test_pki))
    (anchor,) = create_app().extensions["certgate.engine"].anchors
    assert anchor.policy.certificate_policies == PolicyInputs()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("initial = []", "policies.initial: a non-empty list"),
        ("initial = ['1.2.x']", "policies.initial: policy OIDs in dotted form"),
        ("require_explicit = 'yes'", "policies.require_explicit: true or false"),
        ("inhibit_everything = true", "policies: unknown key(s) inhibit_everything"),
    ],
)
def test_bad_policies_fail_start_up(
    workdir: Path, test_pki: TestPki, table: str, message: str
) -> None:
    path = write_toml(workdir, anchors_toml(test_pki) + f"[trust.anchors.policies]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        create_app()
    assert f"trust.anchors[0].{message}" in str(caught.value) and str(path) in str(caught.value)


def test_an_anchor_may_lower_the_rsa_minimum(workdir: Path, test_pki: TestPki) -> None:
    write_toml(workdir, anchors_toml(test_pki, minimum_rsa_bits=1024))
    (anchor,) = create_app().extensions["certgate.engine"].anchors
    assert anchor.policy.minimum_rsa_bits == 1024


@pytest.mark.parametrize("value", [512, "1024", 20000])
def test_a_bad_rsa_minimum_fails_start_up(workdir: Path, test_pki: TestPki, value: object) -> None:
    write_toml(workdir, anchors_toml(test_pki, minimum_rsa_bits=value))
    with pytest.raises(ConfigError, match=r"trust.anchors\[0\].minimum_rsa_bits: a key size"):
        create_app()
