"""Publishing the directory to LDAP: organisations, services and people.

Layout under the configured base DN (standard schemas only):

- `o=<code>,BASE` (organization): name in `description`.
- `ou=<service public id>,o=<code>,BASE` (organizationalUnit): the name as a
  second `ou` value, kind in `businessCategory`, address in `postalAddress`,
  `street`, `l`, `postalCode`, phone in `telephoneNumber`; organizationalUnit
  has no `mail`, so secure email and opening hours go in `description`.
  Closed services (ended or not yet open) are not published.
- `uid=<username>,ou=people,BASE` (inetOrgPerson): cn, sn, givenName, mail,
  telephoneNumber, o (organisations), ou (services), title (roles) from the
  person's current positions, `employeeNumber` = public id. Only people who
  are ACTIVE and hold a current position are published: a suspended or
  departed practitioner must not stay findable as a contact. No password,
  PIN or token data is ever read here, so none can be written.

Incremental (default): each entry's attributes are digested; only entries
whose digest differs from the ledger are written, ledger entries whose source
is gone are deleted. The ledger row changes only after the server accepted the
write, so a run that dies half way keeps what it did and the next run sends
the rest. Writes that find the server already in the wanted state (an add of
an entry that exists, a delete of one that does not) are turned into the
write that is needed, so a ledger that is behind the server heals itself.

Full (`--full`): the server's subtree is read (paged) and reconciled: missing
entries added, differing ones replaced, entries we did not write removed; the
ledger is rebuilt from what the server now holds.

Several connections write in parallel, because slapd commits each write on
its own and one synchronous connection leaves the server mostly idle.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException
from ldap3.utils.dn import escape_rdn
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from directory.ldap_connect import DirectoryUnavailable, LdapTarget, open_connection
from directory.models import Organisation, Person, PersonStatus, Position
from directory.services_models import LdapPublication, LdapRun, Service

Attributes = dict[str, list[str]]
# what happened to one write: (added/modified/deleted or None, refusal)
Outcome = tuple[str | None, str | None]

# Attributes this publisher owns on each kind of entry; anything else on the
# server (operational attributes, an admin's additions) is left alone.
MANAGED: dict[str, tuple[str, ...]] = {
    "organisation": ("objectClass", "o", "description"),
    "service": (
        "objectClass",
        "ou",
        "businessCategory",
        "description",
        "postalAddress",
        "street",
        "l",
        "postalCode",
        "telephoneNumber",
    ),
    "person": (
        "objectClass",
        "uid",
        "cn",
        "sn",
        "givenName",
        "displayName",
        "mail",
        "telephoneNumber",
        "o",
        "ou",
        "title",
        "employeeNumber",
    ),
    "container": ("objectClass", "ou"),
}
# Never published, whatever a future change to this module tries.
FORBIDDEN = frozenset(
    {"userpassword", "authpassword", "pin", "userpkcs12", "usercertificate", "otp", "token"}
)
BATCH = 200
RESULT_ADD = "added"
RESULT_MODIFY = "modified"
RESULT_DELETE = "deleted"


@dataclass(frozen=True)
class Entry:
    dn: str
    kind: str
    source_id: str
    attributes: Attributes

    @property
    def digest(self) -> str:
        body = json.dumps(
            {
                "dn": self.dn.lower(),
                "a": {k: sorted(v) for k, v in sorted(self.attributes.items())},
            },
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()

    @property
    def depth(self) -> int:
        return self.dn.count(",")


@dataclass(frozen=True)
class Write:
    """One change to send: `add`/`replace` carry the entry, `delete` only its DN."""

    action: str
    dn: str
    entry: Entry | None = None
    kind: str = ""
    # whether the ledger already has a row for this DN (update it, not insert)
    in_ledger: bool = False


@dataclass
class PublishReport:
    mode: str
    server: str
    run_id: int = 0
    status: str = "running"
    added: int = 0
    modified: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    error: str | None = None
    connections: int = 1
    seconds: float = 0.0
    refusals: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return self.added + self.modified + self.deleted

    def counts(self) -> dict[str, int]:
        return {
            "added": self.added,
            "modified": self.modified,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "failed": self.failed,
        }


class PublishFailed(DirectoryUnavailable):
    """The run stopped part way; `report` says what was done before it did."""

    error_id = "directory.ldap_publish_failed"
    title = "The LDAP publish did not finish"

    def __init__(self, message: str, report: PublishReport) -> None:
        super().__init__(message)
        self.report = report


def _clean(values: Iterable[str | None]) -> list[str]:
    seen: list[str] = []
    for value in values:
        text = (value or "").strip()
        if text and text not in seen:
            seen.append(text)
    return seen


def _attrs(pairs: dict[str, Iterable[str | None]]) -> Attributes:
    result = {name: _clean(values) for name, values in pairs.items()}
    for name in result:
        assert name.lower() not in FORBIDDEN, f"{name} must never be published"
    return {name: values for name, values in result.items() if values}


class EntryBuilder:
    """Turns the directory of record into LDAP entries; no I/O but the reads."""

    def __init__(self, session: Session, base_dn: str, today: date) -> None:
        self.session = session
        self.base_dn = base_dn
        self.today = today
        self.people_dn = f"ou=people,{base_dn}"

    def org_dn(self, code: str) -> str:
        return f"o={escape_rdn(code)},{self.base_dn}"

    def containers(self) -> list[Entry]:
        return [
            Entry(
                self.people_dn,
                "container",
                "people",
                {"objectClass": ["organizationalUnit"], "ou": ["people"]},
            )
        ]

    def organisations(self) -> Iterator[Entry]:
        for org in self.session.scalars(select(Organisation).order_by(Organisation.id)):
            yield Entry(
                self.org_dn(org.code),
                "organisation",
                org.code,
                _attrs(
                    {"objectClass": ["organization"], "o": [org.code], "description": [org.name]}
                ),
            )

    def services(self) -> Iterator[Entry]:
        stmt = select(Service).order_by(Service.id).execution_options(yield_per=2000)
        for svc in self.session.scalars(stmt):
            if not svc.open_on(self.today):
                continue
            street = ", ".join(_clean([svc.address_line1, svc.address_line2]))
            postal = "$".join(
                _clean([svc.address_line1, svc.address_line2, svc.town, svc.postcode])
            )
            yield Entry(
                f"ou={escape_rdn(svc.public_id)},{self.org_dn(svc.organisation.code)}",
                "service",
                svc.public_id,
                _attrs(
                    {
                        "objectClass": ["organizationalUnit"],
                        "ou": [svc.public_id, svc.name],
                        "businessCategory": [svc.kind.value],
                        "description": [
                            svc.name,
                            f"Secure email: {svc.secure_email}" if svc.secure_email else None,
                            f"Opening hours: {svc.opening_hours}" if svc.opening_hours else None,
                        ],
                        "postalAddress": [postal],
                        "street": [street],
                        "l": [svc.town],
                        "postalCode": [svc.postcode],
                        "telephoneNumber": [svc.phone],
                    }
                ),
            )

    def people(self) -> Iterator[Entry]:
        """Active people with a current position, read as one ordered join so
        that 390,000 of them stream without loading ORM objects."""
        today = self.today
        stmt = (
            select(
                Person.id,
                Person.public_id,
                Person.username,
                Person.given_name,
                Person.family_name,
                Person.work_email,
                Person.work_phone,
                Position.role,
                Organisation.name,
                Service.name,
            )
            .join(Position, Position.person_id == Person.id)
            .join(Organisation, Organisation.id == Position.organisation_id)
            .outerjoin(
                Service,
                (Service.id == Position.service_id)
                & (Service.starts_on <= today)
                & ((Service.ends_on.is_(None)) | (Service.ends_on >= today)),
            )
            .where(
                Person.status == PersonStatus.ACTIVE,
                Position.starts_on <= today,
                (Position.ends_on.is_(None)) | (Position.ends_on >= today),
            )
            .order_by(Person.id, Position.id)
            .execution_options(yield_per=5000)
        )
        current: list[Any] = []
        for row in self.session.execute(stmt):
            if current and current[0].id != row.id:
                yield self._person(current)
                current = []
            current.append(row)
        if current:
            yield self._person(current)

    def _person(self, rows: list[Any]) -> Entry:
        first = rows[0]
        return Entry(
            f"uid={escape_rdn(first.username)},{self.people_dn}",
            "person",
            first.public_id,
            _attrs(
                {
                    "objectClass": ["inetOrgPerson"],
                    "uid": [first.username],
                    "cn": [f"{first.given_name} {first.family_name}"],
                    "sn": [first.family_name],
                    "givenName": [first.given_name],
                    "displayName": [f"{first.given_name} {first.family_name}"],
                    "mail": [first.work_email],
                    "telephoneNumber": [first.work_phone],
                    "o": [r[8] for r in rows],
                    "ou": [r[9] for r in rows],
                    "title": [r.role.value.replace("_", " ") for r in rows],
                    "employeeNumber": [first.public_id],
                }
            ),
        )

    def all(self) -> Iterator[Entry]:
        yield from self.containers()
        yield from self.organisations()
        yield from self.services()
        yield from self.people()


def _refusal(action: str, dn: str, conn: ldap3.Connection) -> str:
    return f"{action} {dn}: {conn.result.get('description')} {conn.result.get('message')}".strip()


class _Writers:
    """A pool of threads, each with its own bound connection, that apply
    writes and report each outcome; a transport failure stops them all."""

    def __init__(
        self, target: LdapTarget, connections: int, on_write: Callable[[int], None] | None
    ) -> None:
        self.target = target
        self.on_write = on_write
        self.written = 0
        self.connections = max(1, connections)
        self.local = threading.local()
        self.opened: list[ldap3.Connection] = []
        self.lock = threading.Lock()
        self.broken: str | None = None

    def _conn(self) -> ldap3.Connection:
        conn: ldap3.Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = open_connection(self.target)
            self.local.conn = conn
            with self.lock:
                self.opened.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.opened:
            with contextlib.suppress(LDAPException):
                conn.unbind()

    def apply(self, write: Write) -> tuple[str | None, str | None]:
        """(what was done, refusal); raises on transport failure."""
        conn = self._conn()
        if write.action == "delete":
            conn.delete(write.dn)
            code = conn.result["result"]
            if code in (0, 32):  # success, noSuchObject: gone either way
                return RESULT_DELETE, None
            return None, _refusal("delete", write.dn, conn)
        entry = write.entry
        assert entry is not None
        if write.action == "add":
            attrs = dict(entry.attributes)
            classes = attrs.pop("objectClass")
            conn.add(entry.dn, classes, attrs)
            code = conn.result["result"]
            if code == 0:
                return RESULT_ADD, None
            if code != 68:  # entryAlreadyExists: replace instead
                return None, _refusal("add", entry.dn, conn)
        changes = {
            name: [(ldap3.MODIFY_REPLACE, entry.attributes.get(name, []))]
            for name in MANAGED[entry.kind]
            if name != "objectClass"
        }
        conn.modify(entry.dn, changes)
        code = conn.result["result"]
        if code == 0:
            return RESULT_MODIFY, None
        if code == 32:  # noSuchObject: the server lost it; add it back
            attrs = dict(entry.attributes)
            classes = attrs.pop("objectClass")
            conn.add(entry.dn, classes, attrs)
            if conn.result["result"] == 0:
                return RESULT_ADD, None
        return None, _refusal("modify", entry.dn, conn)

    def run_indexed(self, batch: list[Write]) -> tuple[list[Outcome], str | None]:
        """Outcomes in the batch's order (a prefix when the server broke)."""
        done = self.run_batch(batch)
        return [(result, refusal) for _, result, refusal in done], self.broken

    def run_batch(self, batch: list[Write]) -> list[tuple[Write, str | None, str | None]]:
        done: list[tuple[Write, str | None, str | None]] = []
        for write in batch:
            if self.broken:
                break
            try:
                result, refusal = self.apply(write)
            except DirectoryUnavailable as exc:
                self.broken = exc.message
                break
            except (LDAPCommunicationError, LDAPException) as exc:
                self.broken = f"LDAP server {self.target.url}: connection lost: {exc}"
                break
            done.append((write, result, refusal))
            if result is not None and self.on_write is not None:
                with self.lock:
                    self.written += 1
                    count = self.written
                self.on_write(count)
        return done


_PROCESS_WRITERS: _Writers | None = None


def _process_batch(target: LdapTarget, batch: list[Write]) -> tuple[list[Outcome], str | None]:
    """In a worker process: one connection per process, kept between batches;
    dropped when it breaks so a later batch reconnects (or fails fast)."""
    global _PROCESS_WRITERS
    if _PROCESS_WRITERS is None or _PROCESS_WRITERS.target != target:
        _PROCESS_WRITERS = _Writers(target, 1, None)
    writers = _PROCESS_WRITERS
    outcome, broken = writers.run_indexed(batch)
    if broken:
        writers.close()
        _PROCESS_WRITERS = None
    return outcome, broken


class LdapPublisher:
    """`publish(full)`: the directory of record out to the LDAP server."""

    def __init__(
        self,
        session: Session,
        clock: Clock,
        audit: Auditor,
        target: LdapTarget,
        *,
        connections: int = 4,
        page_size: int = 500,
        on_write: Callable[[int], None] | None = None,
        process_threshold: int = 5000,
    ) -> None:
        self.session = session
        self.clock = clock
        self.audit = audit
        self.target = target
        self.connections = max(1, connections)
        self.page_size = page_size
        # Called (from a writer thread) with the number of writes so far, after
        # each one; tests use it to kill the server at a chosen moment.
        self.on_write = on_write
        # From this many writes on, write from processes (see _execute).
        self.process_threshold = process_threshold

    # -- the run ---------------------------------------------------------------

    def publish(self, full: bool = False) -> PublishReport:
        mode = "full" if full else "incremental"
        report = PublishReport(mode=mode, server=self.target.url, connections=self.connections)
        started = self.clock.now()
        run = LdapRun(
            mode=mode, server=self.target.url, started_at=started, status="running", counts={}
        )
        self.session.add(run)
        self.session.commit()
        report.run_id = run.id
        t0 = time.monotonic()
        try:
            # Bind once up front: bad settings or credentials fail before any work.
            probe = open_connection(self.target)
            try:
                builder = EntryBuilder(self.session, self.target.base_dn, self.clock.today())
                if full:
                    writes = self._plan_full(probe, builder, report)
                else:
                    writes = self._plan_incremental(builder, report)
            finally:
                probe.unbind()
            self._execute(writes, report, full)
        except DirectoryUnavailable as exc:
            report.status = "failed"
            report.error = exc.message
        report.seconds = time.monotonic() - t0
        if report.status == "running":
            if report.failed:
                report.status = "failed"
                report.error = f"{report.failed} write(s) refused; first: {report.refusals[0]}"
            else:
                report.status = "completed"
        run.status = report.status
        run.counts = report.counts() | {"connections": self.connections}
        run.error = report.error
        run.finished_at = self.clock.now()
        self.audit.record(
            f"directory:publish:{'completed' if report.status == 'completed' else 'failed'}",
            "success" if report.status == "completed" else "failure",
            subject_type="ldap_run",
            subject_id=run.id,
            detail={
                "mode": mode,
                "server": self.target.url,
                **report.counts(),
                "error": report.error,
            },
        )
        self.session.commit()
        if report.status != "completed":
            raise PublishFailed(
                f"LDAP publish to {self.target.url} failed: {report.error} "
                f"(added {report.added}, modified {report.modified}, deleted {report.deleted}, "
                f"failed {report.failed} before stopping)",
                report,
            )
        return report

    # -- planning ----------------------------------------------------------------

    def _plan_incremental(self, builder: EntryBuilder, report: PublishReport) -> list[Write]:
        ledger: dict[str, str] = dict(
            self.session.execute(select(LdapPublication.dn, LdapPublication.digest)).all()
        )
        ledger_kind: dict[str, str] = dict(
            self.session.execute(select(LdapPublication.dn, LdapPublication.kind)).all()
        )
        writes: list[Write] = []
        wanted: set[str] = set()
        for entry in builder.all():
            wanted.add(entry.dn)
            known = ledger.get(entry.dn)
            if known == entry.digest:
                report.unchanged += 1
            else:
                writes.append(
                    Write(
                        "add" if known is None else "replace",
                        entry.dn,
                        entry,
                        entry.kind,
                        in_ledger=known is not None,
                    )
                )
        for dn, kind in ledger_kind.items():
            if dn not in wanted:
                writes.append(Write("delete", dn, kind=kind, in_ledger=True))
        return writes

    def _server_entries(self, conn: ldap3.Connection) -> dict[str, Attributes]:
        """Everything under the base DN, paged so no size limit cuts it short."""
        names = sorted({name for names in MANAGED.values() for name in names})
        found: dict[str, Attributes] = {}
        cookie: Any = None
        while True:
            conn.search(
                self.target.base_dn,
                "(objectClass=*)",
                search_scope=ldap3.SUBTREE,
                attributes=names,
                paged_size=self.page_size,
                paged_cookie=cookie,
            )
            if conn.result["result"] not in (0, 32):
                raise DirectoryUnavailable(
                    f"LDAP server {self.target.url}: search of {self.target.base_dn} failed: "
                    f"{conn.result.get('description')}"
                )
            for item in conn.response or []:
                if item.get("type") != "searchResEntry":
                    continue
                found[item["dn"].lower()] = {
                    k.lower(): sorted(str(v) for v in (vals if isinstance(vals, list) else [vals]))
                    for k, vals in item["attributes"].items()
                    if vals not in ([], None, "")  # ldap3 lists absent attributes as []
                }
            controls = conn.result.get("controls") or {}
            cookie = controls.get("1.2.840.113556.1.4.319", {}).get("value", {}).get("cookie")
            if not cookie:
                return found

    def _plan_full(
        self, conn: ldap3.Connection, builder: EntryBuilder, report: PublishReport
    ) -> list[Write]:
        on_server = self._server_entries(conn)
        writes: list[Write] = []
        wanted: set[str] = {self.target.base_dn.lower()}
        for entry in builder.all():
            key = entry.dn.lower()
            wanted.add(key)
            held = on_server.get(key)
            if held is None:
                writes.append(Write("add", entry.dn, entry, entry.kind))
                continue
            want = {k.lower(): sorted(v) for k, v in entry.attributes.items()}
            have = {k: v for k, v in held.items() if k in {n.lower() for n in MANAGED[entry.kind]}}
            if want.get("objectclass") is not None:
                have_classes = {c.lower() for c in have.get("objectclass", [])}
                same_classes = {c.lower() for c in want["objectclass"]} <= have_classes
                want.pop("objectclass")
                have.pop("objectclass", None)
            else:
                same_classes = True
            if same_classes and want == have:
                report.unchanged += 1
                writes.append(Write("ledger", entry.dn, entry, entry.kind))
            else:
                writes.append(Write("replace", entry.dn, entry, entry.kind))
        for dn in on_server:
            if dn not in wanted:
                writes.append(Write("delete", dn, kind="extra"))
        return writes

    # -- doing -------------------------------------------------------------------

    def _execute(self, writes: list[Write], report: PublishReport, full: bool) -> None:
        """Adds and replaces parents first, deletes children first; each phase
        (one depth) finishes before the next, so a parent always exists."""
        if full:
            self.session.execute(delete(LdapPublication))
            self.session.commit()
        self._inserts: list[dict[str, Any]] = []
        self._updates: list[dict[str, Any]] = []
        self._deletes: list[str] = []
        for w in writes:
            if w.action == "ledger":
                assert w.entry is not None
                self._record(w)
        self._flush_ledger()
        upserts = [w for w in writes if w.action in ("add", "replace")]
        deletes = [w for w in writes if w.action == "delete"]
        phases: list[list[Write]] = []
        for depth in sorted({w.dn.count(",") for w in upserts}):
            phases.append([w for w in upserts if w.dn.count(",") == depth])
        for depth in sorted({w.dn.count(",") for w in deletes}, reverse=True):
            phases.append([w for w in deletes if w.dn.count(",") == depth])
        total = sum(len(phase) for phase in phases)
        # ldap3 encodes in pure Python, so a thread pool is held to one core by
        # the GIL (measured: 4 threads no faster than 1). Large runs write from
        # processes instead; small ones (and tests' on_write hook) use threads.
        processes = self.connections > 1 and total >= self.process_threshold
        writers = _Writers(self.target, self.connections, self.on_write)
        pool: Executor
        run: Callable[[list[Write]], tuple[list[Outcome], str | None]]
        if processes:
            context = multiprocessing.get_context("spawn")  # no inherited DB connections
            pool = ProcessPoolExecutor(max_workers=self.connections, mp_context=context)
            run = functools.partial(_process_batch, self.target)
        else:
            pool = ThreadPoolExecutor(max_workers=self.connections)
            run = writers.run_indexed
        broken: str | None = None
        try:
            for phase in phases:
                batches = [phase[i : i + BATCH] for i in range(0, len(phase), BATCH)]
                pending = 0
                futures = [pool.submit(run, batch) for batch in batches]
                for batch, future in zip(batches, futures, strict=True):
                    if future.cancelled():
                        continue
                    outcome, failure = future.result()
                    if failure and not broken:
                        broken = failure
                        # Batches not started yet would each wait for a dead
                        # server; those already running report what they did.
                        for later in futures:
                            later.cancel()
                    for write, (result, refusal) in zip(batch, outcome, strict=False):
                        self._apply_outcome(write, result, refusal, report)
                        pending += 1
                    if pending >= 1000:
                        self._flush_ledger()
                        pending = 0
                self._flush_ledger()
                if broken:
                    raise DirectoryUnavailable(broken)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._flush_ledger()
            writers.close()

    def _apply_outcome(
        self, write: Write, result: str | None, refusal: str | None, report: PublishReport
    ) -> None:
        if result is None:
            report.failed += 1
            if refusal and len(report.refusals) < 20:
                report.refusals.append(refusal)
            return
        if result == RESULT_ADD:
            report.added += 1
        elif result == RESULT_MODIFY:
            report.modified += 1
        else:
            report.deleted += 1
        if write.action == "delete":
            if write.in_ledger:
                self._deletes.append(write.dn)
        else:
            self._record(write)

    def _record(self, write: Write) -> None:
        entry = write.entry
        assert entry is not None
        row = {
            "dn": entry.dn,
            "kind": entry.kind,
            "source_id": entry.source_id,
            "digest": entry.digest,
            "published_at": self.clock.now(),
        }
        (self._updates if write.in_ledger else self._inserts).append(row)

    def _flush_ledger(self) -> None:
        """Write the ledger for what the server has accepted, and commit: what
        is committed here is exactly what a later run may skip."""
        if self._inserts:
            self.session.execute(insert(LdapPublication), self._inserts)
        if self._updates:
            self.session.execute(update(LdapPublication), self._updates)
        for i in range(0, len(self._deletes), 500):
            chunk = self._deletes[i : i + 500]
            self.session.execute(delete(LdapPublication).where(LdapPublication.dn.in_(chunk)))
        self._inserts, self._updates, self._deletes = [], [], []
        self.session.commit()
