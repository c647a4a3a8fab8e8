"""`contactpoint children`: import (CSV and JSON lines), synth, retention, grant, area."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import func, select

from core.audit import AuditEntry
from directory.children.models import Child, ChildRight
from directory.models import OrganisationKind
from idp.container import Container
from tests.directory.children.conftest import as_csv, row
from tests.factories import World
from tests.idp.test_cli import Cli
from tests.idp.test_cli import cli as cli  # the fixture, shared


def _children(container: Container) -> int:
    with container.unit() as unit:
        return int(unit.session.scalar(select(func.count()).select_from(Child)) or 0)


def test_synth_then_import_then_rerun(cli: Cli, container: Container, world: World,
                                      tmp_path: Path) -> None:
    world.organisation()  # ORG001, a council
    world.organisation("Northshire Health", OrganisationKind.HEALTH_BODY)
    out = tmp_path / "kids.csv"
    made = cli("children", "synth", "25", "--out", str(out))
    assert made.exit_code == 0, made.output
    assert "wrote 25 synthetic records" in made.output
    first = cli("children", "import", str(out), "--source", "ORG002")
    assert first.exit_code == 0, first.output
    assert "25 rows, 25 created, 0 updated, 0 linked, 0 unchanged" in first.output
    again = cli("children", "import", str(out), "--source", "ORG002")
    assert "0 created, 0 updated, 0 linked, 25 unchanged" in again.output
    assert _children(container) == 25
    # One audit entry a file, with its counts and the exact file's digest.
    with container.unit() as unit:
        entries = list(unit.session.scalars(select(AuditEntry).where(
            AuditEntry.tag == "children:imported").order_by(AuditEntry.seq)))
        details = [e.detail for e in entries]
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert [(d["rows"], d["created"], d["unchanged"], d["sha256"]) for d in details] == [
        (25, 25, 0, digest), (25, 0, 25, digest)]


def test_jsonl_synth_and_import(cli: Cli, container: Container, world: World,
                                tmp_path: Path) -> None:
    world.organisation()
    out = tmp_path / "kids.jsonl"
    assert cli("children", "synth", "5", "--jsonl", "--out", str(out)).exit_code == 0
    assert all(json.loads(line)["local_authority"] == "ORG001"
               for line in out.read_text().splitlines())
    result = cli("children", "import", str(out), "--source", "ORG001")
    assert "5 created" in result.output, result.output


def test_bad_rows_are_listed_and_nothing_is_imported(cli: Cli, container: Container,
                                                     world: World, tmp_path: Path) -> None:
    world.organisation()
    file = tmp_path / "kids.csv"
    file.write_text(as_csv([row(), row(forename="Bad", postcode="ZZ"),
                            row(forename="Worse", date_of_birth="yesterday")]))
    result = cli("children", "import", str(file), "--source", "ORG001")
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "kids.csv, row 3, postcode: not a valid UK postcode" in result.output
    assert "kids.csv, row 4, date_of_birth: not a date in the form YYYY-MM-DD" in result.output
    assert "2 problem(s) in kids.csv: nothing was imported" in result.output
    assert _children(container) == 0


def test_unknown_source_is_one_line(cli: Cli, world: World, tmp_path: Path) -> None:
    world.organisation()
    file = tmp_path / "kids.csv"
    file.write_text(as_csv([row()]))
    result = cli("children", "import", str(file), "--source", "NOPE")
    assert result.exit_code != 0 and "no organisation 'NOPE'" in result.output


def test_retention_reports_counts(cli: Cli, world: World, tmp_path: Path) -> None:
    world.organisation()
    file = tmp_path / "kids.csv"
    file.write_text(as_csv([row(), row(forename="Adult", date_of_birth="2000-01-01")]))
    assert cli("children", "import", str(file), "--source", "ORG001").exit_code == 0
    dry = cli("children", "retention", "--dry-run")
    assert "Would archive 1 at age, 0 a year after death; would purge 0" in dry.output
    done = cli("children", "retention")
    assert "Archived 1 at age" in done.output
    assert "Live 1, archived 1" in done.output


def test_grant_and_area(cli: Cli, container: Container, world: World) -> None:
    org = world.organisation()
    member = world.member(org)
    assert cli("children", "grant", member.username, "--right",
               "shield_override").exit_code == 0
    assert cli("children", "area", "--org", org.code, "NE1", "ne2 4ab").exit_code == 0
    with container.unit() as unit:
        assert unit.session.scalar(select(func.count()).select_from(ChildRight)) == 1
    missing = cli("children", "grant", "nobody", "--right", "data_manager")
    assert missing.exit_code != 0 and "no person with username 'nobody'" in missing.output


def test_demo_load_adds_synthetic_children_once_one_shielded(cli: Cli, container: Container
                                                              ) -> None:
    assert cli("demo", "load").exit_code == 0
    assert cli("demo", "load").exit_code == 0
    with container.unit() as unit:
        assert unit.session.scalar(select(func.count()).select_from(Child)) == 40
        assert unit.session.scalar(select(func.count()).select_from(Child)
                                   .where(Child.shielded.is_(True))) == 1


def test_alerts_lists_open_alerts(cli: Cli) -> None:
    result = cli("children", "alerts")
    assert result.exit_code == 0 and "0 open alert(s)" in result.output
