"""SM2 on USB keys: the vendor mechanism a PKCS#11 module offers SM2 under, and Z_A / e.

PKCS#11 3.1 defines no SM2 mechanism, so the modules of Chinese USB keys offer SM2 under
vendor-defined mechanism numbers (``CKM_VENDOR_DEFINED`` and up), and they differ in what they
take:

- ``message``: the token computes Z_A and SM3 itself (GM/T 0009 "SM2 with SM3", the usual UKey
  behaviour); the agent passes the login message, and the signer ID as the mechanism parameter;
- ``digest``: the token signs e = SM3(Z_A || M) (a bare SM2 primitive); the agent computes e
  from the certificate's public key and the signer ID.

Either way the gateway verifies with the trust anchor's signer ID, ``1234567812345678`` unless
configured otherwise, so the agent's must match it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from cryptography.hazmat.primitives import hashes

from certs.sm2 import DEFAULT_SIGNER_ID, MAXIMUM_SIGNER_ID_BYTES

# GB/T 32918.5 recommended curve parameters that enter Z_A.
SM2_A: Final = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
SM2_B: Final = bytes.fromhex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
SM2_GX: Final = bytes.fromhex("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7")
SM2_GY: Final = bytes.fromhex("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")
# CKA_EC_PARAMS of an SM2 key: the curve's OID 1.2.156.10197.1.301, DER.
SM2_EC_PARAMS: Final = bytes.fromhex("06082a811ccf5501822d")
VENDOR_DEFINED: Final = 0x80000000
MAXIMUM_MECHANISM: Final = 0xFFFFFFFF


class Sm2Input(StrEnum):
    """What the module's SM2 mechanism signs."""

    MESSAGE = "message"  # the token computes Z_A and SM3 (SM2 with SM3)
    DIGEST = "digest"  # the token signs e = SM3(Z_A || M)


@dataclass(frozen=True)
class Sm2Mechanism:
    """How one PKCS#11 module signs SM2: its vendor mechanism number and what it takes."""

    mechanism: int
    input: Sm2Input = Sm2Input.MESSAGE
    signer_id: bytes = DEFAULT_SIGNER_ID

    def __post_init__(self) -> None:
        if not VENDOR_DEFINED <= self.mechanism <= MAXIMUM_MECHANISM:
            raise ValueError(
                f"SM2 mechanism {self.mechanism:#x}: not a vendor-defined mechanism "
                f"({VENDOR_DEFINED:#x} to {MAXIMUM_MECHANISM:#x}; PKCS#11 defines no SM2)"
            )
        if not 0 < len(self.signer_id) <= MAXIMUM_SIGNER_ID_BYTES:
            raise ValueError(f"SM2 signer ID: 1 to {MAXIMUM_SIGNER_ID_BYTES} bytes")

    @classmethod
    def parse(
        cls, mechanism: str | int, input: str = "message", signer_id: str | None = None
    ) -> Sm2Mechanism:
        """From the command line or agent.toml: ``0x80008101`` (or an integer), ``message`` or
        ``digest``, the signer ID as text. ``ValueError`` names what is wrong."""
        if isinstance(mechanism, bool):
            raise ValueError("SM2 mechanism: a number such as 0x80008101")
        if isinstance(mechanism, str):
            try:
                number = int(mechanism, 0)
            except ValueError:
                raise ValueError(
                    f"SM2 mechanism {mechanism!r}: a number such as 0x80008101"
                ) from None
        else:
            number = mechanism
        try:
            chosen_input = Sm2Input(input)
        except ValueError:
            raise ValueError(f"SM2 input {input!r}: message or digest") from None
        identifier = DEFAULT_SIGNER_ID if signer_id is None else signer_id.encode("utf-8")
        return cls(number, chosen_input, identifier)

    def describe(self) -> str:
        signer_id = self.signer_id.decode("utf-8", "replace")
        return f"{self.mechanism:#x} ({self.input}, signer ID {signer_id})"


def _sm3(*parts: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    for part in parts:
        digest.update(part)
    return digest.finalize()


def signer_digest(public_point: bytes, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GB/T 32918.2 §5.5)."""
    if len(public_point) != 65 or public_point[0] != 4:
        raise ValueError("an SM2 public key is an uncompressed point of 65 bytes")
    entl = (len(signer_id) * 8).to_bytes(2, "big")
    return _sm3(entl, signer_id, SM2_A, SM2_B, SM2_GX, SM2_GY, public_point[1:])


def message_digest(
    public_point: bytes, message: bytes, signer_id: bytes = DEFAULT_SIGNER_ID
) -> bytes:
    """e = SM3(Z_A || M): what a module that does not hash signs."""
    return _sm3(signer_digest(public_point, signer_id), message)


__all__ = [
    "SM2_EC_PARAMS",
    "Sm2Input",
    "Sm2Mechanism",
    "message_digest",
    "signer_digest",
]
