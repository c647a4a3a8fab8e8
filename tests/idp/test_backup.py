"""`contactpoint backup` and `restore` for the SQLite default, run as an
operator runs them; PostgreSQL is pointed at pg_dump."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from directory.models import Organisation
from idp.container import Container
from tests.factories import World
from tests.idp.test_cli import Cli


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(database_url, tmp_path / "instance")
    yield runner
    runner.close()


def _organisations(container: Container) -> list[str]:
    with container.unit() as unit:
        return sorted(unit.session.scalars(select(Organisation.name)))


def _tags(container: Container) -> list[str]:
    with container.unit() as unit:
        return list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))


# Backup and restore are for the SQLite default; on PostgreSQL they point to
# pg_dump. Each test runs on the database it is about (nothing skips).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@SQLITE_ONLY
def test_backup_is_consistent_while_a_write_is_open_and_restore_brings_it_back(
    cli: Cli, container: Container, world: World, database_url: str, tmp_path: Path
) -> None:
    world.organisation("Northshire County Council")
    # Writers carry on during the backup: the copy is a snapshot between two
    # of their transactions (its audit chain and head agree, which `backup`
    # checks before it keeps the file).
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            with container.unit() as unit:
                unit.audit.record("test:busy")
                unit.commit()

    writer = threading.Thread(target=write)
    writer.start()
    target = tmp_path / "backup.db"
    try:
        made = cli("backup", str(target))
    finally:
        stop.set()
        writer.join()
    assert made.exit_code == 0, made.output
    assert "backup written to" in made.output and "audit entries" in made.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    copy = sqlite3.connect(target)
    (in_copy,) = copy.execute("SELECT count(*) FROM audit_entry").fetchone()
    assert f"{in_copy} audit entries" in made.output
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    copy.close()
    assert "ops:backup" in _tags(container)
    assert 0 < in_copy < len(_tags(container))

    # Changes after the backup are gone after the restore; the chain is intact.
    world.organisation("Southshire Council")
    assert _organisations(container) == ["Northshire County Council", "Southshire Council"]
    restored = cli("restore", str(target))
    assert restored.exit_code == 0, restored.output
    assert "restored" in restored.output and "db upgrade" not in restored.output
    container.engine.dispose()
    assert _organisations(container) == ["Northshire County Council"]
    tags = _tags(container)
    assert len(tags) == in_copy + 1 and tags[-1] == "ops:restored" and "ops:backup" in tags
    verified = cli("audit", "verify")
    assert verified.exit_code == 0 and "audit chain intact" in verified.output

    # A backup is never overwritten.
    again = cli("backup", str(target))
    assert again.exit_code == 1 and "exists already" in again.output


@SQLITE_ONLY
def test_restore_refuses_what_is_not_a_contactpoint_database_and_changes_nothing(
    cli: Cli, container: Container, world: World, database_url: str, tmp_path: Path
) -> None:
    world.organisation("Northshire County Council")
    good = tmp_path / "good.db"
    assert cli("backup", str(good)).exit_code == 0

    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database at all\n" * 10)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE things (id INTEGER)")
    conn.commit()
    conn.close()
    newer = tmp_path / "newer.db"
    newer.write_bytes(good.read_bytes())
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    conn.commit()
    conn.close()
    tampered = tmp_path / "tampered.db"
    tampered.write_bytes(good.read_bytes())
    conn = sqlite3.connect(tampered)
    conn.execute("DROP TRIGGER IF EXISTS audit_entry_no_update")
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_entry'"
    ).fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    conn.execute("UPDATE audit_entry SET tag = 'nothing:to:see' WHERE seq = 1")
    conn.commit()
    conn.close()

    before = _tags(container)
    cases = {
        text_file: "not a SQLite database",
        other: "not a ContactPoint database (no alembic_version table)",
        newer: "newer than this software knows",
        tampered: "audit chain is broken at entry 1",
        tmp_path / "missing.db": "no such file",
    }
    for path, message in cases.items():
        refused = cli("restore", str(path))
        assert refused.exit_code == 1, path
        assert message in refused.output and str(path) in refused.output, refused.output
        assert "Traceback" not in refused.output
    assert _tags(container) == before
    assert _organisations(container) == ["Northshire County Council"]


@POSTGRESQL_ONLY
def test_postgresql_is_pointed_at_pg_dump(cli: Cli, database_url: str, tmp_path: Path) -> None:
    for command in ("backup", "restore"):
        refused = cli(command, str(tmp_path / "x.db"))
        assert refused.exit_code == 1
        assert "pg_dump" in refused.output
    assert not (tmp_path / "x.db").exists()


def test_db_upgrade_on_a_schema_newer_than_the_software_is_one_line(
    cli: Cli, container: Container
) -> None:
    """An old node during a rolling upgrade: no traceback, a reason, exit 1."""
    from sqlalchemy import text

    with container.engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_newer'"))
    try:
        refused = cli("db", "upgrade")
        assert refused.exit_code == 1
        assert "cannot migrate the database" in refused.output and "9999_newer" in refused.output
        assert "Traceback" not in refused.output
    finally:
        with container.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
