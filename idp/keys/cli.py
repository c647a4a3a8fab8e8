"""`contactpoint policy`: which authenticators an organisation's people may use.

Kept beside the security-key pages rather than in idp/cli.py, which only
imports this module so that the group is registered.
"""

from __future__ import annotations

import click

from idp.cli import REASON, _container, _unit, cli_errors, main, operator
from tokens.policy import ATTESTATIONS, USER_VERIFICATIONS, EffectivePolicy, Factor, PolicyService


def _show(code: str, policy: EffectivePolicy) -> None:
    allowed = ", ".join(f.value for f in Factor if policy.allows(f)) or "nothing"
    click.echo(f"{code}: allowed {allowed}; attestation {policy.attestation}; "
               f"user verification {policy.user_verification}")


@main.group()
def policy() -> None:
    """Organisations' authenticator policies."""


@policy.command("show")
@click.option("--org", "org_code", required=True, help="Organisation code.")
@cli_errors
def policy_show(org_code: str) -> None:
    """The organisation's policy (the default when none was set)."""
    with _unit(_container()) as unit:
        org = unit.directory.organisation_by_code(org_code)
        _show(org.code, PolicyService(unit.session, unit.audit).get(org.id))


@policy.command("set")
@click.option("--org", "org_code", required=True, help="Organisation code.")
@click.option("--soft-token/--no-soft-token", default=True, show_default=True)
@click.option("--hardware-token/--no-hardware-token", default=True, show_default=True)
@click.option("--security-key/--no-security-key", default=True, show_default=True)
@click.option("--attestation", type=click.Choice(ATTESTATIONS), default="none",
              show_default=True, help="direct: refuse keys that give no attestation.")
@click.option("--user-verification", type=click.Choice(USER_VERIFICATIONS),
              default="preferred", show_default=True)
@REASON
@cli_errors
def policy_set(
    org_code: str,
    soft_token: bool,
    hardware_token: bool,
    security_key: bool,
    attestation: str,
    user_verification: str,
    reason: str,
) -> None:
    """Set the whole policy; it applies from the next sign-in."""
    allowed = {
        Factor.SOFT_TOKEN: soft_token,
        Factor.HARDWARE_TOKEN: hardware_token,
        Factor.SECURITY_KEY: security_key,
    }
    with _unit(_container()) as unit:
        org = unit.directory.organisation_by_code(org_code)
        result = PolicyService(unit.session, unit.audit).set(
            operator(),
            org.id,
            allowed=frozenset(f for f, on in allowed.items() if on),
            attestation=attestation,
            user_verification=user_verification,
            reason=reason,
        )
        unit.commit()
        _show(org.code, result)


@main.group()
def keys() -> None:
    """People's security keys, and the provider's signing keys (rotate, signing)."""


@keys.command("list")
@click.option("--username", required=True)
@cli_errors
def keys_list(username: str) -> None:
    """A person's registered security keys."""
    with _unit(_container()) as unit:
        person = unit.directory.person_by_username(username)
        if person is None:
            raise click.ClickException(f"no person with username {username!r}")
        for key in unit.keys.keys_of(person.id):
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            click.echo(f"{key.id}\t{key.name}\tregistered {key.created_at:%Y-%m-%d}\tused {used}")


@keys.command("revoke")
@click.option("--username", required=True)
@click.option("--key-id", type=int, required=True)
@click.option("--reason", required=True, help="Why, for the audit log (lost, stolen...).")
@cli_errors
def keys_revoke(username: str, key_id: int, reason: str) -> None:
    """Remove a lost or stolen key at once and end the person's sessions."""
    with _unit(_container()) as unit:
        person = unit.directory.person_by_username(username)
        if person is None:
            raise click.ClickException(f"no person with username {username!r}")
        key = unit.keys.revoke(operator(), person, key_id, reason)
        unit.commit()
        click.echo(f"revoked key {key.id} ({key.name}) of {person.username}; sessions ended")
