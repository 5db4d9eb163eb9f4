"""Revocation: the engine's own layer over path validation (CRLs and OCSP)."""

from certs.revocation.status import RevocationState, RevocationStatus

__all__ = ["RevocationState", "RevocationStatus"]
