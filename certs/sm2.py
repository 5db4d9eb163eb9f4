"""SM2 signatures with SM3 (GB/T 32918, GM/T 0003 / 0009) through OpenSSL 3's own SM2.

pyca/cryptography parses SM2 certificates but cannot use their keys (it has no SM2 and does not
plan any). OpenSSL 3 has SM2 and SM3, with the signer's distinguishing identifier (``distid``)
that goes into Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA). This module is the glue
pyca/cryptography lacks: a handful of OpenSSL EVP calls through ``ctypes`` on the system's
``libcrypto.so.3`` (no Python package wraps OpenSSL's SM2 with the distid; the C work is
OpenSSL's). A verification costs what ``openssl speed sm2`` measures plus a few µs of calls.

The signer ID is always given explicitly: OpenSSL signs and verifies with an EMPTY ID unless told,
while GM/T 0009 (and every Chinese CA) uses ``1234567812345678`` by default.

Signatures are DER ``SEQUENCE {r, s}`` (GM/T 0009 §7, as in X.509 and the login protocol).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import threading
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

SM2_CURVE_OID: Final = "1.2.156.10197.1.301"
SM3_OID: Final = "1.2.156.10197.1.401"
SM2_WITH_SM3_OID: Final = "1.2.156.10197.1.501"
EC_PUBLIC_KEY_OID: Final = "1.2.840.10045.2.1"
# GM/T 0009 §10: the default user ID when none is agreed on.
DEFAULT_SIGNER_ID: Final = b"1234567812345678"
# ENTL is two octets of bits: an ID of at most 8191 octets.
MAXIMUM_SIGNER_ID_BYTES: Final = 8191

# DER of AlgorithmIdentifier { id-ecPublicKey, sm2 } and { SM2-with-SM3 } (no parameters).
SM2_SPKI_ALGORITHM: Final = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
SM2_WITH_SM3_ALGORITHM: Final = bytes.fromhex("300a06082a811ccf55018375")


class Sm2Unavailable(RuntimeError):
    """The system's OpenSSL 3 libcrypto (with SM2) cannot be loaded."""


_P = ctypes.c_void_p
_BYTES = ctypes.c_char_p
_SIZE = ctypes.c_size_t

# name -> (restype, argtypes): the EVP calls used here (OpenSSL 3.0 API).
_FUNCTIONS: Final[dict[str, tuple[object, list[object]]]] = {
    "d2i_PUBKEY": (_P, [_P, ctypes.POINTER(_P), ctypes.c_long]),
    "d2i_AutoPrivateKey": (_P, [_P, ctypes.POINTER(_P), ctypes.c_long]),
    "i2d_PUBKEY": (ctypes.c_int, [_P, ctypes.POINTER(_P)]),
    "EVP_PKEY2PKCS8": (_P, [_P]),
    "i2d_PKCS8_PRIV_KEY_INFO": (ctypes.c_int, [_P, ctypes.POINTER(_P)]),
    "PKCS8_PRIV_KEY_INFO_free": (None, [_P]),
    "EVP_PKEY_free": (None, [_P]),
    "EVP_PKEY_is_a": (ctypes.c_int, [_P, _BYTES]),
    "EVP_PKEY_CTX_new_from_name": (_P, [_P, _BYTES, _BYTES]),
    "EVP_PKEY_CTX_new_from_pkey": (_P, [_P, _P, _P]),
    "EVP_PKEY_CTX_free": (None, [_P]),
    "EVP_PKEY_CTX_set1_id": (ctypes.c_int, [_P, _BYTES, ctypes.c_int]),
    "EVP_PKEY_keygen_init": (ctypes.c_int, [_P]),
    "EVP_PKEY_generate": (ctypes.c_int, [_P, ctypes.POINTER(_P)]),
    "EVP_MD_CTX_new": (_P, []),
    "EVP_MD_CTX_free": (None, [_P]),
    "EVP_MD_CTX_set_pkey_ctx": (None, [_P, _P]),
    "EVP_sm3": (_P, []),
    "EVP_DigestVerifyInit": (ctypes.c_int, [_P, _P, _P, _P, _P]),
    "EVP_DigestVerify": (ctypes.c_int, [_P, _BYTES, _SIZE, _BYTES, _SIZE]),
    "EVP_DigestSignInit": (ctypes.c_int, [_P, _P, _P, _P, _P]),
    "EVP_DigestSign": (ctypes.c_int, [_P, _P, ctypes.POINTER(_SIZE), _BYTES, _SIZE]),
    "ERR_clear_error": (None, []),
}

_LIBRARY_NAMES: Final = ("libcrypto.so.3", "libcrypto.3.dylib", "libcrypto-3-x64.dll")


@lru_cache(maxsize=1)
def _libcrypto() -> ctypes.CDLL:
    candidates = [*_LIBRARY_NAMES]
    found = ctypes.util.find_library("crypto")
    if found:
        candidates.append(found)
    for name in candidates:
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        if not hasattr(library, "EVP_PKEY_CTX_new_from_pkey"):
            continue  # OpenSSL 1.1 or older: no SM2 with a distinguishing ID through EVP
        for function, (restype, argtypes) in _FUNCTIONS.items():
            entry = getattr(library, function)
            entry.restype = restype
            entry.argtypes = argtypes
        return library
    raise Sm2Unavailable("OpenSSL 3 libcrypto (libcrypto.so.3) is needed for SM2 signatures")


def available() -> bool:
    """Whether SM2 signatures can be verified on this machine."""
    try:
        _libcrypto()
    except Sm2Unavailable:
        return False
    return True


def _sm3() -> int:
    return int(_libcrypto().EVP_sm3())


def _free_pkey(handle: int) -> None:
    _libcrypto().EVP_PKEY_free(handle)


def _load(loader: str, der: bytes) -> int:
    library = _libcrypto()
    buffer = ctypes.create_string_buffer(der, len(der))
    cursor = _P(ctypes.addressof(buffer))
    handle = getattr(library, loader)(None, ctypes.byref(cursor), len(der))
    consumed = (cursor.value or 0) - ctypes.addressof(buffer)
    if not handle or consumed != len(der) or library.EVP_PKEY_is_a(handle, b"SM2") != 1:
        if handle:
            library.EVP_PKEY_free(handle)
        library.ERR_clear_error()
        raise ValueError("not an SM2 key")
    return int(handle)


def _encode(encoder: str, handle: int) -> bytes:
    library = _libcrypto()
    length = getattr(library, encoder)(handle, None)
    if length <= 0:
        library.ERR_clear_error()
        raise ValueError(f"{encoder} failed")
    buffer = ctypes.create_string_buffer(length)
    cursor = _P(ctypes.addressof(buffer))
    getattr(library, encoder)(handle, ctypes.byref(cursor))
    return buffer.raw[:length]


def _digest_context(handle: int, signer_id: bytes) -> tuple[int, int]:
    """An EVP_MD_CTX with an SM2 key context carrying ``signer_id`` (caller frees both)."""
    library = _libcrypto()
    message_context = library.EVP_MD_CTX_new()
    key_context = library.EVP_PKEY_CTX_new_from_pkey(None, handle, None)
    if not message_context or not key_context:
        library.EVP_MD_CTX_free(message_context)
        library.EVP_PKEY_CTX_free(key_context)
        raise MemoryError("OpenSSL could not allocate a digest context")
    library.EVP_PKEY_CTX_set1_id(key_context, signer_id, len(signer_id))
    library.EVP_MD_CTX_set_pkey_ctx(message_context, key_context)
    return int(message_context), int(key_context)


def _check_signer_id(signer_id: bytes) -> bytes:
    if not isinstance(signer_id, bytes) or len(signer_id) > MAXIMUM_SIGNER_ID_BYTES:
        raise ValueError(f"an SM2 signer ID is at most {MAXIMUM_SIGNER_ID_BYTES} bytes")
    return signer_id


@dataclass(frozen=True, eq=False)
class Sm2PublicKey:
    """An SM2 public key, from its SubjectPublicKeyInfo DER."""

    spki: bytes
    _handle: int = field(repr=False, compare=False, default=0)

    @classmethod
    def from_spki(cls, spki: bytes) -> Sm2PublicKey:
        """``ValueError`` when ``spki`` is not an SM2 key on the SM2 curve."""
        return _public_key(bytes(spki))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sm2PublicKey) and other.spki == self.spki

    def __hash__(self) -> int:
        return hash(self.spki)

    @property
    def point(self) -> bytes:
        """The uncompressed point 04||x||y (the subjectPublicKey BIT STRING's content)."""
        return self.spki[-65:]

    def key_identifier(self) -> bytes:
        """RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits."""
        return hashlib.sha1(self.point, usedforsecurity=False).digest()

    def verify(self, signature: bytes, data: bytes, signer_id: bytes = DEFAULT_SIGNER_ID) -> bool:
        """``signature`` (DER SEQUENCE {r, s}) over ``data`` with ``signer_id`` in Z_A."""
        signer_id = _check_signer_id(signer_id)
        library = _libcrypto()
        message_context, key_context = _digest_context(self._handle, signer_id)
        try:
            if library.EVP_DigestVerifyInit(message_context, None, _sm3(), None, self._handle) != 1:
                return False
            verdict = library.EVP_DigestVerify(
                message_context, signature, len(signature), data, len(data)
            )
        finally:
            library.EVP_MD_CTX_free(message_context)
            library.EVP_PKEY_CTX_free(key_context)
        if verdict != 1:
            library.ERR_clear_error()  # a refused signature leaves OpenSSL's error queue filled
        return verdict == 1


# Parsed keys are kept per SubjectPublicKeyInfo: CA keys verify every login's chain and CRLs.
_PUBLIC_KEYS: dict[bytes, Sm2PublicKey] = {}
_PUBLIC_KEYS_LIMIT = 4096
_PUBLIC_KEYS_LOCK = threading.Lock()


def _public_key(spki: bytes) -> Sm2PublicKey:
    with _PUBLIC_KEYS_LOCK:
        known = _PUBLIC_KEYS.get(spki)
    if known is not None:
        return known
    handle = _load("d2i_PUBKEY", spki)
    key = Sm2PublicKey(spki, handle)
    weakref.finalize(key, _free_pkey, handle)
    with _PUBLIC_KEYS_LOCK:
        if len(_PUBLIC_KEYS) >= _PUBLIC_KEYS_LIMIT:
            _PUBLIC_KEYS.clear()
        return _PUBLIC_KEYS.setdefault(spki, key)


class Sm2PrivateKey:
    """An SM2 private key (test PKI, signing tests): generated here or loaded from PKCS#8 DER."""

    def __init__(self, handle: int) -> None:
        self._handle = handle
        weakref.finalize(self, _free_pkey, handle)

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        library = _libcrypto()
        context = library.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)
        handle = _P()
        try:
            if (
                not context
                or library.EVP_PKEY_keygen_init(context) != 1
                or library.EVP_PKEY_generate(context, ctypes.byref(handle)) != 1
            ):
                library.ERR_clear_error()
                raise Sm2Unavailable("OpenSSL could not generate an SM2 key")
        finally:
            library.EVP_PKEY_CTX_free(context)
        assert handle.value is not None
        return cls(int(handle.value))

    @classmethod
    def from_der(cls, der: bytes) -> Sm2PrivateKey:
        """From PKCS#8 (or SEC 1 ECPrivateKey) DER; ``ValueError`` when it is not SM2."""
        return cls(_load("d2i_AutoPrivateKey", bytes(der)))

    def public_key(self) -> Sm2PublicKey:
        return Sm2PublicKey.from_spki(_encode("i2d_PUBKEY", self._handle))

    def pkcs8_der(self) -> bytes:
        library = _libcrypto()
        info = library.EVP_PKEY2PKCS8(self._handle)
        if not info:
            library.ERR_clear_error()
            raise ValueError("cannot encode the SM2 key as PKCS#8")
        try:
            return _encode("i2d_PKCS8_PRIV_KEY_INFO", info)
        finally:
            library.PKCS8_PRIV_KEY_INFO_free(info)

    def sign(self, data: bytes, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
        """A DER SEQUENCE {r, s} signature over ``data`` (SM3 with Z_A of ``signer_id``)."""
        signer_id = _check_signer_id(signer_id)
        library = _libcrypto()
        message_context, key_context = _digest_context(self._handle, signer_id)
        try:
            length = _SIZE(0)
            sign = library.EVP_DigestSign
            if (
                library.EVP_DigestSignInit(message_context, None, _sm3(), None, self._handle) != 1
                or sign(message_context, None, ctypes.byref(length), data, len(data)) != 1
            ):
                library.ERR_clear_error()
                raise ValueError("OpenSSL refused to sign with the SM2 key")
            out = ctypes.create_string_buffer(length.value)
            if sign(message_context, out, ctypes.byref(length), data, len(data)) != 1:
                library.ERR_clear_error()
                raise ValueError("OpenSSL refused to sign with the SM2 key")
            return out.raw[: length.value]
        finally:
            library.EVP_MD_CTX_free(message_context)
            library.EVP_PKEY_CTX_free(key_context)


def signer_id_bytes(value: str) -> bytes:
    """A configured signer ID (text, UTF-8) as the bytes that go into Z_A."""
    encoded = value.encode("utf-8")
    _check_signer_id(encoded)
    return encoded


__all__ = [
    "DEFAULT_SIGNER_ID",
    "SM2_CURVE_OID",
    "SM2_WITH_SM3_OID",
    "SM3_OID",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "Sm2Unavailable",
    "available",
    "signer_id_bytes",
]
