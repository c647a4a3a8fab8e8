"""The directory of services: who runs which GP practice, school or team, and
who works in it.

Finding the other practitioners around a child is why people sign in at all,
so search is open to anyone who may use the service today (a current position
in an accredited organisation, valid clearance and training), and to no one
else. Maintaining services is for the admins of the organisation that runs
them, and the platform. Every rule sits here, behind the pages and the CLI.

The CSV bulk load is all or nothing: every row is checked first and every
problem is reported with its row and field, so a supplier fixes the whole file
in one go; only a clean file is written, in one transaction, with bulk
statements, and a re-run of the same file writes nothing.
"""

from __future__ import annotations

import csv
import io
import math
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.crypto import SecretDigester
from core.errors import FieldProblem, InvalidInput, NotAllowed, NotFound
from directory.models import Organisation, Person, PersonStatus, Position, Role
from directory.service import DirectoryService, Principal, access_blockers
from directory.services_models import Service, ServiceKind

PAGE_SIZE = 20
BATCH = 1000

CSV_COLUMNS = (
    "source_ref",
    "organisation_code",
    "name",
    "kind",
    "address_line1",
    "address_line2",
    "town",
    "postcode",
    "phone",
    "secure_email",
    "opening_hours",
    "starts_on",
    "ends_on",
)
# What a service is made of, as maintained by hand or by import (the rest is bookkeeping).
DETAIL_FIELDS = (
    "name",
    "kind",
    "address_line1",
    "address_line2",
    "town",
    "postcode",
    "phone",
    "secure_email",
    "opening_hours",
    "starts_on",
    "ends_on",
)

# The UK postcode format (with the one special case, GIR 0AA), on the postcode
# without spaces: an outward code of 2 to 4 characters, an inward code of 3.
_POSTCODE = re.compile(
    r"^(?:GIR0AA|[A-PR-UWYZ](?:[0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPS-UW]"
    r"|[A-HK-Y][0-9][ABEHMNPRV-Y])[0-9][ABD-HJLNP-UW-Z]{2})$"
)
_PHONE = re.compile(r"^\+?[0-9 ()\-]+$")

Progress = Callable[[int, int], None]


class UnknownService(NotFound):
    error_id = "service.unknown"
    title = "No such service"


def fold_name(name: str) -> str:
    """The form search compares: case and compatibility forms do not matter."""
    return unicodedata.normalize("NFKC", name).strip().casefold()


def normalise_postcode(raw: str) -> tuple[str, str] | None:
    """("SW1A 1AA", "SW1A") for any spacing and case, or None when it is not a
    UK postcode. The district is what search by area compares."""
    compact = "".join(raw.split()).upper()  # split(): the whitespace \s matches, faster
    if not _POSTCODE.match(compact):
        return None
    outward, inward = compact[:-3], compact[-3:]
    return f"{outward} {inward}", outward


def home_postcode_key(digester: SecretDigester, postcode: str) -> str:
    """A person's home postcode as kept: a keyed digest that can be compared
    with a child's address but never read back (a postcode has too little
    entropy for an unkeyed hash). `postcode` is normalised first."""
    return digester.digest("home-postcode\x1f" + re.sub(r"\s+", "", postcode).upper())[:32]


def _text(raw: Mapping[str, object], name: str) -> str:
    value = raw.get(name)
    return "" if value is None else str(value).strip()


def _date(
    raw: Mapping[str, object], name: str, problems: list[FieldProblem], required: bool
) -> date | None:
    value = raw.get(name)
    if isinstance(value, date):
        return value
    text = "" if value is None else str(value).strip()
    if not text and required:
        problems.append(FieldProblem(name, "enter a date"))
    return iso_date(text, name, problems)


def iso_date(text: str, field: str, problems: list[FieldProblem]) -> date | None:
    """A supplied date (already trimmed), None when blank; one that is not
    YYYY-MM-DD is a problem of `field` (the service and child imports)."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(FieldProblem(field, "not a date in the form YYYY-MM-DD"))
        return None


def validate_details(raw: Mapping[str, object]) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Check and normalise a service's details, from a form or a CSV row alike,
    so that both routes accept exactly the same services. Returns the values to
    store and every problem found (not just the first)."""
    problems: list[FieldProblem] = []
    values: dict[str, Any] = {}

    def bounded(name: str, limit: int, required: bool, label: str) -> str | None:
        text = _text(raw, name)
        if not text:
            if required:
                problems.append(FieldProblem(name, f"enter the {label}"))
            return None
        if len(text) > limit:
            problems.append(FieldProblem(name, f"must be {limit} characters or fewer"))
        return text

    values["name"] = bounded("name", 200, True, "name of the service")
    kind_text = _text(raw, "kind")
    try:
        values["kind"] = ServiceKind(kind_text)
    except ValueError:
        problems.append(
            FieldProblem("kind", "select a kind of service" if not kind_text
                         else f"not a known kind of service ({kind_text!r})")
        )
    values["address_line1"] = bounded("address_line1", 200, True, "first line of the address")
    values["address_line2"] = bounded("address_line2", 200, False, "")
    values["town"] = bounded("town", 100, True, "town or city")

    postcode_text = _text(raw, "postcode")
    postcode = normalise_postcode(postcode_text) if postcode_text else None
    if not postcode_text:
        problems.append(FieldProblem("postcode", "enter a postcode"))
    elif postcode is None:
        problems.append(FieldProblem("postcode", "not a valid UK postcode"))
    else:
        values["postcode"], values["postcode_district"] = postcode

    phone = _text(raw, "phone")
    digits = sum(ch.isdigit() for ch in phone)
    if not phone:
        problems.append(FieldProblem("phone", "enter a phone number"))
    elif not _PHONE.match(phone) or not 10 <= digits <= 15 or len(phone) > 40:
        problems.append(FieldProblem("phone", "not a valid phone number"))
    values["phone"] = phone

    email = _text(raw, "secure_email")
    values["secure_email"] = None
    if email:
        try:
            values["secure_email"] = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError:
            problems.append(FieldProblem("secure_email", "not a valid email address"))

    values["opening_hours"] = bounded("opening_hours", 500, False, "")
    values["starts_on"] = _date(raw, "starts_on", problems, required=True)
    values["ends_on"] = _date(raw, "ends_on", problems, required=False)
    if values["starts_on"] and values["ends_on"] and values["ends_on"] < values["starts_on"]:
        problems.append(FieldProblem("ends_on", "must be on or after the start date"))
    if values["name"]:
        values["name_folded"] = fold_name(values["name"])
    return values, problems


@dataclass(frozen=True)
class SearchQuery:
    """What a practitioner searches by. `name` matches anywhere in the name
    (or only at its start with `prefix`), whatever the case."""

    name: str = ""
    prefix: bool = False
    kind: ServiceKind | None = None
    organisation_id: int | None = None
    postcode_district: str = ""
    include_closed: bool = False
    page: int = 1


@dataclass(frozen=True)
class Practitioner:
    """A practitioner as the directory shows them: work contact details only."""

    person_id: int
    position_id: int
    name: str
    work_email: str
    work_phone: str | None
    role: Role


@dataclass(frozen=True)
class ServiceEntry:
    service: Service
    practitioners: list[Practitioner]
    closed: bool


@dataclass(frozen=True)
class ServicePage:
    items: list[ServiceEntry]
    total: int
    page: int
    per_page: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


@dataclass
class ImportReport:
    source: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[FieldProblem] = field(default_factory=list)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class ServicesService:
    session: Session
    clock: Clock
    audit: Auditor
    directory: DirectoryService

    # --- who may do what -------------------------------------------------

    def require_user(self, actor: Principal) -> None:
        """Search and detail are for people who may use the service today; the
        person is read afresh, so a clearance that lapsed this morning counts."""
        try:
            person = self.directory.person(actor.person_id)
        except NotFound:
            raise NotAllowed() from None
        if access_blockers(person, self.clock.today()):
            raise NotAllowed()

    @staticmethod
    def may_maintain(actor: Principal, organisation_id: int) -> bool:
        return actor.is_platform_admin or actor.has_role(Role.ORGANISATION_ADMIN, organisation_id)

    def require_maintainer(self, actor: Principal, organisation_id: int) -> None:
        if not self.may_maintain(actor, organisation_id):
            raise NotAllowed()

    def maintainable_organisations(self, actor: Principal) -> list[Organisation]:
        if actor.is_platform_admin:
            return self.directory.organisations()
        ids = actor.organisations_with(Role.ORGANISATION_ADMIN)
        return [o for o in self.directory.organisations() if o.id in ids]

    # --- reading ---------------------------------------------------------

    def search(self, actor: Principal, query: SearchQuery) -> ServicePage:
        self.require_user(actor)
        today = self.clock.today()
        stmt = select(Service)
        name = fold_name(query.name)
        if name:
            pattern = f"{_escape_like(name)}%" if query.prefix else f"%{_escape_like(name)}%"
            stmt = stmt.where(Service.name_folded.like(pattern, escape="\\"))
        if query.kind is not None:
            stmt = stmt.where(Service.kind == query.kind)
        if query.organisation_id is not None:
            stmt = stmt.where(Service.organisation_id == query.organisation_id)
        district = re.sub(r"\s+", "", query.postcode_district).upper()
        if district:
            stmt = stmt.where(Service.postcode_district == district)
        if not query.include_closed:
            stmt = stmt.where(or_(Service.ends_on.is_(None), Service.ends_on >= today))
        total = int(
            self.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        )
        page = max(1, min(query.page, max(1, math.ceil(total / PAGE_SIZE))))
        rows = list(
            self.session.scalars(
                stmt.order_by(Service.name_folded, Service.id)
                .offset((page - 1) * PAGE_SIZE)
                .limit(PAGE_SIZE)
            )
        )
        people = self._practitioners([s.id for s in rows], today)
        items = [
            ServiceEntry(s, people.get(s.id, []), s.ends_on is not None and s.ends_on < today)
            for s in rows
        ]
        return ServicePage(items, total, page)

    def entry(self, actor: Principal, service_id: int) -> ServiceEntry:
        self.require_user(actor)
        service = self._service(service_id)
        today = self.clock.today()
        closed = service.ends_on is not None and service.ends_on < today
        return ServiceEntry(service, self._practitioners([service.id], today).get(service.id, []),
                            closed)

    def _service(self, service_id: int) -> Service:
        service = self.session.get(Service, service_id)
        if service is None:
            raise UnknownService()
        return service

    def _practitioners(
        self, service_ids: Sequence[int], today: date
    ) -> dict[int, list[Practitioner]]:
        """Active people whose current position is in one of these services, in
        one query for the whole page."""
        if not service_ids:
            return {}
        stmt = (
            select(Position, Person)
            .join(Person, Person.id == Position.person_id)
            .where(
                Position.service_id.in_(service_ids),
                Position.starts_on <= today,
                or_(Position.ends_on.is_(None), Position.ends_on >= today),
                Person.status == PersonStatus.ACTIVE,
            )
            .order_by(Person.family_name, Person.given_name, Position.id)
        )
        found: dict[int, list[Practitioner]] = {}
        for position, person in self.session.execute(stmt):
            assert position.service_id is not None
            found.setdefault(position.service_id, []).append(
                Practitioner(person.id, position.id, person.display_name, person.work_email,
                             person.work_phone, position.role)
            )
        return found

    # --- maintaining -----------------------------------------------------

    def service_for_maintenance(self, actor: Principal, service_id: int) -> Service:
        """The service, for someone who may change it; others learn nothing more."""
        service = self._service(service_id)
        self.require_maintainer(actor, service.organisation_id)
        return service

    def create(
        self, actor: Principal, organisation_id: int, details: Mapping[str, object]
    ) -> Service:
        self.require_maintainer(actor, organisation_id)
        organisation = self.directory.organisation(organisation_id)
        values, problems = validate_details(details)
        if problems:
            raise InvalidInput(problems)
        now = self.clock.now()
        service = Service(organisation_id=organisation.id, created_at=now, updated_at=now, **values)
        self.session.add(service)
        self.session.flush()
        self.audit.record(
            "service:created",
            subject_type="service",
            subject_id=service.id,
            organisation_id=organisation.id,
            detail={"name": service.name, "kind": service.kind.value},
        )
        return service

    def update(self, actor: Principal, service_id: int, details: Mapping[str, object]) -> Service:
        service = self.service_for_maintenance(actor, service_id)
        values, problems = validate_details(details)
        if problems:
            raise InvalidInput(problems)
        changed = _apply(service, values)
        if changed:
            service.updated_at = self.clock.now()
            self.audit.record(
                "service:updated",
                subject_type="service",
                subject_id=service.id,
                organisation_id=service.organisation_id,
                detail={"changed": sorted(changed)},
            )
        return service

    def close(self, actor: Principal, service_id: int, ends_on: date | None = None) -> Service:
        """End the service (yesterday by default, so it leaves search at once); it
        stays in the directory's history."""
        service = self.service_for_maintenance(actor, service_id)
        day = ends_on or date.fromordinal(self.clock.today().toordinal() - 1)
        if day < service.starts_on:
            raise InvalidInput(FieldProblem("ends_on", "must be on or after the start date"))
        service.ends_on = day
        service.updated_at = self.clock.now()
        self.audit.record(
            "service:closed",
            subject_type="service",
            subject_id=service.id,
            organisation_id=service.organisation_id,
            detail={"ends_on": day.isoformat()},
        )
        return service

    def attach_position(
        self, actor: Principal, position_id: int, service_id: int | None
    ) -> Position:
        """Place a practitioner's position in a service of the same organisation
        (or take it out, with None): only that organisation's admins may."""
        position = self.session.get(Position, position_id)
        if position is None:
            raise NotFound()
        self.require_maintainer(actor, position.organisation_id)
        if service_id is not None:
            service = self._service(service_id)
            if service.organisation_id != position.organisation_id:
                raise InvalidInput(
                    FieldProblem("service_id", "the service is run by another organisation")
                )
        position.service_id = service_id
        self.audit.record(
            "service:position_attached" if service_id else "service:position_detached",
            subject_type="position",
            subject_id=position.id,
            organisation_id=position.organisation_id,
            detail={"service_id": service_id, "person_id": position.person_id},
        )
        return position

    def place_person(self, actor: Principal, service_id: int, person_id: int) -> Position:
        """Place someone in a service through their current position in the
        organisation that runs it. People with no such position get the same
        refusal as people who do not exist, so the form reveals no one."""
        service = self.service_for_maintenance(actor, service_id)
        today = self.clock.today()
        position = self.session.scalar(
            select(Position)
            .where(
                Position.person_id == person_id,
                Position.organisation_id == service.organisation_id,
                Position.starts_on <= today,
                or_(Position.ends_on.is_(None), Position.ends_on >= today),
            )
            .order_by(Position.id)
            .limit(1)
        )
        if position is None:
            raise InvalidInput(FieldProblem(
                "username", "there is no one with that username working in the organisation "
                "that runs this service"
            ))
        return self.attach_position(actor, position.id, service.id)

    def remove_position(self, actor: Principal, service_id: int, position_id: int) -> Position:
        """Take a position out of a service (the person stays in the organisation)."""
        service = self.service_for_maintenance(actor, service_id)
        position = self.session.get(Position, position_id)
        if position is None or position.service_id != service.id:
            raise NotFound()
        return self.attach_position(actor, position.id, None)

    # --- bulk load -------------------------------------------------------

    def import_csv(
        self,
        actor: Principal,
        content: str,
        *,
        source: str,
        only_organisation: str | None = None,
        progress: Progress | None = None,
    ) -> ImportReport:
        """Check every row, then write all of them or none (InvalidInput lists
        every problem). Rows are numbered as a spreadsheet shows them: the
        header is row 1. The caller commits."""
        report = ImportReport(source=source)
        reader = csv.reader(io.StringIO(content.removeprefix("\ufeff")))
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise InvalidInput(
                [FieldProblem(c, "column missing from the header", 1, source) for c in missing]
            )
        rows = list(reader)
        total = len(rows)
        orgs = {o.code: o.id for o in self.directory.organisations()}
        if only_organisation is not None and only_organisation not in orgs:
            raise InvalidInput(FieldProblem("--org", f"no organisation with code "
                                            f"{only_organisation!r}", None, source))
        problems: list[FieldProblem] = []
        seen: dict[tuple[int, str], int] = {}
        parsed: list[tuple[int, str, dict[str, Any]]] = []
        for index, cells in enumerate(rows):
            number = index + 2
            if not any(c.strip() for c in cells):
                continue  # a blank line, as spreadsheets leave at the end
            if len(cells) != len(header):
                problems.append(FieldProblem(
                    "row", f"has {len(cells)} values, the header has {len(header)}", number, source
                ))
                continue
            raw = dict(zip(header, cells, strict=True))
            values, row_problems = validate_details(raw)
            code = raw["organisation_code"].strip()
            org_id = orgs.get(code)
            if not code:
                row_problems.append(FieldProblem("organisation_code", "enter an organisation code"))
            elif org_id is None:
                row_problems.append(FieldProblem("organisation_code", f"no organisation {code!r}"))
            elif only_organisation is not None and code != only_organisation:
                row_problems.append(FieldProblem(
                    "organisation_code", f"not {only_organisation} (the import is limited to it)"
                ))
            elif not self.may_maintain(actor, org_id):
                row_problems.append(FieldProblem(
                    "organisation_code", f"you do not maintain the services of {code}"
                ))
            ref = raw["source_ref"].strip()
            if not ref:
                row_problems.append(FieldProblem("source_ref", "enter the supplier's reference"))
            elif len(ref) > 100:
                row_problems.append(FieldProblem("source_ref", "must be 100 characters or fewer"))
            elif org_id is not None:
                first = seen.setdefault((org_id, ref), number)
                if first != number:
                    row_problems.append(FieldProblem(
                        "source_ref", f"{ref!r} is also on row {first} for the same organisation"
                    ))
            problems.extend(FieldProblem(p.field, p.message, number, source) for p in row_problems)
            if not row_problems and org_id is not None:
                values["organisation_id"] = org_id
                parsed.append((number, ref, values))
            if progress and number % BATCH == 0:
                progress(index + 1, total * 2)
        report.rows = len(parsed)
        if problems:
            report.problems = problems
            raise InvalidInput(problems)
        if progress:
            progress(total, total * 2)
        self._write(parsed, report, total, progress)
        if report.created or report.updated:
            self.audit.record(
                "service:imported",
                subject_type="service_file",
                subject_id=source[:80],
                detail={"created": report.created, "updated": report.updated,
                        "unchanged": report.unchanged, "rows": report.rows},
            )
        if progress:
            progress(total * 2, total * 2)
        return report

    def _write(
        self,
        parsed: list[tuple[int, str, dict[str, Any]]],
        report: ImportReport,
        total: int,
        progress: Progress | None,
    ) -> None:
        """Compare with what is stored and send only inserts and real changes,
        in batches of bulk statements."""
        org_ids = {values["organisation_id"] for _, _, values in parsed}
        existing: dict[tuple[int, str], tuple[int, tuple[object, ...]]] = {}
        columns = [getattr(Service, name) for name in DETAIL_FIELDS]
        stmt = select(Service.id, Service.organisation_id, Service.source_ref, *columns).where(
            Service.organisation_id.in_(org_ids), Service.source_ref.is_not(None)
        )
        for row in self.session.execute(stmt):
            existing[(row[1], row[2])] = (row[0], tuple(row[3:]))
        now = self.clock.now()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for _number, ref, values in parsed:
            known = existing.get((values["organisation_id"], ref))
            if known is None:
                inserts.append({**values, "source_ref": ref, "public_id": str(uuid.uuid4()),
                                "created_at": now, "updated_at": now})
            elif known[1] != tuple(values.get(name) for name in DETAIL_FIELDS):
                updates.append({**values, "id": known[0], "updated_at": now})
            else:
                report.unchanged += 1
        done = 0
        for batch in _chunks(inserts, BATCH):
            self.session.execute(insert(Service), batch)
            done += len(batch)
            if progress:
                progress(total + done, total * 2)
        for batch in _chunks(updates, BATCH):
            self.session.execute(update(Service), batch)
            done += len(batch)
            if progress:
                progress(total + done, total * 2)
        self.session.flush()
        report.created = len(inserts)
        report.updated = len(updates)

    def count(self) -> int:
        return int(self.session.scalar(select(func.count()).select_from(Service)) or 0)


def _apply(service: Service, values: Mapping[str, Any]) -> list[str]:
    changed = []
    for name, value in values.items():
        if getattr(service, name) != value:
            setattr(service, name, value)
            changed.append(name)
    return changed


def _chunks(items: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def as_details(service: Service) -> dict[str, object]:
    """A service's details in the shape `validate_details` takes (for edit forms)."""
    return {name: getattr(service, name) for name in DETAIL_FIELDS}


__all__ = [
    "CSV_COLUMNS",
    "PAGE_SIZE",
    "ImportReport",
    "Practitioner",
    "SearchQuery",
    "ServiceEntry",
    "ServicePage",
    "ServicesService",
    "UnknownService",
    "as_details",
    "fold_name",
    "normalise_postcode",
    "validate_details",
]
