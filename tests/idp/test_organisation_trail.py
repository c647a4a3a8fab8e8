"""An organisation's audit trail shows every action on its people.

Walks a day of administration over one practitioner (failed sign-ins into a
lockout, an unlock, reset letters, a security key revoked, a renewed
certificate, a suspension and reinstatement, a second position asked for and
approved, a position ended, the account closed) and then reads the
organisation's trail as its admin would: every entry about the practitioner is
there, and no entry about them is filed under no organisation at all.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from directory.models import OrganisationKind, Role
from idp.container import Container
from tests.factories import World, sign_in
from tokens.attempts import Client
from tokens.errors import SignInFailed
from tokens.models import SecurityKey
from tokens.resets import ResetKind
from vetting.models import CertificateOutcome

EXPECTED = [
    "signin:password:failure",
    "signin:lockout",
    "signin:unlocked",
    "reset:pin:requested",
    "reset:password:requested",
    "key:revoked",
    "vetting:clearance:renewed",
    "admin:suspended",
    "admin:reinstated",
    "admin:position:requested",
    "admin:position:approved",
    "admin:position:ended",
    "admin:closed",
]


def test_every_action_on_a_person_is_on_their_organisations_trail(
    container: Container, world: World
) -> None:
    org = world.organisation("Northshire County Council")
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Ada")
    second = world.member(org, Role.ORGANISATION_ADMIN, given_name="Ben")
    team = world.member(org, Role.LOCAL_AUTHORITY_TEAM, given_name="Lara")
    officer = world.member(org, Role.VETTING_OFFICER, given_name="Vic")
    staff = world.member(org, given_name="Priya", family_name="Shah")
    other = world.organisation("Elsewhere Police", OrganisationKind.POLICE_FORCE)
    world.member(other, given_name="Omar")  # someone whose trail this is not
    who = world.principal(admin)
    today = container.clock.today()

    for _ in range(container.settings.signin.lockout_threshold):
        with pytest.raises(SignInFailed):
            sign_in(container, staff, Client("192.0.2.7"), password="wrong password 1")
    with container.unit() as unit:
        unit.signin.unlock(who, unit.directory.person(staff.person.id), "rang the desk")
        unit.resets.request(who, staff.person.id, ResetKind.PIN)
        unit.resets.request(who, staff.person.id, ResetKind.PASSWORD, "forgot it")
        key = SecurityKey(person_id=staff.person.id, credential_id="trail-key", public_key="x",
                          name="Priya's key", created_at=container.clock.now())
        unit.session.add(key)
        unit.session.flush()
        unit.keys.revoke(who, unit.directory.person(staff.person.id), key.id, "lost on a bus")
        unit.vetting.renew_certificate(
            world.principal(officer), staff.person.id, certificate_number="001234567899",
            issued_on=today - timedelta(days=3), outcome=CertificateOutcome.NOTHING_RECORDED)
        unit.administration.suspend(who, staff.person.id, "investigation")
        unit.commit()
        unit.administration.reinstate(who, staff.person.id, "cleared")
        asked = unit.administration.request_position(
            who, org.id, username=staff.username, role=Role.VETTING_OFFICER, reason="new role")
        unit.commit()
        unit.administration.decide_position(world.principal(second), asked.id, approve=True,
                                            reason="agreed")
        unit.commit()
        assert asked.position_id is not None
        unit.administration.end_position(who, asked.position_id, "role finished")
        unit.administration.close(world.principal(team), staff.person.id, "left")
        unit.commit()

    with container.unit() as unit:
        trail = unit.administration.audit_trail(who, org.id, per_page=100)
        unit.commit()
        about_staff = [e.tag for e in trail.items
                       if e.subject_type == "person" and e.subject_id == str(staff.person.id)]
        missing = [tag for tag in EXPECTED if tag not in about_staff]
        assert missing == [], about_staff
        unfiled = unit.session.scalars(
            select(AuditEntry.tag).where(
                AuditEntry.subject_type == "person",
                AuditEntry.subject_id == str(staff.person.id),
                AuditEntry.organisation_id.is_(None),
            )
        ).all()
        assert unfiled == []
        # And the other organisation's trail shows none of it.
        elsewhere = unit.session.scalars(
            select(AuditEntry.tag).where(
                AuditEntry.organisation_id == other.id,
                AuditEntry.subject_id == str(staff.person.id),
            )
        ).all()
        assert elsewhere == []
