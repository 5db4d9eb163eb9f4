"""How strongly a login proves who signed in: ``amr`` (RFC 8176) and ``acr`` (DESIGN.md
"Assurance").

One table decides both from the login route and, for certificates, from the trust anchor the
chain ended at. A key counts as hardware-held only when that anchor is configured
``hardware_keys = true`` (the operator's statement that the CA issues keys on tokens only): the
gateway sees a signature, never where the key lives, and a PKCS#11 module may be software
(SoftHSM), so by default a certificate login claims a software key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from certs.policy import TrustAnchor
from gateway.trust import GatewayTrustAnchor

LOA_PASSWORD = "urn:certgate:loa:1"
LOA_SMS = "urn:certgate:loa:2"
LOA_CERTIFICATE = "urn:certgate:loa:3"
LOA_HARDWARE_KEY = "urn:certgate:loa:4"
# Lowest to highest; a session's level is compared by its place here.
LEVELS = (LOA_PASSWORD, LOA_SMS, LOA_CERTIFICATE, LOA_HARDWARE_KEY)


@dataclass(frozen=True)
class Assurance:
    amr: tuple[str, ...]
    acr: str


PASSWORD = Assurance(("pwd",), LOA_PASSWORD)

# (login route, key known to be on hardware) -> assurance. The challenge route is signed by the
# signing agent after the token checked the PIN; a TLS handshake at the proxy shows no PIN, so a
# hardware key there adds "hwk" but not the PIN-backed level 4.
_CERTIFICATE: Mapping[tuple[str, bool], Assurance] = {
    ("token", True): Assurance(("hwk", "pin", "mfa"), LOA_HARDWARE_KEY),
    ("token", False): Assurance(("swk", "pin"), LOA_CERTIFICATE),
    ("tls", True): Assurance(("x509", "hwk"), LOA_CERTIFICATE),
    ("tls", False): Assurance(("x509",), LOA_CERTIFICATE),
}


def anchor_issues_hardware_keys(anchor: TrustAnchor) -> bool:
    """Whether the operator configured ``hardware_keys = true`` for this anchor."""
    return isinstance(anchor, GatewayTrustAnchor) and anchor.hardware_keys


def certificate_assurance(route: str, anchor: TrustAnchor) -> Assurance:
    """``route`` is "token" (challenge signed through the agent) or "tls" (reverse proxy)."""
    return _CERTIFICATE[route, anchor_issues_hardware_keys(anchor)]
