"""The directory of services: search for people who may use the service and
for no one else, maintenance by the running organisation's admins only, and
the all-or-nothing CSV bulk load. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from core.audit import AuditEntry
from core.errors import InvalidInput, NotAllowed
from directory.models import Organisation, PersonStatus, Role
from directory.services import (
    CSV_COLUMNS,
    PAGE_SIZE,
    SearchQuery,
    normalise_postcode,
)
from directory.services_models import Service, ServiceKind
from idp.container import Container
from tests.factories import World


def details(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "Riverside Surgery",
        "kind": "gp_practice",
        "address_line1": "1 River Street",
        "address_line2": "",
        "town": "Northtown",
        "postcode": "ne1 4st",
        "phone": "0191 496 0000",
        "secure_email": "riverside.surgery@nhs.net",
        "opening_hours": "Mon-Fri 8am-6pm",
        "starts_on": "2020-01-01",
        "ends_on": "",
    }
    base.update(overrides)
    return base


def csv_text(rows: list[dict[str, str]], columns: tuple[str, ...] = CSV_COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def csv_row(ref: str, org: Organisation, **overrides: str) -> dict[str, str]:
    row = {k: str(v) for k, v in details(name=f"Service {ref}").items()}
    row.update(source_ref=ref, organisation_code=org.code)
    row.update(overrides)
    return row


def count_services(container: Container) -> int:
    with container.unit() as unit:
        return unit.services.count()


def audit_tags(container: Container) -> list[str]:
    with container.unit() as unit:
        return list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))


class TestValidation:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("ne1 4st", ("NE1 4ST", "NE1")), ("SW1A1AA", ("SW1A 1AA", "SW1A")),
         ("  m1   1ae ", ("M1 1AE", "M1")), ("gir 0aa", ("GIR 0AA", "GIR"))],
    )
    def test_postcodes_are_normalised_with_their_district(
        self, raw: str, expected: tuple[str, str]
    ) -> None:
        assert normalise_postcode(raw) == expected

    @pytest.mark.parametrize("raw", ["NE1", "12345", "NE1 4ST X", "Q1 1AA", "NE1 4CI", ""])
    def test_other_strings_are_not_postcodes(self, raw: str) -> None:
        assert normalise_postcode(raw) is None


class TestMaintenance:
    def test_an_admin_creates_updates_and_closes_a_service_of_their_organisation(
        self, container: Container, world: World
    ) -> None:
        org = world.organisation()
        admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
        with container.unit() as unit:
            service = unit.services.create(admin, org.id, details())
            unit.commit()
            assert service.postcode == "NE1 4ST" and service.postcode_district == "NE1"
            assert service.name_folded == "riverside surgery"
            assert service.kind is ServiceKind.GP_PRACTICE
            unit.services.update(admin, service.id, details(phone="0191 496 0001"))
            unit.commit()
            unit.services.close(admin, service.id)
            unit.commit()
            assert service.ends_on == container.clock.today() - timedelta(days=1)
        assert audit_tags(container)[-3:] == ["service:created", "service:updated",
                                              "service:closed"]

    def test_every_problem_is_named_by_field(self, container: Container, world: World) -> None:
        org = world.organisation()
        admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
        with container.unit() as unit, pytest.raises(InvalidInput) as raised:
            unit.services.create(admin, org.id, details(
                name="", kind="zoo", postcode="XX", phone="call us", secure_email="nope",
                starts_on="2020-13-01", ends_on="",
            ))
        fields = {p.field for p in raised.value.problems}
        assert fields == {"name", "kind", "postcode", "phone", "secure_email", "starts_on"}
        assert count_services(container) == 0

    def test_an_end_before_the_start_is_refused(self, container: Container, world: World) -> None:
        org = world.organisation()
        admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
        with container.unit() as unit, pytest.raises(InvalidInput) as raised:
            unit.services.create(admin, org.id, details(ends_on="2019-01-01"))
        assert [p.field for p in raised.value.problems] == ["ends_on"]

    def test_practitioners_and_admins_of_another_organisation_cannot_maintain(
        self, container: Container, world: World
    ) -> None:
        org, other = world.organisation(), world.organisation("Southshire Council")
        admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
        outsider = world.principal(world.member(other, Role.ORGANISATION_ADMIN))
        practitioner = world.principal(world.member(org))
        with container.unit() as unit:
            service = unit.services.create(admin, org.id, details())
            unit.commit()
            service_id = service.id
        before = audit_tags(container)
        with container.unit() as unit:
            for actor in (outsider, practitioner):
                with pytest.raises(NotAllowed):
                    unit.services.create(actor, org.id, details())
                with pytest.raises(NotAllowed):
                    unit.services.update(actor, service_id, details(name="Hijacked"))
                with pytest.raises(NotAllowed):
                    unit.services.close(actor, service_id)
        with container.unit() as unit:
            kept = unit.session.get(Service, service_id)
            assert kept is not None and kept.name == "Riverside Surgery" and kept.ends_on is None
        assert audit_tags(container) == before

    def test_a_platform_admin_maintains_any_organisations_services(
        self, container: Container, world: World
    ) -> None:
        org, platform = world.organisation(), world.organisation("Platform")
        root = world.principal(world.member(platform, Role.PLATFORM_ADMIN))
        with container.unit() as unit:
            service = unit.services.create(root, org.id, details())
            unit.services.close(root, service.id)
            unit.commit()

    def test_a_position_is_attached_only_to_a_service_of_its_own_organisation(
        self, container: Container, world: World
    ) -> None:
        org, other = world.organisation(), world.organisation("Southshire Council")
        admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
        other_admin = world.principal(world.member(other, Role.ORGANISATION_ADMIN))
        nurse = world.member(org, given_name="Nora")
        position_id = nurse.person.positions[0].id
        with container.unit() as unit:
            mine = unit.services.create(admin, org.id, details())
            theirs = unit.services.create(other_admin, other.id, details(name="Elsewhere"))
            unit.commit()
            with pytest.raises(NotAllowed):
                unit.services.attach_position(other_admin, position_id, theirs.id)
            with pytest.raises(InvalidInput):
                unit.services.attach_position(admin, position_id, theirs.id)
            unit.services.attach_position(admin, position_id, mine.id)
            unit.commit()
        assert audit_tags(container)[-1] == "service:position_attached"


def _populate(container: Container, world: World) -> dict[str, Any]:
    """Two organisations' services, a practitioner placed in one of them."""
    north, south = world.organisation("Northshire"), world.organisation("Southshire")
    north_admin = world.principal(world.member(north, Role.ORGANISATION_ADMIN))
    south_admin = world.principal(world.member(south, Role.ORGANISATION_ADMIN))
    reader = world.member(south, given_name="Rita")
    nurse = world.member(north, given_name="Nora", family_name="Nurse")
    with container.unit() as unit:
        surgery = unit.services.create(north_admin, north.id, details())
        unit.services.create(north_admin, north.id, details(
            name="Riverside Primary School", kind="school", postcode="NE2 1AA"))
        unit.services.create(north_admin, north.id, details(
            name="Old Riverside Clinic", kind="sexual_health", postcode="NE1 5AA",
            ends_on="2021-01-01"))
        unit.services.create(south_admin, south.id, details(
            name="South Riverside Health Visitors", kind="health_visiting_team",
            postcode="SO14 2AA"))
        unit.services.create(south_admin, south.id, details(
            name="Brook Sexual Health", kind="sexual_health", postcode="SO14 3AA"))
        unit.services.attach_position(north_admin, nurse.person.positions[0].id, surgery.id)
        unit.commit()
    return {"north": north, "south": south, "reader": reader, "nurse": nurse}


class TestSearch:
    def test_filters_by_name_kind_organisation_and_district(
        self, container: Container, world: World
    ) -> None:
        made = _populate(container, world)
        reader = world.principal(made["reader"])
        with container.unit() as unit:
            def names(**query: Any) -> list[str]:
                found = unit.services.search(reader, SearchQuery(**query))
                return [e.service.name for e in found.items]

            assert names(name="RIVERSIDE") == [
                "Riverside Primary School", "Riverside Surgery", "South Riverside Health Visitors"]
            assert names(name="riverside", prefix=True) == [
                "Riverside Primary School", "Riverside Surgery"]
            assert names(kind=ServiceKind.SCHOOL) == ["Riverside Primary School"]
            assert names(organisation_id=made["south"].id) == [
                "Brook Sexual Health", "South Riverside Health Visitors"]
            assert names(postcode_district="ne1") == ["Riverside Surgery"]
            assert names(name="100%") == []
            assert names(name="_") == []

    def test_closed_services_are_left_out_unless_asked_for(
        self, container: Container, world: World
    ) -> None:
        made = _populate(container, world)
        reader = world.principal(made["reader"])
        with container.unit() as unit:
            default = unit.services.search(reader, SearchQuery(name="clinic"))
            assert default.total == 0
            everything = unit.services.search(reader, SearchQuery(name="clinic",
                                                                  include_closed=True))
            assert [(e.service.name, e.closed) for e in everything.items] == [
                ("Old Riverside Clinic", True)]

    def test_sensitive_kinds_are_listed_like_any_service(
        self, container: Container, world: World
    ) -> None:
        made = _populate(container, world)
        reader = world.principal(made["reader"])
        with container.unit() as unit:
            found = unit.services.search(reader, SearchQuery(kind=ServiceKind.SEXUAL_HEALTH))
            assert [e.service.name for e in found.items] == ["Brook Sexual Health"]
            assert found.items[0].service.kind.sensitive

    def test_results_show_the_practitioners_in_the_service_with_work_contacts(
        self, container: Container, world: World
    ) -> None:
        made = _populate(container, world)
        reader = world.principal(made["reader"])
        with container.unit() as unit:
            found = unit.services.search(reader, SearchQuery(name="surgery"))
            (entry,) = found.items
            assert [(p.name, p.work_email) for p in entry.practitioners] == [
                ("Nora Nurse", made["nurse"].person.work_email)]
            assert entry.service.secure_email == "riverside.surgery@nhs.net"
            # A suspended practitioner is no longer a contact.
            person = unit.directory.person(made["nurse"].person.id)
            person.status = PersonStatus.SUSPENDED
            unit.commit()
            again = unit.services.entry(reader, entry.service.id)
            assert again.practitioners == []

    def test_results_come_twenty_to_a_page(self, container: Container, world: World) -> None:
        org = world.organisation()
        admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
        with container.unit() as unit:
            for n in range(PAGE_SIZE * 2 + 5):
                unit.services.create(admin, org.id, details(name=f"Team {n:03d}"))
            unit.commit()
            first = unit.services.search(admin, SearchQuery(name="team"))
            third = unit.services.search(admin, SearchQuery(name="team", page=3))
            beyond = unit.services.search(admin, SearchQuery(name="team", page=99))
            assert (first.total, first.pages, len(first.items)) == (45, 3, 20)
            assert first.items[0].service.name == "Team 000"
            assert [e.service.name for e in third.items] == [
                f"Team {n:03d}" for n in range(40, 45)]
            assert beyond.page == 3

    @pytest.mark.parametrize("lapse", ["clearance", "training", "position", "suspended",
                                       "organisation"])
    def test_people_who_may_not_use_the_service_are_refused(
        self, container: Container, world: World, lapse: str
    ) -> None:
        made = _populate(container, world)
        org = world.organisation("Lapsing", accredited=lapse != "organisation")
        member = world.member(
            org,
            clearance_days=-1 if lapse == "clearance" else 900,
            training_days=-1 if lapse == "training" else 900,
            status=PersonStatus.SUSPENDED if lapse == "suspended" else PersonStatus.ACTIVE,
        )
        actor = world.principal(member)
        if lapse == "position":
            with container.unit() as unit:
                person = unit.directory.person(member.person.id)
                person.positions[0].ends_on = container.clock.today() - timedelta(days=1)
                unit.commit()
        with container.unit() as unit:
            with pytest.raises(NotAllowed):
                unit.services.search(actor, SearchQuery())
            with pytest.raises(NotAllowed):
                unit.services.entry(actor, 1)
        assert made  # the directory had services to find

    def test_someone_unknown_is_refused(self, container: Container, world: World) -> None:
        from directory.service import Principal

        with container.unit() as unit, pytest.raises(NotAllowed):
            unit.services.search(Principal(999, "ghost", ()), SearchQuery())


class TestImport:
    def _import(self, container: Container, text: str, **kw: Any) -> Any:
        from idp.cli import operator

        with container.unit() as unit:
            report = unit.services.import_csv(operator(), text, source="services.csv", **kw)
            unit.commit()
            return report

    def test_a_good_file_loads_and_a_rerun_changes_nothing(
        self, container: Container, world: World
    ) -> None:
        org = world.organisation()
        text = csv_text([csv_row(f"R{n}", org) for n in range(30)])
        seen: list[tuple[int, int]] = []
        first = self._import(container, text, progress=lambda d, t: seen.append((d, t)))
        assert (first.rows, first.created, first.updated, first.unchanged) == (30, 30, 0, 0)
        assert seen[-1][0] == seen[-1][1]
        tags = audit_tags(container)
        with container.unit() as unit:
            stamps = list(unit.session.scalars(select(Service.updated_at).order_by(Service.id)))
        again = self._import(container, text)
        assert (again.created, again.updated, again.unchanged) == (0, 0, 30)
        assert count_services(container) == 30
        assert audit_tags(container) == tags
        with container.unit() as unit:
            assert list(unit.session.scalars(
                select(Service.updated_at).order_by(Service.id))) == stamps
            loaded = unit.session.scalar(select(Service).where(Service.source_ref == "R0"))
            assert loaded is not None and loaded.postcode_district == "NE1"

    def test_a_changed_row_updates_the_service_with_the_same_reference(
        self, container: Container, world: World
    ) -> None:
        org = world.organisation()
        rows = [csv_row(f"R{n}", org) for n in range(3)]
        self._import(container, csv_text(rows))
        rows[1]["phone"] = "0191 496 0999"
        rows[2]["ends_on"] = "2021-06-30"
        report = self._import(container, csv_text(rows))
        assert (report.created, report.updated, report.unchanged) == (0, 2, 1)
        with container.unit() as unit:
            changed = unit.session.scalar(select(Service).where(Service.source_ref == "R1"))
            assert changed is not None and changed.phone == "0191 496 0999"
        assert count_services(container) == 3
        assert audit_tags(container)[-1] == "service:imported"

    def test_bad_rows_are_each_reported_and_nothing_is_written(
        self, container: Container, world: World
    ) -> None:
        org = world.organisation()
        self._import(container, csv_text([csv_row("KEEP", org)]))
        before, tags = count_services(container), audit_tags(container)
        rows = [
            csv_row("A1", org),                                   # row 2: fine
            csv_row("A2", org, postcode="NOT A CODE"),            # row 3
            csv_row("A3", org, kind="circus"),                    # row 4
            csv_row("A4", org, organisation_code="NOPE"),         # row 5
            csv_row("A1", org),                                   # row 6: duplicate
            csv_row("A6", org, starts_on="31/12/2020"),           # row 7
            csv_row("A7", org, secure_email="not-an-email"),      # row 8
        ]
        with pytest.raises(InvalidInput) as raised:
            self._import(container, csv_text(rows))
        described = [p.describe() for p in raised.value.problems]
        assert described == [
            "services.csv, row 3, postcode: not a valid UK postcode",
            "services.csv, row 4, kind: not a known kind of service ('circus')",
            "services.csv, row 5, organisation_code: no organisation 'NOPE'",
            "services.csv, row 6, source_ref: 'A1' is also on row 2 for the same organisation",
            "services.csv, row 7, starts_on: not a date in the form YYYY-MM-DD",
            "services.csv, row 8, secure_email: not a valid email address",
        ]
        assert count_services(container) == before
        assert audit_tags(container) == tags

    def test_a_missing_column_is_reported_before_any_row(
        self, container: Container, world: World
    ) -> None:
        org = world.organisation()
        columns = tuple(c for c in CSV_COLUMNS if c != "postcode")
        with pytest.raises(InvalidInput) as raised:
            self._import(container, csv_text([csv_row("A1", org)], columns))
        assert [p.describe() for p in raised.value.problems] == [
            "services.csv, row 1, postcode: column missing from the header"]
        assert count_services(container) == 0

    def test_limiting_to_one_organisation_refuses_rows_of_others(
        self, container: Container, world: World
    ) -> None:
        org, other = world.organisation(), world.organisation("Southshire")
        text = csv_text([csv_row("A1", org), csv_row("B1", other)])
        with pytest.raises(InvalidInput) as raised:
            self._import(container, text, only_organisation=org.code)
        assert [(p.row, p.field) for p in raised.value.problems] == [(3, "organisation_code")]
        assert count_services(container) == 0

    def test_an_organisation_admin_imports_only_their_own_organisations_rows(
        self, container: Container, world: World
    ) -> None:
        org, other = world.organisation(), world.organisation("Southshire")
        admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
        text = csv_text([csv_row("A1", org), csv_row("B1", other)])
        with container.unit() as unit, pytest.raises(InvalidInput) as raised:
            unit.services.import_csv(admin, text, source="x.csv")
        assert [(p.row, p.field) for p in raised.value.problems] == [(3, "organisation_code")]
        assert count_services(container) == 0


def test_the_same_source_ref_may_be_used_by_two_organisations(
    container: Container, world: World
) -> None:
    from idp.cli import operator

    org, other = world.organisation(), world.organisation("Southshire")
    with container.unit() as unit:
        report = unit.services.import_csv(
            operator(), csv_text([csv_row("X", org), csv_row("X", other)]), source="s.csv")
        unit.commit()
        assert report.created == 2
        assert unit.session.scalar(select(func.count()).select_from(Service)) == 2
