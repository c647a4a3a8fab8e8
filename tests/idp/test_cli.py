"""The `contactpoint` command, run as an operator runs it: settings from the
environment, one-line errors, exit codes a script can test."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from core.audit import AuditEntry
from core.settings import Settings
from directory.models import Person, PersonStatus
from directory.service import principal_for
from idp.cli import main
from idp.container import Container
from idp.demo import DEMO_PEOPLE
from tests.conftest import make_settings
from tokens.attempts import Client
from tokens.errors import SignInFailed
from tokens.models import SignInGuard
from vetting.models import Application, Decision

SECRET = re.compile(r"\b[A-Z2-7]{32}\b")


class Cli:
    def __init__(self, database_url: str, instance_dir: Path) -> None:
        self.database_url = database_url
        self.instance_dir = instance_dir
        ambient = {name: None for name in os.environ if name.startswith("CONTACTPOINT_")}
        self.env: dict[str, str | None] = {
            **ambient,
            "CONTACTPOINT_DATABASE__URL": database_url,
            "CONTACTPOINT_SERVICE__INSTANCE_DIR": str(instance_dir),
            "CONTACTPOINT_ARGON2__MEMORY_KIB": "1024",
            "CONTACTPOINT_ARGON2__TIME_COST": "1",
        }
        self._containers: list[Container] = []

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=self.env, catch_exceptions=False)

    def settings(self) -> Settings:
        return make_settings(self.database_url, self.instance_dir)

    def container(self) -> Container:
        """The service as the CLI sees it: same database, same keys, the real clock."""
        built = Container(self.settings())
        self._containers.append(built)
        return built

    def close(self) -> None:
        for built in self._containers:
            built.dispose()


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(database_url, tmp_path / "cli-instance")
    yield runner
    runner.close()


def _one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code != 0
    output = result.output.strip()
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("Error: ")
    for fragment in fragments:
        assert fragment in output


def test_db_upgrade_builds_a_fresh_database_and_is_safe_to_run_again(tmp_path: Path) -> None:
    fresh = Cli(f"sqlite:///{tmp_path / 'fresh.db'}", tmp_path / "instance")
    first = fresh("db", "upgrade")
    second = fresh("db", "upgrade")
    assert first.exit_code == second.exit_code == 0
    assert first.output.startswith("database at revision ")
    assert first.output == second.output
    assert fresh("db", "current").exit_code == 0


def test_db_upgrade_on_a_current_database_changes_nothing(cli: Cli) -> None:
    assert cli("db", "current").exit_code == 0
    before = cli("db", "current").output
    assert cli("db", "upgrade").exit_code == 0
    assert cli("db", "upgrade").exit_code == 0
    assert cli("db", "current").output == before


def _people(cli: Cli) -> int:
    with cli.container().unit() as unit:
        return int(unit.session.scalar(select(func.count()).select_from(Person)) or 0)


def test_demo_load_twice_makes_the_people_once_and_prints_their_credentials_each_time(
    cli: Cli,
) -> None:
    runs = [cli("demo", "load"), cli("demo", "load")]
    secrets_seen = []
    for result in runs:
        assert result.exit_code == 0, result.output
        lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
        secrets = {}
        for demo in DEMO_PEOPLE:
            line = lines[demo.username]
            assert demo.password in line and f" {demo.pin} " in line
            found = SECRET.search(line)
            assert found, line
            secrets[demo.username] = found.group(0)
        secrets_seen.append(secrets)
    assert secrets_seen[0] == secrets_seen[1]
    assert _people(cli) == len(DEMO_PEOPLE)
    with cli.container().unit() as unit:
        assert unit.session.scalar(
            select(func.count()).select_from(Application).where(
                Application.family_name == "Newstarter"
            )
        ) == 1

    code = cli("demo", "code", "vera.officer")
    assert code.exit_code == 0
    totp = pyotp.TOTP(secrets_seen[0]["vera.officer"])
    assert totp.verify(code.output.strip(), valid_window=1)
    _one_line_error(cli("demo", "code", "somebody.else"), "not a demo person")


def _clear_sam(cli: Cli) -> int:
    """Vera decides the demo application, as she would on its page."""
    with cli.container().unit() as unit:
        vera = unit.directory.person_by_username("vera.officer")
        assert vera is not None
        app = unit.session.scalar(
            select(Application).where(Application.family_name == "Newstarter")
        )
        assert app is not None
        enrolled = unit.vetting.decide(
            principal_for(vera, unit.clock.today()), app.id,
            decision=Decision.CLEARED, reason="All checks satisfactory",
        )
        unit.commit()
        assert enrolled is not None
        return enrolled.letter_id


def test_outbox_prints_a_letter_once(cli: Cli) -> None:
    assert cli("demo", "load").exit_code == 0
    letter_id = _clear_sam(cli)

    listed = cli("outbox", "list")
    assert listed.exit_code == 0
    row = next(line for line in listed.output.splitlines() if "Sam Newstarter" in line)
    assert re.search(rf"\b{letter_id}\b", row) and "activation" in row

    printed = cli("outbox", "print", str(letter_id))
    assert printed.exit_code == 0
    assert "Username: sam.newstarter" in printed.output
    assert re.search(r"Activation code: \S+", printed.output)

    again = cli("outbox", "print", str(letter_id))
    _one_line_error(again, f"letter {letter_id}", "already printed")
    _one_line_error(cli("outbox", "print", "99999"), "no letter 99999")
    assert "Sam Newstarter" not in cli("outbox", "list").output
    assert "Sam Newstarter" in cli("outbox", "list", "--all").output


def test_vetting_sweep_prints_whom_it_suspended(cli: Cli) -> None:
    assert cli("demo", "load").exit_code == 0
    with cli.container().unit() as unit:
        priya = unit.directory.person_by_username("priya.practitioner")
        assert priya is not None
        priya.clearance_expires_on = unit.clock.today() - timedelta(days=1)
        unit.commit()

    swept = cli("vetting", "sweep")
    assert swept.exit_code == 0
    assert "suspended priya.practitioner: lapsed: clearance lapsed" in swept.output
    assert f"checked {len(DEMO_PEOPLE)} active people; suspended 1" in swept.output
    with cli.container().unit() as unit:
        priya = unit.directory.person_by_username("priya.practitioner")
        assert priya is not None and priya.status is PersonStatus.SUSPENDED
    again = cli("vetting", "sweep")
    assert "suspended 0" in again.output and "priya" not in again.output


def _drop_append_only_trigger(container: Container) -> str | None:
    """Tamper as someone with the database would; returns how to put it back."""
    with container.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER audit_entry_append_only ON audit_entry"))
            return (
                "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry "
                "FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only()"
            )
        conn.execute(text("DROP TRIGGER audit_entry_no_update"))
        return None


def test_audit_verify_passes_an_intact_chain_and_names_a_tampered_entry(cli: Cli) -> None:
    assert cli("demo", "load").exit_code == 0
    intact = cli("audit", "verify")
    assert intact.exit_code == 0
    assert intact.output.startswith("audit chain intact: ")

    container = cli.container()
    # The database itself refuses the edit while its trigger stands.
    with pytest.raises(DatabaseError), container.engine.begin() as conn:
        conn.execute(text("UPDATE audit_entry SET tag = 'tampered' WHERE seq = 5"))
    restore = _drop_append_only_trigger(container)
    try:
        with container.engine.begin() as conn:
            conn.execute(text("UPDATE audit_entry SET outcome = 'refused' WHERE seq = 5"))
        broken = cli("audit", "verify")
        assert broken.exit_code == 1
        assert "audit chain broken at entry 5" in broken.output
        assert "Traceback" not in broken.output
    finally:
        if restore:
            with container.engine.begin() as conn:
                conn.execute(text(restore))
    with container.unit() as unit:
        assert unit.session.get(AuditEntry, 5) is not None


def test_audit_checkpoints_catch_a_cut_tail_that_the_chain_alone_cannot(
    cli: Cli, tmp_path: Path
) -> None:
    assert cli("demo", "load").exit_code == 0
    kept = tmp_path / "checkpoints.txt"
    taken = cli("audit", "checkpoint", "--append", str(kept))
    assert taken.exit_code == 0
    line = taken.output.strip()
    assert re.fullmatch(r"audit-checkpoint \d+ [0-9a-f]{64} \S+", line)
    assert kept.read_text().splitlines() == [line]
    seq = int(line.split()[1])
    assert cli("audit", "verify", "--checkpoints", str(kept)).output == (
        f"audit chain intact: {seq} entries, 1 checkpoints matched\n")

    container = cli.container()
    restore = _drop_append_only_trigger(container)
    try:
        with container.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.execute(text("DROP TRIGGER audit_entry_no_delete"))
            keep = seq - 3
            last = conn.execute(text("SELECT hash FROM audit_entry WHERE seq = :k"),
                                {"k": keep}).scalar_one()
            conn.execute(text("DELETE FROM audit_entry WHERE seq > :k"), {"k": keep})
            conn.execute(text("UPDATE audit_head SET seq = :k, last_hash = :h"),
                         {"k": keep, "h": last})
        assert cli("audit", "verify").exit_code == 0  # the blind spot
        caught = cli("audit", "verify", "--checkpoints", str(kept))
        assert caught.exit_code == 1
        assert f"audit chain broken at entry {keep + 1}: entries after {keep} were removed" \
            in caught.output
    finally:
        if restore:
            with container.engine.begin() as conn:
                conn.execute(text(restore))


def test_audit_verify_names_a_bad_checkpoint_line(cli: Cli, tmp_path: Path) -> None:
    assert cli("db", "upgrade").exit_code == 0
    bad = tmp_path / "cp.txt"
    bad.write_text("# taken hourly\naudit-checkpoint twelve abc\n")
    result = cli("audit", "verify", "--checkpoints", str(bad))
    assert result.exit_code == 1
    assert f"{bad}, row 2, checkpoint: expected 'audit-checkpoint SEQ HASH [TIME]'" \
        in result.output
    assert "Traceback" not in result.output


def test_accounts_unlock(cli: Cli) -> None:
    assert cli("demo", "load").exit_code == 0
    container = cli.container()
    priya = next(p for p in DEMO_PEOPLE if p.username == "priya.practitioner")
    client = Client("203.0.113.5")
    with container.unit() as unit:
        for _ in range(container.settings.signin.lockout_threshold + 1):
            with pytest.raises(SignInFailed):
                unit.signin.begin(priya.username, priya.password + " typo", client)
        with pytest.raises(SignInFailed):
            unit.signin.begin(priya.username, priya.password, client)  # locked now

    unlocked = cli("accounts", "unlock", "priya.practitioner")
    assert unlocked.exit_code == 0
    assert unlocked.output.strip() == "unlocked priya.practitioner"
    with container.unit() as unit:
        person = unit.directory.person_by_username(priya.username)
        assert person is not None
        guard = unit.session.get(SignInGuard, person.id)
        assert guard is not None and guard.locked_until is None
        assert guard.consecutive_failures == 0
        assert unit.signin.begin(priya.username, priya.password, client)
        entry = unit.session.scalar(
            select(AuditEntry).where(AuditEntry.tag == "signin:unlocked")
        )
        assert entry is not None and (entry.actor_label or "").startswith("cli:")

    _one_line_error(cli("accounts", "unlock", "ghost.person"), "no person with username")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/contactpoint",  # nothing listens on port 1
        "sqlite:////nonexistent-folder/contactpoint.db",
    ],
)
def test_an_unreachable_database_is_one_clear_line_not_a_traceback(
    url: str, tmp_path: Path
) -> None:
    cli = Cli(url, tmp_path / "instance")
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot use the database:")
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
