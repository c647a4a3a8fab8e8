"""The `contactpoint` command: operations for people who run the service.

Commands act with the operator's authority (they have the server), are
audited as `cli:<user>`, and print errors as one line, never a traceback.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from alembic.util.exc import CommandError as AlembicCommandError
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError

from core.audit import (
    AuditContext,
    Checkpoint,
    current_checkpoint,
    parse_checkpoints,
    verify_chain,
)
from core.errors import ConfigurationError, DomainError
from core.settings import load_settings
from directory.models import OrganisationKind, Role
from directory.service import Grant, Principal
from idp import database
from idp.container import Container, Unit
from tokens.models import TokenState
from vetting.models import CertificateOutcome, Confidence, IdentityMethod
from vetting.service import FoundingEvidence

console = Console()
F = TypeVar("F", bound=Callable[..., Any])


def operator() -> Principal:
    """The CLI acts as the platform, on behalf of whoever runs it on the server."""
    return Principal(
        person_id=0, username=f"cli:{getpass.getuser()}", grants=(Grant(0, Role.PLATFORM_ADMIN),)
    )


def cli_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DomainError, ConfigurationError) as error:
            raise click.ClickException(str(error)) from None
        except AlembicCommandError as error:
            # Typically a schema newer than this software (an old node during a
            # rolling upgrade): say so in one line.
            raise click.ClickException(f"cannot migrate the database: {error}") from None
        except OperationalError as error:
            # The driver's first line says what failed (refused, timed out,
            # authentication); the rest is a traceback nobody should read here.
            first = str(error.orig).strip().splitlines()[0] if error.orig else "no answer"
            raise click.ClickException(f"cannot use the database: {first}") from None

    return wrapper  # type: ignore[return-value]


def _container() -> Container:
    """The command's container, disposed when the command ends: its pool's
    connections are closed then, not whenever the process exits (which, for a
    command run in-process by a test or a tool, may be much later)."""
    container = Container(load_settings())
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(container.dispose)
    return container


def _unit(container: Container) -> Unit:
    return container.unit(
        AuditContext(actor_label=f"cli:{getpass.getuser()}", client_address="cli")
    )


@click.group()
def main() -> None:
    """ContactPoint identity service."""


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@cli_errors
def db_upgrade() -> None:
    """Bring the schema up to date (safe to run again)."""
    container = _container()
    database.upgrade(container.engine)
    click.echo(f"database at revision {database.current_revision(container.engine)}")


@db.command("current")
@cli_errors
def db_current() -> None:
    container = _container()
    current = database.current_revision(container.engine)
    click.echo(f"current {current}; head {database.head_revision()}")
    if not database.is_current(container.engine):
        sys.exit(1)


@main.group()
def demo() -> None:
    """Demo data."""


@demo.command("load")
@cli_errors
def demo_load() -> None:
    """Create the demo organisations and people, or reuse them; print their credentials."""
    from idp.demo import load_demo

    container = _container()
    with _unit(container) as unit:
        credentials = load_demo(unit)
    click.echo("Demo people (demo data only: never use these anywhere real)")
    header = (
        f"{'username':<20} {'role':<22} {'organisation':<18} {'password':<28} {'PIN':<7} "
        "TOTP secret"
    )
    click.echo(header)
    click.echo("-" * len(header + " " * 32))
    for c in credentials:
        p = c.person
        click.echo(
            f"{p.username:<20} {p.role.value:<22} {p.organisation:<18} {p.password:<28} "
            f"{p.pin:<7} {c.totp_secret}"
        )
    click.echo(
        "\nAdd a TOTP secret to an authenticator app, or print a current code with "
        "`contactpoint demo code USERNAME`.\nAn application for Sam Newstarter waits for a "
        "decision by vera.officer."
    )


@demo.command("code")
@click.argument("username")
@cli_errors
def demo_code(username: str) -> None:
    """Print a demo person's current token code (demo people only)."""
    import pyotp

    from idp.demo import DEMO_PEOPLE, load_demo

    if username not in {p.username for p in DEMO_PEOPLE}:
        raise click.ClickException(f"{username} is not a demo person")
    container = _container()
    with _unit(container) as unit:
        for c in load_demo(unit):
            if c.person.username == username:
                click.echo(pyotp.TOTP(c.totp_secret).now())


@main.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
def run(host: str, port: int) -> None:
    """Serve with Flask's development server (one process; for trying it out)."""
    from idp.app import create_app

    app = create_app(container=_container())
    app.run(host=host, port=port, debug=False, use_reloader=False)


SERVE_THREADS = 2  # granian's Python threads a worker, unless --threads says
SERVERS = ("granian", "gunicorn")  # what `serve --server` takes; the default first
MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def queued_connections_migrate() -> bool:
    """Whether Linux hands the connections queued on a closed listening socket
    to another socket of its SO_REUSEPORT group (Linux 5.14+). granian's workers
    each listen on their own socket, so without it a worker that dies takes the
    connections waiting for it down too; gunicorn's share one socket."""
    try:
        return MIGRATE_REQ.read_text().strip() == "1"
    except OSError:
        return False



def server_command(
    server: str, bind: str, workers: int, threads: int, app: str = "idp.wsgi:app"
) -> list[str]:
    """The production server's command line; bench/oidc.py and bench/signin.py
    serve their bare apps with the very same, so the figures differ only in the app."""
    host, _, port = bind.rpartition(":")
    # The server beside this Python, so `.venv/bin/contactpoint serve` works
    # without an activated venv (PATH need not hold the venv's bin folder).
    beside = os.path.join(os.path.dirname(sys.executable), server)
    program = beside if os.path.exists(beside) else server
    if server == "granian":
        return [
            program, "--interface", "wsgi", "--host", host or "127.0.0.1", "--port", port,
            "--workers", str(workers), "--respawn-failed-workers",
            # granian's default for WSGI is hundreds of threads a worker: they
            # queue for one GIL, and each beyond the database pool opens and
            # closes a connection per request (refresh: 900 -> 1,100 requests
            # per CPU-second, p99 326 -> 34 ms with one or two). A couple keep
            # a worker busy while another waits on the database or an upstream.
            "--blocking-threads", str(threads),
            app,
        ]
    return [
        program, "--bind", bind, "--workers", str(workers), "--worker-class", "sync",
        # No access log of gunicorn's own: it would write query strings. The
        # app logs each request as JSON (route, status, time, request id).
        "--no-control-socket", "--config", "python:idp.gunicorn_conf", app,
    ]


@main.command("serve")
@click.option("--bind", default="127.0.0.1:8000", show_default=True)
@click.option("--workers", default=0, help="Worker processes; 0 means one per core.")
@click.option(
    "--server",
    type=click.Choice(SERVERS),
    default=SERVERS[0],
    show_default=True,
    help="The WSGI server: granian (HTTP in Rust, keep-alive, a few Python threads a "
    "worker) or gunicorn (sync workers, a request at a time, no keep-alive).",
)
@click.option(
    "--threads",
    default=SERVE_THREADS,
    show_default=True,
    type=click.IntRange(1, 64),
    help="granian only: Python threads per worker.",
)
def serve(bind: str, workers: int, server: str, threads: int) -> None:
    """Serve with a production WSGI server, one worker process per core by default.

    granian by default: relying applications' token requests outnumber
    sign-ins many times over, and on granian the token endpoint answers 1.5
    to 1.7 times what gunicorn's sync workers do on the same cores (bench/oidc.py),
    against about 5 % more CPU a sign-in and twice the memory a worker. gunicorn
    stays for those who prefer its isolation: a killed sync worker loses the one
    request it was serving, a granian worker every request it had accepted."""
    count = workers or os.cpu_count() or 1
    if server == "granian" and count > 1 and not queued_connections_migrate():
        click.echo(
            "warning: net.ipv4.tcp_migrate_req is off: when a granian worker dies, the "
            "connections waiting for it are reset rather than handed to another worker. "
            "Set it as root: sysctl -w net.ipv4.tcp_migrate_req=1", err=True)
    _prepare_metrics_folder()
    args = server_command(server, bind, count, threads)
    os.execvp(args[0], args)  # noqa: S606 - replaces this process with the server


@main.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@cli_errors
def backup(file: Path) -> None:
    """Write a consistent copy of the SQLite database to FILE while the service runs."""
    from idp import backup as backups

    container = _container()
    with _unit(container) as unit:
        report = backups.backup(unit, file)
    click.echo(
        f"backup written to {report.path}: schema {report.revision}, "
        f"{report.audit_entries} audit entries, {report.size_bytes} bytes"
    )
    click.echo("Keep it apart from the data key (instance/data.key): either alone is useless.")


@main.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@cli_errors
def restore(file: Path) -> None:
    """Replace the SQLite database with the backup in FILE, after checking it."""
    from idp import backup as backups

    container = _container()
    report = backups.restore(container, file)
    with _unit(container) as unit:
        unit.audit.record(
            "ops:restored", detail={"file": file.name, "revision": report.revision}
        )
        unit.commit()
    click.echo(
        f"restored {report.path}: schema {report.revision}, {report.audit_entries} audit entries"
    )
    if backups.schema_behind(report.revision):
        click.echo("The schema is behind this software: run `contactpoint db upgrade` next.")


def _prepare_metrics_folder() -> None:
    """Workers share metrics through files in PROMETHEUS_MULTIPROC_DIR (under
    the instance folder unless set); emptied at start, as prometheus-client
    asks, so counts of an earlier run do not linger."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        folder = str(load_settings().instance_path / "metrics")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


@main.group()
def outbox() -> None:
    """Letters waiting to be posted."""


@outbox.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include letters already printed.")
@cli_errors
def outbox_list(show_all: bool) -> None:
    container = _container()
    with _unit(container) as unit:
        letters = unit.outbox.all() if show_all else unit.outbox.waiting()
        table = Table(title="Outbox")
        for column in ("id", "kind", "recipient", "created", "printed"):
            table.add_column(column)
        for letter in letters:
            table.add_row(
                str(letter.id),
                letter.kind,
                letter.recipient_name,
                f"{letter.created_at:%Y-%m-%d %H:%M}",
                f"{letter.printed_at:%Y-%m-%d %H:%M}" if letter.printed_at else "",
            )
        console.print(table)


@outbox.command("print")
@click.argument("letter_id", type=int)
@cli_errors
def outbox_print(letter_id: int) -> None:
    """Print a letter once; its body is destroyed afterwards."""
    container = _container()
    with _unit(container) as unit:
        body = unit.outbox.print_letter(letter_id)
        unit.commit()
    click.echo(body)


@main.group()
def vetting() -> None:
    """Clearance and lapse."""


@vetting.command("sweep")
@cli_errors
def vetting_sweep() -> None:
    """Suspend everyone whose clearance, training, position or organisation lapsed."""
    container = _container()
    with _unit(container) as unit:
        report = unit.vetting.sweep()
        unit.commit()
    for username, reason in report.suspended:
        click.echo(f"suspended {username}: {reason}")
    click.echo(f"checked {report.checked} active people; suspended {len(report.suspended)}")


def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date like 2026-03-31", param_hint=name
        ) from None


@vetting.command("enrol-founding")
@click.option("--org", "org_code", required=True, help="Organisation code.")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--given-name", required=True)
@click.option("--family-name", required=True)
@click.option("--email", required=True)
@click.option("--phone", default=None)
@click.option(
    "--identity-confidence",
    type=click.Choice([c.value for c in Confidence]),
    required=True,
    help="GPG45 confidence reached.",
)
@click.option(
    "--identity-method",
    type=click.Choice([m.value for m in IdentityMethod]),
    default=IdentityMethod.FACE_TO_FACE.value,
    show_default=True,
)
@click.option("--identity-checked", required=True, help="Date of the identity check.")
@click.option("--evidence-reference", required=True)
@click.option("--certificate-number", required=True, help="DBS certificate number, 12 digits.")
@click.option("--certificate-issued", required=True)
@click.option(
    "--certificate-outcome", type=click.Choice([o.value for o in CertificateOutcome]), required=True
)
@click.option("--training-completed", required=True)
@click.option("--agreement-signed", required=True)
@cli_errors
def vetting_enrol_founding(**options: str) -> None:
    """Enrol one of a new deployment's first people, with every check recorded.

    For the platform admins, vetting officers and organisation admins that
    must exist before anyone can be sponsored or vetted. The same clearance
    rules apply, the operator is audited, and the activation letter goes to
    the outbox as for anyone else.
    """
    evidence = FoundingEvidence(
        confidence=Confidence(options["identity_confidence"]),
        method=IdentityMethod(options["identity_method"]),
        identity_checked_on=_date(options["identity_checked"], "--identity-checked"),
        evidence_reference=options["evidence_reference"],
        certificate_number=options["certificate_number"],
        certificate_issued_on=_date(options["certificate_issued"], "--certificate-issued"),
        certificate_outcome=CertificateOutcome(options["certificate_outcome"]),
        training_completed_on=_date(options["training_completed"], "--training-completed"),
        agreement_signed_on=_date(options["agreement_signed"], "--agreement-signed"),
    )
    container = _container()
    with _unit(container) as unit:
        org = unit.directory.organisation_by_code(options["org_code"])
        enrolled = unit.vetting.enrol_founding(
            f"cli:{getpass.getuser()}",
            organisation_id=org.id,
            role=Role(options["role"]),
            given_name=options["given_name"],
            family_name=options["family_name"],
            work_email=options["email"],
            work_phone=options["phone"],
            evidence=evidence,
        )
        unit.commit()
        click.echo(
            f"enrolled {enrolled.person.username}; activation letter {enrolled.letter_id} "
            "is in the outbox"
        )


@main.group()
def orgs() -> None:
    """Organisations."""


@orgs.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--kind", type=click.Choice([k.value for k in OrganisationKind]), required=True)
@click.option("--accredited/--pending", default=False, show_default=True)
@click.option(
    "--registration-authority",
    default=None,
    help="Code of the organisation whose vetting officers vet this one's staff.",
)
@cli_errors
def orgs_add(
    code: str, name: str, kind: str, accredited: bool, registration_authority: str | None
) -> None:
    container = _container()
    with _unit(container) as unit:
        authority = (
            unit.directory.organisation_by_code(registration_authority)
            if registration_authority
            else None
        )
        org = unit.directory.create_organisation(
            code=code,
            name=name,
            kind=OrganisationKind(kind),
            accredited=accredited,
            registration_authority=authority,
        )
        unit.commit()
        click.echo(f"added {org.code} ({org.accreditation.value})")


@orgs.command("list")
@cli_errors
def orgs_list() -> None:
    container = _container()
    with _unit(container) as unit:
        for org in unit.directory.organisations():
            click.echo(
                f"{org.code:<24} {org.kind.value:<18} {org.accreditation.value:<11} {org.name}"
            )


# Required, but checked by the service (one line, "reason: Enter the reason"), not
# by click, whose usage error takes four.
REASON = click.option(
    "--reason", default="", help="Why (required): kept on the audit trail, as every operator act's."
)


def _accreditation(code: str, reason: str, change: str) -> None:
    """Change an organisation's accreditation with the platform's authority: the
    same service as the console and the API, so the same people are suspended or
    reinstated and the same entries written."""
    container = _container()
    with _unit(container) as unit:
        org = unit.directory.organisation_by_code(code)
        service = unit.accreditation
        if change == "suspend":
            done = service.suspend(operator(), org.id, reason)
            result = f"suspended {org.code}: {done.people} people lost access"
        else:
            done = service.accredit(operator(), org.id, reason)
            result = f"accredited {org.code}: {done.people} people can sign in again"
        unit.commit()
    click.echo(result)


@orgs.command("accredit")
@click.argument("code")
@REASON
@cli_errors
def orgs_accredit(code: str, reason: str) -> None:
    """Accredit a pending organisation, or re-accredit a suspended one."""
    _accreditation(code, reason, "accredit")


@orgs.command("reinstate")
@click.argument("code")
@REASON
@cli_errors
def orgs_reinstate(code: str, reason: str) -> None:
    """Accredit a suspended organisation again: its people suspended with it
    come back while their own clearance and training last."""
    _accreditation(code, reason, "accredit")


@orgs.command("suspend")
@click.argument("code")
@REASON
@cli_errors
def orgs_suspend(code: str, reason: str) -> None:
    """Suspend an organisation: whoever had access only through it is suspended
    and signed out at once."""
    _accreditation(code, reason, "suspend")


@main.group()
def accounts() -> None:
    """Accounts."""


@accounts.command("unlock")
@click.argument("username")
@REASON
@cli_errors
def accounts_unlock(username: str, reason: str) -> None:
    container = _container()
    with _unit(container) as unit:
        person = unit.directory.person_by_username(username)
        if person is None:
            raise click.ClickException(f"no person with username {username!r}")
        unit.signin.unlock(operator(), person, reason)
        unit.commit()
    click.echo(f"unlocked {username}")


def _reset(username: str, kind: str, reason: str) -> None:
    from tokens.resets import ResetKind

    container = _container()
    with _unit(container) as unit:
        person = unit.directory.person_by_username(username)
        if person is None:
            raise click.ClickException(f"no person with username {username!r}")
        sent = unit.resets.request(operator(), person.id, ResetKind(kind), reason)
        unit.commit()
    click.echo(
        f"letter {sent.letter_id}: {kind} reset for {username}, "
        f"code valid until {sent.expires_on.isoformat()}"
    )


@accounts.command("reset-pin")
@click.argument("username")
@REASON
@cli_errors
def accounts_reset_pin(username: str, reason: str) -> None:
    """Write a PIN reset letter to the outbox; print its id."""
    _reset(username, "pin", reason)


@accounts.command("reset-password")
@click.argument("username")
@REASON
@cli_errors
def accounts_reset_password(username: str, reason: str) -> None:
    """Write a password reset letter to the outbox; print its id."""
    _reset(username, "password", reason)


@main.group()
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@click.option("--checkpoints", "checkpoint_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a file of checkpoints written by `audit checkpoint` (repeatable): "
                   "each must still be in the log with the same hash")
@cli_errors
def audit_verify(checkpoint_files: tuple[Path, ...]) -> None:
    """Check the hash chain; name the first entry that does not fit."""
    checkpoints: list[Checkpoint] = []
    for path in checkpoint_files:
        with path.open(encoding="utf-8", errors="replace") as handle:
            checkpoints += parse_checkpoints(handle, str(path))
    container = _container()
    with _unit(container) as unit:
        report = verify_chain(unit.session, checkpoints)
    if report.ok:
        against = f", {len(checkpoints)} checkpoints matched" if checkpoints else ""
        click.echo(f"audit chain intact: {report.checked} entries{against}")
        return
    click.echo(f"audit chain broken at entry {report.first_bad_seq}: {report.problem}", err=True)
    sys.exit(1)


@audit.command("checkpoint")
@click.option("--append", "append_to", type=click.Path(dir_okay=False, path_type=Path),
              help="also append the line to this file (keep it off the database's machine)")
@cli_errors
def audit_checkpoint(append_to: Path | None) -> None:
    """Print the log's head as a checkpoint line, to be kept outside the database.

    Run it from cron; `audit verify --checkpoints FILE` then catches a tail cut
    off, or a chain recomputed, by someone with rights over the database."""
    container = _container()
    with _unit(container) as unit:
        point = current_checkpoint(unit.session)
        line = point.line(unit.clock.now())
    if append_to is not None:
        with append_to.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    click.echo(line)


@main.group()
def tokens() -> None:
    """Hardware OATH tokens: import vendor PSKC files, list the inventory."""


@tokens.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", "org_code", required=True, help="Code of the organisation that owns them.")
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The pre-shared key (hex or raw bytes) when the secrets are encrypted.",
)
@REASON
@cli_errors
def tokens_import(file: Path, org_code: str, key_file: Path | None, reason: str) -> None:
    """Put every token of a PSKC file (RFC 6030) in stock, or none if anything is wrong."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from core.errors import InvalidInput
    from tokens.pskc import read_preshared_key, read_pskc

    key = read_preshared_key(key_file.read_bytes()) if key_file else None
    container = _container()
    with _unit(container) as unit:
        org = unit.directory.organisation_by_code(org_code)
        parsed = read_pskc(file.read_bytes(), source=file.name, preshared_key=key)
        try:
            parsed.raise_if_problems()
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task("Importing", total=len(parsed.packages))
                report = unit.inventory.import_packages(
                    operator(),
                    org,
                    parsed.packages,
                    source=file.name,
                    progress=lambda done, _total: bar.update(task, completed=done),
                    reason=reason,
                )
            unit.commit()
        except InvalidInput as error:
            if all(problem.field == "reason" for problem in error.problems):
                raise  # the operator's own omission, not the file's: one line
            click.echo(f"{file.name} refused; nothing was imported:", err=True)
            for problem in error.problems:
                click.echo(f"  {problem.describe()}", err=True)
            sys.exit(1)
    click.echo(f"imported {report.imported} tokens into {org.code}")


@tokens.command("list")
@click.option("--org", "org_code", required=True, help="Organisation code.")
@click.option("--state", type=click.Choice([s.value for s in TokenState]), default=None)
@click.option("--page", type=int, default=1, show_default=True)
@cli_errors
def tokens_list(org_code: str, state: str | None, page: int) -> None:
    """The organisation's hardware tokens with their state, 50 a page."""
    container = _container()
    with _unit(container) as unit:
        org = unit.directory.organisation_by_code(org_code)
        found = unit.inventory.list_tokens(
            operator(), org.id, state=TokenState(state) if state else None, page=page
        )
        table = Table(title=f"Tokens of {org.code}: page {found.page} of {found.pages}, "
                      f"{found.total} in all")
        holders = unit.inventory.holders(found.items)
        for column in ("serial", "kind", "digits", "state", "held by"):
            table.add_column(column)
        for token in found.items:
            holder = holders.get(token.person_id) if token.person_id else None
            table.add_row(
                token.serial,
                token.algorithm.value.upper(),
                str(token.digits),
                token.state.value.replace("_", " "),
                holder.username if holder else "",
            )
        console.print(table)


# Command groups kept beside their own area; importing one registers it on `main`.
from idp import directory_cli as _directory_cli  # noqa: E402, F401
from idp.children import cli as _children_cli  # noqa: E402, F401
from idp.federation import cli as _federation_cli  # noqa: E402, F401
from idp.keys import cli as _keys_cli  # noqa: E402, F401
from idp.oidc import cli as _oidc_cli  # noqa: E402, F401
