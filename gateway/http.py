"""The one error handler, request parsing (JSON bodies, language, client address), the audit
context of a request, and response hardening headers."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from certs.errors import DEFAULT_LANGUAGE, LANGUAGES, BadRequest, CertGateError
from certs.identifiers import mask_identifier
from gateway import clock
from gateway.audit import AuditEntry, get_audit_log
from gateway.errors import OriginMismatch, Unavailable, http_status
from gateway.proxy import client_address

log = logging.getLogger("certgate.gateway")


@dataclass
class AuditContext:
    """What the current request has learnt so far, written to the audit trail at the end."""

    event: str
    method: str | None = None
    account_public_id: str | None = None
    certificate_thumbprint: str | None = None
    notes: list[str] = field(default_factory=list)


def begin_audit(event: str, method: str | None = None) -> AuditContext:
    g.certgate_audit = AuditContext(event, method)
    return g.certgate_audit


def audit_context() -> AuditContext | None:
    return g.get("certgate_audit")


def address() -> str:
    if "certgate_address" not in g:
        g.certgate_address = client_address(request, current_app.config["TRUSTED_PROXIES"])
    return g.certgate_address


def write_audit(outcome: str, *, event: str | None = None, detail: str | None = None) -> None:
    context = audit_context()
    if context is None and event is None:
        return
    parts = ([detail] if detail else []) + (context.notes if context else [])
    # While a person acts for an enterprise (gateway/roles/acting.py), every record names it.
    acting = g.get("certgate_acting_note")
    if acting:
        parts.append(acting)
    entry = AuditEntry(
        event=event or (context.event if context else "request"),
        outcome=outcome,
        at=clock.now(),
        method=context.method if context else None,
        account_public_id=context.account_public_id if context else None,
        certificate_thumbprint=context.certificate_thumbprint if context else None,
        address=address()[:64],
        detail="; ".join(parts) or None,
    )
    get_audit_log().append(entry)
    g.certgate_audit_written = True


def language() -> str:
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"], default=DEFAULT_LANGUAGE)
    return "en" if best == "en" else DEFAULT_LANGUAGE


def error_response(error: CertGateError) -> Response:
    lang = language()
    message = error.message(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)
    # Errors may add fields of their own (``account_locked``: method, locked_until).
    json_fields = getattr(error, "json_fields", None)
    extra = json_fields() if json_fields is not None else {}
    response = jsonify({"ok": False, "error": error.code, "message": message, **extra})
    response.status_code = http_status(error.code)
    response.vary.add("Accept-Language")
    retry_after = getattr(error, "retry_after", None)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


# A request body is a flat object of short fields (a certificate chain is a list of strings):
# nothing a route accepts nests deeper than this.
MAX_JSON_DEPTH = 8


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_json_value(value: Any) -> None:
    """BadRequest when ``value`` nests deeper than MAX_JSON_DEPTH or holds text the gateway cannot
    store or answer with: lone surrogates (``"\\ud800"`` is valid JSON but no UTF-8) and NUL
    (PostgreSQL text cannot hold it)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            texts: list[str] = [item]
        elif isinstance(item, dict):
            if depth > MAX_JSON_DEPTH:
                raise BadRequest("JSON nested too deeply")
            texts = list(item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            if depth > MAX_JSON_DEPTH:
                raise BadRequest("JSON nested too deeply")
            texts = []
            pending.extend((child, depth + 1) for child in item)
        else:
            continue
        for text in texts:
            if "\x00" in text:
                raise BadRequest("JSON text holds NUL")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest("JSON text is not Unicode (lone surrogate)") from None


def json_object() -> dict[str, Any]:
    """The request's body as a JSON object, or BadRequest: the one place a body is parsed.

    Strict: UTF-8, no NaN/Infinity, nesting at most MAX_JSON_DEPTH (a parser's own recursion
    limit is not an error a client should be able to reach), every string encodable."""
    if not request.is_json:
        raise BadRequest("Content-Type is not application/json")
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body is not a JSON object")
    _check_json_value(body)
    return body


def _has_type(value: Any, kind: type | tuple[type, ...]) -> bool:
    # bool is an int to Python, never to a JSON schema.
    return isinstance(value, kind) and (not isinstance(value, bool) or _allows_bool(kind))


def _allows_bool(kind: type | tuple[type, ...]) -> bool:
    return bool in kind if isinstance(kind, tuple) else kind is bool


def json_body(
    schema: Mapping[str, type | tuple[type, ...]],
    *,
    optional: Mapping[str, type | tuple[type, ...]] | None = None,
) -> dict[str, Any]:
    """The request's JSON object, with the required fields of the given types; BadRequest else.

    A required field must be present and not ``null``; an optional field that is ``null`` counts
    as absent and is left out of the answer. Other fields are ignored.

    Insisting on ``application/json`` also keeps cross-site forms out: a browser sends JSON
    across origins only after a CORS preflight, which the gateway never grants."""
    body = json_object()
    record_json_fields(schema, optional or {})
    for name, kind in schema.items():
        if name not in body or body[name] is None:
            raise BadRequest(f"missing field {name!r}")
        if not _has_type(body[name], kind):
            raise BadRequest(f"field {name!r} has the wrong type")
    for name, kind in (optional or {}).items():
        if name in body and body[name] is None:
            del body[name]
        elif name in body and not _has_type(body[name], kind):
            raise BadRequest(f"field {name!r} has the wrong type")
    return body


JSON_FIELDS_KEY = "certgate.json_fields"
JSON_OPTIONAL_FIELDS_KEY = "certgate.json_optional_fields"


def record_json_fields(
    schema: Mapping[str, type | tuple[type, ...]],
    optional: Mapping[str, type | tuple[type, ...]],
) -> None:
    """Remember which fields the current route reads (route -> field -> type): what the route
    accepts, learnt from the route itself, so input tests build bodies for every route."""
    fields = current_app.extensions.setdefault(JSON_FIELDS_KEY, {})
    endpoint = request.endpoint or request.path
    if endpoint not in fields:
        fields[endpoint] = {**schema, **optional}
        current_app.extensions.setdefault(JSON_OPTIONAL_FIELDS_KEY, {})[endpoint] = frozenset(
            optional
        )


def check_origin() -> None:
    """A browser's ``Origin`` must be the gateway's public origin (absent: not a browser)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != current_app.config["PUBLIC_ORIGIN"]:
        raise OriginMismatch("request Origin is not the public origin")


# Engine details may quote a subject DN (names, ID numbers) or an e-mail address: the log and the
# audit trail keep the shape of the message, not the personal data.
_DN_VALUE = re.compile(r"((?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)=)(?:\\.|[^,+\n])*")
_EMAIL = re.compile(r"[^\s@,;]+@[^\s@,;]+")
# Credit codes, ID-card and phone numbers; an ID-card number's check character is often typed as
# a lower-case x.
_IDENTIFIER = re.compile(r"(?<![0-9A-Za-z])(?:[0-9A-Z]{11,18}|[0-9]{17}x)(?![0-9A-Za-z])")


def scrub_detail(detail: str) -> str:
    """``detail`` with DN attribute values, e-mail addresses and identifiers masked."""
    detail = _DN_VALUE.sub(lambda m: m.group(1) + "***", detail)
    detail = _EMAIL.sub("***@***", detail)
    return _IDENTIFIER.sub(lambda m: mask_identifier(m.group(0)), detail)


def _handle_certgate_error(error: CertGateError) -> Response:
    detail = scrub_detail(error.detail) if error.detail else None
    log.info(
        "request %s %s failed: %s%s",
        request.method,
        request.path,
        error.code,
        f" ({detail})" if detail else "",
    )
    if not g.get("certgate_skip_audit"):
        try:
            write_audit(error.code, detail=detail)
        except Exception:  # noqa: BLE001 - answer the client even when the audit store fails
            log.exception("could not write the audit record")
            return error_response(Unavailable("audit store failed"))
    return error_response(error)


def _handle_http_exception(error: HTTPException) -> Response:
    response = error_response(BadRequest(error.name))
    response.status_code = error.code or 400
    return response


def _handle_unexpected(error: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.path)
    unavailable = Unavailable(f"unexpected {error.__class__.__name__}")
    try:
        write_audit(unavailable.code, detail=unavailable.detail)
    except Exception:  # noqa: BLE001 - the audit store itself may be what failed
        log.exception("could not write the audit record")
    return error_response(unavailable)


def _harden(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"
    )
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(CertGateError, _handle_certgate_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
    app.after_request(_harden)
