"""The lock agrees with pyproject.toml, and .venv holds exactly what the lock says.

pyproject.toml keeps the ranges the project supports; ``requirements.txt`` (the product, its
tests and the PC/SC extra) and ``requirements-tools.txt`` (pip, setuptools and uv, which install
and lock it) pin every distribution, direct and transitive, with hashes. ``make lock`` refreshes
both; ``make`` installs exactly them. A change to pyproject.toml that was not locked, a lock
entry nothing needs any more, or a distribution in .venv the lock does not name fails here.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])


@dataclass(frozen=True)
class Pin:
    name: NormalizedName
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies_here(self) -> bool:
        return self.marker is None or self.marker.evaluate()


def _pins(file_name: str) -> list[Pin]:
    text = (ROOT / file_name).read_text().replace("\\\n", " ")
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
        requirement = Requirement(re.sub(r"\s--hash=\S+", "", line))
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{file_name}: {line} is not pinned"
        pins.append(
            Pin(
                canonicalize_name(requirement.name),
                Version(specifier.version),
                requirement.marker,
                hashes,
            )
        )
    return pins


LOCKS = {
    "requirements.txt": _pins("requirements.txt"),
    "requirements-tools.txt": _pins("requirements-tools.txt"),
}


def _declared(lock: str) -> list[Requirement]:
    """What pyproject.toml asks of each lock file."""
    if lock == "requirements-tools.txt":
        declared = [
            *PYPROJECT["dependency-groups"]["tools"],
            *PYPROJECT["build-system"]["requires"],
        ]
    else:
        project = PYPROJECT["project"]
        declared = list(project["dependencies"])
        for extra in project["optional-dependencies"].values():
            declared.extend(extra)
    return [Requirement(text) for text in declared]


def _needed_here(lock: str) -> set[NormalizedName]:
    """The distributions ``lock``'s declared requirements need on this machine: the closure over
    the installed distributions' own metadata (``Requires-Dist``, extras included)."""
    needed: set[NormalizedName] = set()
    expanded: set[tuple[NormalizedName, str]] = set()
    # (requirement, the extras asked of the distribution that declared it)
    pending = [(r, frozenset({""})) for r in _declared(lock)]
    while pending:
        requirement, context = pending.pop()
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate({"extra": e}) for e in context):
            continue
        name = canonicalize_name(requirement.name)
        needed.add(name)
        for extra in {"", *requirement.extras}:
            if (name, extra) in expanded:
                continue
            expanded.add((name, extra))
            try:
                requires = metadata.requires(name) or []
            except metadata.PackageNotFoundError:
                continue  # not installed: reported by the comparison with the lock
            pending.extend((Requirement(text), frozenset({extra})) for text in requires)
    return needed


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_distribution_is_pinned_with_hashes(lock: str) -> None:
    assert LOCKS[lock], f"{lock} is empty"
    unhashed = [pin.name for pin in LOCKS[lock] if not pin.hashes]
    assert not unhashed, f"{lock}: no hash for {unhashed}"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_requirement_of_pyproject_is_locked_within_its_range(lock: str) -> None:
    pinned: dict[NormalizedName, list[Version]] = {}
    for pin in LOCKS[lock]:
        pinned.setdefault(pin.name, []).append(pin.version)
    problems = []
    for requirement in _declared(lock):
        versions = pinned.get(canonicalize_name(requirement.name), [])
        if not any(requirement.specifier.contains(v, prereleases=True) for v in versions):
            problems.append(f"{requirement} (locked: {[str(v) for v in versions] or 'absent'})")
    assert not problems, f"pyproject.toml and {lock} disagree, run `make lock`: {problems}"


@pytest.mark.parametrize("lock", LOCKS)
def test_the_lock_holds_exactly_what_pyproject_needs(lock: str) -> None:
    locked = {pin.name for pin in LOCKS[lock] if pin.applies_here()}
    needed = _needed_here(lock)
    assert locked - needed == set(), f"{lock} pins what nothing needs, run `make lock`"
    assert needed - locked == set(), f"{lock} lacks what pyproject.toml needs, run `make lock`"


def test_the_environment_is_exactly_the_lock() -> None:
    expected: dict[NormalizedName, Version] = {}
    for pins in LOCKS.values():
        for pin in pins:
            if pin.applies_here():
                assert expected.setdefault(pin.name, pin.version) == pin.version, pin.name
    installed = {
        canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()
    }
    assert installed.pop(PROJECT, None) is not None, "the project itself is not installed"
    assert installed == expected
