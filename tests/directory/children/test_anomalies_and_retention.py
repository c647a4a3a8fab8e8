"""Anomaly rules raising alerts (and optional suspension), and retention at
its boundaries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from core.errors import NotAllowed
from directory.children.models import ChildAlert, ChildRightKind
from directory.children.rules import years_before
from directory.children.service import ChildQuery, ChildrenService
from directory.models import PersonStatus, Position, Role
from directory.services import home_postcode_key
from idp.container import Unit
from tests.directory.children.conftest import OPERATOR, REASON, Kids, audit_entries, row
from tests.factories import World


def _with(unit: Unit, **settings: object) -> ChildrenService:
    return replace(unit.children, settings=replace(unit.children.settings, **settings))


def _rules(kids: Kids) -> list[str]:
    with kids.container.unit() as unit:
        return [a.rule for a in unit.children.alerts(kids.p(kids.team))]


def test_searching_your_own_surname_raises_an_alert(kids: Kids, world: World) -> None:
    kids.load([row(surname="Prentice")])
    with kids.container.unit() as unit:
        unit.children.search(kids.p(kids.practitioner), REASON, ChildQuery(surname="Hartley"))
        unit.commit()
    assert _rules(kids) == []
    with kids.container.unit() as unit:
        unit.children.search(kids.p(kids.practitioner), REASON, ChildQuery(surname="PRENTICE"))
        unit.commit()
    assert _rules(kids) == ["own_surname"]
    assert audit_entries(kids, "children:alert_raised")[0].detail["rule"] == "own_surname"


def test_volume_in_an_hour_raises_one_alert(kids: Kids) -> None:
    kids.load([row()])
    for _ in range(6):
        with kids.container.unit() as unit:
            _with(unit, volume_per_hour=4).search(kids.p(kids.practitioner), REASON,
                                                  ChildQuery(surname="Hartley"))
            unit.commit()
    assert _rules(kids) == ["volume"]


def test_the_volume_rule_counts_only_past_the_limit(kids: Kids) -> None:
    """The hour's searches are counted up to the limit + 1, not all of them, and
    the alert says which limit was passed; at the limit nothing is raised."""
    kids.load([row()])
    for n in range(7):
        with kids.container.unit() as unit:
            _with(unit, volume_per_hour=5).search(kids.p(kids.practitioner), REASON,
                                                  ChildQuery(surname="Hartley"))
            unit.commit()
        with kids.container.unit() as unit:
            alerts = [(a.rule, a.detail) for a in unit.children.alerts(kids.p(kids.team))]
        # the n-th search sees the n entries before it and its own
        assert alerts == (
            [("volume", {"in_last_hour_more_than": 5})] if n >= 5 else [])


@pytest.mark.parametrize(("at", "alert"), [
    (datetime(2026, 11, 25, 6, 59, tzinfo=UTC), True),   # Wednesday before 7 (GMT)
    (datetime(2026, 11, 25, 7, 0, tzinfo=UTC), False),
    (datetime(2026, 11, 25, 19, 59, tzinfo=UTC), False),
    (datetime(2026, 11, 25, 20, 0, tzinfo=UTC), True),
    (datetime(2026, 11, 28, 12, 0, tzinfo=UTC), True),   # Saturday
    (datetime(2027, 7, 1, 6, 30, tzinfo=UTC), False),    # 07:30 in London (BST)
])
def test_out_of_hours_use_raises_an_alert(kids: Kids, at: datetime, alert: bool) -> None:
    kids.load([row()])
    kids.container.clock.set(at)  # type: ignore[attr-defined]
    with kids.container.unit() as unit:
        unit.children.search(kids.p(kids.practitioner), REASON, ChildQuery(surname="Hartley"))
        unit.commit()
    assert _rules(kids) == (["out_of_hours"] if alert else [])


def test_searching_outside_the_organisation_area_raises_an_alert(kids: Kids) -> None:
    kids.load([row()])
    with kids.container.unit() as unit:
        unit.children.search(kids.p(kids.practitioner), REASON,
                             ChildQuery(surname="Hartley", postcode_district="NE2"))
        unit.commit()
    assert _rules(kids) == []
    with kids.container.unit() as unit:
        unit.children.search(kids.p(kids.practitioner), REASON,
                             ChildQuery(surname="Hartley", postcode_district="SO1 2AB"))
        unit.commit()
    assert _rules(kids) == ["out_of_area"]


def test_police_without_an_area_are_national(kids: Kids) -> None:
    kids.load([row()])
    with kids.container.unit() as unit:
        unit.children.search(kids.p(kids.constable), REASON,
                             ChildQuery(surname="Hartley", postcode_district="SO1"))
        unit.commit()
    assert _rules(kids) == []


def test_automatic_suspension_ends_access(kids: Kids) -> None:
    kids.load([row(surname="Prentice")])
    principal = kids.p(kids.practitioner)
    with kids.container.unit() as unit:
        _with(unit, auto_suspend=True).search(principal, REASON, ChildQuery(surname="Prentice"))
        unit.commit()
    with kids.container.unit() as unit:
        person = unit.directory.person(kids.practitioner.person.id)
        assert person.status is PersonStatus.SUSPENDED
        assert [a.suspended for a in unit.children.alerts(kids.p(kids.team))] == [True]
    with kids.container.unit() as unit, pytest.raises(NotAllowed):
        unit.children.search(principal, REASON, ChildQuery(surname="Hartley"))


def test_team_closes_an_alert_and_reviews_the_audit_trail(kids: Kids) -> None:
    kids.load([row(surname="Prentice")])
    with kids.container.unit() as unit:
        unit.children.search(kids.p(kids.practitioner), REASON, ChildQuery(surname="Prentice"))
        unit.commit()
    with kids.container.unit() as unit:
        alert = unit.children.alerts(kids.p(kids.team))[0]
        with pytest.raises(NotAllowed):
            unit.children.close_alert(kids.p(kids.other_team), alert.id)
    with kids.container.unit() as unit:
        unit.children.close_alert(kids.p(kids.team), alert.id)
        trail = unit.children.audit_review(kids.p(kids.team))
        assert "children:search" in {e.tag for e in trail}
        unit.commit()
    assert _rules(kids) == []
    with kids.container.unit() as unit:
        other = unit.children.audit_review(kids.p(kids.other_team))
        assert {e.tag for e in other} == {"children:area_set"}  # its own area, nothing of ours
    with kids.container.unit() as unit, pytest.raises(NotAllowed):
        unit.children.audit_review(kids.p(kids.practitioner))


def _ages(kids: Kids) -> None:
    today = kids.container.clock.today()
    kids.load([
        row(forename="Eighteen", date_of_birth=years_before(today, 18).isoformat()),
        row(forename="Nearly", date_of_birth=(years_before(today, 18) + timedelta(days=1))
            .isoformat()),
        row(forename="Consented", date_of_birth=years_before(today, 18).isoformat(),
            retain_to_25="yes"),
        row(forename="TwentyFive", date_of_birth=years_before(today, 25).isoformat(),
            retain_to_25="yes"),
        row(forename="DiedYearAgo", date_of_birth="2015-01-01",
            date_of_death=(today - timedelta(days=365)).isoformat()),
        row(forename="DiedRecently", date_of_birth="2015-01-01",
            date_of_death=(today - timedelta(days=364)).isoformat()),
    ])


def _live(kids: Kids) -> set[str]:
    with kids.container.unit() as unit:
        found = unit.children.search(kids.p(kids.team), REASON, ChildQuery(surname="Hartley"))
        unit.commit()
    return {c.forename for c in found.items}


def test_retention_archives_at_the_boundaries(kids: Kids) -> None:
    _ages(kids)
    with kids.container.unit() as unit:
        dry = unit.children.retention(OPERATOR, dry_run=True)
        unit.commit()
    assert (dry.archived_at_age, dry.archived_after_death, dry.purged) == (2, 1, 0)
    assert len(_live(kids)) == 6
    with kids.container.unit() as unit:
        report = unit.children.retention(OPERATOR)
        unit.commit()
    assert (report.archived_at_age, report.archived_after_death) == (2, 1)
    assert _live(kids) == {"Nearly", "Consented", "DiedRecently"}
    with kids.container.unit() as unit:
        again = unit.children.retention(OPERATOR)
    assert (again.archived_at_age, again.archived_after_death, again.purged) == (0, 0, 0)


def test_leap_day_birthdays_reach_eighteen_on_the_first_of_march(kids: Kids) -> None:
    kids.load([row(forename="Leap", date_of_birth="2008-02-29")])
    kids.container.clock.set(datetime(2026, 2, 28, 10, tzinfo=UTC))  # type: ignore[attr-defined]
    with kids.container.unit() as unit:
        assert unit.children.retention(OPERATOR).archived_at_age == 0
        unit.commit()
    kids.container.clock.set(datetime(2026, 3, 1, 10, tzinfo=UTC))  # type: ignore[attr-defined]
    with kids.container.unit() as unit:
        assert unit.children.retention(OPERATOR).archived_at_age == 1
        unit.commit()


def test_archive_is_for_data_managers_and_purged_after_six_years(kids: Kids) -> None:
    _ages(kids)
    with kids.container.unit() as unit:
        unit.children.retention(OPERATOR)
        unit.commit()
    for member in (kids.team, kids.practitioner):
        with kids.container.unit() as unit, pytest.raises(NotAllowed):
            unit.children.archived(kids.p(member), "Hartley")
    with kids.container.unit() as unit:
        unit.children.grant_right(OPERATOR, unit.directory.person(kids.team.person.id),
                                  ChildRightKind.DATA_MANAGER)
        unit.commit()
    with kids.container.unit() as unit:
        names = {c.forename for c in unit.children.archived(kids.p(kids.team), "Hartley")}
        unit.commit()
    assert names == {"Eighteen", "TwentyFive", "DiedYearAgo"}
    archived_on = kids.container.clock.today()
    kids.container.clock.set(datetime.combine(  # type: ignore[attr-defined]
        years_before(archived_on, -6) - timedelta(days=1), datetime.min.time(), UTC))
    with kids.container.unit() as unit:
        assert unit.children.retention(OPERATOR, dry_run=True).purged == 0
    kids.container.clock.set(datetime.combine(  # type: ignore[attr-defined]
        years_before(archived_on, -6), datetime.min.time(), UTC) + timedelta(hours=12))
    with kids.container.unit() as unit:
        assert unit.children.retention(OPERATOR).purged == 3
        unit.commit()
    with kids.container.unit() as unit:
        # the three purged; two archived today wait their six years; the one
        # with consent is 24 and stays live to 25
        assert unit.children.counts() == {"live": 1, "archived": 2}


def test_a_constables_alert_goes_to_the_team_covering_the_district(kids: Kids) -> None:
    kids.load([row(surname="Bobby")])
    with kids.container.unit() as unit:
        unit.children.search(kids.p(kids.constable), REASON,
                             ChildQuery(surname="Bobby", postcode_district="NE1"))
        unit.commit()
    assert _rules(kids) == ["own_surname"]
    with kids.container.unit() as unit:
        assert [a.rule for a in unit.children.all_alerts(OPERATOR)] == ["own_surname"]


def test_a_view_of_an_unknown_record_is_audited(kids: Kids) -> None:
    from directory.children.errors import UnknownChild
    with kids.container.unit() as unit, pytest.raises(UnknownChild):
        unit.children.view(kids.p(kids.practitioner), REASON, "no-such-record")
    assert [e.outcome for e in audit_entries(kids, "children:view")] == ["not_found"]


def test_the_managers_of_the_persons_organisation_are_told_and_see_nothing_of_the_child(
    kids: Kids, world: World
) -> None:
    """DOMAIN.md: the team investigates and the user's manager is told. The
    constable's force is told (its trail and its alerts list); the team of the
    district searched investigates; the manager learns nothing of the search."""
    kids.load([row(surname="Bobby")])
    police_admin = world.member(kids.police, Role.ORGANISATION_ADMIN, family_name="Chief")
    council_admin = world.member(kids.la, Role.ORGANISATION_ADMIN, family_name="Boss")
    with kids.container.unit() as unit:
        unit.children.search(kids.p(kids.constable), REASON,
                             ChildQuery(surname="Bobby", postcode_district="NE1"))
        unit.commit()
    told = audit_entries(kids, "children:alert_manager_told")
    assert [(e.organisation_id, e.detail["rule"]) for e in told] == [(kids.police.id,
                                                                       "own_surname")]
    assert "surname" not in told[0].detail
    with kids.container.unit() as unit:
        seen = unit.children.staff_alerts(kids.p(police_admin), kids.police.id)
        assert [(a.rule, a.username, a.team) for a in seen] == [
            ("own_surname", kids.constable.person.username, kids.la.name)]
        assert not hasattr(seen[0], "detail") and not hasattr(seen[0], "child_id")
        # Another organisation's admin, and the person's colleagues, are refused.
        for outsider in (council_admin, kids.nurse, kids.constable):
            with pytest.raises(NotAllowed):
                unit.children.staff_alerts(kids.p(outsider), kids.police.id)
        # The council's own admin sees no alert about the police's staff.
        assert unit.children.staff_alerts(kids.p(council_admin), kids.la.id) == []


def test_a_manager_sees_alerts_of_the_time_the_person_worked_there_only(
    kids: Kids, world: World
) -> None:
    kids.load([row(surname="Prentice")])
    admin = world.member(kids.la, Role.ORGANISATION_ADMIN, family_name="Boss")
    with kids.container.unit() as unit:
        unit.children.search(kids.p(kids.practitioner), REASON, ChildQuery(surname="Prentice"))
        unit.commit()
    # A team member of the same council investigates; nobody else there is told
    # twice, since the council is the team.
    assert audit_entries(kids, "children:alert_manager_told") == []
    with kids.container.unit() as unit:
        assert [a.rule for a in unit.children.staff_alerts(kids.p(admin), kids.la.id)] == [
            "own_surname"]
        # An alert raised after the position ended is not the council's to see.
        unit.session.execute(
            update(Position).where(Position.person_id == kids.practitioner.person.id)
            .values(ends_on=unit.clock.today() - timedelta(days=1)))
        unit.session.execute(update(ChildAlert).values(raised_at=unit.clock.now()))
        unit.commit()
    with kids.container.unit() as unit:
        assert unit.children.staff_alerts(kids.p(admin), kids.la.id) == []


def test_opening_a_record_at_your_own_home_postcode_raises_an_alert(kids: Kids) -> None:
    """The postcode the identity check saw (a keyed digest on the person) against
    the child's address: shielded or not, however the postcode was typed."""
    kids.load([row(surname="Nextdoor", postcode="NE1 4AB"),
               row(surname="Faraway", forename="Ben", postcode="NE2 7ZZ"),
               row(surname="Hidden", forename="Cara", postcode="ne14ab")])
    kids.shield(kids.child("Hidden"))
    with kids.container.unit() as unit:
        person = unit.directory.person(kids.practitioner.person.id)
        person.home_postcode_key = home_postcode_key(kids.container.digester, "NE1 4AB")
        unit.commit()
    for surname in ("Faraway", "Nextdoor", "Hidden"):
        with kids.container.unit() as unit:
            unit.children.view(kids.p(kids.practitioner), REASON, kids.child(surname).public_id)
            unit.commit()
    with kids.container.unit() as unit:
        raised = unit.children.alerts(kids.p(kids.team))
        assert sorted((a.rule, a.detail["child"]) for a in raised) == sorted(
            ("own_address", kids.child(s).identifier) for s in ("Nextdoor", "Hidden"))
    # Someone whose identity check recorded no postcode raises none.
    with kids.container.unit() as unit:
        unit.children.view(kids.p(kids.nurse), REASON, kids.child("Nextdoor").public_id)
        unit.commit()
    assert sorted(_rules(kids)) == ["own_address", "own_address"]
