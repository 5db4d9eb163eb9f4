"""PKCS#11 access through python-pkcs11: modules, slots, tokens, certificates and login signatures.

A ``TokenLibrary`` holds one or more PKCS#11 modules (SoftHSM for tests, the vendor module a USB key
ships with in real life). Every operation opens its own session and closes it before returning; the
PIN is passed straight to ``C_Login`` and never stored, logged or put in an error.

python-pkcs11 initialises a module with ``C_Initialize(NULL)``, which promises the module that no
two threads call it at once. Each module therefore has one lock that every call into it holds, which
also serialises concurrent requests to one token (a second ``C_Login`` on a logged-in token fails
with ``CKR_USER_ALREADY_LOGGED_IN``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from pathlib import Path
from typing import Any

import pkcs11
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding
from pkcs11 import Attribute, CertificateType, Mechanism, ObjectClass, SlotFlag, TokenFlag
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import MGF

from certs.keys import is_sm2, sm2_public_key
from certs.keys import public_key as certificate_public_key
from tokens.errors import (
    CertificateNotFound,
    ModuleUnavailable,
    PinIncorrect,
    PinLocked,
    TokenBadRequest,
    TokenError,
    TokenFailure,
    TokenNotPresent,
    from_pkcs11_error,
)
from tokens.sm2 import SM2_EC_PARAMS, Sm2Input, Sm2Mechanism, message_digest

log = logging.getLogger(__name__)

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

# Where each platform's usual PKCS#11 modules live, in the order they are tried. SoftHSM comes first
# (tests and integrators); OpenSC covers most standards-compliant cards. Vendor modules of Chinese
# USB keys (e.g. a CA's ``*_p11.dll``) are passed explicitly with ``--module``.
DEFAULT_MODULE_PATHS: Mapping[str, tuple[str, ...]] = {
    "linux": (
        SOFTHSM_MODULE,
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
        "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
        "/usr/lib/opensc-pkcs11.so",
    ),
    "darwin": (
        "/opt/homebrew/lib/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
        "/Library/OpenSC/lib/opensc-pkcs11.so",
    ),
    "win32": (
        r"C:\SoftHSM2\lib\softhsm2-x64.dll",
        r"C:\Windows\System32\opensc-pkcs11.dll",
    ),
}


def default_module_paths(platform: str = sys.platform) -> list[str]:
    """The first usual module that exists on this platform (empty when there is none)."""
    for path in DEFAULT_MODULE_PATHS.get(platform, ()):
        if Path(path).is_file():
            return [path]
    return []


class KeyType(StrEnum):
    RSA = "rsa"
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    ED25519 = "ed25519"
    SM2 = "sm2"
    UNSUPPORTED = "unsupported"


EC_CURVES: Mapping[str, KeyType] = {
    "secp256r1": KeyType.EC_P256,
    "secp384r1": KeyType.EC_P384,
}


def key_type_of(certificate: x509.Certificate) -> KeyType:
    if is_sm2(certificate):
        return KeyType.SM2  # an EC key on the SM2 curve, which cryptography cannot load
    try:
        public_key = certificate_public_key(certificate)
    except (UnsupportedAlgorithm, ValueError):
        return KeyType.UNSUPPORTED  # keys cryptography cannot load
    if isinstance(public_key, rsa.RSAPublicKey):
        return KeyType.RSA
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return EC_CURVES.get(public_key.curve.name, KeyType.UNSUPPORTED)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    return KeyType.UNSUPPORTED


@dataclass(frozen=True)
class SigningMethod:
    """How one DESIGN.md ``signature_algorithm`` is produced on a token."""

    algorithm: str
    # None: the module's vendor mechanism (SM2, see tokens.sm2), configured per module.
    mechanism: Mechanism | None
    mechanism_param: Any = None
    # CKM_ECDSA signs a digest: hash with SHA-256 first (SoftHSM has no CKM_ECDSA_SHA256).
    prehash_sha256: bool = False
    # CKM_ECDSA answers raw r||s; the login protocol (and cryptography) take DER.
    raw_ecdsa: bool = False


SIGNING_METHODS: Mapping[str, SigningMethod] = {
    "rsa-pkcs1-sha256": SigningMethod("rsa-pkcs1-sha256", Mechanism.SHA256_RSA_PKCS),
    # Explicit parameters: python-pkcs11's default (SHA-1, salt 20) is refused by SoftHSM and is
    # not what the gateway verifies (MGF1-SHA256, salt 32).
    "rsa-pss-sha256": SigningMethod(
        "rsa-pss-sha256", Mechanism.SHA256_RSA_PKCS_PSS, (Mechanism.SHA256, MGF.SHA256, 32)
    ),
    "ecdsa-sha256": SigningMethod(
        "ecdsa-sha256", Mechanism.ECDSA, prehash_sha256=True, raw_ecdsa=True
    ),
    "ed25519": SigningMethod("ed25519", Mechanism.EDDSA),
    # PKCS#11 has no SM2 mechanism: the module's vendor mechanism (Sm2Mechanism) is used.
    "sm2-sm3": SigningMethod("sm2-sm3", None),
}

# Signature algorithms each key type can produce; the first is the default.
ALGORITHMS_BY_KEY_TYPE: Mapping[KeyType, tuple[str, ...]] = {
    KeyType.RSA: ("rsa-pkcs1-sha256", "rsa-pss-sha256"),
    KeyType.EC_P256: ("ecdsa-sha256",),
    KeyType.EC_P384: ("ecdsa-sha256",),
    KeyType.ED25519: ("ed25519",),
    KeyType.SM2: ("sm2-sm3",),
    KeyType.UNSUPPORTED: (),
}


def signing_method(key_type: KeyType, algorithm: str | None = None) -> SigningMethod:
    allowed = ALGORITHMS_BY_KEY_TYPE[key_type]
    if not allowed:
        raise TokenBadRequest(f"no supported signature for {key_type}", reason="key_type")
    chosen = algorithm or allowed[0]
    if chosen not in allowed:
        raise TokenBadRequest(
            f"{chosen} not possible with {key_type}", reason="signature_algorithm"
        )
    return SIGNING_METHODS[chosen]


def raw_to_der(signature: bytes) -> bytes:
    half = len(signature) // 2
    r = int.from_bytes(signature[:half], "big")
    s = int.from_bytes(signature[half:], "big")
    return encode_dss_signature(r, s)


SM2_RAW_SIGNATURE_BYTES = 64


def sm2_signature_der(signature: bytes) -> bytes:
    """A vendor module's SM2 signature as DER: most answer r || s (32 bytes each), as
    CKM_ECDSA does; some answer DER already."""
    if len(signature) == SM2_RAW_SIGNATURE_BYTES:
        return raw_to_der(signature)
    try:
        decode_dss_signature(signature)
    except ValueError:
        detail = f"SM2 signature of {len(signature)} bytes: neither r||s nor DER"
        raise TokenFailure(detail) from None
    return signature


@dataclass(frozen=True)
class PinState:
    """The PIN flags a token reports in ``CK_TOKEN_INFO``."""

    count_low: bool
    final_try: bool
    locked: bool

    @classmethod
    def from_flags(cls, flags: int) -> PinState:
        return cls(
            count_low=bool(flags & TokenFlag.USER_PIN_COUNT_LOW),
            final_try=bool(flags & TokenFlag.USER_PIN_FINAL_TRY),
            locked=bool(flags & TokenFlag.USER_PIN_LOCKED),
        )

    def incorrect_pin_error(self, detail: str) -> TokenError:
        """The error after a refused PIN, given the flags read just afterwards."""
        if self.locked:
            return PinLocked(detail)
        return PinIncorrect(
            detail, retries_left=1 if self.final_try else None, count_low=self.count_low
        )


@dataclass(frozen=True)
class TokenInfo:
    module: str
    slot_id: int
    label: str
    serial: str
    manufacturer: str
    model: str
    pin: PinState

    def describe(self) -> dict[str, Any]:
        return {
            "token_label": self.label,
            "serial": self.serial,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "slot_id": self.slot_id,
            "module": self.module,
            "pin_count_low": self.pin.count_low,
            "pin_final_try": self.pin.final_try,
            "pin_locked": self.pin.locked,
        }


@dataclass(frozen=True)
class SlotInfo:
    module: str
    slot_id: int
    description: str
    token: TokenInfo | None


@dataclass(frozen=True)
class TokenCertificate:
    """A certificate object on a token, identified by its CKA_ID (shared with its private key)."""

    token: TokenInfo
    cert_id: bytes
    certificate: x509.Certificate
    # True / False after a logged-in listing; None when the private objects were not visible.
    has_private_key: bool | None = None

    @property
    def key_type(self) -> KeyType:
        return key_type_of(self.certificate)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)

    @property
    def is_ca(self) -> bool:
        return _is_ca(self.certificate)

    def describe(self) -> dict[str, Any]:
        """The DESIGN.md ``GET /v1/certificates`` entry (``certificate`` is base64 DER)."""
        return {
            "token_label": self.token.label,
            "cert_id": self.cert_id.hex(),
            "subject": self.certificate.subject.rfc4514_string(),
            "issuer": self.certificate.issuer.rfc4514_string(),
            "serial": format(self.certificate.serial_number, "x"),
            "not_after": self.certificate.not_valid_after_utc.astimezone(UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "key_type": str(self.key_type),
            "certificate": base64.b64encode(self.der).decode("ascii"),
        }


def issuer_chain(
    certificate: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> tuple[bytes, ...]:
    """DER of the CA certificates among ``candidates`` that issue ``certificate``, issuer first.

    Stops before a self-signed certificate: trust anchors are the gateway's business.
    """
    chain: list[bytes] = []
    current = certificate
    for _ in range(len(candidates)):
        if current.issuer == current.subject:
            break
        issuer = next((c for c in candidates if c.subject == current.issuer), None)
        if issuer is None or issuer.issuer == issuer.subject:
            break
        chain.append(issuer.public_bytes(Encoding.DER))
        current = issuer
    return tuple(chain)


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


@dataclass(frozen=True)
class LoginSignature:
    signature: bytes
    signature_algorithm: str
    certificate: bytes
    chain: tuple[bytes, ...]

    def describe(self) -> dict[str, Any]:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode("ascii")

        return {
            "signature": b64(self.signature),
            "signature_algorithm": self.signature_algorithm,
            "certificate": b64(self.certificate),
            "chain": [b64(der) for der in self.chain],
        }


# How a module shows tokens that appear after C_Initialize, keyed by the library's manufacturer
# ID. SoftHSM reads its token directory once at C_Initialize, so a poll must re-initialise it to
# see a token created (or deleted) by another process; hot-plug modules refresh C_GetSlotList
# themselves.
REINITIALISE_TO_RESCAN: Mapping[str, bool] = {
    "SoftHSM": True,
}

_MODULE_LOCKS: dict[str, threading.RLock] = {}
_MODULE_LOCKS_GUARD = threading.Lock()


def _module_lock(path: str) -> threading.RLock:
    # python-pkcs11 shares one loaded library per path, so the lock is per path too.
    with _MODULE_LOCKS_GUARD:
        return _MODULE_LOCKS.setdefault(path, threading.RLock())


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip("\x00 ")
    return value.rstrip("\x00 ")


def vendor_mechanism(number: int) -> Mechanism:
    """A vendor-defined mechanism number as python-pkcs11 takes it (it accepts only members of
    its ``Mechanism`` enum, which lists the standard ones)."""
    try:
        return Mechanism(number)
    except ValueError:
        member = int.__new__(Mechanism, number)
        member._name_ = f"VENDOR_{number:#x}"
        member._value_ = number
        return member


class Pkcs11Module:
    """One loaded PKCS#11 module. All calls into it hold ``self.lock``.

    ``sm2`` is the module's vendor mechanism for SM2 keys; without it SM2 keys cannot sign.
    """

    def __init__(self, path: str, sm2: Sm2Mechanism | None = None) -> None:
        self.path = str(path)
        self.sm2 = sm2
        self.lock = _module_lock(self.path)
        if not Path(self.path).is_file():
            raise ModuleUnavailable(f"no PKCS#11 module at {self.path}")
        with self.lock:
            try:
                self._lib = pkcs11.lib(self.path)
            except p11.PKCS11Error as error:
                raise ModuleUnavailable(f"cannot load {self.path}: {error}") from error
        self.manufacturer = _text(self._lib.manufacturer_id)
        self.description = _text(self._lib.library_description)

    def __repr__(self) -> str:
        return f"Pkcs11Module({self.path!r})"

    def reinitialise(self) -> None:
        """C_Finalize then C_Initialize: re-reads configuration (SoftHSM: SOFTHSM2_CONF)."""
        with self.lock:
            try:
                self._lib.reinitialize()
            except p11.PKCS11Error as error:
                raise from_pkcs11_error(error) from error

    def rescan(self) -> None:
        """Make tokens inserted or removed since the last call visible, if the module needs it."""
        if REINITIALISE_TO_RESCAN.get(self.manufacturer, False):
            self.reinitialise()

    def _token_info(self, slot: pkcs11.Slot) -> TokenInfo | None:
        try:
            token = slot.get_token()
        except p11.PKCS11Error as error:
            # Unreadable is absent: SoftHSM answers CKR_GENERAL_ERROR for a token deleted under
            # it, readers CKR_TOKEN_NOT_PRESENT / CKR_DEVICE_ERROR for a card being pulled.
            log.debug("slot %s: %s", slot.slot_id, type(error).__name__)
            return None
        flags = int(token.flags)
        if not flags & TokenFlag.TOKEN_INITIALIZED:
            return None
        return TokenInfo(
            module=self.path,
            slot_id=int(slot.slot_id),
            label=_text(token.label),
            serial=_text(token.serial),
            manufacturer=_text(token.manufacturer_id),
            model=_text(token.model),
            pin=PinState.from_flags(flags),
        )

    def slots(self) -> list[SlotInfo]:
        with self.lock:
            try:
                slots = self._lib.get_slots()
            except p11.PKCS11Error as error:
                raise from_pkcs11_error(error) from error
            found = []
            for slot in slots:
                present = bool(slot.flags & SlotFlag.TOKEN_PRESENT)
                found.append(
                    SlotInfo(
                        module=self.path,
                        slot_id=int(slot.slot_id),
                        description=_text(slot.slot_description),
                        token=self._token_info(slot) if present else None,
                    )
                )
            return found

    def tokens(self) -> list[TokenInfo]:
        return [slot.token for slot in self.slots() if slot.token is not None]

    def _token(self, info: TokenInfo) -> pkcs11.Token:
        """The live token for ``info``: same slot, same serial, or ``TokenNotPresent``."""
        for slot in self._lib.get_slots(token_present=True):
            if int(slot.slot_id) != info.slot_id:
                continue
            try:
                token = slot.get_token()
            except p11.PKCS11Error as error:
                raise TokenNotPresent(f"{info.label}: {type(error).__name__}") from error
            if _text(token.serial) == info.serial:
                return token
        raise TokenNotPresent(f"token {info.label!r} (serial {info.serial}) not present")

    @contextmanager
    def session(self, info: TokenInfo, pin: str | None = None) -> Iterator[pkcs11.Session]:
        """One session on the token, logged in with ``pin`` when given, closed on exit.

        Holds the module lock for the whole session. PKCS#11 errors leave as ``TokenError``.
        """
        with self.lock:
            try:
                token = self._token(info)
                if pin is None:
                    session = token.open()
                else:
                    if PinState.from_flags(int(token.flags)).locked:
                        raise PinLocked(f"{info.label}: USER_PIN_LOCKED before login")
                    session = self._login(token, info, pin)
            except p11.PKCS11Error as error:
                raise from_pkcs11_error(error) from error
            try:
                yield session
            except p11.PKCS11Error as error:
                raise from_pkcs11_error(error) from error
            finally:
                try:
                    session.close()
                except p11.PKCS11Error:
                    pass  # the token went away mid-operation; the error above says so

    def _login(self, token: pkcs11.Token, info: TokenInfo, pin: str) -> pkcs11.Session:
        try:
            return token.open(user_pin=pin)
        except (p11.PinIncorrect, p11.PinLenRange, p11.PinInvalid) as error:
            # Re-read the flags: a token that tells how close it is to locking says so now.
            detail = f"{info.label}: {type(error).__name__}"
            try:
                flags = int(self._token(info).flags)
            except (TokenError, p11.PKCS11Error):
                return_error: TokenError = PinIncorrect(detail)
            else:
                return_error = PinState.from_flags(flags).incorrect_pin_error(detail)
            raise return_error from None

    def certificates(self, info: TokenInfo, pin: str | None = None) -> list[TokenCertificate]:
        """X.509 certificates on the token; with a PIN, whether each has its private key."""
        with self.session(info, pin) as session:
            listed: list[TokenCertificate] = []
            key_ids: set[bytes] | None = None
            if pin is not None:
                key_ids = {
                    bytes(key[Attribute.ID])
                    for key in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
                }
            for item in session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                }
            ):
                value, cert_id = item[Attribute.VALUE], item[Attribute.ID]
                try:
                    certificate = x509.load_der_x509_certificate(bytes(value))
                except ValueError:
                    continue  # not a certificate cryptography can parse; not usable for login
                listed.append(
                    TokenCertificate(
                        token=info,
                        cert_id=bytes(cert_id),
                        certificate=certificate,
                        has_private_key=None if key_ids is None else bytes(cert_id) in key_ids,
                    )
                )
            return listed

    def sign(self, entry: TokenCertificate, pin: str, data: bytes, method: SigningMethod) -> bytes:
        """Log in, sign ``data`` with the private key whose CKA_ID is ``entry.cert_id``, log out."""
        return self.sign_login(entry, pin, data, method).signature

    def sign_login(
        self, entry: TokenCertificate, pin: str, data: bytes, method: SigningMethod
    ) -> LoginSignature:
        """One logged-in session: check the certificate is still ``entry``'s, sign, read the chain.

        ``CertificateNotFound`` when the token no longer holds that certificate under that CKA_ID.
        """
        with self.session(entry.token, pin) as session:
            on_token: list[tuple[bytes, x509.Certificate]] = []
            for item in session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                }
            ):
                try:
                    parsed = x509.load_der_x509_certificate(bytes(item[Attribute.VALUE]))
                except ValueError:
                    continue
                on_token.append((bytes(item[Attribute.ID]), parsed))
            if (entry.cert_id, entry.certificate) not in on_token:
                raise CertificateNotFound(f"{entry.token.label}/{entry.cert_id.hex()}: changed")
            try:
                key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=entry.cert_id)
            except (p11.NoSuchKey, p11.MultipleObjectsReturned) as error:
                raise CertificateNotFound(
                    f"{entry.token.label}/{entry.cert_id.hex()}: {type(error).__name__}"
                ) from error
            if not isinstance(key, pkcs11.SignMixin):
                raise CertificateNotFound(f"{entry.token.label}/{entry.cert_id.hex()}: no sign")
            if method.mechanism is None:
                signature = self._sign_sm2(entry, key, data)
            else:
                payload = hashlib.sha256(data).digest() if method.prehash_sha256 else data
                signature = bytes(
                    key.sign(
                        payload,
                        mechanism=method.mechanism,
                        mechanism_param=method.mechanism_param,
                    )
                )
                if method.raw_ecdsa:
                    signature = raw_to_der(signature)
        return LoginSignature(
            signature=signature,
            signature_algorithm=method.algorithm,
            certificate=entry.der,
            chain=issuer_chain(entry.certificate, [c for _, c in on_token if _is_ca(c)]),
        )

    def _sign_sm2(self, entry: TokenCertificate, key: Any, message: bytes) -> bytes:
        """SM2 with SM3 through the module's vendor mechanism; the DER signature."""
        where = f"{entry.token.label}/{entry.cert_id.hex()}"
        if self.sm2 is None:
            raise TokenBadRequest(
                f"{where}: SM2 key, but no SM2 mechanism is configured for {self.path}",
                reason="sm2_mechanism",
            )
        if bytes(key[Attribute.EC_PARAMS]) != SM2_EC_PARAMS:
            raise TokenBadRequest(f"{where}: the private key is not on the SM2 curve", reason="key")
        mechanism = vendor_mechanism(self.sm2.mechanism)
        if self.sm2.input is Sm2Input.MESSAGE:
            # The token computes Z_A with the signer ID given as the mechanism's parameter.
            signature = key.sign(message, mechanism=mechanism, mechanism_param=self.sm2.signer_id)
        else:
            public_key = sm2_public_key(entry.certificate)
            assert public_key is not None  # KeyType.SM2 means the certificate's key is SM2
            digest = message_digest(public_key.point, message, self.sm2.signer_id)
            signature = key.sign(digest, mechanism=mechanism)
        return sm2_signature_der(bytes(signature))


class TokenLibrary:
    """Every token of one or more PKCS#11 modules.

    ``sm2`` maps a module path to the vendor mechanism its SM2 keys sign with.
    """

    def __init__(
        self,
        modules: Sequence[str] | None = None,
        sm2: Mapping[str, Sm2Mechanism] | None = None,
    ) -> None:
        paths = list(modules) if modules else default_module_paths()
        if not paths:
            raise ModuleUnavailable("no PKCS#11 module found in the usual locations")
        sm2 = dict(sm2 or {})
        self.modules = [Pkcs11Module(path, sm2.get(path)) for path in paths]
        # CKA_ID -> where it was last seen, so a sign request opens one session, not one per token.
        self._seen: dict[bytes, TokenCertificate] = {}
        self._seen_lock = threading.Lock()

    def rescan(self) -> None:
        for module in self.modules:
            module.rescan()

    def slots(self) -> list[SlotInfo]:
        return [slot for module in self.modules for slot in module.slots()]

    def tokens(self, *, rescan: bool = True) -> list[TokenInfo]:
        """Tokens present now (modules that need it are re-scanned first, about 1 ms)."""
        if rescan:
            self.rescan()
        return [token for module in self.modules for token in module.tokens()]

    def _module(self, info: TokenInfo) -> Pkcs11Module:
        for module in self.modules:
            if module.path == info.module:
                return module
        raise TokenNotPresent(f"module {info.module} not loaded")

    def certificates(
        self, *, token_label: str | None = None, include_ca: bool = False, rescan: bool = True
    ) -> list[TokenCertificate]:
        """Login certificates on all present tokens (CA certificates only with ``include_ca``)."""
        found: list[TokenCertificate] = []
        for token in self.tokens(rescan=rescan):
            if token_label is not None and token.label != token_label:
                continue
            try:
                listed = self._module(token).certificates(token)
            except TokenNotPresent:
                continue  # pulled between the slot list and the session
            found.extend(entry for entry in listed if include_ca or not entry.is_ca)
        with self._seen_lock:
            self._seen.update((entry.cert_id, entry) for entry in found if not entry.is_ca)
        return found

    def find_certificate(
        self, cert_id: bytes, *, token_label: str | None = None
    ) -> TokenCertificate:
        """The certificate with CKA_ID ``cert_id``; re-scans the modules only when not found."""
        matches: list[TokenCertificate] = []
        for rescan in (False, True):
            matches = [
                entry
                for entry in self.certificates(token_label=token_label, rescan=rescan)
                if entry.cert_id == cert_id
            ]
            if matches:
                break
        if not matches:
            if token_label is not None and not any(t.label == token_label for t in self.tokens()):
                raise TokenNotPresent(f"no token labelled {token_label!r}")
            if not self.tokens():
                raise TokenNotPresent("no token present")
            raise CertificateNotFound(f"no certificate with CKA_ID {cert_id.hex()}")
        if len(matches) > 1:
            raise TokenBadRequest(
                f"CKA_ID {cert_id.hex()} on {len(matches)} tokens", reason="token_label"
            )
        return matches[0]

    def chain_for(self, entry: TokenCertificate) -> tuple[bytes, ...]:
        """CA certificates stored on the same token that issue ``entry``, leaf's issuer first."""
        listed = self._module(entry.token).certificates(entry.token)
        return issuer_chain(entry.certificate, [c.certificate for c in listed if c.is_ca])

    def _seen_entry(self, cert_id: bytes, token_label: str | None) -> TokenCertificate | None:
        with self._seen_lock:
            entry = self._seen.get(cert_id)
        if entry is None or (token_label is not None and entry.token.label != token_label):
            return None
        return entry

    def _forget(self, cert_id: bytes) -> None:
        with self._seen_lock:
            self._seen.pop(cert_id, None)

    def sign_login(
        self,
        cert_id: bytes,
        pin: str,
        message: bytes,
        *,
        token_label: str | None = None,
        signature_algorithm: str | None = None,
    ) -> LoginSignature:
        """Sign a login message (built by ``tokens.login_message``) with the certificate's key.

        Where the CKA_ID was last listed is tried first (one session in all); when that token no
        longer holds it, the tokens are searched again. A refused PIN is never retried.
        """
        seen = self._seen_entry(cert_id, token_label)
        if seen is not None:
            method = signing_method(seen.key_type, signature_algorithm)
            try:
                return self._module(seen.token).sign_login(seen, pin, message, method)
            except (CertificateNotFound, TokenNotPresent):
                self._forget(cert_id)  # pulled, replaced or moved: look again
        entry = self.find_certificate(cert_id, token_label=token_label)
        method = signing_method(entry.key_type, signature_algorithm)
        return self._module(entry.token).sign_login(entry, pin, message, method)


__all__ = [
    "ALGORITHMS_BY_KEY_TYPE",
    "DEFAULT_MODULE_PATHS",
    "KeyType",
    "LoginSignature",
    "PinState",
    "Pkcs11Module",
    "SIGNING_METHODS",
    "SOFTHSM_MODULE",
    "SigningMethod",
    "SlotInfo",
    "TokenCertificate",
    "TokenFailure",
    "TokenInfo",
    "TokenLibrary",
    "default_module_paths",
    "sm2_signature_der",
    "vendor_mechanism",
]
