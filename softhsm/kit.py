"""SoftHSM tokens that stand in for USB keys: create them, store test certificates, list them.

A ``SoftHsmKit`` owns one private token directory and the ``SOFTHSM2_CONF`` file that points at it::

    kit = SoftHsmKit(Path("/tmp/tokens"))
    kit.init_token("alice", "123456", "12345678")
    provisioned = kit.issue(label="alice", pin="123456", pki=TestPki.open(pki_dir),
                            kind="person", name="张三", id_number="11010519491231002X", key="p256")

Token creation and deletion run ``softhsm2-util``; every PKCS#11 operation runs in a child
interpreter (``softhsm.token_worker``) whose environment carries this kit's ``SOFTHSM2_CONF``. The
calling process never loads libsofthsm2 for the kit, so it may use several kit directories, and its
own PKCS#11 state (an agent under test) is left alone. See docs/softhsm.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from softhsm.pki import PkiError, TestPki

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SOFTHSM_UTIL = "softhsm2-util"
CONF_NAME = "softhsm2.conf"
TOKENS_DIR_NAME = "tokens"
CERTIFICATES_DIR_NAME = "certificates"
TOKEN_OBJECT_NAME = "token.object"  # SoftHSM's file store: present while a token exists
EMPTIED_TOKEN_ATTEMPTS = 50
KEY_TYPES = ("rsa2048", "p256", "ed25519")
TOKEN_LABEL_MAX_BYTES = 32  # CK_TOKEN_INFO.label
PIN_LENGTHS = range(4, 256)  # what SoftHSM accepts
WORKER_TIMEOUT_SECONDS = 120


class SoftHsmError(Exception):
    """Root of the kit's errors; ``str(error)`` is one line a person can act on."""

    kind: ClassVar[str] = "token_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SoftHsmNotInstalled(SoftHsmError):
    kind = "softhsm_missing"


class TokenNotFound(SoftHsmError):
    kind = "token_not_found"


class TokenAmbiguous(SoftHsmError):
    kind = "token_ambiguous"


class TokenExists(SoftHsmError):
    kind = "token_exists"


class PinIncorrect(SoftHsmError):
    kind = "pin_incorrect"


class PinLocked(SoftHsmError):
    kind = "pin_locked"


class TokenFull(SoftHsmError):
    kind = "token_full"


class InvalidTokenRequest(SoftHsmError):
    """A label, PIN or key choice the kit refuses before touching a token."""

    kind = "bad_request"


class PkiRefused(SoftHsmError):
    """The test PKI could not be opened or refused to issue."""

    kind = "pki_error"


ERRORS_BY_KIND: Mapping[str, type[SoftHsmError]] = {
    error.kind: error
    for error in (
        SoftHsmError,
        SoftHsmNotInstalled,
        TokenNotFound,
        TokenAmbiguous,
        TokenExists,
        PinIncorrect,
        PinLocked,
        TokenFull,
        InvalidTokenRequest,
        PkiRefused,
    )
}


@dataclass(frozen=True)
class TokenCertificate:
    """A certificate object on a token."""

    cert_id: bytes
    label: str
    certificate: x509.Certificate

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def issuer(self) -> str:
        return self.certificate.issuer.rfc4514_string()

    @property
    def serial_number(self) -> int:
        return self.certificate.serial_number

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc


@dataclass(frozen=True)
class TokenKey:
    """A key object on a token. ``key_type`` is ``rsa2048``, ``p256``, ``ed25519``, ..."""

    cert_id: bytes
    label: str
    key_class: str  # "private" or "public"
    key_type: str
    sensitive: bool | None
    extractable: bool | None


@dataclass(frozen=True)
class SoftHsmToken:
    """One initialised token; ``keys`` holds private keys only when the listing logged in."""

    label: str
    serial: str
    slot_id: int
    model: str
    manufacturer_id: str
    logged_in: bool
    certificates: tuple[TokenCertificate, ...] = ()
    keys: tuple[TokenKey, ...] = ()

    def certificate(self, cert_id: bytes) -> TokenCertificate:
        for certificate in self.certificates:
            if certificate.cert_id == cert_id:
                return certificate
        raise KeyError(cert_id.hex())


@dataclass(frozen=True)
class ProvisionedCertificate:
    """A key pair generated on a token and its certificate, stored under one CKA_ID and label."""

    token_label: str
    cert_id: bytes
    label: str
    key: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    cert_path: Path
    chain_path: Path


def _remove_emptied_token_directories(directories: Sequence[Path]) -> None:
    """Remove the token directories that no longer hold a token (no ``token.object``), trying
    again for a while if another process keeps putting a lock file back into one."""
    for attempt in range(EMPTIED_TOKEN_ATTEMPTS):
        left = [d for d in directories if d.exists() and not (d / TOKEN_OBJECT_NAME).exists()]
        if not left:
            return
        for directory in left:
            shutil.rmtree(directory, ignore_errors=True)
        time.sleep(0.01 * attempt)
    raise SoftHsmError(
        "a deleted token's directory could not be removed: another process keeps using it"
    )


@dataclass(frozen=True)
class SoftHsmKit:
    """A private SoftHSM token directory and the operations on its tokens."""

    directory: Path
    module: str = SOFTHSM_MODULE

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory).expanduser().absolute())

    # --- the token directory -------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.directory / CONF_NAME

    @property
    def tokens_directory(self) -> Path:
        return self.directory / TOKENS_DIR_NAME

    @property
    def certificates_directory(self) -> Path:
        return self.directory / CERTIFICATES_DIR_NAME

    def prepare(self) -> Path:
        """Create the directory and its ``SOFTHSM2_CONF`` file, rewriting one that differs."""
        self.tokens_directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        configuration = (
            "# SoftHSM configuration of a CertGate token directory (certgate softhsm).\n"
            f"directories.tokendir = {self.tokens_directory}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        try:
            current = self.conf_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current != configuration:
            self.conf_path.write_text(configuration, encoding="utf-8")
        return self.conf_path

    def environ(self) -> dict[str, str]:
        """The environment other PKCS#11 tools need to see this kit's tokens."""
        return {"SOFTHSM2_CONF": str(self.prepare())}

    def subprocess_environment(self) -> dict[str, str]:
        """This process's environment with the kit's ``SOFTHSM2_CONF``, for child processes."""
        return {**os.environ, **self.environ()}

    # --- tokens ------------------------------------------------------------------------------

    def init_token(self, label: str, pin: str, so_pin: str) -> SoftHsmToken:
        """Initialise a new token in the next free slot."""
        _check_label(label)
        _check_pin(pin, "PIN")
        _check_pin(so_pin, "SO PIN")
        if any(token.label == label for token in self.list_tokens()):
            raise TokenExists(f"a token labelled {label!r} already exists in {self.directory}")
        self._run_util("--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin)
        return self.token(label)

    def delete_token(self, label: str) -> None:
        """Remove a token and its certificate files: the USB key is pulled out for good."""
        token = self.token(label)
        directories = [path for path in self.tokens_directory.iterdir() if path.is_dir()]
        try:
            self._run_util("--delete-token", "--token", label)
        except SoftHsmError:
            # softhsm2-util deletes the token's files, then its directory. A process that has
            # the token open (the signing agent looking for tokens) can create a lock file in
            # it in between, and the last step then fails with the token already gone. Finish
            # the removal in that case; a token that is still there is a real failure.
            if any(other.serial == token.serial for other in self.list_tokens()):
                raise
            _remove_emptied_token_directories(directories)
        shutil.rmtree(self.certificates_directory / token.serial, ignore_errors=True)

    def token(self, label: str, pin: str | None = None) -> SoftHsmToken:
        """The token labelled ``label``; private keys are listed only with ``pin``."""
        tokens = self.list_tokens(label=label, pin=pin)
        if len(tokens) > 1:
            serials = ", ".join(token.serial for token in tokens)
            raise TokenAmbiguous(
                f"several tokens are labelled {label!r} (serials {serials}); keep one with "
                f"SOFTHSM2_CONF={self.conf_path} {SOFTHSM_UTIL} --delete-token --serial SERIAL"
            )
        return tokens[0]

    def list_tokens(
        self, label: str | None = None, pin: str | None = None
    ) -> tuple[SoftHsmToken, ...]:
        """Initialised tokens, their certificates and keys (private keys only with ``pin``)."""
        with self._worker() as worker:
            answer = worker.call("list_tokens", label=label, pin=pin)
        return tuple(_token_from_worker(entry) for entry in answer)

    # --- certificates --------------------------------------------------------------------------

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
        key: str = "rsa2048",
        ca: str = "rsa",
        valid_days: int = 365,
        not_before: datetime | None = None,
        at: datetime | None = None,
        object_label: str | None = None,
    ) -> ProvisionedCertificate:
        """Generate a key pair on token ``label``, have the test CA certify it, store both.

        The private key is sensitive and not extractable; key pair and certificate share the
        CKA_ID (the key identifier of RFC 5280 4.2.1.2, method 1) and the CKA_LABEL
        ``object_label`` (default: ``name``). On any failure the key pair is removed again.
        """
        if key not in KEY_TYPES:
            raise InvalidTokenRequest(
                f"unknown key type {key!r}; choose one of {', '.join(KEY_TYPES)}"
            )
        object_label = object_label or name
        with self._worker() as worker:
            token_request = {"label": label, "pin": pin}
            generated = worker.call(
                "generate_key_pair", **token_request, key=key, object_label=object_label
            )
            object_id: str = generated["object_id"]
            try:
                public_key = public_key_from_token(key, generated["public_key"])
                cert_id = x509.SubjectKeyIdentifier.from_public_key(public_key).digest
                worker.call(
                    "assign_id", **token_request, object_id=object_id, cert_id=cert_id.hex()
                )
                object_id = cert_id.hex()
                issued = _issue_with_pki(
                    pki,
                    kind=kind,
                    name=name,
                    id_number=id_number,
                    uscc=uscc,
                    key=key,
                    ca=ca,
                    valid_days=valid_days,
                    not_before=not_before,
                    public_key=public_key,
                    at=at,
                )
                certificate: x509.Certificate = issued.certificate
                worker.call(
                    "store_certificate",
                    **token_request,
                    certificate=certificate_object(certificate, cert_id, object_label),
                )
            except BaseException:
                worker.discard(token_request, object_id)
                raise
        chain = tuple(issued.chain)
        cert_path, chain_path = self._write_certificate_files(
            generated["token_serial"], cert_id.hex(), certificate, chain
        )
        return ProvisionedCertificate(
            token_label=label,
            cert_id=cert_id,
            label=object_label,
            key=key,
            certificate=certificate,
            chain=chain,
            cert_path=cert_path,
            chain_path=chain_path,
        )

    def _write_certificate_files(
        self,
        token_serial: str,
        cert_id_hex: str,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate],
    ) -> tuple[Path, Path]:
        folder = self.certificates_directory / token_serial
        folder.mkdir(parents=True, exist_ok=True)
        cert_path = folder / f"{cert_id_hex}.pem"
        chain_path = folder / f"{cert_id_hex}-chain.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        chain_path.write_bytes(
            b"".join(issuer.public_bytes(serialization.Encoding.PEM) for issuer in chain)
        )
        return cert_path, chain_path

    def certificate_path(self, token: SoftHsmToken, cert_id: bytes) -> Path:
        """Where ``issue`` wrote the PEM of a certificate on ``token``."""
        return self.certificates_directory / token.serial / f"{cert_id.hex()}.pem"

    # --- processes ---------------------------------------------------------------------------

    def _require_module(self) -> None:
        if not Path(self.module).is_file():
            raise SoftHsmNotInstalled(
                f"SoftHSM is not installed: PKCS#11 module {self.module} not found "
                "(install the softhsm2 package)"
            )

    def _run_util(self, *arguments: str) -> str:
        self._require_module()
        util = shutil.which(SOFTHSM_UTIL)
        if util is None:
            raise SoftHsmNotInstalled(
                f"SoftHSM is not installed: {SOFTHSM_UTIL} not found on PATH "
                "(install the softhsm2 package)"
            )
        completed = subprocess.run(
            [util, "--module", self.module, *arguments],
            env=self.subprocess_environment(),
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0:
            output = (completed.stderr or completed.stdout).strip().splitlines()
            reason = output[-1] if output else f"exit status {completed.returncode}"
            raise SoftHsmError(f"{SOFTHSM_UTIL} failed: {reason}")
        return completed.stdout

    def _worker(self) -> TokenWorker:
        self._require_module()
        return TokenWorker(self)


class TokenWorker:
    """One ``softhsm.token_worker`` child process running with the kit's ``SOFTHSM2_CONF``.

    A child sees the tokens that existed when it started (SoftHSM builds its slot list at
    ``C_Initialize``): start a new one after ``init_token`` or ``delete_token``.
    """

    def __init__(self, kit: SoftHsmKit) -> None:
        self._kit = kit
        self._stderr_text: str | None = None
        self._process = subprocess.Popen(
            [sys.executable, "-m", "softhsm.token_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=kit.subprocess_environment(),
            text=True,
            encoding="utf-8",
        )

    def __enter__(self) -> TokenWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, operation: str, **arguments: Any) -> Any:
        """Run one operation; its refusal is raised as the matching ``SoftHsmError``."""
        request = {
            **arguments,
            "operation": operation,
            "module": self._kit.module,
            "token_directory": str(self._kit.tokens_directory),
        }
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except OSError:
            line = ""
        if not line:
            raise SoftHsmError(f"PKCS#11 operation {operation} failed: {self._failure_reason()}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise ERRORS_BY_KIND.get(answer["error"], SoftHsmError)(answer["message"])
        return answer["result"]

    def discard(self, token_request: Mapping[str, Any], object_id: str) -> None:
        """Best-effort removal of the objects under ``object_id`` after a failed issue."""
        try:
            self.call("delete_objects", **token_request, object_id=object_id)
        except SoftHsmError:
            pass  # the original failure is the one to report

    def _failure_reason(self) -> str:
        lines = self.close().strip().splitlines()
        return lines[-1] if lines else f"exit status {self._process.returncode}"

    def close(self) -> str:
        """End the child (end of input) and answer what it wrote to stderr."""
        if self._stderr_text is None:
            try:
                _, stderr = self._process.communicate(timeout=WORKER_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                _, stderr = self._process.communicate()
            self._stderr_text = stderr or ""
        return self._stderr_text


def public_key_from_token(key: str, attributes: Mapping[str, str]) -> CertificatePublicKeyTypes:
    """The public key of a key pair the worker generated, from its PKCS#11 attributes."""
    if key == "rsa2048":
        return rsa.RSAPublicNumbers(
            int(attributes["public_exponent"], 16), int(attributes["modulus"], 16)
        ).public_key()
    point = bytes.fromhex(attributes["ec_point"])
    if key == "p256":
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    return ed25519.Ed25519PublicKey.from_public_bytes(point)


def certificate_object(certificate: x509.Certificate, cert_id: bytes, label: str) -> dict[str, str]:
    """The fields of a CKO_CERTIFICATE object (CKC_X_509), binary ones in hex."""
    return {
        "label": label,
        "cert_id": cert_id.hex(),
        "value": certificate.public_bytes(serialization.Encoding.DER).hex(),
        "subject": certificate.subject.public_bytes().hex(),
        "issuer": certificate.issuer.public_bytes().hex(),
        "serial_number": der_integer(certificate.serial_number).hex(),
    }


def der_integer(value: int) -> bytes:
    """DER INTEGER, as CKA_SERIAL_NUMBER holds a certificate's serial number."""
    content = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    if len(content) < 0x80:
        return bytes([0x02, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([0x02, 0x80 | len(size)]) + size + content


def _issue_with_pki(pki: TestPki, **identity: Any) -> Any:
    try:
        return pki.issue(**identity)
    except PkiError as error:
        raise PkiRefused(_one_line(str(error))) from error


def open_pki(directory: Path) -> TestPki:
    """``TestPki.open`` with its failure turned into ``PkiRefused``."""
    try:
        return TestPki.open(Path(directory))
    except PkiError as error:
        raise PkiRefused(_one_line(str(error)) or f"no test PKI in {directory}") from error


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_label(label: str) -> None:
    if not label.strip():
        raise InvalidTokenRequest("a token label must not be empty")
    if label != label.strip():
        raise InvalidTokenRequest(f"token label {label!r} starts or ends with a space")
    if len(label.encode("utf-8")) > TOKEN_LABEL_MAX_BYTES:
        raise InvalidTokenRequest(
            f"token label {label!r} is longer than {TOKEN_LABEL_MAX_BYTES} bytes (UTF-8)"
        )


def _check_pin(pin: str, name: str) -> None:
    if len(pin) not in PIN_LENGTHS:
        raise InvalidTokenRequest(
            f"the {name} must have {PIN_LENGTHS.start} to {PIN_LENGTHS.stop - 1} characters"
        )


def _token_from_worker(entry: Mapping[str, Any]) -> SoftHsmToken:
    certificates = [
        TokenCertificate(
            cert_id=bytes.fromhex(item["cert_id"]),
            label=item["label"],
            certificate=x509.load_der_x509_certificate(bytes.fromhex(item["value"])),
        )
        for item in entry["certificates"]
    ]
    keys = [
        TokenKey(
            cert_id=bytes.fromhex(item["cert_id"]),
            label=item["label"],
            key_class=item["key_class"],
            key_type=item["key_type"],
            sensitive=item["sensitive"],
            extractable=item["extractable"],
        )
        for item in entry["keys"]
    ]
    return SoftHsmToken(
        label=entry["label"],
        serial=entry["serial"],
        slot_id=int(entry["slot_id"]),
        model=entry["model"],
        manufacturer_id=entry["manufacturer_id"],
        logged_in=bool(entry["logged_in"]),
        certificates=tuple(sorted(certificates, key=lambda item: (item.label, item.cert_id))),
        keys=tuple(sorted(keys, key=lambda item: (item.label, item.cert_id, item.key_class))),
    )
