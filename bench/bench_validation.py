"""One warm validation (RSA-2048 and P-256 chains of three) next to the bare signature checks.

The reference is what no validator can avoid: verifying the chain's two signatures with
pyca/cryptography, measured in the same run on the same certificates. Also shown: the
pyca/cryptography verifier alone (the engine's first stage) for the same chain.
"""

from __future__ import annotations

from cryptography.x509 import verification

from bench import Row, per_call, print_table
from certs.revocation.checker import RevocationChecker
from certs.revocation.crl import CrlStore
from certs.validation import ChainValidator, _client_extension_policies
from tests.certs.chains import AT, build_chain, make_crl


def run() -> list[Row]:
    rows: list[Row] = []
    for kind, label in (("rsa", "RSA-2048"), ("p256", "P-256")):
        chain = build_chain(kind)
        store = CrlStore()
        store.add(make_crl(chain.root), source="root")
        store.add(make_crl(chain.intermediate), source="issuing")
        validator = ChainValidator([chain.anchor], revocation=RevocationChecker(crls=store))
        leaf, intermediates = chain.leaf.certificate, chain.intermediates

        def validate(
            validator: ChainValidator = validator, leaf: object = leaf, ims: object = intermediates
        ) -> object:
            return validator.validate(leaf, ims, at=AT)  # type: ignore[arg-type]

        def signatures(chain: object = chain) -> None:
            chain.leaf.certificate.verify_directly_issued_by(chain.intermediate.certificate)  # type: ignore[attr-defined]
            chain.intermediate.certificate.verify_directly_issued_by(chain.root.certificate)  # type: ignore[attr-defined]

        ca_policy, ee_policy = _client_extension_policies(chain.policy)
        builder = (
            verification.PolicyBuilder()
            .store(verification.Store([chain.root.certificate]))
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        )

        def cryptography_verifier(
            builder: verification.PolicyBuilder = builder,
            leaf: object = leaf,
            ims: object = intermediates,
        ) -> object:
            verifier = builder.time(AT).build_client_verifier()
            return verifier.verify(leaf, list(ims))  # type: ignore[arg-type]

        validation = per_call(validate) * 1e6
        bare = per_call(signatures) * 1e6
        rows.append(
            Row(
                f"{label}: validate + CRL check (warm)",
                validation,
                "µs",
                "bare signature checks",
                bare,
                "< 1000 µs",
            )
        )
        rows.append(
            Row(
                f"{label}: first stage alone (pyca/cryptography verifier)",
                per_call(cryptography_verifier) * 1e6,
                "µs",
                "bare signature checks",
                bare,
            )
        )
    return rows


def main() -> None:
    print_table("Path validation, chains of three, warm caches", run())


if __name__ == "__main__":
    main()
