"""`contactpoint policy` and `contactpoint keys`: an operator sets an
organisation's authenticator policy, which sign-in follows from the next
attempt, and revokes a person's lost security key."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.errors import NotAllowed
from directory.models import Role
from idp.container import Container
from tests.factories import World, sign_in
from tests.idp.test_cli import Cli, _one_line_error
from tests.idp.test_cli import cli as cli  # the fixture, shared
from tests.tokens.soft_authenticator import SoftAuthenticator
from tests.tokens.test_webauthn import register
from tokens.attempts import Client
from tokens.errors import SignInFailed
from tokens.policy import Factor, PolicyService


def test_an_operator_sets_and_shows_a_policy_and_sign_in_follows_it(
    cli: Cli, world: World, container: Container
) -> None:
    org = world.organisation()
    member = world.member(org)
    shown = cli("policy", "show", "--org", org.code)
    assert shown.exit_code == 0
    assert shown.output.strip() == (
        f"{org.code}: allowed soft_token, hardware_token, security_key; "
        "attestation none; user verification preferred"
    )
    bare = ("policy", "set", "--org", org.code, "--no-soft-token",
            "--attestation", "direct", "--user-verification", "required")
    _one_line_error(cli(*bare), "reason: Enter the reason")
    assert "soft_token" in cli("policy", "show", "--org", org.code).output
    changed = cli(*bare, "--reason", "phishing seen nearby")
    assert changed.exit_code == 0, changed.output
    assert changed.output.strip() == (
        f"{org.code}: allowed hardware_token, security_key; "
        "attestation direct; user verification required"
    )
    with pytest.raises(SignInFailed):
        sign_in(container, member, Client("192.0.2.77"))
    with container.unit() as unit:
        entry = unit.session.scalar(
            select(AuditEntry).where(AuditEntry.tag == "policy:authenticators:changed")
        )
        assert entry is not None
        assert entry.detail["before"]["allowed"] == [
            "hardware_token", "security_key", "soft_token"
        ]
        assert entry.detail["after"]["allowed"] == ["hardware_token", "security_key"]
        assert entry.detail["reason"] == "phishing seen nearby"


def test_a_policy_that_allows_nothing_is_refused(cli: Cli, world: World) -> None:
    org = world.organisation()
    result = cli("policy", "set", "--org", org.code, "--no-soft-token",
                 "--no-hardware-token", "--no-security-key", "--reason", "testing")
    _one_line_error(result, "allow at least one authenticator")
    _one_line_error(cli("policy", "show", "--org", "NO-SUCH-ORG"))


def test_only_admins_of_the_organisation_set_its_policy(
    world: World, container: Container
) -> None:
    org = world.organisation()
    other = world.organisation("Southshire Council")
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    practitioner = world.member(org)
    with container.unit() as unit:
        service = PolicyService(unit.session, unit.audit)
        keys_only = {"allowed": frozenset({Factor.SECURITY_KEY}), "attestation": "none",
                     "user_verification": "preferred"}
        with pytest.raises(NotAllowed):
            service.set(world.principal(practitioner), org.id, **keys_only)  # type: ignore[arg-type]
        with pytest.raises(NotAllowed):
            service.set(world.principal(admin), other.id, **keys_only)  # type: ignore[arg-type]
        assert service.set(world.principal(admin), org.id, **keys_only).allowed == {  # type: ignore[arg-type]
            Factor.SECURITY_KEY
        }


def test_an_operator_lists_and_revokes_a_lost_key_and_the_persons_sessions_end(
    cli: Cli, world: World, container: Container
) -> None:
    org = world.organisation()
    member = world.member(org)
    key = SoftAuthenticator()
    saved = register(container, member, key, name="Lost key")
    signed = sign_in(container, member, Client("192.0.2.78"))
    listed = cli("keys", "list", "--username", member.username)
    assert listed.exit_code == 0 and f"{saved.id}\tLost key\t" in listed.output
    revoked = cli("keys", "revoke", "--username", member.username, "--key-id", str(saved.id),
                  "--reason", "lost on the train")
    assert revoked.exit_code == 0, revoked.output
    with container.unit() as unit:
        assert unit.keys.keys_of(member.person.id) == []
        assert unit.sessions.resume(signed.token) is None
        entry = unit.session.scalar(select(AuditEntry).where(AuditEntry.tag == "key:revoked"))
        assert entry is not None and entry.detail["reason"] == "lost on the train"
    _one_line_error(cli("keys", "revoke", "--username", member.username, "--key-id",
                        str(saved.id), "--reason", "again"), "not found")


def test_only_an_administrator_over_the_person_revokes_their_key(
    world: World, container: Container
) -> None:
    org = world.organisation()
    member = world.member(org)
    colleague = world.member(org, given_name="Cole")
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    saved = register(container, member, SoftAuthenticator())
    with container.unit() as unit:
        person = unit.directory.person(member.person.id)
        with pytest.raises(NotAllowed):
            unit.keys.revoke(world.principal(colleague), person, saved.id, "not mine")
        with pytest.raises(NotAllowed):
            unit.keys.revoke(world.principal(member), person, saved.id, "self")
        unit.keys.revoke(world.principal(admin), person, saved.id, "lost")
        unit.commit()
        assert unit.keys.keys_of(person.id) == []
