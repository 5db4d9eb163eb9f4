"""Network access for CRL and OCSP, behind a small interface so tests can run offline.

The engine never opens sockets itself: it asks a ``Fetcher``. ``HttpFetcher`` is the production
implementation (plain HTTP, as CRL and OCSP are served, with bounded timeouts and response sizes);
``OfflineFetcher`` answers from a dict for unit tests.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Protocol


class FetchError(Exception):
    """The resource could not be fetched (network error, timeout, HTTP error, too large)."""


class Fetcher(Protocol):
    def get(self, url: str, *, timeout: float) -> bytes: ...

    def post(self, url: str, body: bytes, *, content_type: str, timeout: float) -> bytes: ...


class HttpFetcher:
    """urllib-based fetcher with a timeout per request and a cap on the response size."""

    def __init__(self, *, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes

    def _open(self, request: urllib.request.Request, timeout: float) -> bytes:
        if not request.full_url.startswith(("http://", "https://")):
            raise FetchError(f"unsupported URL scheme: {request.full_url!r}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                body: bytes = response.read(self.max_bytes + 1)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise FetchError(f"{request.full_url}: {exc}") from exc
        if len(body) > self.max_bytes:
            raise FetchError(f"{request.full_url}: response larger than {self.max_bytes} bytes")
        return body

    def get(self, url: str, *, timeout: float) -> bytes:
        return self._open(urllib.request.Request(url, method="GET"), timeout)

    def post(self, url: str, body: bytes, *, content_type: str, timeout: float) -> bytes:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": content_type}
        )
        return self._open(request, timeout)


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
