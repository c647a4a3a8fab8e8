"""`contactpoint directory`: the directory of services and its LDAP side.

One group that both the service-directory commands and the LDAP commands add
to; idp/cli.py only imports this module so that the group is registered.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.errors import InvalidInput
from idp.cli import _container, _unit, cli_errors, console, main, operator


@main.group()
def directory() -> None:
    """The directory of services and practitioners."""


@directory.command("import-services")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", "org_code", default=None,
              help="Refuse any row for another organisation than this one (by code).")
@cli_errors
def import_services(file: Path, org_code: str | None) -> None:
    """Load services from a CSV file: every row checked first, then all written or none.

    Re-running the same file changes nothing; a changed row updates the service
    with the same organisation and source_ref."""
    content = file.read_text(encoding="utf-8-sig")
    started = time.perf_counter()
    with _unit(_container()) as unit, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
    ) as bar:
        task = bar.add_task(f"Importing {file.name}", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            report = unit.services.import_csv(
                operator(), content, source=file.name, only_organisation=org_code,
                progress=advance,
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
        f"{report.unchanged} unchanged in {seconds:.1f} s ({rate:,.0f} rows/s)"
    )


# -- LDAP: publishing the directory, importing an organisation's staff ---------


@directory.command("publish")
@click.option("--full", is_flag=True, help="Reconcile with what the server holds, not the ledger.")
@click.option("--connections", type=click.IntRange(1, 64), default=None,
              help="Parallel connections (default: ldap.connections).")
@cli_errors
def ldap_publish(full: bool, connections: int | None) -> None:
    """Write organisations, services and people to the LDAP server in [ldap].

    A normal run sends only what changed since the last one; a run that fails
    half way keeps what it did, and the next run sends the rest.
    """
    container = _container()
    with _unit(container) as unit:
        publisher = unit.ldap_publisher
        if connections:
            publisher.connections = connections
        report = publisher.publish(full=full)
    click.echo(
        f"{report.mode} publish to {report.server}: added {report.added}, modified "
        f"{report.modified}, deleted {report.deleted}, unchanged {report.unchanged}, "
        f"failed {report.failed} in {report.seconds:.1f} s ({report.connections} connections)"
    )


def _attribute_map(pairs: tuple[str, ...]) -> dict[str, str]:
    from directory.ldap_import import DEFAULT_MAP

    mapping = dict(DEFAULT_MAP)
    for pair in pairs:
        field_name, sep, attribute = pair.partition("=")
        if not sep or field_name not in DEFAULT_MAP or not attribute:
            raise click.BadParameter(
                f"{pair!r}: expected FIELD=ATTRIBUTE with FIELD one of {', '.join(DEFAULT_MAP)}",
                param_hint="--map",
            )
        mapping[field_name] = attribute
    return mapping


@directory.command("import-staff")
@click.argument("org_code")
@click.option("--url", required=True, help="ldap://host[:port] or ldaps://host[:port].")
@click.option("--bind-dn", required=True)
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="File holding the bind password "
              "(else CONTACTPOINT_IMPORT_PASSWORD).")
@click.option("--base-dn", required=True, help="Where to search for people.")
@click.option("--filter", "search_filter", default="(objectClass=inetOrgPerson)",
              show_default=True, help="For Active Directory: (&(objectCategory=person)"
              "(objectClass=user)).")
@click.option("--id-attribute", default="entryUUID", show_default=True,
              help="A stable id: entryUUID (OpenLDAP) or objectGUID (Active Directory).")
@click.option("--map", "mappings", multiple=True,
              help="FIELD=ATTRIBUTE, e.g. work_phone=mobile (fields: given_name, family_name, "
              "work_email, work_phone).")
@click.option("--starttls", is_flag=True, help="Upgrade an ldap:// connection with StartTLS.")
@click.option("--page-size", type=click.IntRange(1, 10000), default=500, show_default=True)
@click.option("--timeout", type=click.IntRange(1, 300), default=10, show_default=True)
@cli_errors
def import_staff(org_code: str, url: str, bind_dn: str, password_file: Path | None,
                 base_dn: str, search_filter: str, id_attribute: str, mappings: tuple[str, ...],
                 starttls: bool, page_size: int, timeout: int) -> None:
    """Propose the people in an organisation's own LDAP or Active Directory for
    vetting; its sponsor confirms each one. Never creates an account; running
    it again proposes nobody twice."""
    import os

    from directory.ldap_connect import LdapTarget
    from directory.ldap_import import ImportSource
    from vetting.staff_import import StaffImport

    if password_file is not None:
        password = password_file.read_text().strip()
    else:
        password = os.environ.get("CONTACTPOINT_IMPORT_PASSWORD", "")
    if not password:
        raise click.UsageError("give --password-file or set CONTACTPOINT_IMPORT_PASSWORD")
    source = ImportSource(
        target=LdapTarget(url=url.rstrip("/"), bind_dn=bind_dn, password=password,
                          base_dn=base_dn, use_starttls=starttls, timeout_seconds=timeout),
        search_filter=search_filter,
        id_attribute=id_attribute,
        attribute_map=_attribute_map(mappings),
        page_size=page_size,
    )
    container = _container()
    with _unit(container) as unit:
        report = StaffImport(unit.session, unit.clock, unit.audit, unit.directory).import_staff(
            org_code, source
        )
    click.echo(
        f"{report.organisation_code}: {report.found} found in {report.pages} page(s); "
        f"{report.proposed} proposed, {report.already_proposed} already proposed, "
        f"{report.already_known} already known, {len(report.unusable)} unusable"
    )
    for reason in report.unusable[:20]:
        click.echo(f"  skipped {reason}")


@directory.command("proposals")
@click.argument("org_code")
@cli_errors
def staff_proposals(org_code: str) -> None:
    """Proposed applications waiting for the organisation's sponsor to confirm."""
    from vetting.staff_import import StaffImport

    container = _container()
    with _unit(container) as unit:
        found = StaffImport(unit.session, unit.clock, unit.audit, unit.directory).proposals(
            operator(), org_code
        )
        for app in found:
            click.echo(f"{app.id}\t{app.applicant_name}\t{app.work_email}\t{app.source_ref}")
        click.echo(f"{len(found)} proposal(s) for {org_code}")
