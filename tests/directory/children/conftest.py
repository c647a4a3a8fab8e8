"""A small world for child-record tests: two councils, a health body and a
police force, their staff, services, and children loaded through the real
loader (so every test also exercises the import path)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from directory.children.loading import LoadReport, csv_text_rows
from directory.children.models import Child
from directory.children.preparing import COLUMNS
from directory.children.service import Reason
from directory.models import Organisation, OrganisationKind, Role
from directory.service import Grant, Principal
from directory.services_models import Service
from idp.container import Container
from tests.factories import Member, World
from tests.runlog import remember_child

OPERATOR = Principal(0, "cli:test", (Grant(0, Role.PLATFORM_ADMIN),))
REASON = Reason("child_protection", "Referral from school nurse, case 1234")


def row(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {c: "" for c in COLUMNS}
    base.update({
        "local_authority": "ORG001", "forename": "Amelia", "surname": "Hartley",
        "gender": "female", "date_of_birth": "2015-03-14", "whereabouts": "current_address",
        "address_line1": "12 Station Road", "town": "Northtown", "postcode": "NE1 4AB",
        "carer1_name": "Joanne Hartley", "carer1_relationship": "mother",
        "carer1_phone": "07700 900123",
    })
    base.update({k: str(v) for k, v in values.items()})
    remember_child(base)
    return base


def as_csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns))
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return out.getvalue()


@dataclass
class Kids:
    container: Container
    world: World
    la: Organisation
    other_la: Organisation
    health: Organisation
    police: Organisation
    practitioner: Member
    team: Member
    other_team: Member
    nurse: Member
    constable: Member
    school: Service
    gp: Service
    sexual_health: Service

    def p(self, member: Member) -> Principal:
        return self.world.principal(member)

    def load(self, rows: list[dict[str, Any]], source: str = "ORG001") -> LoadReport:
        with self.container.unit() as unit:
            report = unit.child_loader.load(OPERATOR, csv_text_rows(as_csv(rows)),
                                            source_code=source, file_label="test.csv")
            unit.commit()
            return report

    def child(self, surname: str, forename: str | None = None) -> Child:
        from sqlalchemy import select
        with self.container.unit() as unit:
            stmt = select(Child).where(Child.surname == surname)
            if forename:
                stmt = stmt.where(Child.forename == forename)
            found = unit.session.scalars(stmt).one()
            unit.session.expunge(found)
            return found

    def shield(self, child: Child) -> None:
        with self.container.unit() as unit:
            unit.children.decide_shield(self.p(self.team), child.public_id,
                                        criteria="domestic_abuse",
                                        evidence_reference="MARAC 2026/117", shield=True)
            unit.commit()


def _service(container: Container, org: Organisation, name: str, kind: str, postcode: str
             ) -> Service:
    with container.unit() as unit:
        svc = unit.services.create(OPERATOR, org.id, {
            "name": name, "kind": kind, "address_line1": "1 Civic Way", "town": "Northtown",
            "postcode": postcode, "phone": "0191 496 0000", "starts_on": "2020-01-01",
        })
        unit.commit()
        unit.session.expunge(svc)
        return svc


@pytest.fixture
def kids(container: Container, world: World) -> Iterator[Kids]:
    la = world.organisation("Northshire County Council")  # ORG001
    other_la = world.organisation("Southshire Council")  # ORG002
    health = world.organisation("Northshire Health", OrganisationKind.HEALTH_BODY)  # ORG003
    police = world.organisation("Northshire Police", OrganisationKind.POLICE_FORCE)  # ORG004
    made = Kids(
        container, world, la, other_la, health, police,
        practitioner=world.member(la, family_name="Prentice"),
        team=world.member(la, Role.LOCAL_AUTHORITY_TEAM, family_name="Teamson"),
        other_team=world.member(other_la, Role.LOCAL_AUTHORITY_TEAM, family_name="Southey"),
        nurse=world.member(health, family_name="Nightingale"),
        constable=world.member(police, family_name="Bobby"),
        school=_service(container, la, "Northtown Primary", "school", "NE1 1AA"),
        gp=_service(container, health, "Quayside Surgery", "gp_practice", "NE1 2BB"),
        sexual_health=_service(container, health, "Clinic 4YP", "sexual_health", "NE1 3DD"),
    )
    with container.unit() as unit:
        unit.children.set_area(OPERATOR, la.id, ["NE1", "NE2", "NE3"])
        unit.children.set_area(OPERATOR, other_la.id, ["SO1"])
        unit.commit()
    yield made


def hartleys(kids: Kids) -> Kids:
    """Four Hartleys in NE1 at the same school and GP, each with a former
    surname; the third, Carly, is shielded."""
    kids.load([
        row(forename=name, date_of_birth=f"2015-0{n + 1}-10", postcode=f"NE1 {n}AB",
            school=kids.school.public_id, gp_practice=kids.gp.public_id,
            school_start="2019-09-04", former_names=f"{name} Brooks")
        for n, name in enumerate(["Alice", "Bella", "Carly", "Daisy"])
    ])
    kids.shield(kids.child("Hartley", "Carly"))
    return kids


def today(container: Container) -> date:
    return container.clock.today()


def audit_entries(kids: Kids, tag: str) -> list[Any]:
    from sqlalchemy import select

    from core.audit import AuditEntry
    with kids.container.unit() as unit:
        found = list(unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == tag).order_by(AuditEntry.seq)))
        unit.session.expunge_all()
        return found


def schema_of(kids: Kids) -> dict[str, Any]:
    """Every index, unique constraint and foreign key of the tables a first
    load rebuilds, as the database itself reports them."""
    from sqlalchemy import inspect

    from directory.children.loading import FIRST_LOAD_TABLES
    found: dict[str, Any] = {}
    with kids.container.engine.connect() as conn:
        seen = inspect(conn)
        for table in FIRST_LOAD_TABLES:
            found[table] = (
                sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                       for i in seen.get_indexes(table)),
                sorted((u["name"], tuple(u["column_names"]))
                       for u in seen.get_unique_constraints(table)),
                sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                       for f in seen.get_foreign_keys(table)),
            )
    return found
