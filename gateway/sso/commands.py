"""Operator commands of single sign-on: ``certgate client add|list|remove`` and
``certgate keys rotate`` (DESIGN.md "Single sign-on")."""

from __future__ import annotations

import json

import click

from gateway.commands.common import OperatorInputError, audit_operator, now, operator_app


@click.group()
def client() -> None:
    """Applications that sign people in through the gateway (OpenID Connect, CAS)."""


@client.command("add")
@click.argument("name")
@click.option("--protocol", type=click.Choice(["oidc", "cas"]), required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="OIDC; exact match")
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--backchannel-logout-uri")
@click.option("--public", is_flag=True, help="OIDC client without a secret (PKCE S256 required)")
@click.option("--consent", type=click.Choice(["ask", "skip"]), default="ask", show_default=True)
@click.option("--service", "services", multiple=True, help="CAS: a service URL prefix")
@click.option("--json", "as_json", is_flag=True)
def add(
    name: str,
    protocol: str,
    redirect_uris: tuple[str, ...],
    post_logout_redirect_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    public: bool,
    consent: str,
    services: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a client; prints its client_id (and the secret, shown only this once)."""
    from gateway.sso.clients import ClientInputError, get_clients

    app = operator_app()
    try:
        made = get_clients(app).add(
            name,
            protocol=protocol,
            at=now(app),
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout_redirect_uris,
            backchannel_logout_uri=backchannel_logout_uri,
            public=public,
            consent=consent,
            services=services,
        )
    except ClientInputError as exc:
        raise OperatorInputError(str(exc)) from None
    audit_operator(app, "sso_client_added", detail=f"client {made.client.client_id} ({protocol})")
    answer: dict[str, str] = {"client_id": made.client.client_id}
    if made.client_secret is not None:
        answer["client_secret"] = made.client_secret
    if as_json:
        click.echo(json.dumps(answer))
        return
    click.echo(f"client_id: {answer['client_id']}")
    if "client_secret" in answer:
        click.echo(f"client_secret: {answer['client_secret']}  (shown once; keep it secret)")


@client.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def list_clients(as_json: bool) -> None:
    """The registered clients."""
    from gateway.sso.clients import get_clients

    app = operator_app()
    for registered in get_clients(app).list():
        data = registered.to_json()
        if as_json:
            click.echo(json.dumps(data, ensure_ascii=False))
            continue
        where = registered.redirect_uris or registered.cas_service_prefixes
        click.echo(
            f"{registered.client_id}  {registered.protocol}  {registered.name}  " + " ".join(where)
        )


@client.command("remove")
@click.argument("client_id")
def remove(client_id: str) -> None:
    """Remove a client with its codes, tokens, consents and tickets."""
    from gateway.sso.clients import get_clients

    app = operator_app()
    if not get_clients(app).remove(client_id):
        raise OperatorInputError(f"CLIENT_ID: no client {client_id!r}")
    audit_operator(app, "sso_client_removed", detail=f"client {client_id}")
    click.echo(f"removed {client_id}")


@click.group()
def keys() -> None:
    """The identity provider's signing keys."""


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True)
def rotate(as_json: bool) -> None:
    """New active RS256 and ES256 keys; the old ones stay published until their tokens
    have expired."""
    from gateway.sso.keys import get_keys

    app = operator_app()
    rotated = get_keys(app).rotate(now(app))
    audit_operator(
        app,
        "sso_keys_rotated",
        detail=f"new {', '.join(rotated.new)}; retired {', '.join(rotated.retired) or 'none'}",
    )
    answer = {
        "new": list(rotated.new),
        "retired": list(rotated.retired),
        "retired_published_until": rotated.not_after.isoformat().replace("+00:00", "Z"),
    }
    if as_json:
        click.echo(json.dumps(answer))
    else:
        click.echo(f"new keys: {', '.join(rotated.new)}")
        click.echo(
            f"retired keys, published until {answer['retired_published_until']}: "
            + (", ".join(rotated.retired) or "none")
        )
