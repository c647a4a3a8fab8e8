"""`contactpoint children`: loading, synthetic data, retention, rights and areas.

Kept beside the children's pages; idp/cli.py only imports this module so that
the group is registered on `main`.
"""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from core.errors import InvalidInput
from directory.children.loading import file_digest, read_rows
from directory.children.models import ChildRightKind
from directory.children.synth import records, write
from directory.models import Organisation, OrganisationKind
from directory.services_models import Service, ServiceKind
from idp.cli import _container, _unit, cli_errors, console, main, operator


@main.group()
def children() -> None:
    """Child records: loading, synthetic data, retention."""


@children.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", "source_code", required=True,
              help="Code of the supplying body (its identifiers stay readable by it only).")
@cli_errors
def import_children(file: Path, source_code: str) -> None:
    """Load child records from CSV (or JSON lines: .jsonl): all rows or none.

    Rows match records by the body's identifier, then by name + date of birth +
    postcode; re-running a file changes nothing; data disagreeing with another
    body's record goes to the local authority team's queue."""
    started = time.perf_counter()
    rows, total = read_rows(file)
    with _unit(_container()) as unit, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
    ) as bar:
        task = bar.add_task(f"Importing {file.name}", total=total)
        try:
            report = unit.child_loader.load(
                operator(), rows, source_code=source_code, file_label=file.name,
                progress=lambda done: bar.update(task, completed=done),
                digest=file_digest(file),
            )
        except InvalidInput as error:
            bar.stop()
            for problem in error.problems:
                click.echo(problem.describe(), err=True)
            raise click.ClickException(
                f"{len(error.problems)} problem(s) in {file.name}: nothing was imported"
            ) from None
        unit.commit()
    seconds = time.perf_counter() - started
    rate = report.rows / seconds if seconds > 0 else 0.0
    click.echo(
        f"{file.name}: {report.rows} rows, {report.created} created, {report.updated} updated, "
        f"{report.linked} linked, {report.unchanged} unchanged, {report.conflicts} queued as "
        f"conflicts in {seconds:.1f} s ({rate:,.0f} rows/s)"
    )


@children.command("synth")
@click.argument("count", type=click.IntRange(1, 20_000_000))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="File to write (default: standard output).")
@click.option("--jsonl", is_flag=True, help="JSON lines instead of CSV.")
@click.option("--la", "la_codes", multiple=True,
              help="Local authority codes to spread records over (default: all in the database).")
@click.option("--seed", type=int, default=2009, show_default=True)
@cli_errors
def synth(count: int, out_path: Path | None, jsonl: bool, la_codes: tuple[str, ...],
          seed: int) -> None:
    """Write COUNT synthetic records (never real data) for demos and benchmarks.

    Schools and GP practices are drawn from the service directory."""
    with _unit(_container()) as unit:
        codes = list(la_codes) or list(unit.session.scalars(
            select(Organisation.code).where(Organisation.kind == OrganisationKind.LOCAL_AUTHORITY)
            .order_by(Organisation.code)))
        schools = list(unit.session.scalars(
            select(Service.public_id).where(Service.kind == ServiceKind.SCHOOL)))
        gps = list(unit.session.scalars(
            select(Service.public_id).where(Service.kind == ServiceKind.GP_PRACTICE)))
    if not codes:
        raise click.ClickException("no local authority in the database: add one first")
    rows = records(count, la_codes=codes, schools=schools, gps=gps, today=date.today(),
                   seed=seed)
    if out_path is None:
        write(rows, sys.stdout, jsonl=jsonl)
        return
    with out_path.open("w", encoding="utf-8", newline="") as out:
        written = write(rows, out, jsonl=jsonl)
    click.echo(f"wrote {written} synthetic records to {out_path}", err=True)


@children.command("retention")
@click.option("--dry-run", is_flag=True, help="Count only; change nothing.")
@cli_errors
def retention(dry_run: bool) -> None:
    """Archive at 18 (25 with consent) and a year after death; purge archives
    older than 6 years. Run daily from cron."""
    with _unit(_container()) as unit:
        report = unit.children.retention(operator(), dry_run=dry_run)
        unit.commit()
        counts = unit.children.counts()
    head = "Would archive" if dry_run else "Archived"
    click.echo(f"{head} {report.archived_at_age} at age, "
               f"{report.archived_after_death} a year after death; "
               f"{'would purge' if dry_run else 'purged'} {report.purged} archived records")
    click.echo(f"Live {counts['live']}, archived {counts['archived']}")


@children.command("grant")
@click.argument("username")
@click.option("--right", type=click.Choice([k.value for k in ChildRightKind]), required=True)
@cli_errors
def grant(username: str, right: str) -> None:
    """Give a person the shield-override right or make them a data manager."""
    with _unit(_container()) as unit:
        person = unit.directory.person_by_username(username)
        if person is None:
            raise click.ClickException(f"no person with username {username!r}")
        unit.children.grant_right(operator(), person, ChildRightKind(right))
        unit.commit()
    click.echo(f"{username}: {right} granted")


@children.command("area")
@click.option("--org", "org_code", required=True)
@click.argument("districts", nargs=-1)
@cli_errors
def area(org_code: str, districts: tuple[str, ...]) -> None:
    """Set the postcode districts an organisation covers (for the out-of-area rule)."""
    with _unit(_container()) as unit:
        org = unit.directory.organisation_by_code(org_code)
        unit.children.set_area(operator(), org.id, list(districts))
        unit.commit()
    click.echo(f"{org_code}: {len(districts)} district(s)")


@children.command("alerts")
@cli_errors
def alerts() -> None:
    """Every open anomaly alert, whichever team it went to."""
    with _unit(_container()) as unit:
        found = unit.children.all_alerts(operator())
        for alert in found:
            click.echo(f"{alert.id}\t{alert.raised_at:%Y-%m-%d %H:%M}\t{alert.rule}\t"
                       f"person {alert.person_id}\tteam {alert.organisation_id}"
                       f"{chr(9) + 'suspended' if alert.suspended else ''}")
        click.echo(f"{len(found)} open alert(s)")
