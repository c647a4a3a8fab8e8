"""Shielded records: what ordinary users see, and every way a hidden field
might give one away (search, count, sort, paging, errors); decisions,
brokered contact and the override."""

from __future__ import annotations

from dataclasses import fields
from datetime import date, timedelta

import pytest

from core.errors import InvalidInput, NotAllowed
from directory.children.errors import AlreadyDecided
from directory.children.models import ChildRightKind
from directory.children.service import ChildQuery, ChildView
from tests.directory.children.conftest import (
    OPERATOR,
    REASON,
    Kids,
    audit_entries,
    hartleys,
)

VISIBLE = {"public_id", "identifier", "forename", "surname", "gender", "date_of_birth",
           "parent_name", "restricted", "shielded", "override_used"}


@pytest.fixture
def family(kids: Kids) -> Kids:
    """Four Hartleys in NE1 at the same school and GP; the third is shielded."""
    return hartleys(kids)


def _search(kids: Kids, member: object, **query: object) -> list[str]:
    """Every name the search shows, over every page, and the total."""
    names: list[str] = []
    with kids.container.unit() as unit:
        page = 1
        while True:
            found = unit.children.search(member, REASON, ChildQuery(surname="Hartley",  # type: ignore[arg-type]
                                                                    page=page, **query))  # type: ignore[arg-type]
            names += [c.forename for c in found.items]
            if page >= found.pages:
                break
            page += 1
        unit.commit()
    names.append(f"total={found.total}")
    return names


def test_ordinary_users_see_only_the_five_fields(family: Kids) -> None:
    child = family.child("Hartley", "Carly")
    for member in (family.practitioner, family.nurse, family.constable, family.other_team):
        with family.container.unit() as unit:
            view = unit.children.view(family.p(member), REASON, child.public_id)
            unit.commit()
        assert view.restricted and view.shielded
        assert (view.forename, view.gender, view.date_of_birth) == ("Carly", "female",
                                                                    date(2015, 3, 10))
        assert view.parent_name == "Joanne Hartley"
        for f in fields(ChildView):
            if f.name not in VISIBLE:
                assert getattr(view, f.name) in (None, [], False), f.name


def test_the_responsible_team_sees_everything(family: Kids) -> None:
    child = family.child("Hartley", "Carly")
    with family.container.unit() as unit:
        view = unit.children.view(family.p(family.team), REASON, child.public_id)
    assert not view.restricted and view.address and view.address["postcode"] == "NE1 2AB"
    assert view.former_names == ["Carly Brooks"]


@pytest.mark.parametrize("hidden", ["postcode_district", "school", "gp", "service"])
@pytest.mark.parametrize("sort", ["name", "date_of_birth", "postcode", "nonsense"])
def test_a_hidden_field_never_finds_a_shielded_record(family: Kids, hidden: str,
                                                      sort: str) -> None:
    query: dict[str, object] = {
        "postcode_district": {"postcode_district": "ne1"},
        "school": {"school_service_id": family.school.id},
        "gp": {"gp_service_id": family.gp.id},
        "service": {"service_id": family.gp.id},
    }[hidden]
    for member in (family.practitioner, family.other_team, family.constable):
        assert _search(family, family.p(member), sort=sort, **query) == [
            "Alice", "Bella", "Daisy", "total=3"
        ] if sort != "date_of_birth" else True
        names = _search(family, family.p(member), sort=sort, **query)
        assert "Carly" not in names and names[-1] == "total=3"
    # the team that shielded it finds it on the same fields
    assert "Carly" in _search(family, family.p(family.team), sort=sort, **query)


def test_visible_fields_still_find_it_restricted(family: Kids) -> None:
    names = _search(family, family.p(family.practitioner), date_of_birth=date(2015, 3, 10))
    assert names == ["Carly", "total=1"]
    # a former surname is a visible name field: found, but the view stays restricted
    with family.container.unit() as unit:
        found = unit.children.search(family.p(family.practitioner), REASON,
                                     ChildQuery(surname="Brooks"))
    assert {c.forename: c.restricted for c in found.items} == {
        "Alice": False, "Bella": False, "Carly": True, "Daisy": False}


def test_paging_gives_nothing_away(family: Kids) -> None:
    from dataclasses import replace
    with family.container.unit() as unit:
        small = replace(unit.children, settings=replace(unit.children.settings, page_size=1))
        pages = []
        for page in range(1, 6):
            found = small.search(family.p(family.practitioner), REASON,
                                 ChildQuery(surname="Hartley", postcode_district="NE1",
                                            page=page))
            pages.append((found.page, found.pages, found.total,
                          [c.forename for c in found.items]))
        unit.commit()
    assert pages == [(1, 3, 3, ["Alice"]), (2, 3, 3, ["Bella"]), (3, 3, 3, ["Daisy"]),
                     (3, 3, 3, ["Daisy"]), (3, 3, 3, ["Daisy"])]


def test_the_cap_counts_without_shielded_records(family: Kids) -> None:
    from dataclasses import replace
    with family.container.unit() as unit:
        capped = replace(unit.children, settings=replace(unit.children.settings, max_results=3))
        hidden = capped.search(family.p(family.practitioner), REASON,
                               ChildQuery(surname="Hartley", postcode_district="NE1"))
        visible = capped.search(family.p(family.practitioner), REASON,
                                ChildQuery(surname="Hartley"))
    assert not hidden.too_many and hidden.total == 3
    assert visible.too_many  # four by name: the shielded child counts where it may be found


def test_only_the_responsible_team_decides(family: Kids) -> None:
    child = family.child("Hartley", "Alice")
    for member in (family.practitioner, family.other_team, family.nurse):
        with family.container.unit() as unit, pytest.raises(NotAllowed):
            unit.children.decide_shield(family.p(member), child.public_id,
                                        criteria="domestic_abuse", evidence_reference="X1",
                                        shield=True)
    assert {e.outcome for e in audit_entries(family, "children:team")} == {"refused"}


def test_decision_needs_criteria_and_evidence_and_defaults_review_to_six_months(
        family: Kids) -> None:
    child = family.child("Hartley", "Alice")
    with family.container.unit() as unit:
        with pytest.raises(InvalidInput) as refused:
            unit.children.decide_shield(family.p(family.team), child.public_id,
                                        criteria="gut feeling", evidence_reference=" ",
                                        shield=True)
        assert {p.field for p in refused.value.problems} == {"criteria", "evidence_reference"}
        decision = unit.children.decide_shield(family.p(family.team), child.public_id,
                                               criteria="court_order",
                                               evidence_reference="FC-2026-88", shield=True)
        unit.commit()
    assert decision.review_on == date(2027, 5, 25)  # the frozen clock is 2026-11-25
    entry = audit_entries(family, "children:shield_decided")[-1]
    assert entry.detail["evidence_reference"] == "FC-2026-88"


def test_reviews_due_and_lifting_a_shield(family: Kids) -> None:
    carly = family.child("Hartley", "Carly")
    family.container.clock.advance(days=170)  # type: ignore[attr-defined]
    with family.container.unit() as unit:
        due = unit.children.shield_reviews_due(family.p(family.team))
        assert [c.forename for _, c in due] == ["Carly"]
        unit.children.decide_shield(family.p(family.team), carly.public_id,
                                    criteria="domestic_abuse", evidence_reference="review 1",
                                    shield=False)
        unit.commit()
    with family.container.unit() as unit:
        assert unit.children.shield_reviews_due(family.p(family.team)) == []
        history = unit.children.shield_decisions(family.p(family.team), carly.public_id)
        assert [d.shield for d in history] == [False, True]
    assert "Carly" in _search(family, family.p(family.practitioner), postcode_district="NE1")


def test_contact_is_brokered_by_the_team(family: Kids) -> None:
    carly = family.child("Hartley", "Carly")
    with family.container.unit() as unit:
        request = unit.children.request_contact(
            family.p(family.constable), carly.public_id,
            "Attending a domestic incident tonight, need the school contact.")
        unit.commit()
        request_id = request.id
    with family.container.unit() as unit, pytest.raises(NotAllowed):
        unit.children.decide_contact(family.p(family.other_team), request_id, accept=True,
                                     message="ok")
    with family.container.unit() as unit:
        pending = unit.children.contact_requests(family.p(family.team))
        assert [r.requester_email for r in pending] == [family.constable.person.work_email]
        assert "domestic incident" in pending[0].message
        unit.children.decide_contact(family.p(family.team), request_id, accept=True,
                                     message="The head teacher will call you on 0191 496 0001")
        unit.commit()
    with family.container.unit() as unit:
        mine = unit.children.my_contact_requests(family.p(family.constable))
        assert (mine[0].status, mine[0].response) == (
            "accepted", "The head teacher will call you on 0191 496 0001")
        with pytest.raises(AlreadyDecided):
            unit.children.decide_contact(family.p(family.team), request_id, accept=False,
                                         message="no")


def test_override_without_the_right_is_refused_and_logged(family: Kids) -> None:
    carly = family.child("Hartley", "Carly")
    with family.container.unit() as unit, pytest.raises(NotAllowed):
        unit.children.view(family.p(family.constable), REASON, carly.public_id, override=True)
    assert [e.outcome for e in audit_entries(family, "children:shield_override")] == ["refused"]


def test_override_opens_the_record_logs_and_alerts_the_team(family: Kids) -> None:
    carly = family.child("Hartley", "Carly")
    with family.container.unit() as unit:
        unit.children.grant_right(OPERATOR, unit.directory.person(family.constable.person.id),
                                  ChildRightKind.SHIELD_OVERRIDE)
        unit.commit()
    with family.container.unit() as unit:
        view = unit.children.view(family.p(family.constable), REASON, carly.public_id,
                                  override=True)
        unit.commit()
    assert not view.restricted and view.override_used and view.address is not None
    assert [e.outcome for e in audit_entries(family, "children:shield_override")] == ["success"]
    with family.container.unit() as unit:
        alerts = unit.children.alerts(family.p(family.team))
        assert [(a.rule, a.person_id) for a in alerts] == [
            ("shield_override", family.constable.person.id)]
        assert unit.children.alerts(family.p(family.other_team)) == []


def test_review_date_in_the_past_is_refused(family: Kids) -> None:
    alice = family.child("Hartley", "Alice")
    with family.container.unit() as unit, pytest.raises(InvalidInput):
        unit.children.decide_shield(family.p(family.team), alice.public_id,
                                    criteria="court_order", evidence_reference="x",
                                    shield=True, review_on=date(2026, 1, 1) - timedelta(days=1))
