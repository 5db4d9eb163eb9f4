"""CrlStore and IndexedCrl: checks at load, O(1) index, freshness, sources, background refresh."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certs.errors import CertificateRevoked, RevocationUnavailable
from certs.fetch import FetchError, OfflineFetcher
from certs.names import name_key
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from certs.revocation.checker import RevocationChecker
from certs.revocation.crl import CrlInvalid, CrlStore, IndexedCrl
from certs.revocation.status import RevocationState
from certs.validation import ChainValidator
from tests.certs.chains import AT, EPOCH, Issued, Revocation, build_chain, make_ca, make_crl


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)


def test_index_finds_revoked_serials_with_reason_and_date() -> None:
    ca = make_ca("CRL Test CA")
    revoked = [
        Revocation(5, reason=x509.ReasonFlags.superseded),
        Revocation(2**159 - 1, reason=None),  # a full 20-octet serial
    ]
    crl = IndexedCrl(make_crl(ca, revoked), source="test")
    issuer = name_key(ca.certificate.subject)
    assert crl.entry_count == 2
    entry = crl.lookup(issuer, 5)
    assert entry is not None
    assert (entry.reason, entry.revoked_at) == ("superseded", EPOCH + timedelta(days=10))
    long_entry = crl.lookup(issuer, 2**159 - 1)
    assert long_entry is not None and long_entry.reason == "unspecified"
    assert crl.lookup(issuer, 6) is None
    assert crl.lookup(name_key(x509.Name([])), 5) is None


def test_pem_bundle_and_der_are_both_accepted(tmp_path: Path) -> None:
    first, second = make_ca("Bundle CA 1"), make_ca("Bundle CA 2")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(_pem(make_crl(first)) + _pem(make_crl(second)))
    single = tmp_path / "single.crl"
    single.write_bytes(make_crl(first, number=2))
    store = CrlStore.from_files([bundle, single])
    assert len(store) == 3
    assert store.sources == (str(bundle), str(single))
    assert len(store.crls_for(name_key(first.certificate.subject))) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"number": None}, "crlNumber is missing"),
        ({"number_critical": True}, "must not be critical"),
        ({"extensions": [(x509.DeltaCRLIndicator(1), True)]}, "delta CRLs"),
        (
            {
                "extensions": [
                    (
                        x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00"),
                        True,
                    )
                ]
            },
            "unknown critical CRL extension",
        ),
    ],
)
def test_unusable_crls_are_refused_at_load(options: dict[str, object], message: str) -> None:
    ca = make_ca("Refused CRL CA")
    with pytest.raises(CrlInvalid, match=message):
        CrlStore().add(make_crl(ca, **options))  # type: ignore[arg-type]


def test_garbage_is_refused() -> None:
    with pytest.raises(CrlInvalid):
        CrlStore().add(b"\x30\x03\x02\x01\x00")
    with pytest.raises(CrlInvalid):
        CrlStore().add(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")


def test_crl_number_can_be_optional() -> None:
    ca = make_ca("Lenient CA")
    store = CrlStore(require_crl_number=False)
    (crl,) = store.add(make_crl(ca, number=None))
    assert crl.number is None


def test_freshness_window() -> None:
    ca = make_ca("Fresh CA")
    crl = IndexedCrl(make_crl(ca), source="fresh")
    assert crl.is_fresh(AT)
    assert not crl.is_fresh(crl.this_update - timedelta(seconds=1))
    assert crl.next_update is not None and not crl.is_fresh(crl.next_update)


def test_signature_check_is_remembered_per_signer() -> None:
    ca, other = make_ca("Signer CA"), make_ca("Other CA", kind="rsa")
    crl = IndexedCrl(make_crl(ca))
    assert crl.signed_by(ca.certificate)
    assert not crl.signed_by(other.certificate)
    assert len(crl._verified) == 2
    assert crl.signed_by(ca.certificate)
    assert len(crl._verified) == 2


def test_distribution_point_is_fetched_once_then_cached() -> None:
    chain = build_chain(leaf_crl_url="http://crl.test/issuing.crl")
    fetcher = OfflineFetcher({"http://crl.test/issuing.crl": make_crl(chain.intermediate)})
    store = CrlStore(fetcher=fetcher)
    store.add(make_crl(chain.root), source="root")
    validator = ChainValidator([chain.anchor], revocation=RevocationChecker(crls=store))
    for _ in range(3):
        verified = validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)
        assert verified.revocation[0].state is RevocationState.GOOD
    assert fetcher.requests == ["http://crl.test/issuing.crl"]
    assert "http://crl.test/issuing.crl" in store.sources


def test_checker_fetcher_argument_reaches_the_store() -> None:
    chain = build_chain(leaf_crl_url="http://crl.test/issuing.crl")
    revoked = make_crl(chain.intermediate, [Revocation(chain.leaf.certificate.serial_number)])
    checker = RevocationChecker(fetcher=OfflineFetcher({"http://crl.test/issuing.crl": revoked}))
    checker.crls.add(make_crl(chain.root), source="root")
    validator = ChainValidator([chain.anchor], revocation=checker)
    with pytest.raises(CertificateRevoked):
        validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)


def test_unreachable_distribution_point_is_unavailable() -> None:
    chain = build_chain(leaf_crl_url="http://crl.test/missing.crl")
    store = CrlStore(fetcher=OfflineFetcher())
    store.add(make_crl(chain.root), source="root")
    validator = ChainValidator([chain.anchor], revocation=RevocationChecker(crls=store))
    with pytest.raises(RevocationUnavailable):
        validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)


def test_refresh_swaps_and_keeps_old_crl_on_failure() -> None:
    chain = build_chain()
    url = "http://crl.test/issuing.crl"
    fetcher = OfflineFetcher({url: make_crl(chain.intermediate, number=1)})
    store = CrlStore(fetcher=fetcher, sources=[url])
    assert store.refresh() == {}
    issuer = name_key(chain.intermediate.certificate.subject)
    assert [c.number for c in store.crls_for(issuer)] == [1]

    fetcher.responses[url] = make_crl(
        chain.intermediate, [Revocation(chain.leaf.certificate.serial_number)], number=2
    )
    store.refresh()
    assert [c.number for c in store.crls_for(issuer)] == [2]

    del fetcher.responses[url]
    failures = store.refresh()
    assert isinstance(failures[url], FetchError)
    assert [c.number for c in store.crls_for(issuer)] == [2]


class _RotatingFetcher(OfflineFetcher):
    """Serves a newly signed CRL (next crlNumber) on every fetch, alternating the other serial
    it lists, and counts fetches so the test waits on an event, not on time."""

    def __init__(self, issuer: Issued, refreshes_wanted: int) -> None:
        super().__init__()
        self.issuer = issuer
        self.count = 0
        self.refreshes_wanted = refreshes_wanted
        self.done = threading.Event()

    def get(self, url: str, *, timeout: float) -> bytes:
        self.count += 1
        if self.count >= self.refreshes_wanted:
            self.done.set()
        return make_crl(self.issuer, [Revocation(11 + self.count % 2)], number=self.count)


def test_background_refresh_while_validations_run() -> None:
    """A refresher thread swaps the index again and again while threads validate.

    Both CRL versions are complete and fresh, and neither lists the leaf; the other serial they
    list changes. Every validation must succeed: a reader never sees a half-built index.
    """
    chain = build_chain()
    url = "http://crl.test/issuing.crl"
    fetcher = _RotatingFetcher(chain.intermediate, refreshes_wanted=50)
    store = CrlStore(fetcher=fetcher, sources=[url], refresh_interval=0.001)
    store.refresh()
    store.add(make_crl(chain.root), source="root")
    validator = ChainValidator([chain.anchor], revocation=RevocationChecker(crls=store))
    failures: list[BaseException] = []
    validations = [0]

    def validate_until_done() -> None:
        while not fetcher.done.is_set():
            try:
                verified = validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)
                assert verified.revocation[0].state is RevocationState.GOOD
                validations[0] += 1
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
                failures.append(exc)
                return

    workers = [threading.Thread(target=validate_until_done) for _ in range(4)]
    store.start()
    for worker in workers:
        worker.start()
    assert fetcher.done.wait(60), "the refresher did not run"
    for worker in workers:
        worker.join()
    store.stop()
    assert failures == []
    assert validations[0] > 0
    assert fetcher.count >= 50
    # The root's CRL, added directly, survived every swap of the refreshed source.
    assert len(store.crls_for(name_key(chain.root.certificate.subject))) == 1
    (latest,) = store.crls_for(name_key(chain.intermediate.certificate.subject))
    assert latest.number is not None and latest.number >= 50


def test_refresh_thread_outlives_a_broken_source(tmp_path: Path) -> None:
    missing = tmp_path / "missing.crl"
    store = CrlStore(sources=[str(missing)], refresh_interval=0.001)
    assert str(missing) in store.refresh()
    store.start()
    store.start()  # idempotent
    store.stop()


def test_revoked_intermediate_by_indirect_source_mode_off_is_ignored() -> None:
    chain = build_chain()
    store = CrlStore()
    store.add(
        make_crl(chain.root, [Revocation(chain.intermediate.certificate.serial_number)]),
        source="root",
    )
    off = TrustAnchor(chain.root.certificate, ValidationPolicy(revocation=RevocationMode.OFF))
    validator = ChainValidator([off], revocation=RevocationChecker(crls=store))
    validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)


def test_failed_distribution_point_is_not_refetched_until_refresh() -> None:
    chain = build_chain(leaf_crl_url="http://crl.test/late.crl")
    fetcher = OfflineFetcher()
    store = CrlStore(fetcher=fetcher)
    store.add(make_crl(chain.root), source="root")
    soft = TrustAnchor(
        chain.root.certificate, ValidationPolicy(revocation=RevocationMode.SOFT_FAIL)
    )
    validator = ChainValidator([soft], revocation=RevocationChecker(crls=store))
    for _ in range(3):
        verified = validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)
        assert verified.revocation[0].state is RevocationState.UNAVAILABLE
    assert fetcher.requests == ["http://crl.test/late.crl"]

    fetcher.responses["http://crl.test/late.crl"] = make_crl(chain.intermediate)
    assert store.refresh() == {}
    verified = validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)
    assert verified.revocation[0].state is RevocationState.GOOD


def test_malformed_entry_list_is_refused_not_crashed() -> None:
    ca = make_ca("Corrupt CRL CA")
    der = bytearray(make_crl(ca, [Revocation(7), Revocation(8)]))
    start = der.find(bytes([0x02, 0x01, 0x07]))  # serial 7's INTEGER inside the first entry
    assert start > 0
    der[start + 1] = 0x7F  # its length now runs past the entry
    with pytest.raises(CrlInvalid):
        IndexedCrl(bytes(der), source="corrupt")


def test_names_compare_as_rfc5280_says() -> None:
    from certs.names import dn_within, names_equal

    upper = x509.Name.from_rfc4514_string("CN=Zhang  San,O=CertGate Test,C=CN")
    lower = x509.Name.from_rfc4514_string("CN=zhang san,O=certgate test,C=cn")
    assert names_equal(upper, lower)
    assert not names_equal(upper, x509.Name.from_rfc4514_string("CN=Li Si,O=CertGate Test,C=CN"))
    # rfc4514 strings list the most specific RDN first; name_key keeps the DER order.
    subtree = name_key(x509.Name.from_rfc4514_string("O=CertGate Test,C=CN"))
    assert dn_within(name_key(upper), subtree)
    assert not dn_within(subtree, name_key(upper))


def test_refresh_never_goes_back_to_an_older_crl() -> None:
    """A replayed older CRL (still inside its own validity) must not "unrevoke" anything."""
    chain = build_chain()
    url = "http://crl.test/issuing.crl"
    serial = chain.leaf.certificate.serial_number
    fetcher = OfflineFetcher({url: make_crl(chain.intermediate, [Revocation(serial)], number=3)})
    store = CrlStore(fetcher=fetcher, sources=[url])
    store.refresh()
    fetcher.responses[url] = make_crl(chain.intermediate, number=2)  # the replay
    store.refresh()
    (held,) = store.crls_for(name_key(chain.intermediate.certificate.subject))
    assert held.number == 3
    assert held.lookup(name_key(chain.intermediate.certificate.subject), serial) is not None


def test_known_issuer_signature_is_checked_at_load() -> None:
    ca = make_ca("Known Issuer CA")
    store = CrlStore(issuers=[ca.certificate])
    store.add(make_crl(ca), source="good")
    corrupted = bytearray(make_crl(ca, number=2))
    corrupted[-1] ^= 0x01  # the signature's last byte
    with pytest.raises(CrlInvalid, match="signature"):
        store.add(bytes(corrupted), source="corrupted")
    # A CRL whose AKI names another key (a separate CRL-signing key, or a forgery) is left to
    # the check at first use, where the signer's own path must validate.
    other_key = make_ca("Known Issuer CA", kind="rsa")
    store.add(make_crl(other_key), source="other-key")


@pytest.mark.parametrize(
    ("tag", "text", "expected"),
    [
        (0x17, b"491231235959Z", "2049-12-31T23:59:59+00:00"),
        (0x17, b"500101000000Z", "1950-01-01T00:00:00+00:00"),
        (0x18, b"20500101000000Z", "2050-01-01T00:00:00+00:00"),
    ],
)
def test_entry_times_follow_rfc5280_year_rules(tag: int, text: bytes, expected: str) -> None:
    from datetime import datetime

    from certs.der import parse_time

    assert parse_time(tag, text) == datetime.fromisoformat(expected)
