"""The people, applications and tokens the API tests share."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask

from core.clock import FrozenClock
from directory.models import Organisation, OrganisationKind, Role
from idp.container import Container
from tests.factories import Member, World
from tests.idp.api.tokens import App, admin_tool, client_token, person_token, register


@dataclass
class Cast:
    world: World
    org: Organisation
    other_org: Organisation
    admin: Member
    other_admin: Member
    platform: Member  # a platform admin (who approved the admin tool)
    practitioner: Member
    staff: list[Member]
    tool: App  # a first-party application with the admin scope, for people's tokens
    machine: App  # an application of `org` that acts for itself (client credentials)

    def token(self, app: Flask, container: Container, clock: FrozenClock, who: Member,
              scope: str = "openid admin") -> str:
        return person_token(app, container, clock, who, self.tool, scope)

    def machine_token(self, app: Flask, **extra: str) -> str:
        return client_token(app, self.machine, **extra)

    def area_school(self) -> Organisation:
        """A school whose registration authority is `org`: in its team's area."""
        return self.world.organisation("Northshire Primary", OrganisationKind.SCHOOL,
                                       registration_authority=self.org)


@pytest.fixture
def cast(world: World) -> Cast:
    org = world.organisation("Northshire County Council")
    other = world.organisation("Elsewhere Police", OrganisationKind.POLICE_FORCE)
    tool, platform = admin_tool(world)
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Ada", family_name="Admin")
    other_admin = world.member(other, Role.ORGANISATION_ADMIN, given_name="Omar",
                               family_name="Outsider")
    practitioner = world.member(org, given_name="Priya", family_name="Shah")
    staff = [world.member(org, given_name=given, family_name=family)
             for given, family in (("Bea", "Brown"), ("Cal", "Brown"), ("Dee", "Carter"))]
    machine = register(world, org, admin, platform, redirect_uris=[],
                       grant_types=["client_credentials"], scopes=["admin"], name="HR system")
    return Cast(world, org, other, admin, other_admin, platform, practitioner, staff, tool,
                machine)
