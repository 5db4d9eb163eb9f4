"""Network access for CRL and OCSP, behind a small interface so tests can run offline.

The engine never opens sockets itself: it asks a ``Fetcher``. ``HttpFetcher`` is the production
implementation (plain HTTP, as CRL and OCSP are served); ``OfflineFetcher`` answers from a dict
for unit tests.

A fetch is bounded in two ways, whatever the server does:

* **one deadline**: ``timeout`` is wall-clock seconds for the whole exchange — connect, request,
  status line, headers and body together. Every socket operation waits at most for what is left,
  so a server that sends one byte a second, or accepts and never answers, costs ``timeout`` and
  no more (a per-operation timeout would let a slow trickle go on forever);
* **one size limit** (``max_bytes``), counted on the body as it arrives: an endless body is cut
  off at the limit, never read into memory whole. The limit fits the kind of document: an OCSP
  response is a few kilobytes (``OCSP_MAX_RESPONSE_BYTES``), a CRL may be tens of megabytes
  (``CRL_MAX_BYTES``), so CRL and OCSP use separate fetchers.

Every failure — refused or reset connection, deadline, an answer that is not HTTP, an HTTP error
status, a body over the limit or cut short — raises ``FetchError``; nothing else escapes.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urljoin, urlsplit

# An OCSP response for one certificate is 1-4 KB (with a delegated responder certificate);
# 64 KiB leaves room for a chain of responder certificates and nothing else.
OCSP_MAX_RESPONSE_BYTES: Final = 64 * 1024
# A CRL of a million serials is ~49 MB; 32 MiB holds some 650,000 and bounds what one
# distribution point can make the gateway hold. Configurable (docs/configuration.md).
CRL_MAX_BYTES: Final = 32 * 1024 * 1024
# Status line and headers together; CRL and OCSP servers send a handful of short headers.
MAX_HEADER_BYTES: Final = 16 * 1024
MAX_REDIRECTS: Final = 3
_CHUNK: Final = 64 * 1024
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class FetchError(Exception):
    """The resource could not be fetched (network error, deadline, not HTTP, HTTP error, too
    large)."""


class Fetcher(Protocol):
    """``timeout`` is one deadline for the whole request, in seconds."""

    def get(self, url: str, *, timeout: float) -> bytes: ...

    def post(self, url: str, body: bytes, *, content_type: str, timeout: float) -> bytes: ...


@dataclass(frozen=True)
class _Target:
    secure: bool
    host: str
    port: int
    path: str
    host_header: str


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"{url}: malformed URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"unsupported URL scheme: {url!r}")
    if not parts.hostname:
        raise FetchError(f"{url}: no host")
    secure = parts.scheme == "https"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(c in path or c in parts.netloc for c in "\r\n "):
        raise FetchError(f"{url}: malformed URL")
    return _Target(secure, parts.hostname, port or (443 if secure else 80), path, parts.netloc)


class _Connection:
    """One HTTP/1.1 exchange on one socket, every read bounded by the shared deadline."""

    def __init__(self, url: str, deadline: float) -> None:
        self.url = url
        self.deadline = deadline
        self.buffer = bytearray()
        self.sock: socket.socket | None = None

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left

    def open(self, target: _Target) -> None:
        sock = socket.create_connection((target.host, target.port), timeout=self.remaining())
        if target.secure:
            sock.settimeout(self.remaining())
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        self.sock = sock

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        view = memoryview(data)
        while view:
            self.sock.settimeout(self.remaining())
            sent = self.sock.send(view)
            view = view[sent:]

    def receive(self) -> bytes:
        """The next bytes from the server; b"" when it closed the connection."""
        assert self.sock is not None
        self.sock.settimeout(self.remaining())
        return self.sock.recv(_CHUNK)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()

    # --- reading the answer -------------------------------------------------------------------

    def read_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise FetchError(f"{self.url}: not an HTTP answer (no end of headers)")
            data = self.receive()
            if not data:
                raise FetchError(f"{self.url}: connection closed before the headers ended")
            self.buffer += data
            if not self.buffer.startswith(b"HTTP/"[: len(self.buffer)]):
                raise FetchError(f"{self.url}: not an HTTP answer")
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        if len(head) > MAX_HEADER_BYTES:
            raise FetchError(f"{self.url}: headers longer than {MAX_HEADER_BYTES} bytes")
        self.buffer = bytearray(rest)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = status_line.split(" ", 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/1.") or not fields[1].isdigit():
            raise FetchError(f"{self.url}: not an HTTP answer")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise FetchError(f"{self.url}: malformed HTTP header")
            key = name.lower()
            if key in headers and key in ("content-length", "transfer-encoding"):
                raise FetchError(f"{self.url}: repeated {name} header")
            headers[key] = value.strip()
        return int(fields[1]), headers

    def read_body(self, headers: Mapping[str, str], max_bytes: int) -> bytes:
        encoding = headers.get("transfer-encoding", "").lower()
        if encoding:
            if encoding != "chunked":
                raise FetchError(f"{self.url}: unsupported Transfer-Encoding {encoding!r}")
            return self._read_chunked(max_bytes)
        length_text = headers.get("content-length")
        if length_text is not None:
            if not length_text.isdigit():
                raise FetchError(f"{self.url}: malformed Content-Length")
            length = int(length_text)
            if length > max_bytes:
                raise FetchError(f"{self.url}: response larger than {max_bytes} bytes")
            self._fill(length, max_bytes)
            return bytes(self.buffer[:length])
        # No length: the body ends when the server closes the connection.
        while True:
            self._check_size(len(self.buffer), max_bytes)
            data = self.receive()
            if not data:
                return bytes(self.buffer)
            self.buffer += data

    def _check_size(self, size: int, max_bytes: int) -> None:
        if size > max_bytes:
            raise FetchError(f"{self.url}: response larger than {max_bytes} bytes")

    def _fill(self, size: int, max_bytes: int) -> None:
        while len(self.buffer) < size:
            data = self.receive()
            if not data:
                raise FetchError(f"{self.url}: connection closed before the body ended")
            self.buffer += data

    def _read_line(self, max_bytes: int) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise FetchError(f"{self.url}: malformed chunked body")
            data = self.receive()
            if not data:
                raise FetchError(f"{self.url}: connection closed before the body ended")
            self.buffer += data
        line, _, rest = bytes(self.buffer).partition(b"\r\n")
        self.buffer = bytearray(rest)
        return line

    def _read_chunked(self, max_bytes: int) -> bytes:
        body = bytearray()
        while True:
            size_text = self._read_line(max_bytes).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise FetchError(f"{self.url}: malformed chunked body") from None
            if size == 0:
                return bytes(body)  # trailers, if any, are not needed
            self._check_size(len(body) + size, max_bytes)
            self._fill(size + 2, max_bytes)
            body += self.buffer[:size]
            self.buffer = self.buffer[size + 2 :]


class HttpFetcher:
    """HTTP/1.1 over a socket, with one deadline per request and a cap on the response size.

    Redirects (at most ``MAX_REDIRECTS``, to http or https) are followed for GET within the same
    deadline. The host name is looked up by the system resolver before the connection, outside
    the deadline's control; give CRL and OCSP addresses that resolve locally or by IP.
    """

    def __init__(self, *, max_bytes: int = CRL_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes

    def get(self, url: str, *, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        for _ in range(MAX_REDIRECTS + 1):
            status, headers, body = self._exchange("GET", url, None, {}, deadline, timeout)
            if status in _REDIRECTS and headers.get("location"):
                url = urljoin(url, headers["location"])
                continue
            return self._success(url, status, body)
        raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")

    def post(self, url: str, body: bytes, *, content_type: str, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        status, _, answer = self._exchange(
            "POST", url, body, {"Content-Type": content_type}, deadline, timeout
        )
        return self._success(url, status, answer)

    @staticmethod
    def _success(url: str, status: int, body: bytes) -> bytes:
        if not 200 <= status < 300:
            raise FetchError(f"{url}: HTTP {status}")
        return body

    def _exchange(
        self,
        method: str,
        url: str,
        body: bytes | None,
        extra_headers: Mapping[str, str],
        deadline: float,
        timeout: float,
    ) -> tuple[int, dict[str, str], bytes]:
        target = _target(url)
        headers = {
            "Host": target.host_header,
            "Connection": "close",
            "Accept-Encoding": "identity",
            "User-Agent": "CertGate",
            **extra_headers,
        }
        if body is not None:
            headers["Content-Length"] = str(len(body))
        request = f"{method} {target.path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        connection = _Connection(url, deadline)
        try:
            connection.open(target)
            connection.send(request.encode("latin-1") + b"\r\n" + (body or b""))
            status, answer_headers = connection.read_head()
            if status in _REDIRECTS and method == "GET":
                return status, answer_headers, b""
            return status, answer_headers, connection.read_body(answer_headers, self.max_bytes)
        except TimeoutError:
            raise FetchError(f"{url}: timed out after {timeout:g} s") from None
        except ConnectionRefusedError:
            raise FetchError(f"{url}: unreachable: connection refused") from None
        except (OSError, UnicodeError, ValueError) as exc:
            # ssl.SSLError and socket.gaierror are OSErrors; UnicodeError from an IDNA host.
            raise FetchError(f"{url}: {exc}") from None
        finally:
            connection.close()


class OfflineFetcher:
    """Answers GETs from a mapping of URL to bytes; every other request fails."""

    def __init__(self, responses: Mapping[str, bytes] | None = None) -> None:
        self.responses = dict(responses or {})
        self.requests: list[str] = []

    def get(self, url: str, *, timeout: float) -> bytes:
        self.requests.append(url)
        try:
            return self.responses[url]
        except KeyError:
            raise FetchError(f"{url}: not available offline") from None

    def post(self, url: str, body: bytes, *, content_type: str, timeout: float) -> bytes:
        self.requests.append(url)
        raise FetchError(f"{url}: not available offline")
