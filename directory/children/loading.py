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

Parsing, checking, keying and sealing a row (directory.children.preparing)
needs no database; for a large file it runs in worker processes, which are
handed the file as blocks of text (FileRows), while this process matches and
writes, and the rows come back in file order, so everything that depends on
order (the same child twice, where writing stops) is decided here as before.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, bindparam, delete, insert, select, text, update
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.crypto import DataCipher, SecretDigester
from core.errors import FieldProblem, InvalidInput
from directory.children.models import (
    SETTING_KINDS,
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
from directory.children.preparing import (
    CHUNK,
    NULL,
    REQUIRED,
    Chunk,
    Lookups,
    PreparedRow,
    RowBlock,
    RowPreparer,
    RowProblems,
    content_match_key,
    copy_line,
    csv_records,
    default_workers,
    district_of,
    in_chunks,
    involvements,
    prepared_rows,
)
from directory.children.rules import identifiers_for, name_key
from directory.models import Organisation, OrganisationKind, Role
from directory.service import Principal
from directory.services_models import Service

BATCH = 2000
# SQLite's page cache during a load (KiB), put back to the default afterwards.
LOAD_CACHE_KIB = 1024 * 1024
MAX_PROBLEMS = 200
# What a first load writes into, its indexes rebuilt at the end.
FIRST_LOAD_TABLES = ("child", "child_supply", "child_former_name", "child_involvement")

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


def read_rows(path: Path) -> tuple[FileRows, int]:
    """The rows of a file with their numbers (as a spreadsheet or an editor
    shows them) and how many there are: CSV, or JSON lines for `.jsonl`/`.ndjson`."""
    with path.open("rb") as handle:
        total = sum(1 for _ in handle)
    rows = FileRows(path)
    return rows, total if rows.json else max(0, total - 1)


def file_digest(path: Path) -> str:
    """SHA-256 of the file as supplied, for the import's audit entry: which
    exact file a body's load was, whatever it was called."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class FileRows:
    """A file's rows, read as blocks of text cut where a row ends (RowBlock),
    so that they are parsed where they are prepared. Iterating gives the rows
    themselves, parsed here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.json = path.suffix.lower() in {".jsonl", ".ndjson", ".json"}

    def __iter__(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        for block in self.blocks():
            yield from block.rows()

    def blocks(self) -> Iterator[RowBlock]:
        if self.json:
            with self.path.open(encoding="utf-8") as handle:
                number = 1
                while lines := list(itertools.islice(handle, CHUNK)):
                    yield RowBlock(number, len(lines), "".join(lines), None)
                    number += len(lines)
            return
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            header = csv_header(next(csv.reader(handle), []))
            number = 2
            while lines := list(itertools.islice(handle, CHUNK)):
                count = len(lines)
                # RFC 4180 quotes only whole fields and doubles a quote in one,
                # so a line with an odd number of quotes is a row going on to
                # the next line: then the csv module itself says where rows end.
                if any(line.count('"') & 1 for line in lines):
                    lines, count = _whole_rows(lines, handle)
                yield RowBlock(number, count, "".join(lines), header)
                number += count


def _whole_rows(lines: list[str], handle: IO[str]) -> tuple[list[str], int]:
    """At least `lines`, and the lines after them that finish the row they
    end in, with the number of rows in them (as csv.reader counts)."""
    taken: list[str] = []

    def feed() -> Iterator[str]:
        for line in itertools.chain(lines, handle):
            taken.append(line)
            yield line

    count = 0
    for _cells in csv.reader(feed()):
        count += 1
        if len(taken) >= len(lines):
            break
    return taken, count


def csv_header(cells: list[str]) -> tuple[str, ...]:
    header = tuple(h.strip() for h in cells)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InvalidInput([FieldProblem(c, "column missing from the header", 1) for c in missing])
    return header


def csv_rows(handle: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of CSV text already open (read here, in this process)."""
    reader = csv.reader(handle)
    return csv_records(reader, csv_header(next(reader, [])), 2)


def csv_text_rows(content: str) -> Iterator[tuple[int, dict[str, Any]]]:
    return csv_rows(io.StringIO(content.removeprefix("\ufeff")))


@dataclass
class ChildLoader:
    session: Session
    clock: Clock
    audit: Auditor
    cipher: DataCipher
    digester: SecretDigester
    # Processes that prepare a large file's rows beside the one writing
    # (preparing.prepared_rows); 0 prepares every row in this process.
    workers: int = field(default_factory=default_workers)

    # --- the load --------------------------------------------------------

    def load(
        self,
        operator: Principal,
        rows: Iterable[tuple[int, Mapping[str, Any]]] | FileRows,
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
        sqlite = self.session.get_bind().dialect.name == "sqlite"
        if sqlite:
            # Identifiers, match keys and public ids are random, so each insert
            # touches random index pages: with SQLite's 2 MB default cache a
            # big load spends its time re-reading and re-writing them.
            self.session.execute(text(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}"))
        try:
            report = self._load(operator, rows, source, file_label, progress, digest)
            if sqlite:
                # SQLite keeps no statistics unless asked: without them it may
                # pick the surname + date-of-birth index for a district search.
                self.session.execute(text("PRAGMA optimize"))
            return report
        finally:
            if sqlite and self.session.is_active:
                self.session.execute(text("PRAGMA cache_size=-2000"))

    def preparer(self, source_id: int) -> RowPreparer:
        """What checks, keys and seals rows for a load from `source_id`, with
        the local authorities and services read once."""
        las = {code: oid for code, oid in self.session.execute(
            select(Organisation.code, Organisation.id)
            .where(Organisation.kind == OrganisationKind.LOCAL_AUTHORITY))}
        services = {pid: (sid, kind) for pid, sid, kind in self.session.execute(
            select(Service.public_id, Service.id, Service.kind).where(Service.kind.in_(
                sorted(set().union(*SETTING_KINDS.values())))))}
        return RowPreparer(Lookups(las, services, self.clock.today(), source_id),
                           self.cipher, self.digester,
                           copy_text=self.session.get_bind().dialect.name == "postgresql")

    def _load(self, operator: Principal, rows: Iterable[tuple[int, Mapping[str, Any]]] | FileRows,
              source: Organisation, file_label: str, progress: Progress | None,
              digest: str | None) -> LoadReport:
        report = LoadReport(source=file_label)
        self._preparer = self.preparer(source.id)
        self._next_id: int | None = None
        self._first_load = False
        restore: list[str] = []
        try:
            self._check_and_write(rows, source, file_label, progress, report, restore)
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

    def _check_and_write(self, rows: Iterable[tuple[int, Mapping[str, Any]]] | FileRows,
                         source: Organisation, file_label: str, progress: Progress | None,
                         report: LoadReport, restore: list[str]) -> None:
        """Rows come back prepared in file order (from worker processes for a
        large file); what depends on earlier rows happens here: the same child
        twice, when to stop writing, when to stop checking."""
        seen_ids: dict[str, int] = {}
        seen_match: dict[str, int] = {}
        batch: list[tuple[PreparedRow, Chunk]] = []
        problems = report.problems
        written = False
        chunks = rows.blocks() if isinstance(rows, FileRows) else in_chunks(rows)
        outcomes = prepared_rows(chunks, self._preparer, self.workers)
        try:
            for row, chunk in outcomes:
                report.rows += 1
                number = row.number
                row_problems = (row.problems if isinstance(row, RowProblems)
                                else _repeated(row, seen_ids, seen_match))
                if row_problems:
                    problems.extend(FieldProblem(p.field, p.message, number, file_label)
                                    for p in row_problems)
                    batch.clear()
                    if len(problems) >= MAX_PROBLEMS:
                        problems.append(FieldProblem(
                            "file", "too many problems; stopped checking", None, file_label))
                        break
                    continue
                if problems:
                    continue  # checking only, nothing more is written
                assert isinstance(row, PreparedRow)
                batch.append((row, chunk))
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
        finally:
            outcomes.close()  # stops any workers now, not when collected
        if problems:
            raise InvalidInput(problems)
        if batch:
            self._write(batch, source.id, report)
        if progress:
            progress(report.rows)

    def _allocate(self, count: int) -> list[int]:
        """Row ids for new children before they are written, so their
        identifiers, ciphertexts and dependants go out in the same bulk statements."""
        bind = self.session.get_bind()
        if bind.dialect.name == "postgresql":
            # One array, not a result row an id: fetching 2,000 rows a batch
            # through the ORM cost more than the ids themselves.
            ids: list[int] = self.session.scalar(
                text("SELECT array_agg(nextval(pg_get_serial_sequence('child', 'id'))) "
                     "FROM generate_series(1, :n)"), {"n": count})
            return ids
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

    def _write(self, batch: list[tuple[PreparedRow, Chunk]], source_id: int,
               report: LoadReport) -> None:
        now = self.clock.now()
        by_id = {} if self._first_load else {r.id_digest: r for r, _ in batch if r.id_digest}
        supplies: dict[int, ChildSupply] = {}  # row number -> supply
        if by_id:
            for supply in self.session.scalars(select(ChildSupply).where(
                    ChildSupply.organisation_id == source_id,
                    ChildSupply.id_digest.in_(list(by_id)))):
                supplies[by_id[supply.id_digest].number] = supply  # type: ignore[index]
        rest = {} if self._first_load else {
            r.match_key: r for r, _ in batch if r.number not in supplies}
        matched: dict[int, Child] = {}
        if rest:
            for child in self.session.scalars(select(Child).where(
                    Child.match_key.in_(list(rest)), Child.archived_on.is_(None))):
                matched[rest[child.match_key].number] = child
        linked: dict[int, ChildSupply] = {}  # child id -> this body's supply of it
        if matched:
            linked = {s.child_id: s for s in self.session.scalars(select(ChildSupply).where(
                ChildSupply.organisation_id == source_id,
                ChildSupply.child_id.in_([c.id for c in matched.values()])))}
            self._unmatch_other_identifiers(batch, matched, linked)
        new_rows = [r for r, _ in batch if r.number not in supplies and r.number not in matched]
        ids = self._allocate(len(new_rows)) if new_rows else []
        report.created += len(new_rows)
        # Rows that found a record: (child id, scheme, sealed id, id digest,
        # content digest) of each supply to add.
        links = (self._apply_matches(batch, supplies, matched, linked, source_id, now, report)
                 if supplies or matched else [])
        self.session.flush()
        connection = self.session.connection()
        if self._preparer.copy_text:
            tables = _copy_text_tables(new_rows, ids, links, source_id, now)
        else:
            tables = _tuple_tables(new_rows, ids, links, source_id, now,
                                   sqlite=connection.dialect.name == "sqlite")
        for table, columns, rows in tables:
            if rows:
                copy_rows(connection, table, columns, rows)

    @staticmethod
    def _unmatch_other_identifiers(batch: list[tuple[PreparedRow, Chunk]],
                                   matched: dict[int, Child],
                                   linked: dict[int, ChildSupply]) -> None:
        """A row found by name, date of birth and postcode is not that record
        when the same body already holds the record under another identifier:
        by the body's own account they are two children (two without an
        address, say, who share a name and birthday). Without this the second
        became the first when an earlier batch or load had written it, and
        stayed apart when both were in one batch."""
        for row, _chunk in batch:
            child = matched.get(row.number)
            known = linked.get(child.id) if child is not None else None
            if (known is not None and known.id_digest is not None and row.id_digest is not None
                    and known.id_digest != row.id_digest):
                del matched[row.number]

    def _apply_matches(self, batch: list[tuple[PreparedRow, Chunk]],
                       supplies: dict[int, ChildSupply], matched: dict[int, Child],
                       linked: dict[int, ChildSupply], source_id: int, now: datetime,
                       report: LoadReport) -> list[tuple[Any, ...]]:
        """Rows that found an existing record: unchanged ones counted, a body's
        first row for a record linked, changes written or queued."""
        children = {c.id: c for c in self.session.scalars(select(Child).where(
            Child.id.in_([s.child_id for s in supplies.values()])))} if supplies else {}
        links: list[tuple[Any, ...]] = []
        for row, chunk in batch:
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
                sealed = self._sealed_id(row.source_ref, record.public_id, source_id)
                links.append((record.id, row.scheme, sealed, row.id_digest, row.content_digest))
                report.linked += 1
            else:
                known.row_digest = row.content_digest
                known.supplied_at = now
            if record.content_digest == row.content_digest:
                continue
            # The content, for the few rows that change a record, from the row
            # as supplied (what came back from a worker leaves it out).
            checked = self._preparer.check(chunk.raw(row.number))
            assert not isinstance(checked, list), "a row that passed once passes again"
            if record.supplied_by_id in (None, source_id):
                self._update(record, checked.content, row.content_digest, row.match_key,
                             source_id, now)
                report.updated += 1
            else:
                self._conflict(record, checked.content, row.content_digest, source_id, now)
                report.conflicts += 1
        return links

    def _sealed_id(self, source_ref: str | None, public_id: str, source_id: int) -> str | None:
        return (self.cipher.encrypt_text(source_ref, f"child:{public_id}:source:{source_id}")
                if source_ref else None)

    def apply_content(self, child: Child, content: dict[str, Any], digest: str,
                      source_id: int) -> None:
        """Write content a body supplied (a queued conflict the team accepted)
        over the record, as if that body's load had done it."""
        self._update(child, content, digest, content_match_key(self.digester, content),
                     source_id, self.clock.now())

    def proposed(self, conflict: ChildConflict) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(
            self.cipher.decrypt_text(conflict.proposed_enc, f"conflict:{conflict.id}"))
        return loaded

    def _update(self, child: Child, content: dict[str, Any], digest: str, match_key: str,
                source_id: int, now: Any) -> None:
        address = content["address"]
        public_id = child.public_id
        values = {
            "responsible_la_id": content["la"], "forename": content["forename"],
            "surname": content["surname"], "forename_key": name_key(content["forename"]),
            "surname_key": name_key(content["surname"]), "gender": Gender(content["gender"]),
            "date_of_birth": date.fromisoformat(content["born"]),
            "date_of_death": date.fromisoformat(content["died"]) if content["died"] else None,
            "whereabouts": Whereabouts(content["where"]),
            "address_enc": self.cipher.encrypt_text(json.dumps(address),
                                                    f"child:{public_id}:address")
            if address else None,
            "postcode_district": district_of(content),
            "return_intention": ReturnIntention(content["return"]) if content["return"] else None,
            "carers_enc": self.cipher.encrypt_text(json.dumps(content["carers"]),
                                                   f"child:{public_id}:carers")
            if content["carers"] else None,
            "match_key": match_key, "content_digest": digest, "supplied_by_id": source_id,
            "retain_to_25": content["retain_to_25"], "updated_at": now,
        }
        for name, value in values.items():
            setattr(child, name, value)
        self.session.flush()
        self.session.execute(delete(ChildInvolvement).where(
            ChildInvolvement.child_id == child.id, ChildInvolvement.source_org_id == source_id))
        self.session.execute(delete(ChildFormerName).where(
            ChildFormerName.child_id == child.id))
        settings = [{"child_id": child.id, "service_id": service, "practitioner_id": None,
                     "role": InvolvementRole(role),
                     "starts_on": date.fromisoformat(start) if start else None,
                     "ends_on": None, "lead_professional": False, "assessment_held": False,
                     "sensitive": False, "sensitive_basis": None, "source_org_id": source_id,
                     "created_at": now} for service, role, start in involvements(content)]
        formers = [{"child_id": child.id, "forename": f, "surname": s,
                    "surname_key": name_key(s), "date_of_birth": values["date_of_birth"],
                    "postcode_district": values["postcode_district"]}
                   for f, s in content["former"]]
        for values_list, model in ((settings, ChildInvolvement), (formers, ChildFormerName)):
            if values_list:
                self.session.execute(insert(model), values_list)
        self.audit.record("children:record_updated", subject_type="child",
                          subject_id=child.identifier, organisation_id=child.responsible_la_id,
                          detail={"source": source_id})

    def _conflict(self, child: Child, content: dict[str, Any], digest: str, source_id: int,
                  now: Any) -> None:
        pending = self.session.scalar(select(ChildConflict.id).where(
            ChildConflict.child_id == child.id, ChildConflict.source_org_id == source_id,
            ChildConflict.proposed_digest == digest,
            ChildConflict.resolved_at.is_(None)))
        if pending is not None:
            return
        current = self._current_content(child)
        fields = sorted(k for k, value in content.items() if current.get(k) != value)
        conflict = ChildConflict(
            child_id=child.id, organisation_id=child.responsible_la_id, source_org_id=source_id,
            fields=fields, proposed_enc="", proposed_digest=digest, raised_at=now,
        )
        self.session.add(conflict)
        self.session.flush()
        conflict.proposed_enc = self.cipher.encrypt_text(
            json.dumps(content), f"conflict:{conflict.id}")
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


def _repeated(row: PreparedRow, seen_ids: dict[str, int], seen_match: dict[str, int]
              ) -> list[FieldProblem]:
    """The same child earlier in the file: by the body's identifier, or by
    name + date of birth + postcode when the row has no identifier."""
    number = row.number
    found = []
    if row.id_digest is not None:
        first = seen_ids.setdefault(row.id_digest, number)
        if first != number:
            found.append(FieldProblem("source_id", f"the same identifier is on row {first}"))
    first = seen_match.setdefault(row.match_key, number)
    if first != number and row.id_digest is None:
        found.append(FieldProblem("surname", "the same child (name, date of birth, postcode) "
                                  f"is on row {first}"))
    return found


# The columns new rows are written with: the id and identifier (known only
# here), the prepared part (PreparedRow.child and .supply, in this order), and
# the batch's constants.
CHILD_COLUMNS = (
    "id", "identifier", "public_id", "responsible_la_id", "forename", "surname",
    "forename_key", "surname_key", "gender", "date_of_birth", "date_of_death", "whereabouts",
    "address_enc", "postcode_district", "return_intention", "carers_enc", "match_key",
    "content_digest", "retain_to_25",
    "supplied_by_id", "shielded", "archived_on", "created_at", "updated_at",
)
_SUPPLY_COLUMNS = (
    "child_id", "scheme", "id_enc", "id_digest", "row_digest", "organisation_id", "supplied_at",
)
_INVOLVEMENT_COLUMNS = (
    "child_id", "service_id", "practitioner_id", "role", "starts_on", "ends_on",
    "lead_professional", "assessment_held", "sensitive", "sensitive_basis", "source_org_id",
    "created_at",
)
_FORMER_COLUMNS = (
    "child_id", "forename", "surname", "surname_key", "date_of_birth", "postcode_district",
)


def _utc_naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _sqlite_datetime(value: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite (UTC, no zone)."""
    return _utc_naive(value).strftime("%Y-%m-%d %H:%M:%S.%f")


def _tuple_tables(new_rows: list[PreparedRow], ids: list[int], links: list[tuple[Any, ...]],
                  source_id: int, now: datetime, *, sqlite: bool) -> _Tables:
    """New rows as tuples already in the driver's terms: the prepared part as
    it came (dates as ISO text, which both databases read), the batch's
    constants converted once here."""
    stamp = _sqlite_datetime(now) if sqlite else _utc_naive(now)
    no = 0 if sqlite else False
    child_tail = (source_id, no, None, stamp, stamp)
    supply_tail = (source_id, stamp)
    children: list[tuple[Any, ...]] = []
    supplies: list[tuple[Any, ...]] = []
    settings: list[tuple[Any, ...]] = []
    formers: list[tuple[Any, ...]] = []
    for row, child_id, identifier in zip(new_rows, ids, identifiers_for(ids), strict=True):
        children.append((child_id, identifier, *row.child, *child_tail))
        supplies.append((child_id, *row.supply, *supply_tail))
        if row.settings:
            settings.extend((child_id, service, None, role, start, None, no, no, no, None,
                             source_id, stamp) for service, role, start in row.settings)
        if row.formers:
            formers.extend((child_id, *former) for former in row.formers)
    supplies.extend((*link, *supply_tail) for link in links)
    return _tables(children, supplies, settings, formers)


def _copy_text_tables(new_rows: list[PreparedRow], ids: list[int],
                      links: list[tuple[Any, ...]], source_id: int, now: datetime) -> _Tables:
    """New rows as lines of PostgreSQL's COPY text format: each row's id and
    identifier, its prepared text (RowPreparer.copy_text) and the batch's
    constants, joined. Passing COPY values one by one was the loader's
    largest cost."""
    stamp = str(_utc_naive(now))
    child_tail = f"{source_id}\tf\t{NULL}\t{stamp}\t{stamp}\n"
    supply_tail = f"{source_id}\t{stamp}\n"
    children: list[str] = []
    supplies: list[str] = []
    settings: list[str] = []
    formers: list[str] = []
    for row, child_id, identifier in zip(new_rows, ids, identifiers_for(ids), strict=True):
        children.append(f"{child_id}\t{identifier}\t{row.child}\t{child_tail}")
        supplies.append(f"{child_id}\t{row.supply}\t{supply_tail}")
        if row.settings:
            settings.extend(f"{child_id}\t{setting}\t{supply_tail}" for setting in row.settings)
        if row.formers:
            formers.extend(f"{child_id}\t{former}\n" for former in row.formers)
    supplies.extend(f"{copy_line(link)}\t{supply_tail}" for link in links)
    return _tables(children, supplies, settings, formers)


_Tables = list[tuple[str, tuple[str, ...], list[Any]]]


def _tables(children: list[Any], supplies: list[Any], settings: list[Any], formers: list[Any]
            ) -> _Tables:
    return [(Child.__tablename__, CHILD_COLUMNS, children),
            (ChildSupply.__tablename__, _SUPPLY_COLUMNS, supplies),
            (ChildInvolvement.__tablename__, _INVOLVEMENT_COLUMNS, settings),
            (ChildFormerName.__tablename__, _FORMER_COLUMNS, formers)]


def copy_rows(connection: Connection, table: str, columns: tuple[str, ...],
              rows: list[tuple[Any, ...]] | list[str]) -> None:
    """Insert many rows the fastest way each engine offers, inside the caller's
    transaction: COPY on PostgreSQL, the driver's executemany on SQLite. The
    values are already in the driver's terms (text dates, UTC timestamps):
    a million records is tens of millions of values, and going around
    SQLAlchemy's per-value processing is what makes the load rate. Rows given
    as text are lines of COPY's text format, sent as they are (PostgreSQL only)."""
    names = ", ".join(columns)
    dialect = connection.dialect.name
    sqlite = dialect == "sqlite"
    if dialect == "postgresql":
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            if rows and isinstance(rows[0], str):
                copy.write("".join(rows))
            else:
                for values in rows:
                    copy.write_row(values)
        return
    marks = ", ".join("?" if sqlite else "%s" for _ in columns)
    # table and column names are our own model's, never input
    statement = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
    connection.exec_driver_sql(statement, rows)


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
