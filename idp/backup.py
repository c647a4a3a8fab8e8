"""Backups and restores of the SQLite default (PostgreSQL has pg_dump).

A backup goes through SQLite's online backup API, so it is a consistent
snapshot even while the service writes: committed transactions only, never
half of one. A restore checks the file before touching anything (a SQLite
file, the integrity check, ContactPoint's tables, a schema revision this
code knows, an intact audit chain), then copies it over the live database
through the same API, which holds the database's lock while it writes, so
other processes see the old database or the new one, never a mix.

Both are audited: the backup's entry is committed before the snapshot (so
the backup holds it), the restore's entry is written into the restored
database (the entry of the backup it came from is already in there).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from core.audit import verify_chain
from core.errors import Conflict, FieldProblem, InvalidInput
from idp.container import Container, Unit

SQLITE_MAGIC = b"SQLite format 3\x00"
REQUIRED_TABLES = frozenset({"alembic_version", "audit_head", "audit_entry", "person"})


class BackupRefused(Conflict):
    error_id = "ops.backup_refused"
    title = "The backup or restore was refused"


@dataclass(frozen=True)
class BackupReport:
    path: Path
    revision: str
    audit_entries: int
    size_bytes: int


def sqlite_file(database_url: str) -> Path:
    """The database's file, or a refusal naming what to use instead."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise BackupRefused(
            f"the database is {url.get_backend_name()}: back it up with pg_dump and restore "
            "with pg_restore (see the README's deployment section)"
        )
    if not url.database or url.database == ":memory:":
        raise BackupRefused("the database is in memory: there is nothing to back up")
    return Path(url.database)


def _known_revisions() -> tuple[str | None, frozenset[str]]:
    from alembic.script import ScriptDirectory

    from idp.database import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    return scripts.get_current_head(), frozenset(r.revision for r in scripts.walk_revisions())


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def inspect(path: Path) -> tuple[str, int]:
    """Check that `path` is a ContactPoint database this code can run; return
    its schema revision and the number of audit entries (chain verified)."""
    where = str(path)

    def refuse(message: str) -> BackupRefused:
        return BackupRefused(f"{where}: {message}")

    if not path.is_file():
        raise refuse("no such file")
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise refuse("not a SQLite database")
    try:
        connection = _read_only(path)
        try:
            check = connection.execute("PRAGMA integrity_check").fetchone()
            if not check or check[0] != "ok":
                raise refuse("the SQLite integrity check failed")
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )}
            missing = sorted(REQUIRED_TABLES - tables)
            if missing:
                raise refuse(f"not a ContactPoint database (no {missing[0]} table)")
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise refuse(f"not a usable SQLite database ({exc})") from exc
    if row is None:
        raise refuse("not a ContactPoint database (no schema revision)")
    revision = str(row[0])
    _head, known = _known_revisions()
    if revision not in known:
        raise refuse(
            f"its schema (revision {revision}) is newer than this software knows; "
            "restore it with the version that made it"
        )
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with Session(engine) as session:
            report = verify_chain(session)
    finally:
        engine.dispose()
    if not report.ok:
        raise refuse(f"its audit chain is broken at entry {report.first_bad_seq}: {report.problem}")
    return revision, report.checked


def backup(unit: Unit, target: Path) -> BackupReport:
    source = sqlite_file(unit.container.settings.database_url)
    if target.exists():
        raise InvalidInput(FieldProblem("FILE", f"{target} exists already; choose a new name"))
    if not target.parent.is_dir():
        raise InvalidInput(FieldProblem("FILE", f"{target.parent} is not a folder"))
    unit.audit.record("ops:backup", detail={"file": target.name})
    unit.commit()
    draft = target.with_name(f".{target.name}.{os.getpid()}.part")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(descriptor)
    try:
        live = sqlite3.connect(source, timeout=30)
        copy = sqlite3.connect(draft)
        try:
            live.backup(copy)
            # One self-contained file: no -wal beside it.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
            live.close()
        revision, entries = inspect(draft)
        os.link(draft, target)
    finally:
        draft.unlink(missing_ok=True)
    return BackupReport(target, revision, entries, target.stat().st_size)


def restore(container: Container, source: Path) -> BackupReport:
    """Replace the live database with `source`, after checking it. The caller
    audits the restore in the restored database."""
    target = sqlite_file(container.settings.database_url)
    revision, entries = inspect(source)
    container.engine.dispose()
    target.parent.mkdir(parents=True, exist_ok=True)
    backup_copy = _read_only(source)
    live = sqlite3.connect(target, timeout=30)
    try:
        backup_copy.backup(live)
        live.execute("PRAGMA journal_mode=WAL")
    finally:
        live.close()
        backup_copy.close()
    container.engine.dispose()
    return BackupReport(source, revision, entries, source.stat().st_size)


def schema_behind(revision: str) -> bool:
    head, _known = _known_revisions()
    return revision != head
