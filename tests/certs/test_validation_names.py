"""Name constraints per form (certs.names), the part pyca/cryptography refuses or skips."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509

from certs.names import (
    NameConstraintViolation,
    NameSet,
    Subtrees,
    check_name_constraints,
    name_key,
)


def _names(**forms: tuple[object, ...]) -> NameSet:
    empty: dict[str, tuple[object, ...]] = {
        "directory": (),
        "email": (),
        "dns": (),
        "uri": (),
        "ip": (),
        "other": (),
    }
    return NameSet(**{**empty, **forms})  # type: ignore[arg-type]


def _subtrees(*names: x509.GeneralName) -> Subtrees:
    subtrees = Subtrees.from_general_names(names)
    assert subtrees is not None
    return subtrees


CN = x509.Name.from_rfc4514_string("O=CertGate,C=CN")
CASES = [
    # (constraint, names, verdict when the constraint is a permitted subtree)
    (
        x509.DirectoryName(CN),
        _names(directory=(name_key(x509.Name.from_rfc4514_string("CN=Li,O=certgate,C=cn")),)),
        True,
    ),
    (
        x509.DirectoryName(CN),
        _names(directory=(name_key(x509.Name.from_rfc4514_string("CN=Li,O=Other,C=CN")),)),
        False,
    ),
    (x509.RFC822Name("example.cn"), _names(email=("li@example.cn",)), True),
    (x509.RFC822Name("example.cn"), _names(email=("li@mail.example.cn",)), False),
    (x509.RFC822Name(".example.cn"), _names(email=("li@mail.example.cn",)), True),
    (x509.RFC822Name("li@example.cn"), _names(email=("li@EXAMPLE.cn",)), True),
    (x509.RFC822Name("li@example.cn"), _names(email=("Li@example.cn",)), False),
    (x509.DNSName("example.cn"), _names(dns=("www.example.cn",)), True),
    (x509.DNSName("example.cn"), _names(dns=("badexample.cn",)), False),
    (x509.UniformResourceIdentifier(".example.cn"), _names(uri=("https://a.example.cn/x",)), True),
    (x509.UniformResourceIdentifier("example.cn"), _names(uri=("https://a.example.cn/x",)), False),
    (x509.IPAddress(ipaddress.ip_network("10.1.0.0/16")), _names(ip=(bytes([10, 1, 2, 3]),)), True),
    (
        x509.IPAddress(ipaddress.ip_network("10.1.0.0/16")),
        _names(ip=(bytes([10, 2, 2, 3]),)),
        False,
    ),
    # A name of another form is not constrained by this subtree.
    (x509.DNSName("example.cn"), _names(email=("li@other.cn",)), True),
]


@pytest.mark.parametrize(("constraint", "names", "permitted"), CASES)
def test_permitted_and_excluded_subtrees(
    constraint: x509.GeneralName, names: NameSet, permitted: bool
) -> None:
    subtree = _subtrees(constraint)
    if permitted:
        check_name_constraints(names, subtree, None)
    else:
        with pytest.raises(NameConstraintViolation):
            check_name_constraints(names, subtree, None)
    # The same subtree, excluded: a name inside it is refused, any other passes.
    if permitted and getattr(names, _form(constraint)):
        with pytest.raises(NameConstraintViolation):
            check_name_constraints(names, None, subtree)
    else:
        check_name_constraints(names, None, subtree)


def _form(constraint: x509.GeneralName) -> str:
    return {
        x509.DirectoryName: "directory",
        x509.RFC822Name: "email",
        x509.DNSName: "dns",
        x509.UniformResourceIdentifier: "uri",
        x509.IPAddress: "ip",
    }[type(constraint)]


def test_unsupported_form_under_constraint_fails_closed() -> None:
    names = _names(other=(x509.OtherName,))
    subtree = _subtrees(x509.OtherName(x509.ObjectIdentifier("1.2.3"), b"\x05\x00"))
    with pytest.raises(NameConstraintViolation):
        check_name_constraints(names, subtree, None)


def test_comparison_budget() -> None:
    names = _names(dns=tuple(f"h{i}.example.cn" for i in range(300)))
    subtree = _subtrees(*(x509.DNSName(f"d{i}.example.cn") for i in range(300)))
    with pytest.raises(NameConstraintViolation, match="too many"):
        check_name_constraints(names, None, subtree)
