"""Registering relying applications: who may, what is checked, who approves."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from core.audit import AuditEntry
from core.errors import Conflict, InvalidInput, NotAllowed
from core.settings import Settings
from directory.models import Role
from idp.cli import main
from idp.container import Container
from idp.oidc.clients import Registration
from idp.oidc.models import ClientStatus
from tests.factories import World


def _reg(org_id: int, **values: object) -> Registration:
    values.setdefault("redirect_uris", ["https://rp.example.org/cb"])
    return Registration(organisation_id=org_id, name=str(values.pop("name", "Case system")),
                        **values)  # type: ignore[arg-type]


def test_an_admin_registers_for_their_own_organisation_only(world: World) -> None:
    mine = world.organisation()
    theirs = world.organisation("Southshire Council")
    admin = world.principal(world.member(mine, Role.ORGANISATION_ADMIN))
    clients = world.unit.clients
    client, secret = clients.register(admin, _reg(mine.id))
    assert client.status is ClientStatus.PENDING
    assert secret and client.secret_digest and secret not in client.secret_digest
    with pytest.raises(NotAllowed):
        clients.register(admin, _reg(theirs.id))
    practitioner = world.principal(world.member(mine))
    with pytest.raises(NotAllowed):
        clients.register(practitioner, _reg(mine.id))


def test_approval_is_for_a_platform_admin_who_did_not_register_it(world: World) -> None:
    org = world.organisation()
    platform_org = world.organisation("Platform")
    admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    platform = world.member(platform_org, Role.PLATFORM_ADMIN)
    other_platform = world.principal(world.member(platform_org, Role.PLATFORM_ADMIN))
    clients = world.unit.clients
    client, _secret = clients.register(admin, _reg(org.id))
    with pytest.raises(NotAllowed):
        clients.approve(admin, client.client_id, "mine")
    own, _ = clients.register(world.principal(platform), _reg(org.id, name="Platform's own"),
                              "our own tool")
    with pytest.raises(NotAllowed, match="Someone else"):
        clients.approve(world.principal(platform), own.client_id, "self")
    clients.approve(other_platform, own.client_id, "checked")
    assert own.status is ClientStatus.APPROVED
    with pytest.raises(Conflict):
        clients.approve(other_platform, own.client_id, "again")


def _entries(world: World, tag: str) -> list[dict[str, object]]:
    return [e.detail or {} for e in world.unit.session.scalars(
        select(AuditEntry).where(AuditEntry.tag == tag).order_by(AuditEntry.seq))]


@pytest.mark.parametrize("reason", ["", "   ", "\t\n", "x" * 301])
def test_approving_and_suspending_take_their_reason_by_the_shared_rule(
    world: World, reason: str
) -> None:
    """Both always carry a reason (`directory.accreditation.given_reason`): blank
    or too long is refused, by field, before anything changes."""
    org = world.organisation()
    admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    platform = world.principal(world.member(world.organisation("Platform"),
                                            Role.PLATFORM_ADMIN))
    clients = world.unit.clients
    client, _secret = clients.register(admin, _reg(org.id))
    with pytest.raises(InvalidInput) as refused:
        clients.approve(platform, client.client_id, reason)
    assert [p.field for p in refused.value.problems] == ["reason"]
    assert client.status is ClientStatus.PENDING and client.approved_by_id is None
    clients.approve(platform, client.client_id, "  DPIA   done ")
    with pytest.raises(InvalidInput) as refused:
        clients.suspend(admin, client.client_id, reason)
    assert [p.field for p in refused.value.problems] == ["reason"]
    assert client.status is ClientStatus.APPROVED
    clients.suspend(admin, client.client_id, "contract ended")
    assert client.status is ClientStatus.SUSPENDED
    assert _entries(world, "oidc:client:approved") == [{"reason": "DPIA done"}]
    assert _entries(world, "oidc:client:suspended") == [{"reason": "contract ended"}]


@pytest.mark.parametrize(("values", "field"), [
    ({"redirect_uris": ["http://rp.example.org/cb"]}, "redirect_uris[0]"),
    ({"redirect_uris": ["https://rp.example.org/cb#x"]}, "redirect_uris[0]"),
    ({"redirect_uris": ["https://*.example.org/cb"]}, "redirect_uris[0]"),
    ({"redirect_uris": []}, "redirect_uris"),
    ({"scopes": ["openid", "everything"]}, "scopes"),
    ({"grant_types": ["password"]}, "grant_types"),
    ({"auth_method": "client_secret_post"}, "auth_method"),
    ({"auth_method": "private_key_jwt"}, "jwks"),
    ({"auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]}},
     "jwks"),
    ({"id_token_alg": "HS256"}, "id_token_alg"),
    ({"subject_type": "pairwise",
      "redirect_uris": ["https://a.example.org/cb", "https://b.example.org/cb"]},
     "sector_identifier"),
    ({"post_logout_redirect_uris": ["javascript:alert(1)"]}, "post_logout_redirect_uris[0]"),
])
def test_registration_says_what_is_wrong_and_stores_nothing(
    world: World, values: dict[str, object], field: str
) -> None:
    org = world.organisation()
    admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    with pytest.raises(InvalidInput) as refused:
        world.unit.clients.register(admin, _reg(org.id, **values))
    assert field in [p.field for p in refused.value.problems]
    world.unit.session.rollback()
    assert world.unit.clients.visible_to(world.principal(world.member(
        world.organisation("P"), Role.PLATFORM_ADMIN))) == []


def test_rotating_a_secret_ends_the_old_one(world: World, container: Container) -> None:
    org = world.organisation()
    admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    client, old = world.unit.clients.register(admin, _reg(org.id))
    new = world.unit.clients.rotate_secret(admin, client.client_id)
    assert new != old
    assert container.digester.matches(new, client.secret_digest or "")
    assert not container.digester.matches(old or "", client.secret_digest or "")
    stranger = world.principal(world.member(world.organisation("Other"),
                                            Role.ORGANISATION_ADMIN))
    with pytest.raises(NotAllowed):
        world.unit.clients.rotate_secret(stranger, client.client_id)


def test_the_cli_adds_approves_lists_and_rotates(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch, container: Container
) -> None:
    org = world.organisation()
    monkeypatch.setenv("CONTACTPOINT_DATABASE__URL", settings.database_url)
    monkeypatch.setenv("CONTACTPOINT_SERVICE__INSTANCE_DIR", settings.service.instance_dir)
    runner = CliRunner()
    added = runner.invoke(main, ["clients", "add", "--org", org.code, "--name", "Records",
                                 "--redirect-uri", "https://rp.example.org/cb",
                                 "--scope", "openid", "--scope", "positions",
                                 "--reason", "records team's request"])
    assert added.exit_code == 0, added.output
    client_id = added.output.split("client_id: ")[1].split()[0]
    assert "client_secret: " in added.output
    unexplained = runner.invoke(main, ["clients", "approve", client_id, "--reason", "  "])
    assert unexplained.exit_code != 0
    assert unexplained.output.strip() == "Error: reason: Enter the reason"
    approved = runner.invoke(main, ["clients", "approve", client_id, "--reason", "DPIA done"])
    assert approved.exit_code == 0, approved.output
    listed = runner.invoke(main, ["clients", "list"])
    assert client_id in listed.output and "approved" in listed.output
    unexplained = runner.invoke(main, ["clients", "rotate-secret", client_id])
    assert unexplained.exit_code != 0
    assert unexplained.output.strip() == "Error: reason: Enter the reason"
    rotated = runner.invoke(main, ["clients", "rotate-secret", client_id,
                                   "--reason", "secret seen in a log"])
    assert rotated.exit_code == 0 and "client_secret: " in rotated.output
    unexplained = runner.invoke(main, ["clients", "suspend", client_id])
    assert unexplained.output.strip() == "Error: reason: Enter the reason"
    assert "suspended" not in runner.invoke(main, ["clients", "list"]).output
    suspended = runner.invoke(main, ["clients", "suspend", client_id, "--reason", "leaked"])
    assert suspended.exit_code == 0 and "suspended" in runner.invoke(
        main, ["clients", "list"]).output
    bad = runner.invoke(main, ["clients", "add", "--org", org.code, "--name", "Bad",
                               "--redirect-uri", "http://rp.example.org/cb", "--reason", "x"])
    assert bad.exit_code != 0
    assert "redirect_uris[0]: must use https" in bad.output
    assert "Traceback" not in bad.output
    keys = runner.invoke(main, ["keys", "rotate"])
    assert keys.exit_code == 0 and keys.output.count("now signing with") == 2
    listed_keys = runner.invoke(main, ["keys", "signing"])
    assert listed_keys.output.count("current") == 2 and listed_keys.output.count("next") == 2
