"""Loading child records supplied by a body (a council, a health body, a
school's management system): CSV, or the same fields as JSON lines.

One pass over the file, in one transaction: valid rows are written in batches
of bulk statements as they come; after the first bad row nothing more is
written but every row is still checked, so the supplier sees every problem
(row number and field) at once, and the caller rolls the whole file back. A
row is matched to a record by the body's own identifier for the child, then by
name + date of birth + postcode (as a keyed digest, so no postcode is stored in
clear). What the body last sent is kept as a digest, so a re-run of the same
file writes nothing. Data that disagrees with a record another body supplied
goes to the responsible local authority team's queue, not over the top.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    Boolean,
    Connection,
    Date,
    Enum,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.crypto import DataCipher, SecretDigester
from core.db import Base, UTCDateTime
from core.errors import FieldProblem, InvalidInput
from directory.children.models import (
    Child,
    ChildConflict,
    ChildFormerName,
    ChildInvolvement,
    ChildSupply,
    Gender,
    InvolvementRole,
    ReturnIntention,
    Whereabouts,
)
from directory.children.rules import identifier_for, name_key
from directory.models import Organisation, OrganisationKind, Role
from directory.service import Principal
from directory.services import normalise_postcode
from directory.services_models import Service, ServiceKind

BATCH = 2000
# SQLite's page cache during a load (KiB), put back to the default afterwards.
LOAD_CACHE_KIB = 1024 * 1024
MAX_PROBLEMS = 200
# What a first load writes into, its indexes rebuilt at the end.
FIRST_LOAD_TABLES = ("child", "child_supply", "child_former_name", "child_involvement")
SCHEMES = ("nhs_number", "pupil_number", "local_id")

COLUMNS = (
    "source_scheme", "source_id", "local_authority", "forename", "surname", "former_names",
    "gender", "date_of_birth", "date_of_death", "whereabouts", "address_line1", "address_line2",
    "town", "postcode", "return_intention", "carer1_name", "carer1_relationship",
    "carer1_phone", "carer2_name", "carer2_relationship", "carer2_phone", "school",
    "school_start", "gp_practice", "retain_to_25",
)
_COLUMN_SET = frozenset(COLUMNS)
REQUIRED = ("local_authority", "forename", "surname", "gender", "date_of_birth", "whereabouts")

Progress = Callable[[int], None]


@dataclass
class LoadReport:
    source: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    linked: int = 0
    unchanged: int = 0
    conflicts: int = 0
    problems: list[FieldProblem] = field(default_factory=list)


@dataclass
class _Row:
    number: int
    values: dict[str, Any]
    content: dict[str, Any]
    content_digest: str
    match_key: str
    id_digest: str | None


def read_rows(path: Path) -> tuple[Iterator[tuple[int, dict[str, Any]]], int]:
    """The rows of a file with their numbers (as a spreadsheet or an editor
    shows them) and how many there are: CSV, or JSON lines for `.jsonl`/`.ndjson`."""
    with path.open("rb") as handle:
        total = sum(1 for _ in handle)
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        return _json_rows(path), total
    return _csv_rows(path), max(0, total - 1)


def file_digest(path: Path) -> str:
    """SHA-256 of the file as supplied, for the import's audit entry: which
    exact file a body's load was, whatever it was called."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, {"__error__": f"not valid JSON ({error.msg})"}
                continue
            yield number, value if isinstance(value, dict) else {"__error__": "not an object"}


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield from csv_rows(handle)


def csv_rows(handle: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(handle)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InvalidInput([FieldProblem(c, "column missing from the header", 1) for c in missing])
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield number, {"__error__": f"has {len(cells)} values, the header has {len(header)}"}
            continue
        yield number, dict(zip(header, cells, strict=True))


def csv_text_rows(content: str) -> Iterator[tuple[int, dict[str, Any]]]:
    return csv_rows(io.StringIO(content.removeprefix("\ufeff")))


def _text(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if value.__class__ is str:
        return value.strip()
    return "" if value is None else str(value).strip()


def _date(raw: Mapping[str, Any], name: str, problems: list[FieldProblem]) -> date | None:
    value = _text(raw, name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(FieldProblem(name, "not a date in the form YYYY-MM-DD"))
        return None


def _name(raw: Mapping[str, Any], name: str, problems: list[FieldProblem], label: str,
          required: bool = True) -> str:
    value = " ".join(_text(raw, name).split())
    if not value:
        if required:
            problems.append(FieldProblem(name, f"enter the {label}"))
    elif len(value) > 100:
        problems.append(FieldProblem(name, "must be 100 characters or fewer"))
    elif not name_key(value):
        problems.append(FieldProblem(name, "must contain letters"))
    return value


@dataclass
class ChildLoader:
    session: Session
    clock: Clock
    audit: Auditor
    cipher: DataCipher
    digester: SecretDigester

    def _digest(self, *parts: str) -> str:
        return self.digester.digest("\x1f".join(parts))[:32]

    def match_key(self, forename: str, surname: str, born: date, postcode: str) -> str:
        return self._digest("match", name_key(surname), name_key(forename), born.isoformat(),
                            postcode.replace(" ", "").upper())

    # --- checking one row ------------------------------------------------

    def _check(self, raw: Mapping[str, Any], las: Mapping[str, int],
               services: Mapping[str, tuple[int, ServiceKind]], today: date,
               ) -> tuple[dict[str, Any], list[FieldProblem]]:
        problems: list[FieldProblem] = []
        if "__error__" in raw:
            return {}, [FieldProblem("row", str(raw["__error__"]))]
        unknown = [] if raw.keys() <= _COLUMN_SET else sorted(set(raw) - _COLUMN_SET)
        for name in unknown:
            # A fixed schema: a column we do not hold (a "concern", a note) is refused.
            problems.append(FieldProblem(name, "not a field of the child record"))
        v: dict[str, Any] = {}
        scheme, source_id = _text(raw, "source_scheme"), _text(raw, "source_id")
        if source_id and scheme not in SCHEMES:
            problems.append(FieldProblem("source_scheme", f"one of {', '.join(SCHEMES)}"))
        if scheme == "nhs_number" and source_id and not _nhs_ok(source_id):
            problems.append(FieldProblem("source_id", "not a valid NHS number"))
        if len(source_id) > 40:
            problems.append(FieldProblem("source_id", "must be 40 characters or fewer"))
        v["scheme"], v["source_id"] = (scheme or None, source_id or None)
        la = _text(raw, "local_authority")
        if not la:
            problems.append(FieldProblem("local_authority", "enter the local authority's code"))
        elif la not in las:
            problems.append(FieldProblem("local_authority", f"no local authority {la!r}"))
        v["la_id"] = las.get(la)
        v["forename"] = _name(raw, "forename", problems, "forename")
        v["surname"] = _name(raw, "surname", problems, "surname")
        former_raw = raw.get("former_names") or []
        formers = former_raw if isinstance(former_raw, list) else [
            f for f in str(former_raw).split("|") if f.strip()]
        v["former_names"] = []
        for former in formers:
            parts = " ".join(str(former).split()).rsplit(" ", 1)
            if len(parts) != 2 or not name_key(parts[1]) or len(parts[1]) > 100:
                problems.append(FieldProblem("former_names", "each as 'Forename Surname', "
                                             "separated by |"))
                break
            v["former_names"].append(parts)
        try:
            v["gender"] = Gender(_text(raw, "gender") or "?")
        except ValueError:
            problems.append(FieldProblem("gender", "female, male or not_specified"))
        born = _date(raw, "date_of_birth", problems)
        if born is None and not _text(raw, "date_of_birth"):
            problems.append(FieldProblem("date_of_birth", "enter the date of birth"))
        elif born is not None and born > today:
            problems.append(FieldProblem("date_of_birth", "must be in the past"))
        v["date_of_birth"] = born
        died = _date(raw, "date_of_death", problems)
        if died and born and died < born:
            problems.append(FieldProblem("date_of_death", "must be on or after the date of birth"))
        if died and died > today:
            problems.append(FieldProblem("date_of_death", "must not be in the future"))
        v["date_of_death"] = died
        try:
            v["whereabouts"] = Whereabouts(_text(raw, "whereabouts") or "?")
        except ValueError:
            problems.append(FieldProblem("whereabouts", "current_address, last_known_address, "
                                         "no_known_address or left_england"))
        postcode_text = _text(raw, "postcode")
        postcode = normalise_postcode(postcode_text) if postcode_text else None
        if postcode_text and postcode is None:
            problems.append(FieldProblem("postcode", "not a valid UK postcode"))
        address = {k: " ".join(_text(raw, k).split())[:200]
                   for k in ("address_line1", "address_line2", "town")}
        where = v.get("whereabouts")
        if where in (Whereabouts.CURRENT_ADDRESS, Whereabouts.LAST_KNOWN_ADDRESS):
            if not address["address_line1"]:
                problems.append(FieldProblem("address_line1", "enter the first line of the "
                                             "address"))
            if not postcode_text:
                problems.append(FieldProblem("postcode", "enter the postcode"))
            v["address"] = {**address, "postcode": postcode[0] if postcode else ""}
            v["postcode_district"] = postcode[1] if postcode else None
        else:
            v["address"] = None
            v["postcode_district"] = None
        intention = _text(raw, "return_intention")
        v["return_intention"] = None
        if where is Whereabouts.LEFT_ENGLAND:
            try:
                v["return_intention"] = ReturnIntention(intention or "unknown")
            except ValueError:
                problems.append(FieldProblem("return_intention", "yes, no or unknown"))
        carers = []
        for n in (1, 2):
            carer = _name(raw, f"carer{n}_name", problems, "name", required=False)
            if not carer:
                continue
            phone = _text(raw, f"carer{n}_phone")
            if phone and not _phone_ok(phone):
                problems.append(FieldProblem(f"carer{n}_phone", "not a valid phone number"))
            carers.append({"name": carer,
                           "relationship": _text(raw, f"carer{n}_relationship")[:40],
                           "phone": phone})
        v["carers"] = carers
        for column, kinds in (
            ("school", {ServiceKind.SCHOOL, ServiceKind.EARLY_YEARS_SETTING,
                        ServiceKind.FURTHER_EDUCATION}),
            ("gp_practice", {ServiceKind.GP_PRACTICE}),
        ):
            ref = _text(raw, column)
            v[column] = None
            if ref:
                found = services.get(ref)
                if found is None or found[1] not in kinds:
                    problems.append(FieldProblem(column, f"no {column.replace('_', ' ')} with "
                                                 f"id {ref!r} in the service directory"))
                else:
                    v[column] = found[0]
        v["school_start"] = _date(raw, "school_start", problems)
        consent = _text(raw, "retain_to_25").lower()
        if consent not in {"", "yes", "no", "true", "false"}:
            problems.append(FieldProblem("retain_to_25", "yes or no"))
        v["retain_to_25"] = consent in {"yes", "true"}
        return v, problems

    # --- the load --------------------------------------------------------

    def load(
        self,
        operator: Principal,
        rows: Iterable[tuple[int, dict[str, Any]]],
        *,
        source_code: str,
        file_label: str,
        progress: Progress | None = None,
        digest: str | None = None,
    ) -> LoadReport:
        """Load every row or raise InvalidInput listing the problems; the
        caller commits (or rolls back)."""
        operator.require(Role.PLATFORM_ADMIN)
        source = self.session.scalar(select(Organisation).where(Organisation.code == source_code))
        if source is None:
            raise InvalidInput(FieldProblem("--source", f"no organisation {source_code!r}",
                                            None, file_label))
        today = self.clock.today()
        sqlite = self.session.get_bind().dialect.name == "sqlite"
        if sqlite:
            # Identifiers, match keys and public ids are random, so each insert
            # touches random index pages: with SQLite's 2 MB default cache a
            # big load spends its time re-reading and re-writing them.
            self.session.execute(text(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}"))
        try:
            report = self._load(operator, rows, source, file_label, progress, today, digest)
            if sqlite:
                # SQLite keeps no statistics unless asked: without them it may
                # pick the surname + date-of-birth index for a district search.
                self.session.execute(text("PRAGMA optimize"))
            return report
        finally:
            if sqlite and self.session.is_active:
                self.session.execute(text("PRAGMA cache_size=-2000"))

    def _load(self, operator: Principal, rows: Iterable[tuple[int, dict[str, Any]]],
              source: Organisation, file_label: str, progress: Progress | None,
              today: date, digest: str | None) -> LoadReport:
        report = LoadReport(source=file_label)
        las = {code: oid for code, oid in self.session.execute(
            select(Organisation.code, Organisation.id)
            .where(Organisation.kind == OrganisationKind.LOCAL_AUTHORITY))}
        services = {pid: (sid, kind) for pid, sid, kind in self.session.execute(
            select(Service.public_id, Service.id, Service.kind).where(Service.kind.in_(
                (ServiceKind.SCHOOL, ServiceKind.EARLY_YEARS_SETTING,
                 ServiceKind.FURTHER_EDUCATION, ServiceKind.GP_PRACTICE))))}
        self._next_id: int | None = None
        self._first_load = False
        restore: list[str] = []
        try:
            self._check_and_write(rows, source, file_label, progress, today, report, las,
                                  services, restore)
        except InvalidInput:
            # The caller rolls back; the indexes go back anyway, so a caller
            # that committed regardless would not leave tables without them.
            self._restore_indexes(restore)
            raise
        self._restore_indexes(restore)
        self.audit.record(
            "children:imported", subject_type="child_file", subject_id=file_label[-80:],
            organisation_id=source.id,
            detail={"source": source.code, "rows": report.rows, "created": report.created,
                    "updated": report.updated, "linked": report.linked,
                    "unchanged": report.unchanged, "conflicts": report.conflicts,
                    "first_load": self._first_load,
                    **({"sha256": digest} if digest else {})},
        )
        return report

    def _check_and_write(self, rows: Iterable[tuple[int, dict[str, Any]]],
                         source: Organisation, file_label: str, progress: Progress | None,
                         today: date, report: LoadReport, las: Mapping[str, int],
                         services: Mapping[str, tuple[int, ServiceKind]],
                         restore: list[str]) -> None:
        seen_ids: dict[str, int] = {}
        seen_match: dict[str, int] = {}
        batch: list[_Row] = []
        problems = report.problems
        written = False
        for number, raw in rows:
            report.rows += 1
            values, row_problems = self._check(raw, las, services, today)
            if not row_problems:
                row = self._prepare(number, values, source.id)
                if row.id_digest is not None:
                    first = seen_ids.setdefault(row.id_digest, number)
                    if first != number:
                        row_problems.append(FieldProblem(
                            "source_id", f"the same identifier is on row {first}"))
                first = seen_match.setdefault(row.match_key, number)
                if first != number and row.id_digest is None:
                    row_problems.append(FieldProblem(
                        "surname", f"the same child (name, date of birth, postcode) is on "
                        f"row {first}"))
            if row_problems:
                problems.extend(FieldProblem(p.field, p.message, number, file_label)
                                for p in row_problems)
                batch.clear()
                if len(problems) >= MAX_PROBLEMS:
                    problems.append(FieldProblem("file", "too many problems; stopped checking",
                                                 None, file_label))
                    break
                continue
            if problems:
                continue  # checking only, nothing more is written
            batch.append(row)
            if len(batch) >= BATCH:
                if not written:
                    # A full first batch: a large file. Into an empty directory
                    # it is a first load, written without index upkeep.
                    restore.extend(self._begin_first_load())
                    written = True
                self._write(batch, source.id, report)
                batch = []
                if progress:
                    progress(report.rows)
        if problems:
            raise InvalidInput(problems)
        if batch:
            self._write(batch, source.id, report)
        if progress:
            progress(report.rows)

    def _prepare(self, number: int, v: dict[str, Any], source_id: int) -> _Row:
        content = {
            "la": v["la_id"], "forename": v["forename"], "surname": v["surname"],
            "former": v["former_names"], "gender": v["gender"].value,
            "born": v["date_of_birth"].isoformat(),
            "died": v["date_of_death"].isoformat() if v["date_of_death"] else None,
            "where": v["whereabouts"].value, "address": v["address"],
            "return": v["return_intention"].value if v["return_intention"] else None,
            "carers": v["carers"], "school": v["school"],
            "school_start": v["school_start"].isoformat() if v["school_start"] else None,
            "gp": v["gp_practice"], "retain_to_25": v["retain_to_25"],
        }
        digest = self._digest("content", repr(sorted(content.items())))
        v["forename_key"], v["surname_key"] = name_key(v["forename"]), name_key(v["surname"])
        postcode = v["address"]["postcode"] if v["address"] else ""
        id_digest = (self._digest("source", v["scheme"], v["source_id"])
                     if v["source_id"] else None)
        match = self._digest("match", v["surname_key"], v["forename_key"],
                             v["date_of_birth"].isoformat(), postcode.replace(" ", ""))
        return _Row(number, v, content, digest, match, id_digest)

    def _allocate(self, count: int) -> list[int]:
        """Row ids for new children before they are written, so their
        identifiers, ciphertexts and dependants go out in the same bulk statements."""
        bind = self.session.get_bind()
        if bind.dialect.name == "postgresql":
            return list(self.session.scalars(
                text("SELECT nextval(pg_get_serial_sequence('child', 'id')) "
                     "FROM generate_series(1, :n)"), {"n": count}))
        if self._next_id is None:
            self._next_id = int(self.session.scalar(text("SELECT coalesce(max(id), 0) FROM child"))
                                or 0) + 1
        start = self._next_id
        self._next_id += count
        return list(range(start, start + count))

    def _begin_first_load(self) -> list[str]:
        """When the directory holds no child yet, drop the child tables'
        secondary indexes (and, on PostgreSQL, their unique constraints and the
        foreign keys to the child table) for the rest of this transaction, and
        return the statements that put them back.

        Keys such as the match key, the directory's identifier and the
        supplier's identifier digest are random, so every row inserted into
        those indexes lands on a random page: once the indexes outgrow the
        database's buffer cache (PostgreSQL's 128 MB here, at well under a
        million records) each row costs several page reads and writes, and on
        PostgreSQL a full-page image in the WAL after every checkpoint. Built
        at the end by sorting, the same indexes take seconds. Nothing can be
        matched against an empty directory, so no row needs them meanwhile;
        rows that repeat each other within the file are caught in memory as
        before. The DDL is part of the load's transaction: a failed load rolls
        back to the indexes as they were. On PostgreSQL the child tables are
        locked (ACCESS EXCLUSIVE) until the load commits: searches wait, but
        there is nothing to find yet."""
        connection = self.session.connection()
        if connection.dialect.name == "postgresql":
            if connection.exec_driver_sql("SELECT 1 FROM child LIMIT 1").first() is not None:
                return []
            connection.exec_driver_sql(
                f"LOCK TABLE {', '.join(FIRST_LOAD_TABLES)} IN ACCESS EXCLUSIVE MODE")
        else:
            raw = connection.connection.driver_connection
            if raw is not None and not raw.in_transaction:
                # pysqlite opens a transaction only before DML; the DDL below
                # must be inside the load's own.
                connection.exec_driver_sql("BEGIN")
        # Checked again under the lock: another load may have committed first.
        if connection.exec_driver_sql("SELECT 1 FROM child LIMIT 1").first() is not None:
            return []
        drop, restore = deferred_index_statements(connection, FIRST_LOAD_TABLES)
        for statement in drop:
            connection.exec_driver_sql(statement)
        self._first_load = True
        return restore

    def _restore_indexes(self, restore: list[str]) -> None:
        if not restore:
            return
        connection = self.session.connection()
        postgresql = connection.dialect.name == "postgresql"
        if postgresql:
            # For this transaction only: sorting a national load's keys in
            # memory rather than in many temporary files.
            connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
        for statement in restore:
            connection.exec_driver_sql(statement)
        if postgresql:
            # Fresh statistics before the first search, rather than whenever
            # autovacuum next comes round (SQLite's PRAGMA optimize follows).
            connection.exec_driver_sql(f"ANALYZE {', '.join(FIRST_LOAD_TABLES)}")

    def _write(self, batch: list[_Row], source_id: int, report: LoadReport) -> None:
        now = self.clock.now()
        by_id = {} if self._first_load else {r.id_digest: r for r in batch if r.id_digest}
        supplies: dict[int, ChildSupply] = {}  # row number -> supply
        if by_id:
            for supply in self.session.scalars(select(ChildSupply).where(
                    ChildSupply.organisation_id == source_id,
                    ChildSupply.id_digest.in_(list(by_id)))):
                supplies[by_id[supply.id_digest].number] = supply  # type: ignore[index]
        rest = {} if self._first_load else {
            r.match_key: r for r in batch if r.number not in supplies}
        matched: dict[int, Child] = {}
        if rest:
            for child in self.session.scalars(select(Child).where(
                    Child.match_key.in_(list(rest)), Child.archived_on.is_(None))):
                matched[rest[child.match_key].number] = child
        children = {c.id: c for c in self.session.scalars(select(Child).where(
            Child.id.in_([s.child_id for s in supplies.values()])))} if supplies else {}
        linked = {s.child_id: s for s in self.session.scalars(select(ChildSupply).where(
            ChildSupply.organisation_id == source_id,
            ChildSupply.child_id.in_([c.id for c in matched.values()])))} if matched else {}
        new_rows = [r for r in batch if r.number not in supplies and r.number not in matched]
        ids = self._allocate(len(new_rows)) if new_rows else []
        connection = self.session.connection()
        sqlite = connection.dialect.name == "sqlite"
        # New records go out as tuples already in the driver's terms (one
        # conversion of the batch's constants, none per value): at a million
        # rows the per-value conversion was a tenth of the load's CPU.
        day = _sqlite_date if sqlite else _same
        stamp = _sqlite_datetime(now) if sqlite else _utc_naive(now)
        no = 0 if sqlite else False
        child_tuples: list[tuple[Any, ...]] = []
        supply_tuples: list[tuple[Any, ...]] = []
        supply_rows: list[dict[str, Any]] = []
        involvement_rows: list[dict[str, Any]] = []
        former_rows: list[dict[str, Any]] = []
        for row, child_id in zip(new_rows, ids, strict=True):
            v = row.values
            public_id = _time_ordered_uuid()
            address, carers = self._sealed(row, public_id)
            intention = v["return_intention"]
            child_tuples.append((
                child_id, public_id, identifier_for(child_id), v["la_id"], v["forename"],
                v["surname"], v["forename_key"], v["surname_key"], v["gender"].value,
                day(v["date_of_birth"]), day(v["date_of_death"]), v["whereabouts"].value,
                address, v["postcode_district"], intention.value if intention else None,
                carers, row.match_key, row.content_digest, source_id, no,
                (1 if sqlite else True) if v["retain_to_25"] else no, None, stamp, stamp))
            supply_tuples.append((
                child_id, source_id, v["scheme"], self._sealed_id(row, public_id, source_id),
                row.id_digest, row.content_digest, stamp))
            if v["school"] is not None or v["gp_practice"] is not None:
                involvement_rows.extend(self._involvements(row, child_id, source_id, now))
            if v["former_names"]:
                former_rows.extend(self._formers(row, child_id))
        report.created += len(new_rows)
        for row in batch:
            known = supplies.get(row.number)
            record = children.get(known.child_id) if known else matched.get(row.number)
            if record is None:
                continue
            if known is None:
                known = linked.get(record.id)
            if known is not None and known.row_digest == row.content_digest:
                report.unchanged += 1
                continue
            if known is None:
                supply_rows.append(self._supply_values(row, record.id, record.public_id,
                                                       source_id, now))
                report.linked += 1
            else:
                known.row_digest = row.content_digest
                known.supplied_at = now
            if record.content_digest == row.content_digest:
                continue
            if record.supplied_by_id in (None, source_id):
                self._update(record, row, source_id, now)
                report.updated += 1
            else:
                self._conflict(record, row, source_id, now)
                report.conflicts += 1
        self.session.flush()
        if child_tuples:
            copy_rows(connection, Child.__tablename__, _CHILD_COLUMNS, child_tuples)
            copy_rows(connection, ChildSupply.__tablename__, _SUPPLY_COLUMNS, supply_tuples)
        for model, values in ((ChildSupply, supply_rows), (ChildInvolvement, involvement_rows),
                              (ChildFormerName, former_rows)):
            if values:
                bulk_insert(connection, model.__tablename__, values)

    def _sealed(self, row: _Row, public_id: str) -> tuple[str | None, str | None]:
        v = row.values
        address = (self.cipher.encrypt_text(json.dumps(v["address"]),
                                            f"child:{public_id}:address")
                   if v["address"] else None)
        carers = (self.cipher.encrypt_text(json.dumps(v["carers"]), f"child:{public_id}:carers")
                  if v["carers"] else None)
        return address, carers

    def _child_values(self, row: _Row, child_id: int, public_id: str, source_id: int,
                      now: Any) -> dict[str, Any]:
        v = row.values
        address, carers = self._sealed(row, public_id)
        return {
            "id": child_id, "public_id": public_id, "identifier": identifier_for(child_id),
            "responsible_la_id": v["la_id"], "forename": v["forename"], "surname": v["surname"],
            "forename_key": v["forename_key"], "surname_key": v["surname_key"],
            "gender": v["gender"], "date_of_birth": v["date_of_birth"],
            "date_of_death": v["date_of_death"], "whereabouts": v["whereabouts"],
            "address_enc": address, "postcode_district": v["postcode_district"],
            "return_intention": v["return_intention"], "carers_enc": carers,
            "match_key": row.match_key, "content_digest": row.content_digest,
            "supplied_by_id": source_id, "shielded": False, "retain_to_25": v["retain_to_25"],
            "archived_on": None, "created_at": now, "updated_at": now,
        }

    def _sealed_id(self, row: _Row, public_id: str, source_id: int) -> str | None:
        source_ref = row.values["source_id"]
        return (self.cipher.encrypt_text(source_ref, f"child:{public_id}:source:{source_id}")
                if source_ref else None)

    def _supply_values(self, row: _Row, child_id: int, public_id: str, source_id: int,
                       now: Any) -> dict[str, Any]:
        return dict(zip(_SUPPLY_COLUMNS, (
            child_id, source_id, row.values["scheme"], self._sealed_id(row, public_id, source_id),
            row.id_digest, row.content_digest, now), strict=True))

    @staticmethod
    def _involvements(row: _Row, child_id: int, source_id: int, now: Any) -> list[dict[str, Any]]:
        v = row.values
        out = []
        for column, role, start in (
            ("school", InvolvementRole.EDUCATIONAL_SETTING, v["school_start"]),
            ("gp_practice", InvolvementRole.GP_PRACTICE, None),
        ):
            if v[column] is not None:
                out.append({"child_id": child_id, "service_id": v[column],
                            "practitioner_id": None, "role": role, "starts_on": start,
                            "ends_on": None, "lead_professional": False,
                            "assessment_held": False, "sensitive": False,
                            "sensitive_basis": None, "source_org_id": source_id,
                            "created_at": now})
        return out

    @staticmethod
    def _formers(row: _Row, child_id: int) -> list[dict[str, Any]]:
        v = row.values
        return [{"child_id": child_id, "forename": f, "surname": s, "surname_key": name_key(s),
                 "date_of_birth": v["date_of_birth"], "postcode_district": v["postcode_district"]}
                for f, s in v["former_names"]]

    def apply_content(self, child: Child, content: dict[str, Any], digest: str,
                      source_id: int) -> None:
        """Write content a body supplied (a queued conflict the team accepted)
        over the record, as if that body's load had done it."""
        address = content["address"]
        postcode = normalise_postcode(address["postcode"]) if address else None
        values = {
            "la_id": content["la"], "forename": content["forename"],
            "surname": content["surname"], "former_names": content["former"],
            "gender": Gender(content["gender"]),
            "date_of_birth": date.fromisoformat(content["born"]),
            "date_of_death": date.fromisoformat(content["died"]) if content["died"] else None,
            "whereabouts": Whereabouts(content["where"]), "address": address,
            "postcode_district": postcode[1] if postcode else None,
            "return_intention": ReturnIntention(content["return"]) if content["return"] else None,
            "carers": content["carers"], "school": content["school"],
            "school_start": (date.fromisoformat(content["school_start"])
                             if content["school_start"] else None),
            "gp_practice": content["gp"], "retain_to_25": content["retain_to_25"],
            "forename_key": name_key(content["forename"]),
            "surname_key": name_key(content["surname"]),
        }
        match = self._digest("match", values["surname_key"], values["forename_key"],
                             content["born"], address["postcode"].replace(" ", "")
                             if address else "")
        self._update(child, _Row(0, values, content, digest, match, None), source_id,
                     self.clock.now())

    def proposed(self, conflict: ChildConflict) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(
            self.cipher.decrypt_text(conflict.proposed_enc, f"conflict:{conflict.id}"))
        return loaded

    def _update(self, child: Child, row: _Row, source_id: int, now: Any) -> None:
        values = self._child_values(row, child.id, child.public_id, source_id, now)
        for name in ("id", "public_id", "identifier", "created_at", "shielded", "archived_on"):
            values.pop(name)
        for name, value in values.items():
            setattr(child, name, value)
        self.session.flush()
        self.session.execute(delete(ChildInvolvement).where(
            ChildInvolvement.child_id == child.id, ChildInvolvement.source_org_id == source_id))
        self.session.execute(delete(ChildFormerName).where(
            ChildFormerName.child_id == child.id))
        for values_list, model in ((self._involvements(row, child.id, source_id, now),
                                    ChildInvolvement),
                                   (self._formers(row, child.id), ChildFormerName)):
            if values_list:
                self.session.execute(insert(model), values_list)
        self.audit.record("children:record_updated", subject_type="child",
                          subject_id=child.identifier, organisation_id=child.responsible_la_id,
                          detail={"source": source_id})

    def _conflict(self, child: Child, row: _Row, source_id: int, now: Any) -> None:
        pending = self.session.scalar(select(ChildConflict.id).where(
            ChildConflict.child_id == child.id, ChildConflict.source_org_id == source_id,
            ChildConflict.proposed_digest == row.content_digest,
            ChildConflict.resolved_at.is_(None)))
        if pending is not None:
            return
        current = self._current_content(child)
        fields = sorted(k for k, value in row.content.items() if current.get(k) != value)
        conflict = ChildConflict(
            child_id=child.id, organisation_id=child.responsible_la_id, source_org_id=source_id,
            fields=fields, proposed_enc="", proposed_digest=row.content_digest, raised_at=now,
        )
        self.session.add(conflict)
        self.session.flush()
        conflict.proposed_enc = self.cipher.encrypt_text(
            json.dumps(row.content), f"conflict:{conflict.id}")
        self.session.execute(update(Child).where(Child.id == child.id).values(updated_at=now))
        self.audit.record("children:conflict_queued", subject_type="child",
                          subject_id=child.identifier, organisation_id=child.responsible_la_id,
                          detail={"source": source_id, "fields": fields})

    def _current_content(self, child: Child) -> dict[str, Any]:
        address = (json.loads(self.cipher.decrypt_text(child.address_enc,
                                                       f"child:{child.public_id}:address"))
                   if child.address_enc else None)
        carers = (json.loads(self.cipher.decrypt_text(child.carers_enc,
                                                      f"child:{child.public_id}:carers"))
                  if child.carers_enc else [])
        former = [[f.forename, f.surname] for f in self.session.scalars(
            select(ChildFormerName).where(ChildFormerName.child_id == child.id)
            .order_by(ChildFormerName.id))]
        settings = {inv.role: inv for inv in self.session.scalars(
            select(ChildInvolvement).where(ChildInvolvement.child_id == child.id,
                                           ChildInvolvement.source_org_id.is_not(None)))}
        school = settings.get(InvolvementRole.EDUCATIONAL_SETTING)
        gp = settings.get(InvolvementRole.GP_PRACTICE)
        return {
            "la": child.responsible_la_id, "forename": child.forename, "surname": child.surname,
            "former": former, "school": school.service_id if school else None,
            "school_start": school.starts_on.isoformat() if school and school.starts_on else None,
            "gp": gp.service_id if gp else None,
            "gender": child.gender.value, "born": child.date_of_birth.isoformat(),
            "died": child.date_of_death.isoformat() if child.date_of_death else None,
            "where": child.whereabouts.value, "address": address,
            "return": child.return_intention.value if child.return_intention else None,
            "carers": carers, "retain_to_25": child.retain_to_25,
        }


def _time_ordered_uuid() -> str:
    """A version 7 UUID (milliseconds, then random bits): new records land at
    the end of the public-id index instead of on a random page of it."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62 \
        | rand & (2**62 - 1)
    return str(uuid.UUID(int=value))


_CHILD_COLUMNS = (
    "id", "public_id", "identifier", "responsible_la_id", "forename", "surname", "forename_key",
    "surname_key", "gender", "date_of_birth", "date_of_death", "whereabouts", "address_enc",
    "postcode_district", "return_intention", "carers_enc", "match_key", "content_digest",
    "supplied_by_id", "shielded", "retain_to_25", "archived_on", "created_at", "updated_at",
)
_SUPPLY_COLUMNS = (
    "child_id", "organisation_id", "scheme", "id_enc", "id_digest", "row_digest", "supplied_at",
)


def _same(value: Any) -> Any:
    return value


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _utc_naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def _sqlite_datetime(value: datetime | None) -> str | None:
    naive = _utc_naive(value)
    return None if naive is None else naive.strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _sqlite_bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _converters(table: str, columns: list[str], sqlite: bool
                ) -> list[Callable[[Any], Any] | None]:
    """Per column, what turns a Python value into what the driver stores (as
    SQLAlchemy would have stored it), or None when it goes as it is."""
    found: list[Callable[[Any], Any] | None] = []
    for name in columns:
        kind = Base.metadata.tables[table].c[name].type
        if isinstance(kind, Enum):
            found.append(_enum_value)
        elif isinstance(kind, UTCDateTime):
            found.append(_sqlite_datetime if sqlite else _utc_naive)
        elif isinstance(kind, Date):
            found.append(_sqlite_date if sqlite else None)
        elif isinstance(kind, Boolean):
            found.append(_sqlite_bool if sqlite else None)
        else:
            found.append(None)
    return found


def bulk_insert(connection: Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert many rows the fastest way each engine offers, inside the caller's
    transaction: COPY on PostgreSQL, the driver's executemany on SQLite. A
    million records is tens of millions of values; going around SQLAlchemy's
    per-value processing is what makes the load rate."""
    columns = tuple(rows[0])
    sqlite = connection.dialect.name == "sqlite"
    plan = list(zip(columns, _converters(table, list(columns), sqlite), strict=True))
    copy_rows(connection, table, columns,
              [tuple(row[c] if f is None else f(row[c]) for c, f in plan) for row in rows])


def copy_rows(connection: Connection, table: str, columns: tuple[str, ...],
              tuples: list[tuple[Any, ...]]) -> None:
    """Write rows already in the driver's terms (see `_converters`)."""
    names = ", ".join(columns)
    dialect = connection.dialect.name
    sqlite = dialect == "sqlite"
    if dialect == "postgresql":
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for values in tuples:
                copy.write_row(values)
        return
    marks = ", ".join("?" if sqlite else "%s" for _ in columns)
    # table and column names are our own model's, never input
    statement = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
    connection.exec_driver_sql(statement, tuples)


def deferred_index_statements(connection: Connection, tables: Iterable[str]
                              ) -> tuple[list[str], list[str]]:
    """The statements that drop the secondary indexes of `tables` and those
    that recreate them, read from the database's own catalogue so they match
    what the migrations made. Primary keys stay. On PostgreSQL unique
    constraints are dropped and added back as constraints, and foreign keys
    between these tables too; foreign keys to other tables (organisations,
    services) stay, since dropping one would lock that table as well."""
    names = list(tables)
    quote = connection.dialect.identifier_preparer.quote
    drop: list[str] = []
    restore: list[str] = []
    if connection.dialect.name == "postgresql":
        keys = connection.execute(text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid = ANY(CAST(:tables AS regclass[])) "
            "AND confrelid = ANY(CAST(:tables AS regclass[])) ORDER BY 1, 2"),
            {"tables": names}).all()
        indexes = connection.execute(text(
            "SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid), c.conname, "
            "pg_get_constraintdef(c.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.contype = 'u' "
            "AND c.conrelid = x.indrelid "
            "WHERE x.indrelid = ANY(CAST(:tables AS regclass[])) AND NOT x.indisprimary "
            "ORDER BY 1, 2"), {"tables": names}).all()
        for table, name, _definition in keys:
            drop.append(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}")
        for table, name, definition, constraint, constraint_definition in indexes:
            if constraint is not None:
                drop.append(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(constraint)}")
                restore.append(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(constraint)} "
                               f"{constraint_definition}")
            else:
                drop.append(f"DROP INDEX {quote(name)}")
                restore.append(definition)
        restore.extend(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} {definition}"
                       for table, name, definition in keys)
        return drop, restore
    # SQLite: indexes made by CREATE INDEX; those of UNIQUE constraints are part
    # of their table (sql IS NULL) and cannot be dropped.
    for name, definition in connection.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN :tables ORDER BY tbl_name, name"
            ).bindparams(bindparam("tables", expanding=True)), {"tables": names}):
        drop.append(f"DROP INDEX {quote(name)}")
        restore.append(definition)
    return drop, restore


_ASCII_PHONE = re.compile(r"[0-9 +()\-]*")


def _phone_ok(phone: str) -> bool:
    """Digits, spaces and + ( ) - only, with 10 to 15 digits. The regular
    expression is the fast path for the ASCII numbers nearly every file holds."""
    if phone.isascii():
        if _ASCII_PHONE.fullmatch(phone) is None:
            return False
    elif not all(c.isdigit() or c in " +()-" for c in phone):
        return False
    return 10 <= sum(map(str.isdigit, phone)) <= 15


def _nhs_ok(value: str) -> bool:
    """The NHS number's modulus-11 check digit."""
    digits = value.replace(" ", "")
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9]))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])
