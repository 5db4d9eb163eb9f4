"""The PKCS#11 side of the SoftHSM kit, run in a child interpreter.

libsofthsm2 reads ``SOFTHSM2_CONF`` once, at ``C_Initialize``, and python-pkcs11 keeps one loaded
library per process; SoftHSM also builds its slot list at ``C_Initialize``, so a process does not
see tokens created by another process until it re-initialises. ``softhsm.kit.SoftHsmKit`` therefore
runs every PKCS#11 operation here, in a ``python -m softhsm.token_worker`` whose environment carries
the kit's ``SOFTHSM2_CONF``. The calling process never loads the library for the kit, so one
process can provision tokens in several kit directories, and a process that does load the library
itself (the signing agent, its tests) keeps its own state.

Protocol: JSON lines. Each request on stdin ``{"operation": ..., ...}`` gets one answer on stdout,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": <kind>, "message": <one line>}``; kinds
are the keys of ``softhsm.kit.ERRORS_BY_KIND``. The worker ends at the end of its input. Binary
values travel as hex; PINs travel on stdin, never on a command line.

This module speaks PKCS#11 only; X.509 work (key identifiers, certificate fields) is the kit's.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pkcs11
from asn1crypto.core import ObjectIdentifier, OctetString
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11
from pkcs11.constants import CertificateType
from pkcs11.util.ec import encode_named_curve_parameters

# Free space the token directory needs before a key pair and its certificate are stored: three
# object files (public key, private key, certificate), each at most a few blocks, and the kit's PEM
# copies.
REQUIRED_FREE_BYTES = 64 * 1024

SECP256R1_PARAMS = encode_named_curve_parameters("secp256r1")
# PKCS#11 3.0 allows either form for Edwards curves; SoftHSM 2.6.1 accepts both (measured) and
# OpenSC's pkcs11-tool names the OID form.
ED25519_PARAMS = ObjectIdentifier("1.3.101.112").dump()
ED25519_NAME_PARAMS = bytes.fromhex("130c") + b"edwards25519"


@dataclass(frozen=True)
class KeySpec:
    """How one ``--key`` choice is generated on the token."""

    key_type: KeyType
    mechanism: Mechanism
    key_length: int | None = None
    ec_params: bytes | None = None


KEY_SPECS: Mapping[str, KeySpec] = {
    "rsa2048": KeySpec(KeyType.RSA, Mechanism.RSA_PKCS_KEY_PAIR_GEN, key_length=2048),
    "p256": KeySpec(KeyType.EC, Mechanism.EC_KEY_PAIR_GEN, ec_params=SECP256R1_PARAMS),
    "ed25519": KeySpec(
        KeyType.EC_EDWARDS, Mechanism.EC_EDWARDS_KEY_PAIR_GEN, ec_params=ED25519_PARAMS
    ),
}

EC_CURVE_NAMES: Mapping[bytes, str] = {
    SECP256R1_PARAMS: "p256",
    encode_named_curve_parameters("secp384r1"): "p384",
    ED25519_PARAMS: "ed25519",
    ED25519_NAME_PARAMS: "ed25519",
}

KEY_CAPABILITIES = MechanismFlag.SIGN | MechanismFlag.VERIFY
PUBLIC_KEY_TEMPLATE: Mapping[Attribute, Any] = {Attribute.TOKEN: True, Attribute.PRIVATE: False}
PRIVATE_KEY_TEMPLATE: Mapping[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
}


class WorkerError(Exception):
    """A failure the kit reports as one line; ``kind`` selects the kit's error class."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class TokenRequest:
    module: str
    token_directory: str
    label: str
    pin: str | None


def _token_full_message(request: TokenRequest) -> str:
    return (
        f"token {request.label!r} is full: no space left for new objects in "
        f"{request.token_directory}"
    )


def _is_out_of_space(token_directory: str) -> bool:
    try:
        return shutil.disk_usage(token_directory).free < REQUIRED_FREE_BYTES
    except OSError:
        return False


@contextmanager
def _pkcs11_errors(request: TokenRequest, *, storing: bool = False) -> Iterator[None]:
    """Turn python-pkcs11 exceptions into one-line ``WorkerError``s."""
    label = request.label
    try:
        yield
    except WorkerError:
        raise
    except p11.NoSuchToken:
        raise WorkerError(
            "token_not_found", f"no token labelled {label!r} in {request.token_directory}"
        ) from None
    except p11.MultipleTokensReturned:
        raise WorkerError(
            "token_ambiguous", f"several tokens are labelled {label!r}; delete all but one"
        ) from None
    except (p11.PinIncorrect, p11.PinLenRange, p11.PinInvalid):
        raise WorkerError("pin_incorrect", f"wrong PIN for token {label!r}") from None
    except p11.PinLocked:
        raise WorkerError("pin_locked", f"the PIN of token {label!r} is locked") from None
    except p11.DeviceMemory:
        raise WorkerError("token_full", _token_full_message(request)) from None
    except p11.PKCS11Error as error:
        # SoftHSM reports a full disk as FunctionFailed or TemplateIncomplete (measured).
        if storing and _is_out_of_space(request.token_directory):
            raise WorkerError("token_full", _token_full_message(request)) from None
        name = type(error).__name__
        raise WorkerError("token_error", f"token {label!r}: PKCS#11 error {name}") from None


_libraries: dict[str, Any] = {}


def _library(module: str) -> Any:
    if module not in _libraries:
        if not os.path.exists(module):
            raise WorkerError("softhsm_missing", f"PKCS#11 module {module} not found")
        try:
            _libraries[module] = pkcs11.lib(module)
        except p11.PKCS11Error as error:
            conf = os.environ.get("SOFTHSM2_CONF", "the default SoftHSM configuration")
            raise WorkerError(
                "token_error",
                f"cannot initialise PKCS#11 module {module} ({type(error).__name__}); check {conf}",
            ) from None
    return _libraries[module]


@contextmanager
def _session(request: TokenRequest, *, storing: bool = False) -> Iterator[Any]:
    library = _library(request.module)
    with _pkcs11_errors(request, storing=storing):
        token = library.get_token(token_label=request.label)
        with token.open(user_pin=request.pin, rw=True) as session:
            yield session


def _token_serial(token: Any) -> str:
    return bytes(token.serial).decode("ascii", "replace").strip()


def _public_key_attributes(public: Any, spec: KeySpec) -> dict[str, str]:
    if spec.key_type == KeyType.RSA:
        return {
            "modulus": bytes(public[Attribute.MODULUS]).hex(),
            "public_exponent": bytes(public[Attribute.PUBLIC_EXPONENT]).hex(),
        }
    return {"ec_point": bytes(OctetString.load(public[Attribute.EC_POINT]).native).hex()}


def generate_key_pair(request: TokenRequest, key: str, object_label: str) -> dict[str, Any]:
    """Generate a signing key pair under a random CKA_ID; answer its public key and that ID."""
    spec = KEY_SPECS[key]
    if _is_out_of_space(request.token_directory):
        raise WorkerError("token_full", _token_full_message(request))
    object_id = os.urandom(20)
    common: dict[str, Any] = {
        "id": object_id,
        "label": object_label,
        "store": True,
        "capabilities": KEY_CAPABILITIES,
        "mechanism": spec.mechanism,
        "public_template": dict(PUBLIC_KEY_TEMPLATE),
        "private_template": dict(PRIVATE_KEY_TEMPLATE),
    }
    with _session(request, storing=True) as session:
        try:
            with _pkcs11_errors(request, storing=True):
                if spec.ec_params is None:
                    public, _ = session.generate_keypair(spec.key_type, spec.key_length, **common)
                else:
                    parameters = session.create_domain_parameters(
                        spec.key_type, {Attribute.EC_PARAMS: spec.ec_params}, local=True
                    )
                    public, _ = parameters.generate_keypair(**common)
                attributes = _public_key_attributes(public, spec)
        except BaseException:
            _destroy_objects(session, object_id)  # half a key pair may be stored
            raise
        token = session.token
    return {
        "object_id": object_id.hex(),
        "public_key": attributes,
        "token_serial": _token_serial(token),
    }


def _destroy_objects(session: Any, object_id: bytes) -> int:
    destroyed = 0
    try:
        for found in list(session.get_objects({Attribute.ID: object_id})):
            found.destroy()
            destroyed += 1
    except p11.PKCS11Error:
        pass  # the caller reports the failure that brought it here
    return destroyed


def assign_id(request: TokenRequest, object_id: str, cert_id: str) -> dict[str, int]:
    """Give the objects under ``object_id`` the CKA_ID ``cert_id``."""
    changed = 0
    with _session(request, storing=True) as session:
        with _pkcs11_errors(request, storing=True):
            for found in list(session.get_objects({Attribute.ID: bytes.fromhex(object_id)})):
                found[Attribute.ID] = bytes.fromhex(cert_id)
                changed += 1
    return {"changed": changed}


def store_certificate(request: TokenRequest, certificate: Mapping[str, str]) -> dict[str, str]:
    """Store an X.509 certificate object; every binary field arrives as hex."""
    template = {
        Attribute.CLASS: ObjectClass.CERTIFICATE,
        Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.LABEL: certificate["label"],
        Attribute.ID: bytes.fromhex(certificate["cert_id"]),
        Attribute.VALUE: bytes.fromhex(certificate["value"]),
        Attribute.SUBJECT: bytes.fromhex(certificate["subject"]),
        Attribute.ISSUER: bytes.fromhex(certificate["issuer"]),
        Attribute.SERIAL_NUMBER: bytes.fromhex(certificate["serial_number"]),
    }
    with _session(request, storing=True) as session:
        with _pkcs11_errors(request, storing=True):
            session.create_object(template)
    return {}


def delete_objects(request: TokenRequest, object_id: str) -> dict[str, int]:
    """Remove every object with this CKA_ID: the clean-up after a failed ``issue``."""
    with _session(request) as session:
        return {"deleted": _destroy_objects(session, bytes.fromhex(object_id))}


def _key_type_name(found: Any) -> str:
    key_type = found[Attribute.KEY_TYPE]
    if key_type == KeyType.RSA:
        return f"rsa{len(found[Attribute.MODULUS]) * 8}"
    if key_type in (KeyType.EC, KeyType.EC_EDWARDS):
        return EC_CURVE_NAMES.get(bytes(found[Attribute.EC_PARAMS]), key_type.name.lower())
    return str(getattr(key_type, "name", key_type)).lower()


def _optional(found: Any, attribute: Attribute) -> Any:
    try:
        return found[attribute]
    except p11.PKCS11Error:
        return None


def _describe_objects(session: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    certificates = [
        {
            "cert_id": bytes(found[Attribute.ID]).hex(),
            "label": found[Attribute.LABEL],
            "value": bytes(found[Attribute.VALUE]).hex(),
        }
        for found in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})
    ]
    keys = []
    for object_class, class_name in (
        (ObjectClass.PRIVATE_KEY, "private"),
        (ObjectClass.PUBLIC_KEY, "public"),
    ):
        for found in session.get_objects({Attribute.CLASS: object_class}):
            keys.append(
                {
                    "cert_id": bytes(found[Attribute.ID]).hex(),
                    "label": found[Attribute.LABEL],
                    "key_class": class_name,
                    "key_type": _key_type_name(found),
                    "sensitive": _optional(found, Attribute.SENSITIVE),
                    "extractable": _optional(found, Attribute.EXTRACTABLE),
                }
            )
    return certificates, keys


def list_tokens(
    module: str, token_directory: str, label: str | None, pin: str | None
) -> list[dict[str, Any]]:
    """Initialised tokens with their objects; private keys only where ``pin`` logs in."""
    tokens = []
    for slot in _library(module).get_slots(token_present=True):
        token = slot.get_token()
        if not token.flags & TokenFlag.TOKEN_INITIALIZED:
            continue
        if label is not None and token.label != label:
            continue
        request = TokenRequest(module, token_directory, token.label, pin)
        with _pkcs11_errors(request):
            with token.open(user_pin=pin) as session:
                certificates, keys = _describe_objects(session)
        tokens.append(
            {
                "label": token.label,
                "serial": _token_serial(token),
                "slot_id": slot.slot_id,
                "model": token.model,
                "manufacturer_id": token.manufacturer_id,
                "logged_in": pin is not None,
                "certificates": certificates,
                "keys": keys,
            }
        )
    if label is not None and not tokens:
        raise WorkerError("token_not_found", f"no token labelled {label!r} in {token_directory}")
    return tokens


def _token_request(message: Mapping[str, Any]) -> TokenRequest:
    return TokenRequest(
        module=message["module"],
        token_directory=message["token_directory"],
        label=message["label"],
        pin=message.get("pin"),
    )


OPERATIONS: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "generate_key_pair": lambda m: generate_key_pair(
        _token_request(m), m["key"], m["object_label"]
    ),
    "assign_id": lambda m: assign_id(_token_request(m), m["object_id"], m["cert_id"]),
    "store_certificate": lambda m: store_certificate(_token_request(m), m["certificate"]),
    "delete_objects": lambda m: delete_objects(_token_request(m), m["object_id"]),
    "list_tokens": lambda m: list_tokens(
        m["module"], m["token_directory"], m.get("label"), m.get("pin")
    ),
}


def answer(message: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return {"ok": True, "result": OPERATIONS[message["operation"]](message)}
    except WorkerError as error:
        return {"ok": False, "error": error.kind, "message": error.message}


def main() -> int:
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(answer(json.loads(line))) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
