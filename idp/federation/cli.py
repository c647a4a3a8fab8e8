"""`contactpoint federation`: organisations' own identity providers.

Registered from idp/cli.py by import, like the other command groups.
"""

from __future__ import annotations

from pathlib import Path

import click

from idp.cli import REASON, _container, _unit, cli_errors, main, operator
from idp.federation.service import NewProvider


@main.group()
def federation() -> None:
    """Organisations' own OpenID Connect providers (the first sign-in factor)."""


def _read(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise click.ClickException(f"{path}: cannot read the {what}: {error}") from None
    if not text:
        raise click.ClickException(f"{path}: the {what} file is empty")
    return text


@federation.command("add")
@click.argument("org_code")
@click.option("--issuer", required=True, help="The provider's issuer URL (https).")
@click.option("--client-id", required=True, help="This service's client id at the provider.")
@click.option("--client-secret-file", type=click.Path(dir_okay=False, path_type=Path),
              help="A file holding the client secret (client_secret_basic).")
@click.option("--private-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="A PEM private key (private_key_jwt).")
@click.option("--username-claim", required=True,
              help="The ID token claim with the person's username or email.")
@click.option("--accept-acr", "accept_acr", multiple=True,
              help="An upstream acr accepted as level 2: token and PIN are then skipped.")
@REASON
@cli_errors
def federation_add(org_code: str, issuer: str, client_id: str,
                   client_secret_file: Path | None, private_key_file: Path | None,
                   username_claim: str, accept_acr: tuple[str, ...], reason: str) -> None:
    """Register ORG_CODE's provider; the secret or key is stored encrypted."""
    if (client_secret_file is None) == (private_key_file is None):
        raise click.ClickException("give one of --client-secret-file or --private-key-file")
    secret = _read(client_secret_file, "client secret") if client_secret_file else None
    key = _read(private_key_file, "private key") if private_key_file else None
    with _unit(_container()) as unit:
        org = unit.directory.organisation_by_code(org_code)
        provider = unit.federation.add(operator(), NewProvider(
            organisation_id=org.id, issuer=issuer, client_id=client_id,
            username_claim=username_claim, accepted_acr=accept_acr,
            client_secret=secret, private_key_pem=key,
        ), reason)
        unit.commit()
        click.echo(f"{org.code}: provider {provider.issuer} added ({provider.auth_method})")
        click.echo(f"Register this redirect URI at the provider: {unit.federation.redirect_uri}")


@federation.command("list")
@cli_errors
def federation_list() -> None:
    """Every organisation's provider."""
    with _unit(_container()) as unit:
        providers = unit.federation.providers()
        if not providers:
            click.echo("no providers")
        for provider, org in providers:
            accepted = ", ".join(provider.accepted_acr) or "none (token and PIN always asked)"
            click.echo(f"{org.code}\t{provider.issuer}\tclient {provider.client_id}\t"
                       f"{provider.auth_method}\tusername claim {provider.username_claim}\t"
                       f"accepted acr: {accepted}")


@federation.command("test")
@click.argument("org_code")
@cli_errors
def federation_test(org_code: str) -> None:
    """Fetch the provider's discovery document and keys now."""
    with _unit(_container()) as unit:
        org = unit.directory.organisation_by_code(org_code)
        report = unit.federation.test(org.id)
        click.echo(f"discovery: ok ({report.discovery.issuer})")
        click.echo(f"authorization endpoint: {report.discovery.authorization_endpoint}")
        click.echo(f"token endpoint: {report.discovery.token_endpoint}")
        click.echo(f"jwks: ok ({len(report.key_ids)} keys: {', '.join(report.key_ids)})")


@federation.command("accept-acr")
@click.argument("org_code")
@click.argument("values", nargs=-1)
@REASON
@cli_errors
def federation_accept_acr(org_code: str, values: tuple[str, ...], reason: str) -> None:
    """Set the upstream acr values that meet level 2 (none: always token and PIN)."""
    with _unit(_container()) as unit:
        org = unit.directory.organisation_by_code(org_code)
        provider = unit.federation.set_accepted_acr(operator(), org.id, list(values), reason)
        unit.commit()
        accepted = ", ".join(provider.accepted_acr) or "none (token and PIN always asked)"
        click.echo(f"{org.code}: accepted acr: {accepted}")


@federation.command("remove")
@click.argument("org_code")
@REASON
@cli_errors
def federation_remove(org_code: str, reason: str) -> None:
    """Remove ORG_CODE's provider and every link to it."""
    with _unit(_container()) as unit:
        org = unit.directory.organisation_by_code(org_code)
        links = unit.federation.remove(operator(), org.id, reason)
        unit.commit()
        click.echo(f"{org.code}: provider removed, with {links} linked accounts")
