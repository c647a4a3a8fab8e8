"""The SQL form of "may use the service" answers as access_blockers does."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from directory.models import Accreditation, Person, PersonStatus
from directory.service import access_blockers, usable_clause
from tests.factories import World


def test_the_sql_rule_and_the_python_rule_agree(world: World) -> None:
    today = world.container.clock.today()
    org = world.organisation()
    suspended_org = world.organisation("Suspended Charity")
    people = {
        "fine": world.member(org).person,
        "suspended": world.member(org, status=PersonStatus.SUSPENDED).person,
        "closed": world.member(org, status=PersonStatus.CLOSED).person,
        "clearance lapsed": world.member(org, clearance_days=-1).person,
        "clearance ends today": world.member(org, clearance_days=0).person,
        "training lapsed": world.member(org, training_days=-1).person,
        "organisation suspended": world.member(suspended_org).person,
        "position ended": world.member(org).person,
        "position ends today": world.member(org).person,
        "position not started": world.member(org).person,
    }
    people["position ended"].positions[0].ends_on = today - timedelta(days=1)
    people["position ends today"].positions[0].ends_on = today
    people["position not started"].positions[0].starts_on = today + timedelta(days=1)
    suspended_org.accreditation = Accreditation.SUSPENDED
    world.unit.commit()
    session = world.unit.session
    usable = {pid: ok for pid, ok in session.execute(select(Person.id, usable_clause(today)))}
    for name, person in people.items():
        session.refresh(person)
        expected = not access_blockers(person, today)
        assert bool(usable[person.id]) is expected, name
    assert [n for n, p in people.items() if usable[p.id]] == [
        "fine", "clearance ends today", "position ends today"]
