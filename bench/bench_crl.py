"""A CRL of 1,000,000 revoked serials: load and index, memory, lookup, and a whole validation.

References measured in the same run: pyca/cryptography's own lookup by serial (a linear scan),
building a Python set from pyca/cryptography's entry objects (the obvious alternative to the DER
walk), and the same validation done by pyhanko-certvalidator with the same CRL.

The CRL is encoded here directly (DER by hand, then signed with the issuing CA's key):
pyca/cryptography's CRL builder needs a Python object per entry and takes minutes for a million.
Each entry carries a reasonCode extension, as real CRLs' entries do.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import time
import tracemalloc
from datetime import datetime

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from bench import Row, per_call, print_table
from certs.names import name_key
from certs.revocation.checker import RevocationChecker
from certs.revocation.crl import CrlStore, IndexedCrl
from certs.validation import ChainValidator
from tests.certs.chains import AT, EPOCH, Chain, Issued, build_chain, make_crl

ENTRIES = int(os.environ.get("BENCH_CRL_ENTRIES", "1000000"))


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _utc_time(moment: datetime) -> bytes:
    return _tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True))


ECDSA_WITH_SHA256 = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a8648ce3d040302")))
REASON_KEY_COMPROMISE = _tlv(0x30, _tlv(0x30, bytes.fromhex("0603551d1504030a0101")))


def serial_of(index: int) -> int:
    """Spread-out 16-octet serials, as CAs issue them (never the leaf's serial, 1000)."""
    return (index * 0x9E3779B97F4A7C15F39CC0605CEDC835 + 0x1234567) % (1 << 127) | (1 << 126)


def build_large_crl(issuer: Issued, entries: int) -> bytes:
    """A DER CRL with ``entries`` revoked serials, signed by ``issuer`` (an EC key)."""
    assert isinstance(issuer.key, ec.EllipticCurvePrivateKey)
    revoked_at = _utc_time(EPOCH)
    tail = revoked_at + REASON_KEY_COMPROMISE
    revoked = b"".join(_tlv(0x30, _integer(serial_of(i)) + tail) for i in range(entries))
    extensions = _tlv(
        0xA0,
        _tlv(
            0x30,
            _tlv(0x30, bytes.fromhex("0603551d14") + _tlv(0x04, _integer(7))),  # crlNumber 7
        ),
    )
    tbs = _tlv(
        0x30,
        _integer(1)  # v2
        + ECDSA_WITH_SHA256
        + issuer.certificate.subject.public_bytes()
        + _utc_time(EPOCH)
        + _utc_time(AT.replace(year=AT.year + 1))
        + _tlv(0x30, revoked)
        + extensions,
    )
    signature = issuer.key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + ECDSA_WITH_SHA256 + _tlv(0x03, b"\x00" + signature))


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pyhanko_seconds(chain: Chain, crls: list[bytes]) -> float:
    from pyhanko_certvalidator import CertificateValidator, ValidationContext

    def asn1(certificate: object) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))  # type: ignore[attr-defined]

    context = ValidationContext(
        trust_roots=[asn1(chain.root.certificate)],
        crls=crls,
        moment=AT,
        # "require": every certificate needs revocation information ("hard-fail" in
        # pyhanko-certvalidator only insists when the certificate names a CRL or OCSP URL).
        revocation_mode="require",
    )
    validator = CertificateValidator(
        asn1(chain.leaf.certificate),
        intermediate_certs=[asn1(chain.intermediate.certificate)],
        validation_context=context,
    )
    start = time.perf_counter()
    asyncio.run(validator.async_validate_usage({"digital_signature"}))
    return time.perf_counter() - start


def run() -> list[Row]:
    chain = build_chain("p256")
    start = time.perf_counter()
    der = build_large_crl(chain.intermediate, ENTRIES)
    generated = time.perf_counter() - start
    print(f"(generated a {len(der) / 1e6:.1f} MB CRL of {ENTRIES:,} entries in {generated:.1f} s)")

    gc.collect()
    rss_before = _rss_mb()
    start = time.perf_counter()
    store = CrlStore()
    (crl,) = store.add(der, source="large")
    load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    assert crl.signed_by(chain.intermediate.certificate)
    signature_seconds = time.perf_counter() - start
    rss_growth = _rss_mb() - rss_before

    # Heap held by the index alone (tracemalloc slows loading, so it is measured separately).
    tracemalloc.start()
    second = IndexedCrl(der, source="measure")
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del second

    issuer = name_key(chain.intermediate.certificate.subject)
    present, absent = serial_of(ENTRIES // 2), 1000
    hit = per_call(lambda: crl.lookup(issuer, present), number=20000) * 1e6
    miss = per_call(lambda: crl.lookup(issuer, absent), number=20000) * 1e6
    scan = (
        per_call(
            lambda: crl.crl.get_revoked_certificate_by_serial_number(absent), repeat=3, number=3
        )
        * 1e6
    )

    start = time.perf_counter()
    reference_set = {entry.serial_number for entry in crl.crl}
    set_seconds = time.perf_counter() - start
    del reference_set

    store.add(make_crl(chain.root), source="root")
    validator = ChainValidator([chain.anchor], revocation=RevocationChecker(crls=store))
    validation = (
        per_call(
            lambda: validator.validate(chain.leaf.certificate, chain.intermediates, at=AT),
            number=200,
        )
        * 1e6
    )
    pyhanko = _pyhanko_seconds(chain, [der, make_crl(chain.root)]) * 1e6

    return [
        Row(
            f"load + check + index {ENTRIES:,} entries",
            load_seconds * 1000,
            "ms",
            "set() of pyca/cryptography entries",
            set_seconds * 1000,
            "< 3000 ms",
        ),
        Row("CRL signature check (once per signer)", signature_seconds * 1000, "ms"),
        Row(
            "memory: index heap (tracemalloc)",
            index_bytes / 1e6,
            "MB",
            f"CRL DER itself {len(der) / 1e6:.1f} MB",
            goal="< 300 MB",
        ),
        Row("memory: process RSS growth while loading", rss_growth, "MB", goal="< 300 MB"),
        Row("lookup, serial present", hit, "µs", "pyca/cryptography linear scan (absent)", scan),
        Row("lookup, serial absent", miss, "µs", "pyca/cryptography linear scan (absent)", scan),
        Row(
            "whole validation with this CRL (warm)",
            validation,
            "µs",
            "pyhanko-certvalidator, same CRL, one call",
            pyhanko,
        ),
    ]


def main() -> None:
    print_table(f"CRL of {ENTRIES:,} revoked serials", run())


if __name__ == "__main__":
    main()
