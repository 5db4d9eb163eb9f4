"""Gateway configuration: defaults, then ``certgate.toml``, then ``CERTGATE_*``, then a mapping.

Every value is checked once, at start-up (``validate_config``); a bad value raises ``ConfigError``
naming the file and the field, so a request never discovers a bad configuration.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from gateway.proxy import CertificateHeaderForm, CertificateHeaders

CONFIG_FILE_NAME = "certgate.toml"
ENV_PREFIX = "CERTGATE"

DEFAULTS: Mapping[str, Any] = {
    "DATABASE_URL": "sqlite:///certgate.sqlite3",
    "PUBLIC_ORIGIN": None,  # required outside dev mode, e.g. "https://login.example.cn"
    "DATA_KEY": None,  # base64 of 32 random bytes; required outside dev mode
    "DEV_MODE": False,
    "TRUSTED_PROXIES": [],  # addresses or networks of reverse proxies
    # The one form and header a trusted proxy passes the client certificate in; every other
    # client-certificate header is ignored and audited (gateway/proxy.py). The header defaults
    # by form: "escaped-pem" (nginx $ssl_client_escaped_cert) in X-SSL-Client-Cert, "rfc9440"
    # in Client-Cert / Client-Cert-Chain.
    "TLS_CLIENT_CERT_FORM": "escaped-pem",
    "TLS_CLIENT_CERT_HEADER": None,
    "MIGRATE_ON_START": True,
    # Where challenges and attempt counters live: "memory" (this process) or "database".
    # None picks "memory" for an SQLite database (the embedded default: one process) and
    # "database" otherwise (docs/configuration.md).
    "STATE_STORE": None,
    # The Redis server of state_store = "redis" (scale-out), e.g. "redis://10.0.0.5:6379/0".
    "REDIS_URL": None,
    "CHALLENGE_TTL": 120,
    "SESSION_COOKIE": "certgate_session",
    "PRELOGIN_COOKIE": "certgate_prelogin",
    "SESSION_IDLE_TIMEOUT": 30 * 60,
    "SESSION_ABSOLUTE_TIMEOUT": 12 * 60 * 60,
    "RATE_LIMIT_WINDOW": 60,
    "ADDRESS_ATTEMPT_LIMIT": 30,  # login attempts per address per window
    "ACCOUNT_ATTEMPT_LIMIT": 5,  # login attempts per account (or identifier) per window
    "CHALLENGE_LIMIT": 60,  # login challenges per address per window
    "LOCKOUT_THRESHOLD": 10,  # consecutive failures that lock an account
    "LOCKOUT_WINDOW": 15 * 60,
    "LOCKOUT_DURATION": 15 * 60,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "PASSWORD_MEMORY_COST": 65536,  # argon2id KiB (RFC 9106 low-memory profile)
    "PASSWORD_TIME_COST": 3,
    "TRUST_ANCHORS": [],  # [[trust.anchors]] tables from certgate.toml
    # The largest CRL downloaded, from a configured URL or a distribution point (gateway/engine.py).
    "CRL_MAX_BYTES": 32 * 1024 * 1024,
    # The local signing agent the login page talks to (checked at start-up by gateway/web.py).
    "AGENT_URL": "http://127.0.0.1:21790",
    # The service agreement version people consent to (shown on the pages and recorded).
    "AGREEMENT_VERSION": "2026-01",
    # Where people download the certificate helper (the signing agent), shown on the login page
    # when it is not running; None tells them to ask the platform or their CA.
    "AGENT_DOWNLOAD_URL": None,
    # The pages show times in this IANA time zone (checked at start-up by gateway/web.py).
    "DISPLAY_TIME_ZONE": "Asia/Shanghai",
    # The privacy policy shown at /privacy: a UTF-8 text file; None shows the bundled template
    # (web/templates/policies), which says it is one (checked at start-up by gateway/web.py).
    "PRIVACY_POLICY_FILE": None,
    "CLOCK": None,  # tests inject a clock object
    # QR-code login (gateway/qr, docs/qr-login.md): a ticket's lifetime (at most MAX_QR_TTL),
    # the cookie holding the requesting browser's secret, tickets per address per
    # rate_limit_window, and how many browsers may wait on a ticket at once (each holds a thread).
    "QR_TTL": 120,
    "QR_COOKIE": "certgate_qr",
    "QR_ADDRESS_LIMIT": 20,
    "QR_WAIT_SLOTS": 4,
    # Verification codes and notices (gateway/lifecycle, docs/accounts.md): where SMS and e-mail
    # go ("outbox:PATH" appends JSON lines, a development outbox; "http(s)://..." an SMS
    # gateway; "smtp://[user:pass@]host:port" / "smtps://..." a mail server). Dev mode without
    # a setting uses the outbox certgate-outbox.jsonl in the working directory.
    "NOTIFY_SMS": None,
    "NOTIFY_SMS_SECRET": None,  # shared secret sent to the SMS gateway (X-CertGate-Secret)
    "NOTIFY_EMAIL": None,
    "NOTIFY_EMAIL_FROM": None,  # the From address of e-mail; required with smtp(s)://
    "NOTIFY_TIMEOUT": 10,  # seconds a sender may take
    "CODE_RESEND_SECONDS": 60,  # one code per destination this often
    "CODE_DAILY_LIMIT": 10,  # codes per destination per 24 hours
    "CODE_ADDRESS_LIMIT": 10,  # code requests per client address per rate_limit_window
}

# certgate.toml spells keys in lower case; tables flatten with "_" ([session] idle_timeout ->
# SESSION_IDLE_TIMEOUT) except [trust] anchors, which becomes TRUST_ANCHORS.
MAX_CHALLENGE_TTL = 120
MAX_QR_TTL = 300
STATE_STORES = ("memory", "database", "redis")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
HOST_COOKIE_PREFIX = "__Host-"
# Cookies that get the __Host- prefix on an HTTPS deployment (gateway/sessions.py).
HOST_COOKIES = ("SESSION_COOKIE", "PRELOGIN_COOKIE", "QR_COOKIE")


def host_cookie_name(name: str, public_origin: str) -> str:
    """``name`` with the ``__Host-`` prefix when the public origin is HTTPS: the browser then
    keeps the cookie only if it is Secure, for Path=/ and without Domain, so no other host of
    the domain can set or shadow it. Plain-HTTP loopback development keeps ``name``."""
    if public_origin.startswith("https://") and not name.startswith(HOST_COOKIE_PREFIX):
        return HOST_COOKIE_PREFIX + name
    return name


class ConfigError(Exception):
    """The configuration is not usable; the message names the source and the field."""


def load_config(app: Flask, test_config: Mapping[str, Any] | None = None) -> None:
    """Fill ``app.config``: defaults, ``certgate.toml``, ``CERTGATE_*`` env, the test mapping."""
    app.config.from_mapping(DEFAULTS)
    app.config["CONFIG_SOURCE"] = {key: "default" for key in DEFAULTS}
    config_file = _config_file(test_config)
    if config_file is not None:
        _load_toml(app, config_file)
    app.config.from_prefixed_env(ENV_PREFIX)
    for name in os.environ:
        if name.startswith(f"{ENV_PREFIX}_"):
            key = name.removeprefix(f"{ENV_PREFIX}_")
            app.config["CONFIG_SOURCE"][key] = f"environment variable {name}"
    if test_config is not None:
        app.config.from_mapping(test_config)
        for key in test_config:
            app.config["CONFIG_SOURCE"][key] = "create_app(config=...)"
    validate_config(app.config)


def _config_file(test_config: Mapping[str, Any] | None) -> Path | None:
    if test_config is not None and "CONFIG_FILE" in test_config:
        value = test_config["CONFIG_FILE"]
        return Path(value) if value else None
    explicit = os.environ.get(f"{ENV_PREFIX}_CONFIG_FILE")
    if explicit:
        return Path(explicit)
    default = Path.cwd() / CONFIG_FILE_NAME
    return default if default.is_file() else None


def _load_toml(app: Flask, path: Path) -> None:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    app.config["CONFIG_FILE"] = str(path)
    for key, value in _flatten(document):
        if key not in DEFAULTS or key == "CLOCK":
            raise ConfigError(f"{path}: unknown setting {key.lower()!r}")
        app.config[key] = value
        app.config["CONFIG_SOURCE"][key] = str(path)


def _flatten(document: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for name, value in document.items():
        key = f"{prefix}{name}".upper()
        if key == "TRUST_ANCHORS" or not isinstance(value, dict):
            items.append((key, value))
        else:
            items.extend(_flatten(value, f"{key}_"))
    return items


def _where(config: Mapping[str, Any], key: str) -> str:
    source = config.get("CONFIG_SOURCE", {}).get(key, "configuration")
    return f"{source}: {key.lower()}"


def _positive_int(config: dict[str, Any], key: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{_where(config, key)}: must be a positive whole number, got {value!r}")
    return value


def _bool(config: dict[str, Any], key: str) -> bool:
    value = config[key]
    if isinstance(value, str) and value.lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.lower() in ("1", "true", "yes", "on")
    if not isinstance(value, bool):
        raise ConfigError(f"{_where(config, key)}: must be true or false, got {value!r}")
    return value


def parse_origin(value: str) -> str:
    """The canonical ``scheme://host[:port]`` form of a web origin; ValueError if it is not one."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) origin such as https://login.example.cn")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError("an origin has no path, query, fragment or user name")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = parts.port
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


def decode_data_key(value: str) -> bytes:
    """The 32-byte data key from its base64 (standard or URL-safe) form."""
    text = value.strip()
    try:
        key = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "==")
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64") from exc
    if len(key) != 32:
        raise ValueError(f"must decode to 32 bytes, got {len(key)}")
    return key


def validate_config(config: dict[str, Any]) -> None:
    """Check and normalise every setting; raise ConfigError naming the source and the field."""
    config["DEV_MODE"] = _bool(config, "DEV_MODE")
    config["MIGRATE_ON_START"] = _bool(config, "MIGRATE_ON_START")
    for key in (
        "CHALLENGE_TTL",
        "SESSION_IDLE_TIMEOUT",
        "SESSION_ABSOLUTE_TIMEOUT",
        "RATE_LIMIT_WINDOW",
        "ADDRESS_ATTEMPT_LIMIT",
        "ACCOUNT_ATTEMPT_LIMIT",
        "CHALLENGE_LIMIT",
        "LOCKOUT_THRESHOLD",
        "LOCKOUT_WINDOW",
        "LOCKOUT_DURATION",
        "MAX_CONTENT_LENGTH",
        "PASSWORD_MEMORY_COST",
        "PASSWORD_TIME_COST",
        "QR_TTL",
        "QR_ADDRESS_LIMIT",
        "QR_WAIT_SLOTS",
        "NOTIFY_TIMEOUT",
        "CODE_RESEND_SECONDS",
        "CODE_DAILY_LIMIT",
        "CODE_ADDRESS_LIMIT",
    ):
        _positive_int(config, key)
    if config["CHALLENGE_TTL"] > MAX_CHALLENGE_TTL:
        raise ConfigError(f"{_where(config, 'CHALLENGE_TTL')}: at most {MAX_CHALLENGE_TTL} s")
    if config["QR_TTL"] > MAX_QR_TTL:
        raise ConfigError(f"{_where(config, 'QR_TTL')}: at most {MAX_QR_TTL} s")

    origin = config["PUBLIC_ORIGIN"]
    if origin is None:
        if not config["DEV_MODE"]:
            raise ConfigError(
                f"{_where(config, 'PUBLIC_ORIGIN')}: required (the origin browsers use to reach "
                "the gateway, e.g. https://login.example.cn)"
            )
        origin = "http://127.0.0.1:8080"
    try:
        config["PUBLIC_ORIGIN"] = parse_origin(str(origin))
    except ValueError as exc:
        raise ConfigError(f"{_where(config, 'PUBLIC_ORIGIN')}: {exc}") from None
    for key in HOST_COOKIES:
        if not isinstance(config[key], str) or not config[key]:
            raise ConfigError(f"{_where(config, key)}: must be a cookie name")
        config[key] = host_cookie_name(config[key], config["PUBLIC_ORIGIN"])

    if config["DATA_KEY"] is None:
        if not config["DEV_MODE"]:
            raise ConfigError(
                f"{_where(config, 'DATA_KEY')}: required; generate one with "
                '`python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"` '
                "(only dev_mode = true generates a throw-away key)"
            )
    else:
        try:
            decode_data_key(str(config["DATA_KEY"]))
        except ValueError as exc:
            raise ConfigError(f"{_where(config, 'DATA_KEY')}: {exc}") from None

    proxies = config["TRUSTED_PROXIES"]
    if isinstance(proxies, str):
        proxies = [p for p in (part.strip() for part in proxies.split(",")) if p]
    if not isinstance(proxies, list):
        raise ConfigError(f"{_where(config, 'TRUSTED_PROXIES')}: must be a list of addresses")
    networks = []
    for entry in proxies:
        try:
            networks.append(ipaddress.ip_network(str(entry), strict=False))
        except ValueError:
            raise ConfigError(
                f"{_where(config, 'TRUSTED_PROXIES')}: {entry!r} is not an address or network"
            ) from None
    config["TRUSTED_PROXIES"] = networks

    if not isinstance(config["DATABASE_URL"], str) or "://" not in config["DATABASE_URL"]:
        raise ConfigError(f"{_where(config, 'DATABASE_URL')}: must be an SQLAlchemy URL")
    state_store = config["STATE_STORE"]
    if state_store is None:
        state_store = "memory" if config["DATABASE_URL"].startswith("sqlite") else "database"
    if state_store not in STATE_STORES:
        raise ConfigError(
            f"{_where(config, 'STATE_STORE')}: one of {', '.join(STATE_STORES)}, "
            f"got {state_store!r}"
        )
    config["STATE_STORE"] = state_store
    redis_url = config.get("REDIS_URL")
    if state_store == "redis" and not redis_url:
        raise ConfigError(
            f'{_where(config, "REDIS_URL")}: required with state_store = "redis" '
            "(CERTGATE_REDIS_URL=redis://host:6379/0)"
        )
    if redis_url is not None and (
        not isinstance(redis_url, str) or not redis_url.startswith(REDIS_SCHEMES)
    ):
        raise ConfigError(
            f"{_where(config, 'REDIS_URL')}: must be a redis://, rediss:// or unix:// URL"
        )
    form, header = config["TLS_CLIENT_CERT_FORM"], config["TLS_CLIENT_CERT_HEADER"]
    try:
        form = CertificateHeaderForm(form)
    except ValueError:
        choices = ", ".join(repr(f.value) for f in CertificateHeaderForm)
        raise ConfigError(
            f"{_where(config, 'TLS_CLIENT_CERT_FORM')}: one of {choices}, got {form!r}"
        ) from None
    if header is not None and not isinstance(header, str):
        raise ConfigError(f"{_where(config, 'TLS_CLIENT_CERT_HEADER')}: must be a header name")
    try:
        certificate_headers = CertificateHeaders.for_form(form, header)
    except ValueError as exc:
        raise ConfigError(f"{_where(config, 'TLS_CLIENT_CERT_HEADER')}: {exc}") from None
    config["TLS_CLIENT_CERT_FORM"] = certificate_headers.form
    config["TLS_CLIENT_CERT_HEADER"] = certificate_headers.header
    clock = config["CLOCK"]
    if clock is not None and not callable(getattr(clock, "now", None)):
        raise ConfigError(f"{_where(config, 'CLOCK')}: only tests set a clock object")
    if not isinstance(config["TRUST_ANCHORS"], list):
        raise ConfigError(f"{_where(config, 'TRUST_ANCHORS')}: must be an array of tables")
    _validate_notify(config)


DEV_OUTBOX = "outbox:certgate-outbox.jsonl"
SENDER_SCHEMES = {
    "NOTIFY_SMS": ("outbox", "http", "https"),
    "NOTIFY_EMAIL": ("outbox", "smtp", "smtps"),
}


def _validate_notify(config: dict[str, Any]) -> None:
    """The senders' settings; what the values mean is gateway/lifecycle/senders.py's. The
    message names the setting, never the value (it may hold a password or a secret)."""
    for key, schemes in SENDER_SCHEMES.items():
        value = config[key]
        if value is None or value == "":
            config[key] = DEV_OUTBOX if config["DEV_MODE"] else None
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{_where(config, key)}: must be a text such as outbox:PATH")
        scheme, _, rest = value.partition(":")
        if scheme not in schemes or not rest.strip():
            raise ConfigError(
                f"{_where(config, key)}: one of "
                + ", ".join(f"{s}:..." for s in schemes)
                + " (see docs/accounts.md)"
            )
        if scheme != "outbox":
            parts = urlsplit(value)
            try:
                port = parts.port
            except ValueError:
                port = None
                parts = parts._replace(netloc="")
            if not parts.hostname or (scheme.startswith("smtp") and port is None):
                raise ConfigError(
                    f"{_where(config, key)}: {scheme} needs a host"
                    + (" and a port" if scheme.startswith("smtp") else "")
                )
    if isinstance(config["NOTIFY_SMS"], str) and config["NOTIFY_SMS"].startswith("http"):
        secret = config["NOTIFY_SMS_SECRET"]
        if not isinstance(secret, str) or len(secret) < 16:
            raise ConfigError(
                f"{_where(config, 'NOTIFY_SMS_SECRET')}: required with an SMS gateway URL, "
                "at least 16 characters"
            )
    if isinstance(config["NOTIFY_EMAIL"], str) and config["NOTIFY_EMAIL"].startswith("smtp"):
        sender = config["NOTIFY_EMAIL_FROM"]
        if not isinstance(sender, str) or "@" not in sender:
            raise ConfigError(
                f"{_where(config, 'NOTIFY_EMAIL_FROM')}: required with an SMTP server, "
                "an e-mail address"
            )
