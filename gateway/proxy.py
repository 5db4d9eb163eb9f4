"""What a trusted reverse proxy may tell the gateway: the client's address and TLS certificate.

Headers are believed only when the TCP peer is in ``CERTGATE_TRUSTED_PROXIES``. ``X-Forwarded-For``
is read right to left, skipping trusted proxies, so a client cannot prepend a forged address.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Sequence
from urllib.parse import unquote

from cryptography import x509
from flask import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RFC9440_CERT = "Client-Cert"
RFC9440_CHAIN = "Client-Cert-Chain"
MAX_HEADER_CERTIFICATES = 8


class ProxyHeaderError(ValueError):
    """A certificate header from a trusted proxy could not be parsed."""


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def is_trusted_proxy(address: str | None, proxies: Sequence[Network]) -> bool:
    parsed = _address(address or "")
    return parsed is not None and any(parsed in network for network in proxies)


def client_address(request: Request, proxies: Sequence[Network]) -> str:
    """The client's address: the peer, or the nearest untrusted X-Forwarded-For hop."""
    peer = request.environ.get("REMOTE_ADDR") or ""
    if not is_trusted_proxy(peer, proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("X-Forwarded-For")).split(",")]
    for hop in reversed([h for h in hops if h]):
        parsed = _address(hop)
        if parsed is None:
            return peer  # a malformed hop: stop believing the header
        if not any(parsed in network for network in proxies):
            return str(parsed)
    return peer


def _sf_binary(item: str) -> bytes:
    """An RFC 8941 byte sequence ``:base64:``."""
    item = item.strip()
    if len(item) < 2 or item[0] != ":" or item[-1] != ":":
        raise ProxyHeaderError("not a structured-field byte sequence")
    try:
        return base64.b64decode(item[1:-1], validate=True)
    except (binascii.Error, ValueError):
        raise ProxyHeaderError("byte sequence is not base64") from None


def _der(data: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ProxyHeaderError("not a DER certificate") from None


def certificates_from_headers(
    request: Request, escaped_pem_header: str
) -> tuple[x509.Certificate, list[x509.Certificate]] | None:
    """The client certificate and chain the proxy passed, or None if it passed none.

    RFC 9440 ``Client-Cert`` / ``Client-Cert-Chain`` first, then the nginx-style header holding
    ``$ssl_client_escaped_cert`` (URL-encoded PEM)."""
    rfc9440 = request.headers.get(RFC9440_CERT)
    if rfc9440:
        leaf = _der(_sf_binary(rfc9440))
        chain_text = ",".join(request.headers.getlist(RFC9440_CHAIN))
        items = [i for i in chain_text.split(",") if i.strip()]
        if len(items) > MAX_HEADER_CERTIFICATES:
            raise ProxyHeaderError("too many chain certificates")
        return leaf, [_der(_sf_binary(i)) for i in items]
    escaped = request.headers.get(escaped_pem_header)
    if escaped:
        pem = unquote(escaped).encode("ascii", "replace")
        try:
            certificates = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ProxyHeaderError("not a PEM certificate") from None
        if len(certificates) > MAX_HEADER_CERTIFICATES:
            raise ProxyHeaderError("too many certificates")
        return certificates[0], certificates[1:]
    return None


def has_certificate_headers(request: Request, escaped_pem_header: str) -> bool:
    return bool(request.headers.get(RFC9440_CERT) or request.headers.get(escaped_pem_header))
