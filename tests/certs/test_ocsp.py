"""OcspClient against real `openssl ocsp` responders (tests/certs/ocsp_fixtures.py).

Every scenario goes over real HTTP on loopback: the responders are OpenSSL processes signing
with the test CA or with delegated responder certificates, and the replay/tamper cases put a
real HTTP proxy between the client and a responder.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    SignatureAlgorithmOID,
)

from certs.errors import REVOCATION_REASON_TEXT
from certs.fetch import HttpFetcher
from certs.revocation.ocsp import OcspCache, OcspCertId, OcspClient, ocsp_urls
from certs.revocation.status import RevocationState, RevocationStatus
from tests.certs.ocsp_fixtures import (
    CountingFetcher,
    OcspPki,
    free_port,
    ocsp_proxy,
    silent_server,
)

GOOD = RevocationState.GOOD
REVOKED = RevocationState.REVOKED
UNKNOWN = RevocationState.UNKNOWN
UNAVAILABLE = RevocationState.UNAVAILABLE


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OcspPki]:
    test_pki = OcspPki.create(Path(tmp_path_factory.mktemp("ocsp-pki")))
    try:
        yield test_pki
    finally:
        test_pki.close()


def make_client(**options: object) -> tuple[OcspClient, CountingFetcher]:
    fetcher = CountingFetcher(HttpFetcher(max_bytes=64 * 1024))
    return OcspClient(fetcher, **options), fetcher  # type: ignore[arg-type]


def check(
    pki: OcspPki,
    leaf: str,
    url: str | None,
    *,
    at_offset: timedelta | None = None,
    **options: object,
) -> RevocationStatus:
    client, _ = make_client(**options)
    at = pki.at if at_offset is None else pki.now + at_offset
    return client.status(pki.leaves[leaf].certificate, pki.ca.certificate, at=at, responder_url=url)


# -- answers from real responders -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("responder", "leaf", "state", "detail"),
    [
        ("delegated", "good", GOOD, ""),
        ("delegated", "unknown", UNKNOWN, "certStatus unknown"),
        ("delegated_key_id", "good", GOOD, ""),  # ResponderID byKey
        ("ca", "good", GOOD, ""),  # signed by the CA itself
        ("ca", "unknown", UNKNOWN, "certStatus unknown"),
        ("ca_key_id_no_certs", "good", GOOD, ""),  # CA known already, no certs needed
        ("ca_pss", "good", GOOD, ""),  # RSASSA-PSS signature
        ("no_ocsp_eku", "good", UNAVAILABLE, "lacks extendedKeyUsage id-kp-OCSPSigning"),
        ("no_ocsp_eku", "revoked_key_compromise", UNAVAILABLE, "id-kp-OCSPSigning"),
        ("no_digital_signature", "good", UNAVAILABLE, "does not allow digitalSignature"),
        ("other_ca", "good", UNAVAILABLE, "is not issued by the certificate's issuer"),
        ("lookalike_ca", "good", UNAVAILABLE, "is not issued by the certificate's issuer"),
        ("expired", "good", UNAVAILABLE, "outside its validity period"),
        ("delegated_no_certs", "good", UNAVAILABLE, "responder certificate not found"),
    ],
)
def test_status_from_real_responder(
    pki: OcspPki, responder: str, leaf: str, state: RevocationState, detail: str
) -> None:
    status = check(pki, leaf, pki.responder_url(responder))
    assert status.state == state, status.detail
    assert status.source == "ocsp"
    assert detail in status.detail
    if state == UNAVAILABLE:
        assert status.this_update is None and status.reason is None
    else:
        assert status.this_update is not None and status.next_update is not None


@pytest.mark.parametrize(
    "leaf",
    [
        "revoked_key_compromise",
        "revoked_ca_compromise",
        "revoked_superseded",
        "revoked_certificate_hold",
        "revoked_no_reason",
    ],
)
@pytest.mark.parametrize("responder", ["delegated", "ca"])
def test_revoked_carries_reason_and_time(pki: OcspPki, responder: str, leaf: str) -> None:
    revoked_at, reason = pki.revocations[leaf]
    status = check(pki, leaf, pki.responder_url(responder))
    assert status.state == REVOKED, status.detail
    assert status.revoked_at == revoked_at
    assert status.reason == (reason or "unspecified")
    assert status.reason in REVOCATION_REASON_TEXT


def test_responder_url_comes_from_aia(pki: OcspPki) -> None:
    pki.responder_url("delegated")  # the leaves' AIA points at this responder
    assert check(pki, "good", None).state == GOOD
    assert check(pki, "revoked_superseded", None).state == REVOKED


def test_certificate_without_aia_and_no_configured_responder(pki: OcspPki) -> None:
    client, fetcher = make_client()
    status = client.status(pki.leaves["no_aia"].certificate, pki.ca.certificate, at=pki.at)
    assert status.state == UNAVAILABLE
    assert "no http OCSP URL" in status.detail
    assert fetcher.posts == 0


def test_issuer_that_did_not_issue_the_certificate(pki: OcspPki) -> None:
    client, fetcher = make_client()
    wrong_issuer = pki.responders["delegated"].certificate
    status = client.status(pki.leaves["good"].certificate, wrong_issuer, at=pki.at)
    assert status.state == UNAVAILABLE
    assert "does not match the certificate's issuer" in status.detail
    assert fetcher.posts == 0


def test_request_is_a_sha1_certid_post_with_a_nonce(pki: OcspPki) -> None:
    client, fetcher = make_client()
    leaf = pki.leaves["good"].certificate
    assert client.status(leaf, pki.ca.certificate, at=pki.at).state == GOOD
    [(content_type, body)] = fetcher.bodies
    assert content_type == "application/ocsp-request"
    request = ocsp.load_der_ocsp_request(body)
    assert isinstance(request.hash_algorithm, hashes.SHA1)
    assert request.serial_number == leaf.serial_number
    nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert 16 <= len(nonce) <= 32


def test_each_request_has_a_fresh_nonce(pki: OcspPki) -> None:
    client, fetcher = make_client(cache=OcspCache())
    for name in ("good", "good_2"):
        client.status(pki.leaves[name].certificate, pki.ca.certificate, at=pki.at)
    nonces = {
        ocsp.load_der_ocsp_request(body)
        .extensions.get_extension_for_class(x509.OCSPNonce)
        .value.nonce
        for _, body in fetcher.bodies
    }
    assert len(nonces) == 2


def test_naive_at_is_taken_as_utc(pki: OcspPki) -> None:
    client, _ = make_client()
    naive = pki.at.replace(tzinfo=None)
    assert client.status(pki.leaves["good"].certificate, pki.ca.certificate, at=naive).state == GOOD


def test_ocsp_urls_keeps_http_urls_in_order(pki: OcspPki) -> None:
    def uri(value: str) -> x509.AccessDescription:
        return x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(value)
        )

    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(pki.ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(pki.now)
        .not_valid_after(pki.now + timedelta(days=1))
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    uri("ldap://ldap.example.cn/cn=ocsp"),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier("http://ca.example.cn/ca.cer"),
                    ),
                    uri("http://ocsp.example.cn/"),
                    uri("HTTPS://ocsp2.example.cn/"),
                ]
            ),
            critical=False,
        )
        .sign(pki.ca.key, hashes.SHA256())
    )
    assert ocsp_urls(certificate) == ["http://ocsp.example.cn/", "HTTPS://ocsp2.example.cn/"]


def test_without_nonce(pki: OcspPki) -> None:
    client, fetcher = make_client(use_nonce=False)
    assert (
        client.status(pki.leaves["good"].certificate, pki.ca.certificate, at=pki.at).state == GOOD
    )
    request = ocsp.load_der_ocsp_request(fetcher.bodies[0][1])
    assert not any(isinstance(ext.value, x509.OCSPNonce) for ext in request.extensions)


# -- replayed, altered and forged responses through a real proxy -----------------------------------


def test_responder_echoes_our_nonce_and_pss_is_really_used(pki: OcspPki) -> None:
    with ocsp_proxy(pki.responder_url("ca_pss")) as proxy:
        assert check(pki, "good", proxy.url).state == GOOD
    response = ocsp.load_der_ocsp_response(proxy.captured[0])
    assert response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    assert response.extensions.get_extension_for_class(x509.OCSPNonce)


def test_nonce_mismatch_on_replayed_response(pki: OcspPki) -> None:
    with ocsp_proxy(pki.responder_url("delegated")) as proxy:
        assert check(pki, "good", proxy.url).state == GOOD
        # Replay that real, validly signed answer to a new request (new nonce).
        proxy.fixed_response = proxy.captured[0]
        status = check(pki, "good", proxy.url)
    assert status.state == UNAVAILABLE
    assert "nonce mismatch" in status.detail


def test_response_without_nonce_is_accepted_unless_required(pki: OcspPki) -> None:
    with ocsp_proxy(pki.responder_url("delegated")) as proxy:
        assert check(pki, "good", proxy.url, use_nonce=False).state == GOOD
        proxy.fixed_response = proxy.captured[0]  # a real answer that carries no nonce
        accepted = check(pki, "good", proxy.url)
        refused = check(pki, "good", proxy.url, require_nonce=True)
    assert accepted.state == GOOD
    assert refused.state == UNAVAILABLE
    assert "no nonce" in refused.detail


def _flip_signature_bit(response_der: bytes) -> bytes:
    signature = ocsp.load_der_ocsp_response(response_der).signature
    tampered = signature[:-1] + bytes([signature[-1] ^ 0x01])
    assert response_der.count(signature) == 1
    return response_der.replace(signature, tampered)


@pytest.mark.parametrize("responder", ["delegated", "ca", "ca_pss"])  # ECDSA, RSA, RSA-PSS
def test_tampered_signature(pki: OcspPki, responder: str) -> None:
    with ocsp_proxy(pki.responder_url(responder)) as proxy:
        proxy.transform = _flip_signature_bit
        status = check(pki, "revoked_key_compromise", proxy.url)
    assert status.state == UNAVAILABLE
    assert "signature does not verify" in status.detail


@pytest.mark.parametrize(
    ("include_forger_certificate", "detail"),
    [
        (False, "signature does not verify"),
        (True, "is not issued by the certificate's issuer"),
    ],
)
def test_forged_response_signed_by_an_unrelated_key(
    pki: OcspPki, include_forger_certificate: bool, detail: str
) -> None:
    # A "good" answer for a revoked certificate, naming the CA as responder (byName), signed
    # by a forger's key under a self-made certificate that copies the CA's name.
    leaf = pki.leaves["revoked_key_compromise"].certificate
    forger_key = ec.generate_private_key(ec.SECP256R1())
    forger = (
        x509.CertificateBuilder()
        .subject_name(pki.ca.certificate.subject)
        .issuer_name(pki.ca.certificate.subject)
        .public_key(forger_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.now - timedelta(days=1))
        .not_valid_after(pki.now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .sign(forger_key, hashes.SHA256())
    )
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf,
            issuer=pki.ca.certificate,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=pki.now,
            next_update=pki.now + timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.NAME, forger)
    )
    if include_forger_certificate:
        builder = builder.certificates([forger])
    forged = builder.sign(forger_key, hashes.SHA256())
    with ocsp_proxy() as proxy:
        proxy.fixed_response = forged.public_bytes(serialization.Encoding.DER)
        status = check(pki, "revoked_key_compromise", proxy.url, use_nonce=False)
    assert status.state == UNAVAILABLE
    assert detail in status.detail


def _ca_signed_response(
    pki: OcspPki,
    leaf: str,
    *,
    cert_id_hash: hashes.HashAlgorithm,
    responder_encoding: ocsp.OCSPResponderEncoding,
    extension: x509.ExtensionType | None = None,
) -> bytes:
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=pki.leaves[leaf].certificate,
            issuer=pki.ca.certificate,
            algorithm=cert_id_hash,
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=pki.now,
            next_update=pki.now + timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(responder_encoding, pki.ca.certificate)
    )
    if extension is not None:
        builder = builder.add_extension(extension, critical=True)
    return builder.sign(pki.ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("cert_id_hash", "encoding", "extension", "state", "detail"),
    [
        # A responder may answer with a SHA-256 CertID: matched by recomputing it.
        (hashes.SHA256(), ocsp.OCSPResponderEncoding.HASH, None, GOOD, ""),
        (hashes.SHA1(), ocsp.OCSPResponderEncoding.NAME, None, GOOD, ""),
        (
            hashes.SHA1(),
            ocsp.OCSPResponderEncoding.NAME,
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"),
            UNAVAILABLE,
            "unrecognised critical extension 1.3.6.1.4.1.55555.1",
        ),
    ],
)
def test_ca_signed_responses_built_here(
    pki: OcspPki,
    cert_id_hash: hashes.HashAlgorithm,
    encoding: ocsp.OCSPResponderEncoding,
    extension: x509.ExtensionType | None,
    state: RevocationState,
    detail: str,
) -> None:
    with ocsp_proxy() as proxy:
        proxy.fixed_response = _ca_signed_response(
            pki, "good", cert_id_hash=cert_id_hash, responder_encoding=encoding, extension=extension
        )
        status = check(pki, "good", proxy.url, use_nonce=False)
    assert status.state == state, status.detail
    assert detail in status.detail


def test_response_for_another_certificate(pki: OcspPki) -> None:
    with ocsp_proxy(pki.responder_url("delegated")) as proxy:
        assert check(pki, "good_2", proxy.url, use_nonce=False).state == GOOD
        proxy.fixed_response = proxy.captured[0]
        status = check(pki, "good", proxy.url, use_nonce=False)
    assert status.state == UNAVAILABLE
    assert "certID mismatch" in status.detail


@pytest.mark.parametrize(
    ("response_status", "name"),
    [
        (ocsp.OCSPResponseStatus.TRY_LATER, "tryLater"),
        (ocsp.OCSPResponseStatus.UNAUTHORIZED, "unauthorized"),
        (ocsp.OCSPResponseStatus.INTERNAL_ERROR, "internalError"),
        (ocsp.OCSPResponseStatus.MALFORMED_REQUEST, "malformedRequest"),
        (ocsp.OCSPResponseStatus.SIG_REQUIRED, "sigRequired"),
    ],
)
def test_unsuccessful_response_status(
    pki: OcspPki, response_status: ocsp.OCSPResponseStatus, name: str
) -> None:
    with ocsp_proxy() as proxy:
        proxy.fixed_response = ocsp.OCSPResponseBuilder.build_unsuccessful(
            response_status
        ).public_bytes(serialization.Encoding.DER)
        status = check(pki, "good", proxy.url)
    assert status.state == UNAVAILABLE
    assert f"responder answered {name}" in status.detail


@pytest.mark.parametrize(
    ("body", "http_status", "detail"),
    [
        (b"<html>not OCSP</html>", 200, "malformed OCSP response"),
        (b"", 200, "malformed OCSP response"),
        (b"busy", 503, "answered HTTP 503"),
    ],
)
def test_garbage_and_http_errors(pki: OcspPki, body: bytes, http_status: int, detail: str) -> None:
    with ocsp_proxy() as proxy:
        proxy.fixed_response = body
        proxy.http_status = http_status
        status = check(pki, "good", proxy.url)
    assert status.state == UNAVAILABLE
    assert detail in status.detail


# -- network failures ------------------------------------------------------------------------------


def test_responder_down(pki: OcspPki) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    status = check(pki, "good", url)
    assert status.state == UNAVAILABLE
    assert "connection refused" in status.detail


def test_slow_responder_times_out(pki: OcspPki) -> None:
    with silent_server() as url:
        status = check(pki, "good", url, timeout=0.5)
    assert status.state == UNAVAILABLE
    assert "timed out after 0.5 s" in status.detail


# -- freshness -------------------------------------------------------------------------------------


def test_stale_after_next_update(pki: OcspPki) -> None:
    # The responder says nextUpdate = now + 5 min; an hour later the answer is stale.
    status = check(pki, "good", pki.responder_url("delegated"), at_offset=timedelta(hours=1))
    assert status.state == UNAVAILABLE
    assert "nextUpdate" in status.detail and "has passed" in status.detail


def test_this_update_in_the_future(pki: OcspPki) -> None:
    status = check(pki, "good", pki.responder_url("delegated"), at_offset=-timedelta(hours=1))
    assert status.state == UNAVAILABLE
    assert "thisUpdate" in status.detail and "in the future" in status.detail


def test_clock_skew_tolerates_small_differences(pki: OcspPki) -> None:
    # Two minutes before thisUpdate is within the default five-minute skew.
    status = check(pki, "good", pki.responder_url("delegated"), at_offset=-timedelta(minutes=2))
    assert status.state == GOOD
    strict = check(
        pki,
        "good",
        pki.responder_url("delegated"),
        at_offset=-timedelta(minutes=2),
        clock_skew=timedelta(0),
    )
    assert strict.state == UNAVAILABLE


def test_response_without_next_update(pki: OcspPki) -> None:
    url = pki.responder_url("delegated_no_next_update")
    fresh = check(pki, "good", url)
    assert fresh.state == GOOD and fresh.next_update is None
    stale = check(pki, "good", url, at_offset=timedelta(hours=1))
    assert stale.state == UNAVAILABLE
    assert "no nextUpdate" in stale.detail


# -- cache -----------------------------------------------------------------------------------------


def test_cache_hit_does_not_reach_the_network(pki: OcspPki) -> None:
    client, fetcher = make_client()
    leaf, ca = pki.leaves["good"].certificate, pki.ca.certificate
    url = pki.responder_url("delegated")
    first = client.status(leaf, ca, at=pki.at, responder_url=url)
    second = client.status(leaf, ca, at=pki.at + timedelta(minutes=2), responder_url=url)
    assert first.state == second.state == GOOD
    assert second == first
    assert fetcher.posts == 1


def test_cache_entry_ends_at_next_update(pki: OcspPki) -> None:
    client, fetcher = make_client()
    leaf, ca = pki.leaves["good"].certificate, pki.ca.certificate
    url = pki.responder_url("delegated")
    assert client.status(leaf, ca, at=pki.at, responder_url=url).state == GOOD
    later = client.status(leaf, ca, at=pki.now + timedelta(hours=1), responder_url=url)
    assert later.state == UNAVAILABLE  # fetched again, and the fresh answer is stale by then
    assert fetcher.posts == 2


def test_cached_revoked_stays_revoked(pki: OcspPki) -> None:
    client, fetcher = make_client()
    leaf, ca = pki.leaves["revoked_key_compromise"].certificate, pki.ca.certificate
    url = pki.responder_url("delegated")
    assert client.status(leaf, ca, at=pki.at, responder_url=url).state == REVOKED
    much_later = client.status(leaf, ca, at=pki.now + timedelta(days=30), responder_url=url)
    assert much_later.state == REVOKED and much_later.reason == "key_compromise"
    assert fetcher.posts == 1


def test_certificate_hold_is_not_cached_past_next_update(pki: OcspPki) -> None:
    client, fetcher = make_client()
    leaf, ca = pki.leaves["revoked_certificate_hold"].certificate, pki.ca.certificate
    url = pki.responder_url("delegated")
    assert client.status(leaf, ca, at=pki.at, responder_url=url).state == REVOKED
    client.status(leaf, ca, at=pki.now + timedelta(hours=1), responder_url=url)
    assert fetcher.posts == 2


def test_failures_are_not_cached(pki: OcspPki) -> None:
    client, fetcher = make_client()
    leaf, ca = pki.leaves["good"].certificate, pki.ca.certificate
    url = f"http://127.0.0.1:{free_port()}/"
    for _ in range(2):
        assert client.status(leaf, ca, at=pki.at, responder_url=url).state == UNAVAILABLE
    assert fetcher.posts == 2
    assert len(client.cache) == 0


def test_concurrent_callers_share_one_client(pki: OcspPki) -> None:
    client, _ = make_client(cache=OcspCache(max_entries=4))
    ca = pki.ca.certificate
    url = pki.responder_url("delegated")
    leaves = ["good", "good_2", "revoked_superseded", "unknown"] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        states = list(
            pool.map(
                lambda name: (
                    client.status(
                        pki.leaves[name].certificate, ca, at=pki.at, responder_url=url
                    ).state
                ),
                leaves,
            )
        )
    assert states == [GOOD, GOOD, REVOKED, UNKNOWN] * 4


def test_cache_is_bounded_and_keeps_revocations(pki: OcspPki) -> None:
    cache = OcspCache(max_entries=2)
    ca = pki.ca.certificate
    ids = [
        OcspCertId.for_certificate(pki.leaves[name].certificate, ca)
        for name in ("good", "good_2", "unknown")
    ]
    good = RevocationStatus(GOOD, "ocsp")
    revoked = RevocationStatus(REVOKED, "ocsp", reason="key_compromise", revoked_at=pki.now)
    for cert_id in ids:
        cache.put(cert_id, good, valid_from=pki.now, valid_until=pki.now + timedelta(hours=1))
    assert len(cache) == 2
    assert cache.get(ids[0], at=pki.at) is None  # least recently used, evicted
    assert cache.get(ids[2], at=pki.at) == good
    assert cache.get(ids[2], at=pki.now + timedelta(hours=2)) is None
    # A GOOD arriving after a final REVOKED does not overwrite it.
    cache.put(ids[1], revoked, valid_from=pki.now, valid_until=None)
    cache.put(ids[1], good, valid_from=pki.now, valid_until=pki.now + timedelta(hours=1))
    assert cache.get(ids[1], at=pki.now + timedelta(days=365)) == revoked


def test_certid_matches_cryptography_request_builder(pki: OcspPki) -> None:
    leaf, ca = pki.leaves["good"].certificate, pki.ca.certificate
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, ca, hashes.SHA256()).build()
    cert_id = OcspCertId.for_certificate(leaf, ca, hashes.SHA256())
    assert cert_id.issuer_name_hash == request.issuer_name_hash
    assert cert_id.issuer_key_hash == request.issuer_key_hash
    assert cert_id.serial_number == request.serial_number
