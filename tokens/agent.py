"""The local signing agent (DESIGN.md "Signing agent API"): HTTP on 127.0.0.1 for the login page.

Routes: ``GET /v1/certificates``, ``POST /v1/sign``, ``GET /v1/events`` (server-sent events). The
agent trusts nothing a page puts in a body about who it is: the origin it signs for is the
request's ``Origin`` header, which must be on the allow-list, and the only bytes it signs are the
login message of ``tokens.login_message`` built from that header. Every route, preflights
included, answers 403 ``origin_not_allowed`` when ``Origin`` is missing or not allow-listed.

The PIN arrives in the ``POST /v1/sign`` body, is handed to ``C_Login`` and dropped with the
request; request logs carry method, path and status only.

Every JSON body goes through one parser (``json_fields``): strict UTF-8 JSON, nesting at most
``MAX_JSON_DEPTH``, no lone surrogates or NUL, each field of its declared type (``JSON_ROUTES``);
anything else is ``bad_request``. PIN attempts per token are limited by ``tokens.pin_guard``.

Server: werkzeug's threaded WSGI server (a Flask dependency already). The agent has one user on one
machine; a thread per connection keeps long-lived event streams from starving signing requests, as a
fixed worker pool would. Connections are capped (``MAX_CONNECTIONS``): one over the cap is answered
503 ``unavailable`` and closed, and an idle keep-alive connection is closed after
``IDLE_TIMEOUT_SECONDS``, so no page can pile up threads.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import queue
import socket
import threading
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer, WSGIRequestHandler

from certs.errors import DEFAULT_LANGUAGE
from tokens.errors import (
    OriginNotAllowed,
    TokenBadRequest,
    TokenError,
    TokenFailure,
    TokenNotPresent,
)
from tokens.login_message import login_message, normalise_origin
from tokens.pcsc import STOP_SECONDS, CardChange, CardEvent, PcscWatcher
from tokens.pin_guard import PinGuard, PinPolicy, token_key
from tokens.pkcs11 import PinState, TokenInfo, TokenLibrary
from tokens.sm2 import Sm2Mechanism

log = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"
DEFAULT_PORT = 21790
# A sign request is four short strings; anything bigger is not a sign request.
MAX_BODY_BYTES = 4096
MAX_PIN_LENGTH = 256
# Seconds between PKCS#11 slot polls (SoftHSM has no C_WaitForSlotEvent) and between keep-alive
# comments on an idle event stream.
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
PREFLIGHT_MAX_AGE = 600
LISTEN_BACKLOG = 64
# Open connections at once (each an event stream or a request); a browser keeps at most six per
# host, so this is several pages' worth.
MAX_CONNECTIONS = 32
IDLE_TIMEOUT_SECONDS = 30.0
# A sign request is a flat object; nothing nests.
MAX_JSON_DEPTH = 4

# The JSON body of each route that takes one: field -> (type, required).
SIGN_FIELDS: Mapping[str, tuple[type, bool]] = {
    "cert_id": (str, True),
    "pin": (str, True),
    "challenge_id": (str, True),
    "nonce": (str, True),
    "token_label": (str, False),
    "signature_algorithm": (str, False),
    "confirm_final_try": (bool, False),
}
JSON_ROUTES: Mapping[str, Mapping[str, tuple[type, bool]]] = {"/v1/sign": SIGN_FIELDS}

# HTTP status per error code (DESIGN.md errors table, plus the agent's own codes).
HTTP_STATUS: Mapping[str, int] = {
    "bad_request": 400,
    "pin_incorrect": 401,
    "origin_not_allowed": 403,
    "pin_locked": 403,
    "certificate_not_found": 404,
    "token_not_present": 404,
    "pin_final_try": 409,
    "pin_rate_limited": 429,
    "unavailable": 503,
}


class AgentConfigError(ValueError):
    """A bad option or configuration file entry, naming the file and field at fault."""


@dataclass(frozen=True)
class AgentConfig:
    allowed_origins: frozenset[str]
    modules: tuple[str, ...] = ()
    host: str = LOOPBACK_HOST
    port: int = DEFAULT_PORT
    poll_seconds: float = POLL_SECONDS
    max_body_bytes: int = MAX_BODY_BYTES
    max_connections: int = MAX_CONNECTIONS
    pin_policy: PinPolicy = field(default_factory=PinPolicy)
    # Module path -> the vendor mechanism its SM2 keys sign with (tokens.sm2).
    sm2: Mapping[str, Sm2Mechanism] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_loopback(self.host)
        if not 0 <= self.port <= 65535:
            raise AgentConfigError(f"port {self.port} out of range")
        if self.max_connections < 2:
            raise AgentConfigError("max_connections must be at least 2 (events and a request)")

    @classmethod
    def build(
        cls,
        *,
        allow_origins: Iterable[str] = (),
        modules: Iterable[str] = (),
        config_file: Path | None = None,
        host: str = LOOPBACK_HOST,
        port: int | None = None,
        sm2_mechanism: Sm2Mechanism | None = None,
    ) -> AgentConfig:
        """Command-line values merged with a TOML file (lists are added, ``port`` is overridden).

        ``sm2_mechanism`` applies to the command line's modules; the file's ``[sm2."PATH"]``
        tables name a module each (which is then used even if ``modules`` leaves it out).
        """
        origins = list(allow_origins)
        module_paths = list(modules)
        if sm2_mechanism is not None and not module_paths:
            raise AgentConfigError("--sm2-mechanism needs the --module it applies to")
        sm2 = {path: sm2_mechanism for path in module_paths if sm2_mechanism is not None}
        file_port: int | None = None
        if config_file is not None:
            file_origins, file_modules, file_port = read_config_file(config_file)
            origins += file_origins
            module_paths += file_modules
            file_sm2 = read_sm2_settings(config_file)
            module_paths += list(file_sm2)
            sm2.update(file_sm2)
        normalised = set()
        for origin in origins:
            try:
                normalised.add(normalise_origin(origin))
            except OriginNotAllowed as error:
                raise AgentConfigError(f"allow-origin {origin!r}: not a web origin") from error
        if not normalised:
            raise AgentConfigError(
                "no allowed origin: give --allow-origin or allow_origins in the config file"
            )
        chosen_port = port if port is not None else file_port
        return cls(
            allowed_origins=frozenset(normalised),
            modules=tuple(dict.fromkeys(module_paths)),
            host=host,
            port=DEFAULT_PORT if chosen_port is None else chosen_port,
            sm2=sm2,
        )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise AgentConfigError(f"{path}: {error}") from error


SM2_FIELDS = frozenset({"mechanism", "input", "signer_id"})


def read_sm2_settings(path: Path) -> dict[str, Sm2Mechanism]:
    """``[sm2."MODULE PATH"]`` tables: ``mechanism = 0x80008101``, ``input = "message"`` or
    ``"digest"``, ``signer_id = "1234567812345678"``."""
    tables = _read_toml(path).get("sm2", {})
    if not isinstance(tables, dict):
        raise AgentConfigError(f'{path}: sm2 must be tables [sm2."/path/to/module.so"]')
    settings = {}
    for module, table in tables.items():
        where = f"{path}: sm2.{module!r}"
        if not isinstance(table, dict):
            raise AgentConfigError(f"{where}: a table with mechanism, input, signer_id")
        unknown = set(table) - SM2_FIELDS
        if unknown:
            raise AgentConfigError(
                f"{where}: unknown field {sorted(unknown)} (expected {sorted(SM2_FIELDS)})"
            )
        if "mechanism" not in table:
            raise AgentConfigError(f"{where}: needs mechanism = 0x... (the vendor's number)")
        input_value, signer_id = table.get("input", "message"), table.get("signer_id")
        if not isinstance(input_value, str) or not isinstance(signer_id, str | None):
            raise AgentConfigError(f"{where}: input and signer_id are strings")
        try:
            settings[module] = Sm2Mechanism.parse(table["mechanism"], input_value, signer_id)
        except ValueError as error:
            raise AgentConfigError(f"{where}: {error}") from error
    return settings


def read_config_file(path: Path) -> tuple[list[str], list[str], int | None]:
    """``allow_origins = [...]``, ``modules = [...]``, ``port = N`` from a TOML file."""
    document = _read_toml(path)
    known = {"allow_origins", "modules", "port", "sm2"}
    for key in document:
        if key not in known:
            raise AgentConfigError(f"{path}: unknown field {key!r} (expected {sorted(known)})")

    def strings(key: str) -> list[str]:
        value = document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise AgentConfigError(f"{path}: {key} must be a list of strings")
        return list(value)

    port = document.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool)):
        raise AgentConfigError(f"{path}: port must be an integer")
    return strings("allow_origins"), strings("modules"), port


def check_loopback(host: str) -> None:
    """Refuse every bind address but 127.0.0.1: the agent must not be reachable from the network."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise AgentConfigError(f"bind address {host!r}: only {LOOPBACK_HOST} is allowed") from None
    if address != ipaddress.ip_address(LOOPBACK_HOST):
        raise AgentConfigError(f"bind address {host}: only {LOOPBACK_HOST} is allowed")


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentEvent:
    name: str  # token_inserted | token_removed
    data: Mapping[str, Any]

    def sse(self, event_id: int) -> str:
        payload = json.dumps(dict(self.data), ensure_ascii=False, separators=(",", ":"))
        return f"id: {event_id}\nevent: {self.name}\ndata: {payload}\n\n"


_CLOSED = object()


class EventHub:
    """Fans agent events out to every open ``/v1/events`` stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[queue.Queue[object]] = set()
        self._counter = 0

    def subscribe(self) -> queue.Queue[object]:
        inbox: queue.Queue[object] = queue.Queue()
        with self._lock:
            self._subscribers.add(inbox)
        return inbox

    def unsubscribe(self, inbox: queue.Queue[object]) -> None:
        with self._lock:
            self._subscribers.discard(inbox)

    def publish(self, event: AgentEvent) -> None:
        log.info("event %s %s", event.name, dict(event.data))
        with self._lock:
            self._counter += 1
            numbered = (self._counter, event)
            for inbox in self._subscribers:
                inbox.put(numbered)

    def close(self) -> None:
        with self._lock:
            for inbox in self._subscribers:
                inbox.put(_CLOSED)


def _token_key(token: TokenInfo) -> tuple[str, int, str]:
    return (token.module, token.slot_id, token.serial)


def _token_event_data(token: TokenInfo) -> dict[str, Any]:
    return {
        "source": "pkcs11",
        "token_label": token.label,
        "serial": token.serial,
        "slot_id": token.slot_id,
    }


class TokenWatcher:
    """PKCS#11 slot polling plus PC/SC card events, published as token_inserted / token_removed.

    A PC/SC change also triggers an immediate PKCS#11 poll, so a card pulled from a reader is seen
    on both paths at once. Without a PC/SC daemon the watcher says so once and polls PKCS#11 alone.
    """

    def __init__(
        self,
        library: TokenLibrary,
        hub: EventHub,
        *,
        poll_seconds: float = POLL_SECONDS,
        use_pcsc: bool = True,
    ) -> None:
        self.library = library
        self.hub = hub
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._known: dict[tuple[str, int, str], TokenInfo] = {}
        self._known_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="certgate-slots", daemon=True)
        self.pcsc: PcscWatcher | None = (
            PcscWatcher(self._on_card, self._on_pcsc_unavailable) if use_pcsc else None
        )

    @property
    def pcsc_available(self) -> bool:
        return self.pcsc is not None and bool(self.pcsc.available)

    def start(self) -> TokenWatcher:
        self._known = {_token_key(token): token for token in self._scan() or []}
        self._thread.start()
        if self.pcsc is not None:
            self.pcsc.start()
            self.pcsc.wait_ready()
        return self

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stop both watchers, waiting up to ``timeout`` for each. A poll still inside the
        PKCS#11 module then is left behind (a daemon thread), so Ctrl-C never hangs on a
        module that does not answer."""
        self._stop.set()
        self._wake.set()
        if self.pcsc is not None:
            self.pcsc.stop(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the PKCS#11 slot poll did not stop within %.0f s; leaving it", timeout)

    def tokens(self) -> list[TokenInfo]:
        with self._known_lock:
            return list(self._known.values())

    def _on_pcsc_unavailable(self, reason: str) -> None:
        log.warning(
            "PC/SC unavailable (%s): reader events off, token events come from PKCS#11 slot "
            "polling alone",
            reason,
        )

    def _on_card(self, event: CardEvent) -> None:
        name = "token_inserted" if event.change is CardChange.INSERTED else "token_removed"
        self.hub.publish(
            AgentEvent(name, {"source": "pcsc", "reader": event.reader, "atr": event.atr})
        )
        self._wake.set()

    def _scan(self) -> list[TokenInfo] | None:
        """Tokens present now, or None when the poll failed (then nothing is reported)."""
        try:
            return self.library.tokens()
        except Exception as error:  # the poll thread must outlive any one failure
            log.warning("PKCS#11 slot poll failed: %s: %s", type(error).__name__, error)
            return None

    def poll(self) -> None:
        """One PKCS#11 slot poll: publish what appeared and what went away since the last one."""
        scanned = self._scan()
        if scanned is None:
            return
        current = {_token_key(token): token for token in scanned}
        with self._known_lock:
            removed = [token for key, token in self._known.items() if key not in current]
            inserted = [token for key, token in current.items() if key not in self._known]
            self._known = current
        for token in removed:
            self.hub.publish(AgentEvent("token_removed", _token_event_data(token)))
        for token in inserted:
            self.hub.publish(AgentEvent("token_inserted", _token_event_data(token)))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.poll()


# --- the HTTP face ----------------------------------------------------------------------------


def _language() -> str:
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"], default=DEFAULT_LANGUAGE)
    return "en" if best == "en" else DEFAULT_LANGUAGE


def error_response(error: TokenError, language: str = DEFAULT_LANGUAGE) -> Response:
    body: dict[str, Any] = {"ok": False, "error": error.code, "message": error.message(language)}
    retries_left = getattr(error, "retries_left", None)
    if retries_left is not None:
        body["retries_left"] = retries_left
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        body["retry_after"] = retry_after
    response = Response(
        json.dumps(body, ensure_ascii=False), status=HTTP_STATUS.get(error.code, 400)
    )
    response.mimetype = "application/json"
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_json_value(value: Any) -> None:
    """TokenBadRequest when ``value`` nests deeper than MAX_JSON_DEPTH or holds a string that is
    not Unicode text (a lone surrogate such as ``"\\ud800"``, valid JSON but no UTF-8) or NUL."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        texts: list[str] = []
        if isinstance(item, str):
            texts = [item]
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise TokenBadRequest("JSON nested too deeply", reason="JSON nested too deeply")
            children = item.values() if isinstance(item, dict) else item
            if isinstance(item, dict):
                texts = list(item)
            pending.extend((child, depth + 1) for child in children)
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise TokenBadRequest("lone surrogate", reason="text is not Unicode") from None
            if "\x00" in text:
                raise TokenBadRequest("NUL in text", reason="text holds NUL")


def json_fields(fields: Mapping[str, tuple[type, bool]]) -> dict[str, Any]:
    """The request's JSON object with ``fields`` checked: the agent's one body parser.

    A required field must be present, not ``null`` and of its type (``bool`` is not a number);
    an optional ``null`` counts as absent. Other fields are ignored and left out."""
    if not request.is_json:
        raise TokenBadRequest("not application/json", reason="JSON object expected")
    try:
        body = json.loads(request.get_data(cache=True).decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TokenBadRequest("body is not JSON", reason="JSON object expected") from None
    if not isinstance(body, dict):
        raise TokenBadRequest("body is not a JSON object", reason="JSON object expected")
    _check_json_value(body)
    checked: dict[str, Any] = {}
    for name, (kind, required) in fields.items():
        value = body.get(name)
        if value is None:
            if required:
                raise TokenBadRequest(f"{name} missing", reason=name)
            continue
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise TokenBadRequest(f"{name} has the wrong type", reason=name)
        checked[name] = value
    return checked


def _json(payload: Any) -> Response:
    response = Response(json.dumps(payload, ensure_ascii=False), status=200)
    response.mimetype = "application/json"
    return response


def _loopback_host(host_header: str) -> bool:
    """DNS-rebinding guard: the Host header must name the loopback interface."""
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    return host.lower() in {"127.0.0.1", "localhost"}


def create_agent_app(
    library: TokenLibrary,
    config: AgentConfig,
    hub: EventHub,
    *,
    status: Callable[[], Mapping[str, Any]] | None = None,
) -> Flask:
    """The agent's WSGI app. ``status`` feeds the first (``ready``) event of each event stream."""
    app = Flask("certgate-agent")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    allowed = config.allowed_origins
    pin_guard = PinGuard(config.pin_policy)

    @app.before_request
    def check_origin() -> Response | None:
        g.origin = None
        if not _loopback_host(request.host):
            return error_response(OriginNotAllowed(f"Host {request.host!r}"), _language())
        header = request.headers.get("Origin")
        if header is None:
            return error_response(OriginNotAllowed("no Origin header"), _language())
        try:
            origin = normalise_origin(header)
        except OriginNotAllowed as error:
            return error_response(error, _language())
        if origin != header or origin not in allowed:
            log.info("%s %s refused: origin %r", request.method, request.path, header)
            return error_response(OriginNotAllowed(f"origin {header!r}"), _language())
        g.origin = origin
        if request.method == "OPTIONS":
            return preflight()
        return None

    def preflight() -> Response:
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
        if request.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
            response.headers["Access-Control-Allow-Private-Network"] = "true"
        return response

    @app.after_request
    def cors(response: Response) -> Response:
        origin = getattr(g, "origin", None)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.errorhandler(TokenError)
    def token_error(error: TokenError) -> Response:
        log.info("%s %s -> %s (%s)", request.method, request.path, error.code, error.detail)
        return error_response(error, _language())

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        if isinstance(error, RequestEntityTooLarge):
            response = error_response(
                TokenBadRequest("body too large", reason="body too large"), _language()
            )
            response.status_code = 413
            return response
        response = error_response(
            TokenBadRequest(error.name, reason=error.name.lower()), _language()
        )
        response.status_code = error.code or 400
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.error("unexpected %s on %s %s", type(error).__name__, request.method, request.path)
        return error_response(TokenFailure(type(error).__name__), _language())

    @app.get("/v1/certificates")
    def certificates() -> Response:
        return _json([entry.describe() for entry in library.certificates()])

    @app.post("/v1/sign")
    def sign() -> Response:
        body = json_fields(JSON_ROUTES[request.path])
        try:
            cert_id_bytes = bytes.fromhex(body["cert_id"])
        except ValueError:
            raise TokenBadRequest("cert_id not hex", reason="cert_id") from None
        if not cert_id_bytes:
            raise TokenBadRequest("cert_id empty", reason="cert_id")
        for name in ("token_label", "signature_algorithm"):
            if body.get(name) == "":
                raise TokenBadRequest(f"{name} malformed", reason=name)
        token_label = body.get("token_label")
        # The origin comes from the checked header; a body's "origin" is ignored.
        message = login_message(g.origin, body["challenge_id"], body["nonce"])
        pin = body.pop("pin")
        if not pin or len(pin) > MAX_PIN_LENGTH:
            raise TokenBadRequest("pin missing or malformed", reason="pin")
        try:
            entry = library.find_certificate(cert_id_bytes, token_label=token_label)
            with pin_guard.attempt(
                entry.token,
                _pin_state(library, entry.token),
                confirm_final_try=body.get("confirm_final_try") is True,
            ):
                signed = library.sign_login(
                    cert_id_bytes,
                    pin,
                    message,
                    token_label=entry.token.label,
                    signature_algorithm=body.get("signature_algorithm"),
                )
        finally:
            del pin
        return _json(signed.describe())

    @app.get("/v1/events")
    def events() -> Response:
        inbox = hub.subscribe()
        ready = dict(status() if status is not None else {})

        def stream() -> Iterator[str]:
            try:
                yield "retry: 2000\n"
                yield AgentEvent("ready", ready).sse(0)
                while True:
                    try:
                        item = inbox.get(timeout=KEEPALIVE_SECONDS)
                    except queue.Empty:
                        yield ": keep-alive\n\n"
                        continue
                    if item is _CLOSED:
                        return
                    assert isinstance(item, tuple)
                    event_id: int = item[0]
                    event: AgentEvent = item[1]
                    yield event.sse(event_id)
            finally:
                hub.unsubscribe(inbox)

        response = Response(stream(), mimetype="text/event-stream")
        response.headers["X-Accel-Buffering"] = "no"
        return response

    return app


def _pin_state(library: TokenLibrary, token: TokenInfo) -> PinState:
    """The token's PIN flags as it reports them now, just before a PIN would be sent."""
    for present in library.tokens(rescan=False):
        if token_key(present) == token_key(token):
            return present.pin
    raise TokenNotPresent(f"token {token.label!r} went away")


class _RequestHandler(WSGIRequestHandler):
    """HTTP/1.1 (keep-alive, chunked event streams); request lines go to the agent's log."""

    protocol_version = "HTTP/1.1"
    # Socket timeout: an idle keep-alive connection gives its place back.
    timeout = IDLE_TIMEOUT_SECONDS

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("%s %s %s", self.command, getattr(self, "path", "?").split("?")[0], code)

    def log(self, type: str, message: str, *args: Any) -> None:
        getattr(log, type if type in ("info", "warning", "error") else "info")(message, *args)


_OVER_CAP = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


class _BoundedServer(ThreadedWSGIServer):
    """A thread per connection, at most ``max_connections`` at once."""

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self._places = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._places.acquire(blocking=False):
            log.warning("connection refused: %d connections open", self.max_connections)
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._places.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._places.release()

    def _refuse(self, request: socket.socket) -> None:
        error = TokenFailure("too many connections")
        body = json.dumps(
            {"ok": False, "error": error.code, "message": error.message()}, ensure_ascii=False
        ).encode("utf-8")
        try:
            request.settimeout(1.0)
            request.sendall(_OVER_CAP % (len(body), body))
        except OSError:
            pass
        finally:
            self.shutdown_request(request)


@dataclass
class SigningAgent:
    """Library, watcher and HTTP server together; ``start`` serves in a background thread."""

    config: AgentConfig
    library: TokenLibrary
    use_pcsc: bool = True
    hub: EventHub = field(default_factory=EventHub)

    def __post_init__(self) -> None:
        check_loopback(self.config.host)
        self.watcher = TokenWatcher(
            self.library, self.hub, poll_seconds=self.config.poll_seconds, use_pcsc=self.use_pcsc
        )
        self.app = create_agent_app(self.library, self.config, self.hub, status=self.status)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def status(self) -> dict[str, Any]:
        return {
            "pcsc": self.watcher.pcsc_available,
            "tokens": [token.label for token in self.watcher.tokens()],
        }

    def bind(self) -> BaseWSGIServer:
        """Listen on the configured loopback port; ``OSError`` when it is taken."""
        check_loopback(self.config.host)
        # Bound here, not by werkzeug, whose own bind error path prints and calls sys.exit.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((self.config.host, self.config.port))
            listener.listen(LISTEN_BACKLOG)
            self._server = _BoundedServer(
                self.config.host,
                self.config.port,
                self.app,
                _RequestHandler,
                fd=listener.fileno(),
                max_connections=self.config.max_connections,
            )
        finally:
            listener.close()  # the server holds its own duplicate of the socket
        return self._server

    @property
    def url(self) -> str:
        assert self._server is not None, "not bound"
        return f"http://{self.config.host}:{self._server.port}"

    def start(self) -> SigningAgent:
        self.watcher.start()
        server = self.bind()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Foreground serving (the CLI); returns after Ctrl-C, also one that comes while the
        watchers are still starting."""
        try:
            self.watcher.start()
            server = self._server or self.bind()
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        self.hub.close()
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._server.server_close()
        self._server = None
        self.watcher.stop()
