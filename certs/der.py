"""A minimal DER walker for the one structure too large for a general parser: a CRL's entry list
(and ``encode_tlv``, the one DER writer the engine needs: see ``certs.extensions``).

Why hand-written: a CRL of a million revoked certificates is ~40 MB. asn1crypto's ``.native``
takes seconds per 100,000 entries, and pyca/cryptography exposes entries only as Python objects
(about 1 µs each to create, and its lookup by serial is a linear scan). The entry list is a flat
SEQUENCE OF small SEQUENCEs, so walking the bytes once and recording ``serial -> offset`` is both
the fastest index to build and the smallest to keep; an entry's date, reason and extensions are
decoded only when a lookup hits it (see ``certs.revocation.crl``).

The walker runs only on CRLs whose outer structure pyca/cryptography has already parsed; it still
bounds-checks every length, so malformed input raises ``DerError`` rather than reading past the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime


class DerError(ValueError):
    """The bytes are not the DER structure expected here."""


def read_header(data: bytes, pos: int) -> tuple[int, int, int]:
    """Read a tag and length at ``pos``; return (tag, content_start, content_end)."""
    try:
        tag = data[pos]
        first = data[pos + 1]
    except IndexError:
        raise DerError("truncated header") from None
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used in these structures")
    if first < 0x80:
        start = pos + 2
        end = start + first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise DerError("unsupported length encoding")
        start = pos + 2 + count
        end = start + int.from_bytes(data[pos + 2 : start], "big")
    if end > len(data):
        raise DerError("length runs past the end of the data")
    return tag, start, end


def children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (tag, header_start, content_start, content_end) for each element in [start, end)."""
    pos = start
    while pos < end:
        tag, c_start, c_end = read_header(data, pos)
        if c_end > end:
            raise DerError("element runs past its parent")
        yield tag, pos, c_start, c_end
        pos = c_end


TAG_INTEGER = 0x02
TAG_SEQUENCE = 0x30
TAG_UTC_TIME = 0x17
TAG_GENERALIZED_TIME = 0x18
TAG_CONTEXT_0_CONSTRUCTED = 0xA0


def tbs_span(signed_der: bytes) -> tuple[int, int]:
    """(start, end) of the first element (the to-be-signed part) of a signed SEQUENCE.

    pyca/cryptography's ``tbs_certlist_bytes`` re-encodes the TBS (about 1.4 s for a million
    entries); the signature is over the bytes as received, which this slices out directly.
    """
    tag, start, _end = read_header(signed_der, 0)
    if tag != TAG_SEQUENCE:
        raise DerError("not a SEQUENCE")
    tag, _content, end = read_header(signed_der, start)
    if tag != TAG_SEQUENCE:
        raise DerError("to-be-signed part is not a SEQUENCE")
    return start, end


def revoked_certificates_span(crl_der: bytes) -> tuple[int, int] | None:
    """Locate the revokedCertificates SEQUENCE in a DER CertificateList: (content_start, end).

    TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature AlgorithmIdentifier,
    issuer Name, thisUpdate Time, nextUpdate Time OPTIONAL,
    revokedCertificates SEQUENCE OF ... OPTIONAL, crlExtensions [0] EXPLICIT ... OPTIONAL }
    """
    tag, start, _end = read_header(crl_der, 0)
    if tag != TAG_SEQUENCE:
        raise DerError("CertificateList is not a SEQUENCE")
    tag, tbs_start, tbs_end = read_header(crl_der, start)
    if tag != TAG_SEQUENCE:
        raise DerError("TBSCertList is not a SEQUENCE")
    elements = children(crl_der, tbs_start, tbs_end)
    first = next(elements, None)
    if first is None:
        raise DerError("empty TBSCertList")
    # (version,) signature AlgorithmIdentifier, issuer, thisUpdate.
    skip = 3 if first[0] == TAG_INTEGER else 2
    for _ in range(skip):
        if next(elements, None) is None:
            raise DerError("truncated TBSCertList")
    for tag, _, c_start, c_end in elements:
        if tag in (TAG_UTC_TIME, TAG_GENERALIZED_TIME):  # nextUpdate
            continue
        if tag == TAG_SEQUENCE:
            return c_start, c_end
        return None  # crlExtensions: no entries
    return None


# Byte patterns that may mean an entry must be decoded: a critical flag (BOOLEAN TRUE) and the
# certificateIssuer OID 2.5.29.29. Most entries carry only a non-critical reasonCode; finding
# these patterns with bytes.find (in C) lets the walk skip decoding every other entry.
CRITICAL_FLAG = b"\x01\x01\xff"
CERTIFICATE_ISSUER_OID = b"\x06\x03\x55\x1d\x1d"


def certificate_serial(tbs_certificate: bytes) -> int:
    """The serialNumber of a DER TBSCertificate, negative values included.

    pyca/cryptography warns (and will refuse) on non-positive serial numbers; the engine reads
    the field itself so that a CRL listing such a certificate still revokes it (PKITS 4.4.15),
    without touching process-wide warning filters from a validation thread.
    """
    tag, start, end = read_header(tbs_certificate, 0)
    if tag != TAG_SEQUENCE:
        raise DerError("TBSCertificate is not a SEQUENCE")
    tag, c_start, c_end = read_header(tbs_certificate, start)
    if tag == TAG_CONTEXT_0_CONSTRUCTED:  # [0] EXPLICIT version
        tag, c_start, c_end = read_header(tbs_certificate, c_end)
    if tag != TAG_INTEGER:
        raise DerError("serialNumber is not an INTEGER")
    return int.from_bytes(tbs_certificate[c_start:c_end], "big", signed=True)


def parse_time(tag: int, content: bytes) -> datetime:
    """A DER UTCTime or GeneralizedTime (Z form, as RFC 5280 §4.1.2.5 requires) as UTC."""
    text = content.decode("ascii")
    if not text.endswith("Z"):
        raise DerError("time is not in UTC (Z) form")
    if tag == TAG_UTC_TIME:
        year = int(text[0:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != TAG_GENERALIZED_TIME:
        raise DerError("not a time")
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise DerError(f"bad time: {exc}") from exc


# CRLReason ENUMERATED values (RFC 5280 §5.3.1); 7 is not used.
CRL_REASONS = {
    0: "unspecified",
    1: "key_compromise",
    2: "ca_compromise",
    3: "affiliation_changed",
    4: "superseded",
    5: "cessation_of_operation",
    6: "certificate_hold",
    8: "remove_from_crl",
    9: "privilege_withdrawn",
    10: "aa_compromise",
}
REASON_CODE_OID = b"\x55\x1d\x15"  # 2.5.29.21 (content octets)
INVALIDITY_DATE_OID = b"\x55\x1d\x18"  # 2.5.29.24
TAG_OID = 0x06
TAG_BOOLEAN = 0x01
TAG_OCTET_STRING = 0x04
TAG_ENUMERATED = 0x0A


def revoked_entry_fields(data: bytes, start: int) -> tuple[datetime, str, datetime | None]:
    """(revocationDate, reason, invalidityDate) of the revoked entry at ``start``."""
    _, body, end = read_header(data, start)
    _, _, serial_end = read_header(data, body)  # userCertificate
    tag, t_start, t_end = read_header(data, serial_end)
    revoked_at = parse_time(tag, data[t_start:t_end])
    reason, invalidity = "unspecified", None
    if t_end < end:
        tag, x_start, x_end = read_header(data, t_end)
        if tag != TAG_SEQUENCE:
            raise DerError("crlEntryExtensions is not a SEQUENCE")
        for _, _, e_start, e_end in children(data, x_start, x_end):
            items = list(children(data, e_start, e_end))
            if not items or items[0][0] != TAG_OID:
                raise DerError("malformed extension")
            oid = data[items[0][2] : items[0][3]]
            value_tag, _, v_start, v_end = items[-1]
            if value_tag != TAG_OCTET_STRING:
                raise DerError("extension value is not an OCTET STRING")
            inner_tag, i_start, i_end = read_header(data, v_start)
            if oid == REASON_CODE_OID and inner_tag == TAG_ENUMERATED:
                reason = CRL_REASONS.get(int.from_bytes(data[i_start:i_end], "big"), "unspecified")
            elif oid == INVALIDITY_DATE_OID:
                invalidity = parse_time(inner_tag, data[i_start:i_end])
    return revoked_at, reason, invalidity


def encode_tlv(tag: int, content: bytes) -> bytes:
    """One DER element: ``tag`` (low tag number), the definite length in its shortest form, and
    ``content``."""
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets + content
