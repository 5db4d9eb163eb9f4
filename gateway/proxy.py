"""What a trusted reverse proxy may tell the gateway: the client's address and TLS certificate.

Headers are believed only when the TCP peer is in ``CERTGATE_TRUSTED_PROXIES``. ``X-Forwarded-For``
is read right to left, skipping trusted proxies, so a client cannot prepend a forged address.

A client certificate is believed in exactly one form, under exactly one header: the one configured
(``tls_client_cert_form`` / ``tls_client_cert_header``). A proxy passes on whatever request headers
it does not replace, so any other client-certificate header may come from the client itself; it is
never read, even from a trusted proxy, and the gateway reports it so the attempt can be audited.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from cryptography import x509
from flask import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RFC9440_CERT = "Client-Cert"
RFC9440_CHAIN = "Client-Cert-Chain"
MAX_HEADER_CERTIFICATES = 8
# RFC 9110 field-name token; no "_" (nginx and waitress drop such headers, and WSGI would fold
# "_" and "-" into the same variable).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^`|~0-9A-Za-z-]+")

# Headers in which proxies and load balancers pass a client certificate, by who emits them. Only
# the configured one is ever read; any other that arrives carrying a value is reported as ignored.
CLIENT_CERTIFICATE_HEADERS: Mapping[str, str] = {
    "Client-Cert": "RFC 9440",
    "Client-Cert-Chain": "RFC 9440",
    "X-SSL-Client-Cert": "the usual name for nginx's $ssl_client_escaped_cert",
    "X-SSL-Cert": "HAProxy set-header examples",
    "X-Client-Cert": "various proxies",
    "X-Client-Cert-Chain": "various proxies",
    "X-Client-Certificate": "various proxies",
    "Ssl-Client-Cert": "Apache mod_ssl's SSL_CLIENT_CERT forwarded with mod_headers",
    "X-ARR-ClientCert": "IIS Application Request Routing, Azure App Service",
    "X-Forwarded-Client-Cert": "Envoy (XFCC)",
    "X-Forwarded-Tls-Client-Cert": "Traefik passTLSClientCert",
    "X-Forwarded-Tls-Client-Cert-Info": "Traefik passTLSClientCert",
    "X-Amzn-Mtls-Clientcert": "AWS Application Load Balancer (pass-through)",
    "X-Amzn-Mtls-Clientcert-Leaf": "AWS Application Load Balancer (verify)",
    "CloudFront-Viewer-Cert-Pem": "Amazon CloudFront viewer mTLS",
}


class ProxyHeaderError(ValueError):
    """A certificate header from a trusted proxy could not be parsed."""


class CertificateHeaderForm(enum.Enum):
    """How the proxy writes the client certificate into its header."""

    ESCAPED_PEM = "escaped-pem"  # nginx $ssl_client_escaped_cert: URL-encoded PEM, leaf first
    RFC9440 = "rfc9440"  # Client-Cert: :base64 DER: and Client-Cert-Chain: :b64:, :b64:


DEFAULT_HEADER = {
    CertificateHeaderForm.ESCAPED_PEM: "X-SSL-Client-Cert",
    CertificateHeaderForm.RFC9440: RFC9440_CERT,
}


@dataclass(frozen=True)
class CertificateHeaders:
    """The one form and header a trusted proxy's client certificate is believed in."""

    form: CertificateHeaderForm
    header: str

    @classmethod
    def for_form(cls, form: CertificateHeaderForm, header: str | None) -> CertificateHeaders:
        """The form with its header (the form's default when None); ValueError if they do not
        go together."""
        name = DEFAULT_HEADER[form] if header is None else header
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an HTTP header name (letters, digits, '-')")
        if form is CertificateHeaderForm.RFC9440 and name.lower() != RFC9440_CERT.lower():
            raise ValueError(f"the rfc9440 form is read from {RFC9440_CERT} only, not {name!r}")
        if form is CertificateHeaderForm.ESCAPED_PEM and name.lower() in (
            RFC9440_CERT.lower(),
            RFC9440_CHAIN.lower(),
        ):
            raise ValueError(f"{name} carries the rfc9440 form; set tls_client_cert_form")
        return cls(form, name)

    @property
    def believed(self) -> tuple[str, ...]:
        """The header names read in this form."""
        if self.form is CertificateHeaderForm.RFC9440:
            return (RFC9440_CERT, RFC9440_CHAIN)
        return (self.header,)

    def sent(self, request: Request) -> tuple[str, ...]:
        """Every client-certificate header in the request carrying a value, believed or not."""
        names = {name.lower(): name for name in [*self.believed, *CLIENT_CERTIFICATE_HEADERS]}
        return tuple(name for name in names.values() if request.headers.get(name, "").strip())

    def ignored(self, request: Request) -> tuple[str, ...]:
        """Client-certificate headers in the request that this form does not read."""
        believed = {name.lower() for name in self.believed}
        return tuple(name for name in self.sent(request) if name.lower() not in believed)


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


Presented = tuple[x509.Certificate, list[x509.Certificate]]


def _rfc9440(request: Request, headers: CertificateHeaders) -> Presented | None:
    value = request.headers.get(RFC9440_CERT, "").strip()
    if not value:
        return None
    leaf = _der(_sf_binary(value))
    chain_text = ",".join(request.headers.getlist(RFC9440_CHAIN))
    items = [i for i in chain_text.split(",") if i.strip()]
    if len(items) > MAX_HEADER_CERTIFICATES:
        raise ProxyHeaderError("too many chain certificates")
    return leaf, [_der(_sf_binary(i)) for i in items]


def _escaped_pem(request: Request, headers: CertificateHeaders) -> Presented | None:
    escaped = request.headers.get(headers.header, "").strip()
    if not escaped:
        return None
    pem = unquote(escaped).encode("ascii", "replace")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ProxyHeaderError("not a PEM certificate") from None
    if len(certificates) > MAX_HEADER_CERTIFICATES:
        raise ProxyHeaderError("too many certificates")
    return certificates[0], certificates[1:]


Reader = Callable[[Request, CertificateHeaders], Presented | None]
_READERS: Mapping[CertificateHeaderForm, Reader] = {
    CertificateHeaderForm.ESCAPED_PEM: _escaped_pem,
    CertificateHeaderForm.RFC9440: _rfc9440,
}


@dataclass(frozen=True)
class ProxyCertificate:
    """What the request says about a client certificate, and which of its headers were not
    believed (each one a possible forgery, to be audited)."""

    presented: Presented | None
    ignored: tuple[str, ...]
    from_trusted_proxy: bool
    malformed: str | None = None  # why the configured header could not be read


def client_certificate(
    request: Request, proxies: Sequence[Network], headers: CertificateHeaders
) -> ProxyCertificate:
    """The client certificate and chain a trusted proxy passed in the configured form, or none.

    From an untrusted peer every client-certificate header is ignored; from a trusted proxy every
    one but the configured form's. A malformed configured header presents nothing and says why.
    """
    if not is_trusted_proxy(request.environ.get("REMOTE_ADDR"), proxies):
        return ProxyCertificate(None, headers.sent(request), from_trusted_proxy=False)
    ignored = headers.ignored(request)
    try:
        presented = _READERS[headers.form](request, headers)
    except ProxyHeaderError as exc:
        return ProxyCertificate(None, ignored, True, malformed=str(exc))
    return ProxyCertificate(presented, ignored, True)
