"""Who may search and view, with which reason, and what the audit log keeps."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from core.audit import AuditEntry, verify_chain
from core.errors import InvalidInput, NotAllowed
from directory.children.errors import NoChildAccess, UnknownChild
from directory.children.models import Child, ChildInvolvement, InvolvementRole, SensitiveBasis
from directory.children.service import ChildQuery, Reason
from directory.models import PersonStatus, Position, Role
from tests.directory.children.conftest import REASON, Kids, row
from tests.factories import World


def _entries(kids: Kids, tag: str) -> list[AuditEntry]:
    with kids.container.unit() as unit:
        found = list(unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == tag).order_by(AuditEntry.seq)))
        unit.session.expunge_all()
        return found


def test_search_by_surname_and_date_of_birth_is_audited_with_criteria(kids: Kids) -> None:
    kids.load([row(), row(forename="Ben", date_of_birth="2017-01-02", postcode="NE2 1AB")])
    with kids.container.unit() as unit:
        page = unit.children.search(kids.p(kids.practitioner), REASON,
                                    ChildQuery(surname="HARTLEY", date_of_birth=None))
        assert page.total == 2
        page = unit.children.search(
            kids.p(kids.practitioner), REASON,
            ChildQuery(surname="hartley", date_of_birth=kids.child("Hartley", "Amelia")
                       .date_of_birth))
        assert [c.forename for c in page.items] == ["Amelia"]
        empty = unit.children.search(kids.p(kids.practitioner), REASON,
                                     ChildQuery(surname="Nobody"))
        assert empty.total == 0
        unit.commit()
    searches = _entries(kids, "children:search")
    assert len(searches) == 3
    assert searches[1].detail["criteria"] == {"surname": "hartley", "date_of_birth": "2015-03-14",
                                              "sort": "name", "page": 1}
    assert searches[1].detail["reason"] == "child_protection"
    assert searches[1].detail["found"] == 1
    assert searches[2].detail["found"] == 0  # a search that found nothing is logged too
    with kids.container.unit() as unit:
        assert verify_chain(unit.session).ok


def test_former_surname_finds_the_child(kids: Kids) -> None:
    kids.load([row(former_names="Amelia Brooks")])
    with kids.container.unit() as unit:
        page = unit.children.search(kids.p(kids.practitioner), REASON, ChildQuery(surname="Brooks"))
        assert [c.surname for c in page.items] == ["Hartley"]


def _former_search(kids: Kids, **criteria: Any) -> list[str]:
    with kids.container.unit() as unit:
        page = unit.children.search(kids.p(kids.practitioner), REASON,
                                    ChildQuery(surname="Brooks", **criteria))
        unit.commit()
    return [c.forename for c in page.items]


def test_former_surname_with_date_of_birth_or_district_follows_the_record(kids: Kids) -> None:
    """Former names carry copies of the date of birth and district: they must
    find the child by the current values, and stop at the old ones once the
    supplier corrects the record."""
    kids.load([row(former_names="Amelia Brooks", source_scheme="local_id", source_id="K1"),
               row(forename="Other", former_names="Other Brooks", date_of_birth="2012-01-01",
                   postcode="SO1 1AA")])
    assert _former_search(kids, date_of_birth=date(2015, 3, 14)) == ["Amelia"]
    assert _former_search(kids, postcode_district="ne1") == ["Amelia"]
    assert _former_search(kids, date_of_birth=date(2015, 3, 15)) == []
    report = kids.load([row(former_names="Amelia Brooks", source_scheme="local_id",
                            source_id="K1", date_of_birth="2015-03-15", postcode="NE2 1AB")])
    assert report.updated == 1
    assert _former_search(kids, date_of_birth=date(2015, 3, 14)) == []
    assert _former_search(kids, postcode_district="NE1") == []
    assert _former_search(kids, date_of_birth=date(2015, 3, 15),
                          postcode_district="NE2") == ["Amelia"]


@pytest.mark.parametrize("reason", [None, Reason("", "a long enough detail"),
                                    Reason("because", "a long enough detail"),
                                    Reason("referral", "short")])
def test_search_without_a_proper_reason_is_refused_and_audited(kids: Kids,
                                                               reason: Reason | None) -> None:
    kids.load([row()])
    with kids.container.unit() as unit, pytest.raises(InvalidInput) as refused:
        unit.children.search(kids.p(kids.practitioner), reason, ChildQuery(surname="Hartley"))
    assert {p.field for p in refused.value.problems} & {"reason", "reason_detail"}
    entries = _entries(kids, "children:search")
    assert [e.outcome for e in entries] == ["refused"]
    assert entries[0].detail["criteria"]["surname"] == "Hartley"


def test_view_without_a_reason_is_refused(kids: Kids) -> None:
    kids.load([row()])
    child = kids.child("Hartley")
    with kids.container.unit() as unit, pytest.raises(InvalidInput):
        unit.children.view(kids.p(kids.practitioner), None, child.public_id)
    assert [e.outcome for e in _entries(kids, "children:view")] == ["refused"]


def test_view_shows_the_full_record_and_is_audited(kids: Kids) -> None:
    kids.load([row(school=kids.school.public_id, gp_practice=kids.gp.public_id,
                   school_start="2019-09-04")])
    child = kids.child("Hartley")
    with kids.container.unit() as unit:
        view = unit.children.view(kids.p(kids.practitioner), REASON, child.public_id)
        unit.commit()
    assert not view.restricted
    assert view.address == {"address_line1": "12 Station Road", "address_line2": "",
                            "town": "Northtown", "postcode": "NE1 4AB"}
    assert view.carers[0]["phone"] == "07700 900123"
    assert {i.service_name for i in view.involvements} == {"Northtown Primary",
                                                           "Quayside Surgery"}
    assert len(view.identifier) == 11
    entry = _entries(kids, "children:view")[0]
    assert entry.subject_id == view.identifier
    assert entry.detail["reason_detail"] == REASON.detail


def test_addresses_and_contacts_are_ciphertext_at_rest(kids: Kids) -> None:
    kids.load([row()])
    with kids.container.unit() as unit:
        raw = unit.session.execute(select(Child.__table__)).mappings().one()
    stored = " ".join(str(v) for v in raw.values())
    for plain in ("Station Road", "NE1 4AB", "07700", "Joanne"):
        assert plain not in stored
    assert raw["postcode_district"] == "NE1"  # the search key, and only it


def test_unknown_and_archived_records_read_the_same(kids: Kids) -> None:
    kids.load([row()])
    child = kids.child("Hartley")
    with kids.container.unit() as unit:
        unit.session.execute(Child.__table__.update().values(archived_on=kids.container.clock
                                                             .today()))
        unit.commit()
    for public_id in (child.public_id, "00000000-0000-0000-0000-000000000000"):
        with kids.container.unit() as unit, pytest.raises(UnknownChild) as error:
            unit.children.view(kids.p(kids.practitioner), REASON, public_id)
        assert error.value.message == "No such record"


def _refused(kids: Kids, member_principal: object) -> None:
    with kids.container.unit() as unit, pytest.raises(NoChildAccess):
        unit.children.search(member_principal, REASON, ChildQuery(surname="Hartley"))  # type: ignore[arg-type]
    assert _entries(kids, "children:search")[-1].outcome == "refused"


def test_no_current_position_is_refused(kids: Kids) -> None:
    kids.load([row()])
    principal = kids.p(kids.practitioner)
    with kids.container.unit() as unit:
        for position in unit.session.scalars(
                select(Position).where(Position.person_id == kids.practitioner.person.id)):
            position.ends_on = kids.container.clock.today() - timedelta(days=1)
        unit.commit()
    _refused(kids, principal)


def test_lapsed_clearance_is_refused_even_with_a_live_principal(kids: Kids) -> None:
    kids.load([row()])
    principal = kids.p(kids.practitioner)
    with kids.container.unit() as unit:
        person = unit.directory.person(kids.practitioner.person.id)
        person.clearance_expires_on = kids.container.clock.today() - timedelta(days=1)
        unit.commit()
    _refused(kids, principal)


def test_suspended_account_is_refused(kids: Kids) -> None:
    principal = kids.p(kids.practitioner)
    with kids.container.unit() as unit:
        person = unit.directory.person(kids.practitioner.person.id)
        person.status = PersonStatus.SUSPENDED
        unit.commit()
    _refused(kids, principal)


@pytest.mark.parametrize("role", [Role.VETTING_OFFICER, Role.ORGANISATION_ADMIN,
                                  Role.PLATFORM_ADMIN])
def test_roles_without_work_with_children_are_refused(kids: Kids, world: World,
                                                      role: Role) -> None:
    officer = world.member(kids.la, role)
    _refused(kids, kids.p(officer))


def test_results_are_capped_and_paged(kids: Kids) -> None:
    kids.load([row(forename=f"Child{chr(65 + n // 26)}{chr(65 + n % 26)}",
                   postcode=f"NE1 {n % 9}AB", source_id="") for n in range(45)])
    with kids.container.unit() as unit:
        first = unit.children.search(kids.p(kids.practitioner), REASON,
                                     ChildQuery(surname="Hartley"))
        assert (first.total, len(first.items), first.pages) == (45, 20, 3)
        last = unit.children.search(kids.p(kids.practitioner), REASON,
                                    ChildQuery(surname="Hartley", page=99))
        assert (last.page, len(last.items)) == (3, 5)
    kids.load([row(forename=f"More{chr(65 + n // 26)}{chr(65 + n % 26)}") for n in range(60)])
    with kids.container.unit() as unit:
        broad = unit.children.search(kids.p(kids.practitioner), REASON,
                                     ChildQuery(surname="Hartley"))
        assert broad.too_many and broad.items == [] and broad.total == 0


def test_source_identifier_is_readable_only_by_the_supplying_body(kids: Kids) -> None:
    kids.load([row(source_scheme="nhs_number", source_id="9990000018")], source="ORG003")
    child = kids.child("Hartley")
    with kids.container.unit() as unit:
        own = unit.children.view(kids.p(kids.nurse), REASON, child.public_id)
        other = unit.children.view(kids.p(kids.practitioner), REASON, child.public_id)
        team = unit.children.view(kids.p(kids.team), REASON, child.public_id)
    assert own.source_identifiers == [("nhs_number", "9990000018")]
    assert other.source_identifiers == []
    assert team.source_identifiers == []


def test_sensitive_service_needs_a_basis_and_only_the_team_reads_it(kids: Kids) -> None:
    kids.load([row()])
    child = kids.child("Hartley")
    with kids.container.unit() as unit:
        with pytest.raises(InvalidInput) as refused:
            unit.children.record_involvement(kids.p(kids.nurse), child.public_id,
                                             kids.sexual_health.id)
        assert refused.value.problems[0].field == "sensitive_basis"
    from directory.children.models import SensitiveBasis
    with kids.container.unit() as unit:
        unit.children.record_involvement(kids.p(kids.nurse), child.public_id,
                                         kids.sexual_health.id,
                                         sensitive_basis=SensitiveBasis.CONSENT)
        unit.commit()
    with kids.container.unit() as unit:
        for member in (kids.practitioner, kids.nurse, kids.constable, kids.other_team):
            view = unit.children.view(kids.p(member), REASON, child.public_id)
            assert all(not i.sensitive for i in view.involvements)
            found = unit.children.search(kids.p(member), REASON,
                                         ChildQuery(surname="Hartley",
                                                    service_id=kids.sexual_health.id))
            assert found.total == 0 and found.items == []
        view = unit.children.view(kids.p(kids.team), REASON, child.public_id)
        assert [i.service_name for i in view.involvements if i.sensitive] == ["Clinic 4YP"]
        found = unit.children.search(kids.p(kids.team), REASON,
                                     ChildQuery(surname="Hartley",
                                                service_id=kids.sexual_health.id))
        assert found.total == 1


def test_involvement_only_by_the_service_organisation_or_the_team(kids: Kids) -> None:
    kids.load([row()])
    child = kids.child("Hartley")
    with kids.container.unit() as unit, pytest.raises(NotAllowed):
        unit.children.record_involvement(kids.p(kids.constable), child.public_id, kids.gp.id)


@pytest.mark.parametrize(("service", "role"), [
    ("sexual_health", InvolvementRole.GP_PRACTICE),
    ("gp", InvolvementRole.EDUCATIONAL_SETTING),
    ("gp", InvolvementRole.SERVICE),
])
def test_a_service_is_recorded_only_as_what_its_kind_can_be(
    kids: Kids, service: str, role: InvolvementRole,
) -> None:
    """A clinic recorded as a child's GP would find the child for anyone
    searching by that clinic as GP; a GP recorded as a mere service would hide
    the child from a search by GP. Refused, naming the field, and nothing kept."""
    kids.load([row()])
    child = kids.child("Hartley")
    chosen = getattr(kids, service)
    with kids.container.unit() as unit:
        before = unit.session.scalar(select(func.count()).select_from(ChildInvolvement))
        with pytest.raises(InvalidInput) as refused:
            unit.children.record_involvement(
                kids.p(kids.nurse), child.public_id, chosen.id, role=role,
                sensitive_basis=SensitiveBasis.CONSENT)
        assert [p.field for p in refused.value.problems] == ["role"]
        unit.session.rollback()
        assert unit.session.scalar(
            select(func.count()).select_from(ChildInvolvement)) == before


def test_a_service_recorded_as_what_its_kind_is_found_by_it(kids: Kids) -> None:
    kids.load([row()])
    child = kids.child("Hartley")
    by_gp = ChildQuery(surname="Hartley", gp_service_id=kids.gp.id)
    with kids.container.unit() as unit:
        assert unit.children.search(kids.p(kids.practitioner), REASON, by_gp).total == 0
        unit.children.record_involvement(
            kids.p(kids.nurse), child.public_id, kids.gp.id, role=InvolvementRole.GP_PRACTICE)
        unit.commit()
    with kids.container.unit() as unit:
        assert unit.children.search(kids.p(kids.practitioner), REASON, by_gp).total == 1
