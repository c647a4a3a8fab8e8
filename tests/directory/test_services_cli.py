"""`contactpoint directory import-services`: the operator's bulk load, all or
nothing, idempotent, with each problem on its own line."""

from __future__ import annotations

from pathlib import Path

from idp.container import Container
from tests.directory.test_services import count_services, csv_row, csv_text
from tests.factories import World
from tests.idp.test_cli import Cli
from tests.idp.test_cli import cli as cli  # the fixture, shared


def test_a_good_file_is_imported_and_a_rerun_changes_nothing(
    cli: Cli, container: Container, world: World, tmp_path: Path
) -> None:
    org = world.organisation()
    file = tmp_path / "services.csv"
    file.write_text(csv_text([csv_row(f"R{n}", org) for n in range(12)]), encoding="utf-8")
    first = cli("directory", "import-services", str(file))
    assert first.exit_code == 0, first.output
    assert "12 rows, 12 created, 0 updated, 0 unchanged" in first.output
    assert "rows/s" in first.output
    again = cli("directory", "import-services", str(file), "--org", org.code)
    assert again.exit_code == 0, again.output
    assert "0 created, 0 updated, 12 unchanged" in again.output
    assert count_services(container) == 12


def test_a_file_with_problems_lists_each_and_writes_nothing(
    cli: Cli, container: Container, world: World, tmp_path: Path
) -> None:
    org = world.organisation()
    file = tmp_path / "services.csv"
    rows = [csv_row("R1", org), csv_row("R2", org, postcode="ZZ"),
            csv_row("R3", org, ends_on="someday")]
    file.write_text(csv_text(rows), encoding="utf-8")
    result = cli("directory", "import-services", str(file))
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "services.csv, row 3, postcode: not a valid UK postcode" in result.output
    assert "services.csv, row 4, ends_on: not a date in the form YYYY-MM-DD" in result.output
    assert "2 problem(s) in services.csv: nothing was imported" in result.output
    assert count_services(container) == 0


def test_an_unknown_organisation_for_org_is_one_line(
    cli: Cli, container: Container, world: World, tmp_path: Path
) -> None:
    org = world.organisation()
    file = tmp_path / "services.csv"
    file.write_text(csv_text([csv_row("R1", org)]), encoding="utf-8")
    result = cli("directory", "import-services", str(file), "--org", "NOPE")
    assert result.exit_code != 0
    assert "no organisation with code 'NOPE'" in result.output
    assert count_services(container) == 0
