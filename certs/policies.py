"""Certificate policy processing (RFC 5280 §6.1.2 (a), (d)-(f); §6.1.3 (d)-(f); §6.1.4 (a), (b),
(g)-(j); §6.1.5 (a), (b), (g)): the valid_policy_tree.

Neither pyca/cryptography's verifier nor any other maintained Python library processes
certificate policies (pyhanko-certvalidator does, inside a validator far too slow for a login
path), so the algorithm is written here, step by step as RFC 5280 states it, and checked against
NIST PKITS 4.8-4.12. A trust anchor's ``ValidationPolicy`` gives the four inputs; by default
(any policy, nothing explicit, mapping and anyPolicy allowed) no chain is refused for its
policies, as RFC 5280 intends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from certs.errors import CertificateUntrusted
from certs.extensions import extensions
from certs.names import CERTIFICATE_MEMO_SIZE, is_self_issued
from certs.policy import ANY_POLICY, PolicyInputs


@dataclass(frozen=True)
class _CertificatePolicyData:
    """What policy processing reads from one certificate (memoised per certificate)."""

    policies: frozenset[str] | None  # None: no certificatePolicies extension
    # issuerDomainPolicy -> its subjectDomainPolicy values, in order of appearance.
    mappings: tuple[tuple[str, tuple[str, ...]], ...]
    require_explicit_policy: int | None
    inhibit_policy_mapping: int | None
    inhibit_any_policy: int | None


def _extension_value(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> object | None:
    for extension in extensions(certificate):
        if extension.oid == oid:
            return extension.value
    return None


@lru_cache(maxsize=CERTIFICATE_MEMO_SIZE)
def _policy_data(certificate: x509.Certificate) -> _CertificatePolicyData:
    policies_value = _extension_value(certificate, ExtensionOID.CERTIFICATE_POLICIES)
    policies = None
    if isinstance(policies_value, x509.CertificatePolicies):
        policies = frozenset(p.policy_identifier.dotted_string for p in policies_value)
    # pyca/cryptography does not parse policyMappings: its DER is read with asn1crypto.
    mapping_value = _extension_value(certificate, ExtensionOID.POLICY_MAPPINGS)
    mappings: dict[str, list[str]] = {}
    if isinstance(mapping_value, x509.UnrecognizedExtension):
        for mapping in asn1_x509.PolicyMappings.load(mapping_value.value):
            issuer = mapping["issuer_domain_policy"].dotted
            subject = mapping["subject_domain_policy"].dotted
            targets = mappings.setdefault(issuer, [])
            if subject not in targets:
                targets.append(subject)
    constraints = _extension_value(certificate, ExtensionOID.POLICY_CONSTRAINTS)
    inhibit_any = _extension_value(certificate, ExtensionOID.INHIBIT_ANY_POLICY)
    return _CertificatePolicyData(
        policies=policies,
        mappings=tuple((k, tuple(v)) for k, v in mappings.items()),
        require_explicit_policy=(
            constraints.require_explicit_policy
            if isinstance(constraints, x509.PolicyConstraints)
            else None
        ),
        inhibit_policy_mapping=(
            constraints.inhibit_policy_mapping
            if isinstance(constraints, x509.PolicyConstraints)
            else None
        ),
        inhibit_any_policy=(
            inhibit_any.skip_certs if isinstance(inhibit_any, x509.InhibitAnyPolicy) else None
        ),
    )


@dataclass(eq=False)
class _Node:
    valid_policy: str
    expected_policy_set: set[str]
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)

    def add_child(self, valid_policy: str, expected: Iterable[str]) -> _Node:
        child = _Node(valid_policy, set(expected), self)
        self.children.append(child)
        return child

    def remove(self) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)


class _Tree:
    """The valid_policy_tree; ``None`` stands for RFC 5280's NULL tree."""

    def __init__(self) -> None:
        self.root: _Node | None = _Node(ANY_POLICY, {ANY_POLICY})

    def at_depth(self, depth: int) -> list[_Node]:
        level = [self.root] if self.root is not None else []
        for _ in range(depth):
            level = [child for node in level for child in node.children]
        return level

    def prune(self, depth: int) -> None:
        """Delete childless nodes above ``depth``, repeatedly, up to the root (RFC 5280's
        "delete any node ... that has no child nodes")."""
        for level in range(depth - 1, -1, -1):
            for node in self.at_depth(level):
                if not node.children:
                    if node is self.root:
                        self.root = None
                    else:
                        node.remove()


NO_ACCEPTABLE_POLICY = "no acceptable certificate policy (an explicit policy is required)"


def _refuse(certificate: x509.Certificate, why: str) -> CertificateUntrusted:
    return CertificateUntrusted(f"{certificate.subject.rfc4514_string()}: {why}")


def process_policies(path: Sequence[x509.Certificate], inputs: PolicyInputs) -> frozenset[str]:
    """Run RFC 5280 §6.1 policy processing over ``path`` (leaf first, the anchor's certificate
    last; the anchor itself is input, not processed). Returns the user-constrained policy set
    (``{anyPolicy}`` when every policy is acceptable); raises ``CertificateUntrusted`` when the
    path needs an explicit policy and has none acceptable."""
    certificates = list(reversed(path[:-1]))  # certificate 1 (issued by the anchor) .. n (leaf)
    n = len(certificates)
    tree = _Tree()
    explicit_policy = 0 if inputs.initial_explicit_policy else n + 1
    inhibit_any_policy = 0 if inputs.initial_any_policy_inhibit else n + 1
    policy_mapping = 0 if inputs.initial_policy_mapping_inhibit else n + 1

    for i, certificate in enumerate(certificates, start=1):
        data = _policy_data(certificate)
        self_issued = is_self_issued(certificate)
        # §6.1.3 (d), (e)
        if data.policies is not None and tree.root is not None:
            parents = tree.at_depth(i - 1)
            for policy in sorted(data.policies - {ANY_POLICY}):
                matched = [p for p in parents if policy in p.expected_policy_set]
                if not matched:
                    matched = [p for p in parents if p.valid_policy == ANY_POLICY]
                for parent in matched:
                    parent.add_child(policy, {policy})
            if ANY_POLICY in data.policies and (inhibit_any_policy > 0 or (i < n and self_issued)):
                for parent in parents:
                    present = {child.valid_policy for child in parent.children}
                    for expected in sorted(parent.expected_policy_set - present):
                        parent.add_child(expected, {expected})
            tree.prune(i)
        elif data.policies is None:
            tree.root = None
        # §6.1.3 (f)
        if explicit_policy <= 0 and tree.root is None:
            raise _refuse(certificate, NO_ACCEPTABLE_POLICY)
        if i == n:
            break
        # §6.1.4 (a), (b): policy mappings
        for issuer_policy, subject_policies in data.mappings:
            if issuer_policy == ANY_POLICY or ANY_POLICY in subject_policies:
                raise _refuse(certificate, "policyMappings maps to or from anyPolicy")
        if tree.root is not None:
            for issuer_policy, subject_policies in data.mappings:
                nodes = tree.at_depth(i)
                if policy_mapping > 0:
                    matching = [node for node in nodes if node.valid_policy == issuer_policy]
                    for node in matching:
                        node.expected_policy_set = set(subject_policies)
                    if not matching:
                        for any_node in (node for node in nodes if node.valid_policy == ANY_POLICY):
                            assert any_node.parent is not None
                            any_node.parent.add_child(issuer_policy, subject_policies)
                else:
                    for node in nodes:
                        if node.valid_policy == issuer_policy:
                            node.remove()
                    tree.prune(i)
                    if tree.root is None:
                        break
        # §6.1.4 (h), (i), (j)
        if not self_issued:
            explicit_policy = max(explicit_policy - 1, 0)
            policy_mapping = max(policy_mapping - 1, 0)
            inhibit_any_policy = max(inhibit_any_policy - 1, 0)
        if data.require_explicit_policy is not None:
            explicit_policy = min(explicit_policy, data.require_explicit_policy)
        if data.inhibit_policy_mapping is not None:
            policy_mapping = min(policy_mapping, data.inhibit_policy_mapping)
        if data.inhibit_any_policy is not None:
            inhibit_any_policy = min(inhibit_any_policy, data.inhibit_any_policy)

    # §6.1.5 (a), (b)
    leaf_data = _policy_data(certificates[-1]) if certificates else None
    explicit_policy = max(explicit_policy - 1, 0)
    if leaf_data is not None and leaf_data.require_explicit_policy == 0:
        explicit_policy = 0
    # §6.1.5 (g): the intersection with the user-initial-policy-set
    user_set = inputs.user_initial_policy_set
    if tree.root is not None and user_set != frozenset({ANY_POLICY}):
        valid_policy_nodes = [
            node
            for level in range(1, n + 1)
            for node in tree.at_depth(level)
            if node.valid_policy != ANY_POLICY
            and node.parent is not None
            and node.parent.valid_policy == ANY_POLICY
        ]
        for node in valid_policy_nodes:
            if node.valid_policy not in user_set:
                node.remove()
        present = {node.valid_policy for node in valid_policy_nodes}
        for any_leaf in [node for node in tree.at_depth(n) if node.valid_policy == ANY_POLICY]:
            assert any_leaf.parent is not None
            for policy in sorted(user_set - present):
                any_leaf.parent.add_child(policy, {policy})
            any_leaf.remove()
        tree.prune(n)
    if explicit_policy <= 0 and tree.root is None:
        subject = certificates[-1] if certificates else path[0]
        raise _refuse(subject, NO_ACCEPTABLE_POLICY)
    if tree.root is None:
        return frozenset()
    return frozenset(node.valid_policy for node in tree.at_depth(n))
