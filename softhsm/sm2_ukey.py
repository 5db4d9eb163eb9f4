"""SM2 USB keys for tests and integrators: a PKCS#11 module standing in for a Chinese UKey's.

FOR TESTING ONLY. SoftHSM has no SM2, and PKCS#11 3.1 defines no SM2 mechanism: the modules of
Chinese USB keys offer SM2 under vendor-defined mechanism numbers. ``sm2_ukey.c`` is such a
module, built on this machine with the C compiler against OpenSSL 3's libcrypto; its tokens are
directories written here (the "personalisation" a CA's issuing desk does), each with a
PIN verifier, a retry counter, certificates and SM2 private keys encrypted with the PIN.

    <dir>/libcertgate-sm2-ukey.so       the module (CERTGATE_SM2_UKEY_DIR=<dir> tells it where)
    <dir>/<serial>/token.conf           slot, label, serial, PIN salt and PBKDF2-SHA256 verifier
    <dir>/<serial>/pin_failures         wrong PINs in a row (the module counts them)
    <dir>/<serial>/objects/<ID>.crt     certificates (DER), <ID>.key (PKCS#8, AES-256 with
                                        the PIN), <ID>.label

The module's mechanisms: ``SM2_SM3_MECHANISM`` (Z_A and SM3 in the token, signer ID as the
parameter) and ``SM2_MECHANISM`` (signs e = SM3(Z_A || M)); see docs/softhsm.md.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certs.sm2 import Sm2PrivateKey, Sm2Unavailable
from softhsm.kit import (
    InvalidTokenRequest,
    PinIncorrect,
    PinLocked,
    PkiRefused,
    SoftHsmError,
    TokenExists,
    TokenNotFound,
)
from softhsm.pki import PkiError, TestPki

SOURCE: Final = Path(__file__).with_name("sm2_ukey.c")
MODULE_NAME: Final = "libcertgate-sm2-ukey.so"
DIRECTORY_ENVIRONMENT_VARIABLE: Final = "CERTGATE_SM2_UKEY_DIR"
PKCS11_HEADERS: Final = Path("/usr/include/p11-kit-1")
# The module's vendor-defined mechanisms (sm2_ukey.c).
SM2_SM3_MECHANISM: Final = 0x80008101
SM2_MECHANISM: Final = 0x80008102
MAX_SLOTS: Final = 64
DEFAULT_MAX_TRIES: Final = 6
PBKDF2_ROUNDS: Final = 10000
MINIMUM_PIN: Final = 4
MAXIMUM_PIN: Final = 64
MAXIMUM_LABEL_BYTES: Final = 32
PRIVATE_FILE_MODE: Final = 0o600


class ModuleBuildFailed(SoftHsmError):
    kind = "module_build_failed"


@dataclass(frozen=True)
class Sm2UkeyCertificate:
    cert_id: bytes
    label: str
    certificate: x509.Certificate
    has_private_key: bool


@dataclass(frozen=True)
class Sm2UkeyToken:
    label: str
    serial: str
    slot_id: int
    max_tries: int
    pin_failures: int
    path: Path
    certificates: tuple[Sm2UkeyCertificate, ...] = ()


@dataclass(frozen=True)
class Sm2Provisioned:
    token_label: str
    cert_id: bytes
    label: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    cert_path: Path
    chain_path: Path


def build_module(target: Path, source: Path = SOURCE) -> Path:
    """Compile ``sm2_ukey.c`` to ``target`` unless an up-to-date build is there."""
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ModuleBuildFailed("no C compiler (apt-get install gcc)")
    if not (PKCS11_HEADERS / "p11-kit" / "pkcs11.h").is_file():
        raise ModuleBuildFailed("PKCS#11 headers missing (apt-get install libp11-kit-dev)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    done = subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", f"-I{PKCS11_HEADERS}", str(source),
         "-o", str(partial), "-lcrypto"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["?"])[0]
        hint = " (apt-get install libssl-dev)" if "openssl" in done.stderr else ""
        raise ModuleBuildFailed(f"cannot build the SM2 UKey module: {first}{hint}")
    partial.replace(target)
    return target


def pin_verifier(pin: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode("utf-8"), salt, PBKDF2_ROUNDS, 32)


def _encrypted_key_pem(key: Sm2PrivateKey, pin: str) -> bytes:
    """PKCS#8 PEM, AES-256-CBC under a PBKDF2 key from the PIN (what the module decrypts at
    C_Login). The PIN reaches openssl through a pipe, never a command line."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, pin.encode("utf-8") + b"\n")
        os.close(write_end)
        write_end = -1
        done = subprocess.run(
            ["openssl", "pkcs8", "-topk8", "-inform", "DER", "-outform", "PEM",
             "-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-passout", f"fd:{read_end}"],
            input=key.pkcs8_der(),
            capture_output=True,
            pass_fds=(read_end,),
            check=False,
        )  # fmt: skip
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if done.returncode != 0 or b"ENCRYPTED PRIVATE KEY" not in done.stdout:
        raise SoftHsmError("openssl could not encrypt the SM2 key")
    return bytes(done.stdout)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.chmod(mode)
    partial.replace(path)


@dataclass(frozen=True)
class Sm2UkeyDirectory:
    """A directory of SM2 USB keys and the module that reads it."""

    directory: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory).expanduser().absolute())

    @property
    def module_path(self) -> Path:
        return self.directory / MODULE_NAME

    def module(self) -> Path:
        """The module, compiled on first use (gcc, libssl-dev, libp11-kit-dev)."""
        return build_module(self.module_path)

    def environ(self) -> dict[str, str]:
        return {DIRECTORY_ENVIRONMENT_VARIABLE: str(self.directory)}

    # ---- tokens

    def _token_paths(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if (p / "token.conf").is_file())

    @staticmethod
    def _conf(path: Path) -> dict[str, str]:
        fields = {}
        for line in (path / "token.conf").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            fields[key] = value
        return fields

    def _read_token(self, path: Path, with_objects: bool = True) -> Sm2UkeyToken:
        conf = self._conf(path)
        failures_file = path / "pin_failures"
        failures = int(failures_file.read_text().strip() or 0) if failures_file.is_file() else 0
        certificates = []
        if with_objects:
            objects = path / "objects"
            for crt in sorted(objects.glob("*.crt")):
                label_file = crt.with_suffix(".label")
                certificates.append(
                    Sm2UkeyCertificate(
                        cert_id=bytes.fromhex(crt.stem),
                        label=label_file.read_text("utf-8") if label_file.is_file() else "",
                        certificate=x509.load_der_x509_certificate(crt.read_bytes()),
                        has_private_key=crt.with_suffix(".key").is_file(),
                    )
                )
        return Sm2UkeyToken(
            label=conf["label"],
            serial=conf["serial"],
            slot_id=int(conf["slot"]),
            max_tries=int(conf.get("max_tries", DEFAULT_MAX_TRIES)),
            pin_failures=failures,
            path=path,
            certificates=tuple(certificates),
        )

    def list_tokens(self, label: str | None = None) -> tuple[Sm2UkeyToken, ...]:
        tokens = tuple(self._read_token(path) for path in self._token_paths())
        if label is not None:
            tokens = tuple(t for t in tokens if t.label == label)
            if not tokens:
                raise TokenNotFound(f"no SM2 token labelled {label!r} in {self.directory}")
        return tokens

    def token(self, label: str) -> Sm2UkeyToken:
        return self.list_tokens(label)[0]

    def init_token(
        self, label: str, pin: str, *, max_tries: int = DEFAULT_MAX_TRIES
    ) -> Sm2UkeyToken:
        """A new, empty SM2 token in the next free slot."""
        if not label or len(label.encode("utf-8")) > MAXIMUM_LABEL_BYTES or "\n" in label:
            raise InvalidTokenRequest(f"a token label has 1 to {MAXIMUM_LABEL_BYTES} bytes")
        self._check_pin(pin)
        if not 1 <= max_tries <= 99:
            raise InvalidTokenRequest("--max-tries must be 1 to 99")
        existing = [self._read_token(p, with_objects=False) for p in self._token_paths()]
        if any(token.label == label for token in existing):
            raise TokenExists(f"an SM2 token labelled {label!r} exists in {self.directory}")
        used = {token.slot_id for token in existing}
        free = [slot for slot in range(MAX_SLOTS) if slot not in used]
        if not free:
            raise InvalidTokenRequest(f"all {MAX_SLOTS} slots of {self.directory} are taken")
        serial = secrets.token_hex(8).upper()
        path = self.directory / serial
        (path / "objects").mkdir(parents=True, mode=0o700)
        salt = secrets.token_bytes(16)
        conf = (
            f"slot={free[0]}\nlabel={label}\nserial={serial}\nsalt={salt.hex()}\n"
            f"pin={pin_verifier(pin, salt).hex()}\nmax_tries={max_tries}\n"
        )
        _write(path / "token.conf", conf.encode("utf-8"), PRIVATE_FILE_MODE)
        return self._read_token(path)

    def delete_token(self, label: str) -> None:
        """Remove the token: the USB key is pulled out for good."""
        shutil.rmtree(self.token(label).path)

    @staticmethod
    def _check_pin(pin: str) -> None:
        if not MINIMUM_PIN <= len(pin.encode("utf-8")) <= MAXIMUM_PIN or "\n" in pin:
            raise InvalidTokenRequest(f"a PIN has {MINIMUM_PIN} to {MAXIMUM_PIN} bytes")

    def _check_token_pin(self, token: Sm2UkeyToken, pin: str) -> None:
        """As the module does: a wrong PIN counts, a locked token refuses every PIN."""
        if token.pin_failures >= token.max_tries:
            raise PinLocked(f"SM2 token {token.label!r} is locked (too many wrong PINs)")
        conf = self._conf(token.path)
        verifier = pin_verifier(pin, bytes.fromhex(conf["salt"]))
        if not secrets.compare_digest(verifier.hex(), conf["pin"]):
            failures = token.pin_failures + 1
            _write(token.path / "pin_failures", f"{failures}\n".encode())
            if failures >= token.max_tries:
                raise PinLocked(f"wrong PIN for SM2 token {token.label!r}: now locked")
            raise PinIncorrect(
                f"wrong PIN for SM2 token {token.label!r} ({token.max_tries - failures} tries left)"
            )
        if token.pin_failures:
            _write(token.path / "pin_failures", b"0\n")

    def issue(
        self,
        *,
        label: str,
        pin: str,
        pki: TestPki,
        kind: str,
        name: str,
        id_number: str | None = None,
        uscc: str | None = None,
        ca: str = "sm2",
        valid_days: int = 365,
        not_before: datetime | None = None,
        at: datetime | None = None,
        object_label: str | None = None,
    ) -> Sm2Provisioned:
        """An SM2 key on token ``label`` with its certificate from the test PKI (``ca``: the SM2
        CA by default; ``rsa`` or ``p256`` make a mixed chain). The issuing CA's certificate is
        stored on the token too, as USB keys carry it."""
        token = self.token(label)
        self._check_token_pin(token, pin)
        object_label = object_label or name
        if "\n" in object_label:
            raise InvalidTokenRequest("an object label is one line")
        try:
            key = Sm2PrivateKey.generate()
        except Sm2Unavailable as error:
            raise SoftHsmError(str(error)) from error
        public_key = key.public_key()
        try:
            issued = pki.issue(
                kind,  # type: ignore[arg-type]
                name,
                id_number=id_number,
                uscc=uscc,
                key="sm2",
                ca=ca,
                valid_days=valid_days,
                not_before=not_before,
                public_key=public_key,
                at=at,
            )
        except PkiError as error:
            raise PkiRefused(str(error)) from error
        cert_id = public_key.key_identifier()
        objects = token.path / "objects"
        stem = cert_id.hex()
        _write(objects / f"{stem}.key", _encrypted_key_pem(key, pin), PRIVATE_FILE_MODE)
        _write(objects / f"{stem}.label", object_label.encode("utf-8"))
        _write(objects / f"{stem}.crt", issued.certificate.public_bytes(Encoding.DER))
        issuer = issued.chain[0]
        issuer_id = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        issuer_stem = issuer_id.value.digest.hex()
        _write(objects / f"{issuer_stem}.crt", issuer.public_bytes(Encoding.DER))
        _write(
            objects / f"{issuer_stem}.label",
            issuer.subject.rfc4514_string().encode("utf-8"),
        )
        return Sm2Provisioned(
            token_label=token.label,
            cert_id=cert_id,
            label=object_label,
            certificate=issued.certificate,
            chain=tuple(issued.chain),
            cert_path=issued.cert_path,
            chain_path=issued.chain_path,
        )


__all__ = [
    "DIRECTORY_ENVIRONMENT_VARIABLE",
    "SM2_MECHANISM",
    "SM2_SM3_MECHANISM",
    "ModuleBuildFailed",
    "Sm2Provisioned",
    "Sm2UkeyDirectory",
    "Sm2UkeyToken",
    "build_module",
]
