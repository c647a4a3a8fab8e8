"""`contactpoint clients`, `contactpoint keys` and `contactpoint oidc`.

Registered from idp/cli.py by import, like the other command groups.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from idp.cli import REASON, _container, _unit, cli_errors, main, operator
from idp.keys.cli import keys
from idp.oidc.clients import AUTH_METHODS, GRANT_TYPES, SCOPES, Registration
from idp.oidc.logout import BackChannel
from idp.oidc.models import ClientKind


@main.group()
def clients() -> None:
    """Relying applications (OpenID Connect clients)."""


@clients.command("add")
@click.option("--org", "org_code", required=True, help="The organisation that owns it.")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True)
@click.option("--backchannel-logout-uri")
@click.option("--auth-method", type=click.Choice(AUTH_METHODS), default="client_secret_basic",
              show_default=True)
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The application's public keys (for private_key_jwt).")
@click.option("--jwks-uri")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
              default=("openid", "profile"), show_default=True)
@click.option("--grant-type", "grant_types", multiple=True, type=click.Choice(GRANT_TYPES),
              default=("authorization_code", "refresh_token"), show_default=True)
@click.option("--dpop-required", is_flag=True)
@click.option("--par-required", is_flag=True)
@click.option("--pairwise", is_flag=True, help="A pairwise `sub` (OIDC Core section 8).")
@click.option("--sector-identifier")
@click.option("--id-token-alg", type=click.Choice(["ES256", "RS256"]), default="ES256",
              show_default=True)
@click.option("--resource-server", "resource_uri",
              help="Register a resource server answering to this audience URI instead.")
@REASON
@cli_errors
def clients_add(org_code: str, name: str, redirect_uris: tuple[str, ...],
                post_logout: tuple[str, ...], backchannel_logout_uri: str | None,
                auth_method: str, jwks_file: Path | None, jwks_uri: str | None,
                scopes: tuple[str, ...], grant_types: tuple[str, ...], dpop_required: bool,
                par_required: bool, pairwise: bool, sector_identifier: str | None,
                id_token_alg: str, resource_uri: str | None, reason: str) -> None:
    """Register an application (pending until approved); prints its secret once."""
    try:
        jwks = json.loads(jwks_file.read_text()) if jwks_file else None
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{jwks_file}: not JSON: {exc}") from None
    with _unit(_container()) as unit:
        org = unit.directory.organisation_by_code(org_code)
        registration = Registration(
            organisation_id=org.id, name=name, redirect_uris=list(redirect_uris),
            post_logout_redirect_uris=list(post_logout),
            backchannel_logout_uri=backchannel_logout_uri, auth_method=auth_method, jwks=jwks,
            jwks_uri=jwks_uri, scopes=list(scopes),
            grant_types=[] if resource_uri else list(grant_types),
            dpop_required=dpop_required, par_required=par_required,
            subject_type="pairwise" if pairwise else "public",
            sector_identifier=sector_identifier, id_token_alg=id_token_alg,
            kind=ClientKind.RESOURCE_SERVER if resource_uri else ClientKind.APPLICATION,
            resource_uri=resource_uri,
        )
        client, secret = unit.clients.register(operator(), registration, reason)
        unit.commit()
        click.echo(f"client_id: {client.client_id} (pending approval)")
        if secret:
            click.echo(f"client_secret: {secret}")
            click.echo("The secret is shown once. Store it in the application's secret store.")


@clients.command("list")
@cli_errors
def clients_list() -> None:
    with _unit(_container()) as unit:
        for client in unit.clients.visible_to(operator()):
            flags = [client.status.value, client.auth_method, client.kind.value]
            if client.first_party:
                flags.append("first-party")
            if client.dpop_required:
                flags.append("dpop")
            if client.par_required:
                flags.append("par")
            org = unit.directory.organisation(client.organisation_id)
            click.echo(f"{client.client_id}\t{org.code}\t{client.name}\t{', '.join(flags)}")


@clients.command("approve")
@click.argument("client_id")
@REASON
@click.option("--first-party", is_flag=True, help="Skip the consent page for it.")
@cli_errors
def clients_approve(client_id: str, reason: str, first_party: bool) -> None:
    with _unit(_container()) as unit:
        client = unit.clients.approve(operator(), client_id, reason)
        if first_party:
            unit.clients.set_first_party(operator(), client_id, True, reason)
        unit.commit()
        click.echo(f"approved {client.client_id} ({client.name})")


@clients.command("rotate-secret")
@click.argument("client_id")
@REASON
@cli_errors
def clients_rotate_secret(client_id: str, reason: str) -> None:
    """A new secret; the old one stops working at once."""
    with _unit(_container()) as unit:
        secret = unit.clients.rotate_secret(operator(), client_id, reason)
        unit.commit()
        click.echo(f"client_secret: {secret}")


@clients.command("suspend")
@click.argument("client_id")
@REASON
@cli_errors
def clients_suspend(client_id: str, reason: str) -> None:
    with _unit(_container()) as unit:
        unit.clients.suspend(operator(), client_id, reason)
        unit.commit()
        click.echo(f"suspended {client_id}")


# `contactpoint keys` already holds people's security keys (idp/keys/cli.py); the
# provider's signing keys join the same group as `keys rotate` and `keys signing`.


@keys.command("signing")
@cli_errors
def keys_signing() -> None:
    """The provider's signing keys: current, next (published ahead) and retired."""
    with _unit(_container()) as unit:
        unit.key_rotation.ensure()
        unit.commit()
        for key in unit.key_rotation.all_keys():
            until = f" until {key.retain_until:%Y-%m-%d %H:%M}" if key.retain_until else ""
            click.echo(f"{key.kid}\t{key.alg}\t{key.state}{until}")


@keys.command("rotate")
@cli_errors
def keys_rotate() -> None:
    """Rotate the provider's signing keys: sign with the published next keys,
    publish new next keys, keep the old ones until what they signed expires."""
    with _unit(_container()) as unit:
        promoted = unit.key_rotation.rotate()
        unit.commit()
    for kid in promoted:
        click.echo(f"now signing with {kid}")


@main.group()
def oidc() -> None:
    """The OpenID Connect provider's housekeeping."""


@oidc.command("logouts")
@cli_errors
def oidc_logouts() -> None:
    """End the grants of ended sessions and (re)send back-channel logouts (cron)."""
    container = _container()
    ended, sent, failed = BackChannel(container, container.oidc_keys).run()
    click.echo(f"grants ended {ended}; logouts sent {sent}; failed {failed}")
