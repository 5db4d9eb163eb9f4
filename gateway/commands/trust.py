"""`certgate trust`: trust anchors with their revocation policy and mapping rule.

Changes take effect when the gateway next starts (anchors are parsed once, at start-up).
"""

from __future__ import annotations

import json
from typing import Any

import click

from certs.policy import RevocationMode
from gateway.commands.common import OperatorInputError, audit_operator, now, operator_app


@click.group()
def trust() -> None:
    """Trust anchors (root or intermediate CA certificates) and their policies."""


@trust.command("add")
@click.argument("certificate", type=click.Path(dir_okay=False))
@click.option("--name", help="Operator-facing name (default: the certificate's subject).")
@click.option(
    "--revocation",
    type=click.Choice([m.value for m in RevocationMode]),
    default=RevocationMode.HARD_FAIL.value,
    show_default=True,
    help="What to do when revocation status cannot be established.",
)
@click.option("--crl", "crls", multiple=True, help="CRL file or http(s) URL (repeatable).")
@click.option("--ocsp", help="OCSP responder URL overriding the certificates' AIA.")
@click.option(
    "--intermediate",
    "intermediates",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="CA certificate below the anchor, used to complete chains (repeatable).",
)
@click.option(
    "--lookup",
    "lookups",
    multiple=True,
    help="Mapping lookup '<person|enterprise>: <identity field>' (repeatable, in order; "
    "default: 'enterprise: unified_social_credit_code', 'person: id_card_number').",
)
@click.option(
    "--cn-pattern",
    "cn_patterns",
    multiple=True,
    help="CN pattern preset or regex carrying identifiers (e.g. cfca-person).",
)
@click.option("--subject-serial-number", help="What the subject serialNumber holds.")
@click.option(
    "--no-explicit-bindings",
    is_flag=True,
    help="Ignore thumbprint and issuer+serial bindings for this issuer.",
)
@click.option(
    "--hardware-keys",
    is_flag=True,
    help="This CA issues keys on hardware tokens only: its certificates' logins claim a "
    "hardware key (amr hwk, acr urn:certgate:loa:4). Off by default.",
)
def add(
    certificate: str,
    name: str | None,
    revocation: str,
    crls: tuple[str, ...],
    ocsp: str | None,
    intermediates: tuple[str, ...],
    lookups: tuple[str, ...],
    cn_patterns: tuple[str, ...],
    subject_serial_number: str | None,
    no_explicit_bindings: bool,
    hardware_keys: bool,
) -> None:
    """Trust CERTIFICATE (PEM or DER) as an anchor."""
    from gateway.trust import TrustInputError, get_trust_store

    try:
        with open(certificate, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise OperatorInputError(
            f"certificate: cannot read {certificate!r} ({exc.strerror})"
        ) from None
    below = []
    for location in intermediates:
        try:
            with open(location, "rb") as handle:
                below.append(handle.read())
        except OSError as exc:
            raise OperatorInputError(
                f"intermediate: cannot read {location!r} ({exc.strerror})"
            ) from None
    mapping: dict[str, Any] | None = None
    if lookups or cn_patterns or subject_serial_number or no_explicit_bindings:
        mapping = {"lookups": list(lookups)}
        if cn_patterns:
            mapping["cn_patterns"] = list(cn_patterns)
        if subject_serial_number:
            mapping["subject_serial_number"] = subject_serial_number
        if no_explicit_bindings:
            mapping["explicit_bindings"] = False
    app = operator_app()
    try:
        listing = get_trust_store(app).add(
            certificate_pem=data,
            name=name,
            revocation=revocation,
            crl=crls,
            ocsp=ocsp,
            mapping=mapping,
            at=now(app),
            intermediates=below,
            hardware_keys=hardware_keys,
        )
    except TrustInputError as exc:
        raise OperatorInputError(str(exc)) from None
    audit_operator(
        app,
        "trust_anchor_added",
        thumbprint=listing.thumbprint,
        detail=f"{listing.name}; revocation {listing.revocation}; "
        f"hardware keys {'yes' if listing.hardware_keys else 'no'}",
    )
    click.echo(
        f"trusted {listing.name!r} sha256={listing.thumbprint} "
        f"revocation={listing.revocation} hardware_keys={str(listing.hardware_keys).lower()} "
        "(restart the gateway to apply)"
    )


def _text(value: Any) -> str:
    """A listed value as text; true/false as certgate.toml spells them."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@trust.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_anchors(as_json: bool) -> None:
    """Trust anchors from the database and from certgate.toml."""
    from gateway.trust import get_trust_store

    app = operator_app()
    listings = get_trust_store(app).listings()
    for listing in listings:
        fields = {
            "name": listing.name,
            "sha256": listing.thumbprint,
            "subject": listing.subject,
            "revocation": listing.revocation,
            "crl": list(listing.crl),
            "ocsp": listing.ocsp,
            "mapping": listing.mapping,
            "intermediates": list(listing.intermediates),
            "hardware_keys": listing.hardware_keys,
            "source": listing.source,
        }
        if as_json:
            click.echo(json.dumps(fields, ensure_ascii=False))
        else:
            click.echo(
                "  ".join(f"{k}={_text(v)}" for k, v in fields.items() if v not in (None, []))
            )
    for n, entry in enumerate(app.config["TRUST_ANCHORS"]):
        fields = {
            "name": entry.get("name"),
            "certificate": entry.get("certificate"),
            "revocation": entry.get("revocation", "hard-fail"),
            "hardware_keys": entry.get("hardware_keys", False),
            "source": f"{app.config.get('CONFIG_FILE')}: trust.anchors[{n}]",
        }
        click.echo(
            json.dumps(fields, ensure_ascii=False)
            if as_json
            else "  ".join(f"{k}={_text(v)}" for k, v in fields.items() if v is not None)
        )


@trust.command("remove")
@click.argument("anchor")
def remove(anchor: str) -> None:
    """Stop trusting ANCHOR (its name or SHA-256 thumbprint)."""
    from gateway.trust import TrustInputError, get_trust_store

    app = operator_app()
    try:
        listing = get_trust_store(app).remove(anchor)
    except TrustInputError as exc:
        raise OperatorInputError(str(exc)) from None
    audit_operator(app, "trust_anchor_removed", thumbprint=listing.thumbprint, detail=listing.name)
    click.echo(f"removed {listing.name!r} (restart the gateway to apply)")
