"""Distinguished-name comparison and RFC 5280 name constraints (all name forms a client CA uses).

Name chaining and CRL-issuer matching compare names the way RFC 5280 §7.1 asks (RFC 4518
string preparation, simplified): attribute values are compared case-insensitively with leading,
trailing and repeated inner white space ignored, whatever the string type (PrintableString,
UTF8String, ...). pyca/cryptography compares names byte for byte, which breaks CAs that roll over
from PrintableString to UTF8String (PKITS 4.3.10) or change capitalisation (4.3.5).

pyca/cryptography's verifier refuses directoryName and URI name constraints outright; this module
implements every form a client certificate meets: directoryName (subject DN and SAN
directoryName), rfc822Name (SAN and the subject's emailAddress attribute), dNSName,
uniformResourceIdentifier and iPAddress.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from certs.extensions import extensions

RdnKey = frozenset[tuple[str, str]]
NameKey = tuple[RdnKey, ...]


def prepare_value(value: object) -> str:
    """RFC 4518-style preparation: case folded, white space runs collapsed, trimmed."""
    if isinstance(value, bytes):
        return value.hex()
    if not isinstance(value, str):
        return repr(value)
    return " ".join(value.split()).casefold()


def name_key(name: x509.Name) -> NameKey:
    """A hashable, normalised form of ``name``: equal keys mean RFC 5280 §7.1 equal names."""
    der = name.public_bytes()
    key = _KEY_CACHE.get(der)
    if key is not None:
        return key
    key = tuple(
        frozenset(
            (attribute.oid.dotted_string, prepare_value(attribute.value)) for attribute in rdn
        )
        for rdn in name.rdns
    )
    # A bounded memo: names repeat (the same few issuers) on every login.
    if len(_KEY_CACHE) >= 8192:
        _KEY_CACHE.clear()
    _KEY_CACHE[der] = key
    return key


_KEY_CACHE: dict[bytes, NameKey] = {}


def names_equal(a: x509.Name, b: x509.Name) -> bool:
    return a == b or name_key(a) == name_key(b)


# Facts derived from a certificate are memoised per certificate (a Certificate hashes and compares
# by its DER, and is immutable): the same few CA certificates are in every login's path, and
# re-deriving their names and extensions costs more than the signature checks.
CERTIFICATE_MEMO_SIZE = 4096


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def subject_key(certificate: x509.Certificate) -> NameKey:
    return name_key(certificate.subject)


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def issuer_key(certificate: x509.Certificate) -> NameKey:
    return name_key(certificate.issuer)


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def is_self_issued(certificate: x509.Certificate) -> bool:
    """Subject and issuer are the same name (RFC 5280 §6.1 "self-issued", maybe not self-signed)."""
    return subject_key(certificate) == issuer_key(certificate)


def dn_within(name: NameKey, subtree: NameKey) -> bool:
    """``name`` lies in the directoryName subtree ``subtree`` (its RDN sequence is a prefix)."""
    return len(subtree) <= len(name) and name[: len(subtree)] == subtree


# --- name constraints -----------------------------------------------------------------------


def _malformed_dns(name: str) -> bool:
    """Empty labels (a leading period, "a..b"): not a host name (RFC 5280 §4.2.1.6/.10)."""
    return any(not label for label in name.rstrip(".").split("."))


def _dns_within(name: str, constraint: str) -> bool:
    name = name.rstrip(".").lower()
    constraint = constraint.rstrip(".").lower()
    if _malformed_dns(name):
        return False  # a malformed name lies in no permitted subtree
    if not constraint:
        return True
    if name.startswith("*."):
        # A wildcard stands for every name one label below its base: it is "within" a subtree
        # when any of those names might be (RFC 9525 wildcards under RFC 5280 constraints;
        # x509-limbo cve-2025-61727). Used for excluded subtrees; a permitted subtree must
        # contain the base itself.
        base = name[2:]
        return _dns_within(base, constraint) or constraint.endswith("." + base)
    return name == constraint or name.endswith("." + constraint)


def _dns_permitted_within(name: str, constraint: str) -> bool:
    # For permitted subtrees a wildcard must lie wholly inside: its base within the constraint.
    name = name.rstrip(".").lower()
    if name.startswith("*."):
        return not _malformed_dns(name[2:]) and _dns_within(name[2:], constraint)
    return _dns_within(name, constraint)


def _host_within(host: str, constraint: str) -> bool:
    """URI and rfc822 host rule (RFC 5280 §4.2.1.10): a leading period means subdomains only."""
    host = host.lower()
    constraint = constraint.lower()
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint


def _email_within(address: str, constraint: str) -> bool:
    if address.count("@") != 1:
        return False  # not a mailbox: it lies in no permitted subtree
    if "@" in constraint:
        # A particular mailbox: local part compared exactly, host case-insensitively.
        local, _, host = address.rpartition("@")
        c_local, _, c_host = constraint.rpartition("@")
        return local == c_local and host.lower() == c_host.lower()
    _, _, host = address.rpartition("@")
    return _host_within(host, constraint)


def _uri_within(uri: str, constraint: str) -> bool:
    host = urlsplit(uri).hostname
    if not host:
        return False
    return _host_within(host, constraint)


def _ip_within(address: bytes, constraint: bytes) -> bool:
    half = len(constraint) // 2
    if len(address) != half:
        return False
    network, mask = constraint[:half], constraint[half:]
    return all((a & m) == (n & m) for a, n, m in zip(address, network, mask, strict=True))


def _ip_bytes(value: object) -> bytes:
    if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise NameConstraintViolation("malformed iPAddress in subjectAltName")
    return value.packed


def _network_bytes(value: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bytes:
    return value.network_address.packed + value.netmask.packed


@dataclass(frozen=True)
class NameSet:
    """The names of one certificate that name constraints apply to, by form."""

    directory: tuple[NameKey, ...]
    email: tuple[str, ...]
    dns: tuple[str, ...]
    uri: tuple[str, ...]
    ip: tuple[bytes, ...]
    other: tuple[type, ...]  # forms this module cannot evaluate (otherName, x400, ...)
    subject_attributes: int = 0

    @property
    def count(self) -> int:
        return sum(len(getattr(self, form)) for form in _FORMS)


def certificate_names(certificate: x509.Certificate) -> NameSet:
    """The subject DN, the subject's emailAddress attributes and every SAN entry, by form."""
    buckets: dict[str, list[Any]] = {form: [] for form in _FORMS}
    if len(certificate.subject) > 0:
        buckets["directory"].append(subject_key(certificate))
    buckets["email"].extend(
        str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    )
    try:
        san = (
            extensions(certificate)
            .get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
            .value
        )
    except x509.ExtensionNotFound:
        san = None
    if isinstance(san, x509.SubjectAlternativeName):
        for general_name in san:
            form = _FORM_OF.get(type(general_name))
            if form is None:
                buckets["other"].append(type(general_name))
            else:
                buckets[form].append(_NAME_VALUE[form](general_name.value))
    return NameSet(
        **{form: tuple(values) for form, values in buckets.items()},
        subject_attributes=len(certificate.subject),
    )


@dataclass(frozen=True)
class Subtrees:
    """One certificate's nameConstraints, split by form."""

    directory: tuple[NameKey, ...] = ()
    email: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    uri: tuple[str, ...] = ()
    ip: tuple[bytes, ...] = ()
    other: tuple[type, ...] = ()

    @property
    def count(self) -> int:
        return sum(len(getattr(self, form)) for form in _FORMS)

    @classmethod
    def from_general_names(cls, names: Iterable[x509.GeneralName] | None) -> Subtrees | None:
        if names is None:
            return None
        buckets: dict[str, list[object]] = {k: [] for k in _FORMS}
        for general_name in names:
            form = _FORM_OF.get(type(general_name))
            if form is None:
                buckets["other"].append(type(general_name))
                continue
            buckets[form].append(_CONSTRAINT_VALUE[form](general_name.value))
        return cls(**{k: tuple(v) for k, v in buckets.items()})  # type: ignore[arg-type]


_FORMS = ("directory", "email", "dns", "uri", "ip", "other")
_FORM_OF: dict[type, str] = {
    x509.DirectoryName: "directory",
    x509.RFC822Name: "email",
    x509.DNSName: "dns",
    x509.UniformResourceIdentifier: "uri",
    x509.IPAddress: "ip",
}
_CONSTRAINT_VALUE: dict[str, Callable[[Any], object]] = {
    "directory": name_key,
    "email": str,
    "dns": str,
    "uri": str,
    "ip": _network_bytes,
}
# Form -> (names of that form in a NameSet, "name lies within constraint" predicate).
# Form -> how a certificate's name of that form is put in a NameSet.
_NAME_VALUE: dict[str, Callable[[Any], object]] = {
    "directory": name_key,
    "email": str,
    "dns": str,
    "uri": str,
    "ip": lambda value: _ip_bytes(value),
}
_MATCHERS = {
    "directory": dn_within,
    "email": _email_within,
    "dns": _dns_within,
    "uri": _uri_within,
    "ip": _ip_within,
}


class NameConstraintViolation(Exception):
    """A certificate's names break an issuer's nameConstraints."""


# Upper bound on (name, constraint) comparisons for one certificate: a certificate with thousands
# of names under thousands of constraints is an attack on the validator, not a login.
COMPARISON_BUDGET = 65536


def check_name_constraints(
    names: NameSet, permitted: Subtrees | None, excluded: Subtrees | None
) -> None:
    """Apply one CA's nameConstraints to one certificate's names (RFC 5280 §6.1.3 (b), (c)).

    Constraints of several CAs in a path are applied one CA at a time, which is the same as
    intersecting the permitted subtrees and uniting the excluded ones.
    """
    name_count = names.count + names.subject_attributes
    constraint_count = (permitted.count if permitted else 0) + (excluded.count if excluded else 0)
    if name_count * constraint_count > COMPARISON_BUDGET:
        raise NameConstraintViolation("too many names under too many name constraints")
    for subtrees in (permitted, excluded):
        if subtrees is not None and any(_malformed_dns(c) for c in subtrees.dns if c):
            # RFC 5280 §4.2.1.10: a dNSName constraint is a host name; a leading period is
            # allowed for URI and rfc822Name constraints only (x509-limbo
            # invalid-dnsname-leading-period).
            raise NameConstraintViolation("malformed dNSName name constraint")
    for form, within in _MATCHERS.items():
        values: Sequence[object] = getattr(names, form)
        if not values:
            continue
        if permitted is not None:
            allowed: Sequence[object] = getattr(permitted, form)
            inside = _dns_permitted_within if form == "dns" else within
            if allowed:
                for value in values:
                    if not any(inside(value, c) for c in allowed):  # type: ignore[operator]
                        raise NameConstraintViolation(f"{form} name not in permitted subtrees")
        if excluded is not None:
            for value in values:
                if any(within(value, c) for c in getattr(excluded, form)):  # type: ignore[operator]
                    raise NameConstraintViolation(f"{form} name in excluded subtrees")
    # A form we cannot evaluate, constrained by the CA, is a failure rather than a silent pass.
    constrained_other = set(permitted.other if permitted else ()) | set(
        excluded.other if excluded else ()
    )
    if constrained_other & set(names.other):
        raise NameConstraintViolation("unsupported name form under name constraints")
