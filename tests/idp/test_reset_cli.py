"""`contactpoint accounts reset-pin` and `reset-password`, run as an operator runs
them: the letter goes to the outbox, its id is printed, the code works."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.outbox import Letter
from directory.models import PersonStatus
from tests.idp.test_cli import Cli, _one_line_error
from tokens.models import CodePurpose

PRINTED = re.compile(r"^letter (\d+): (pin|password) reset for priya\.practitioner, "
                     r"code valid until \d{4}-\d\d-\d\d$")
CODE_LINE = re.compile(r"reset code: (\S+)")


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(database_url, tmp_path / "cli-instance")
    yield runner
    runner.close()


@pytest.mark.parametrize(("command", "kind"), [("reset-pin", "pin"),
                                               ("reset-password", "password")])
def test_accounts_reset_commands_write_a_letter_and_print_its_id(
    cli: Cli, command: str, kind: str
) -> None:
    assert cli("demo", "load").exit_code == 0
    _one_line_error(cli("accounts", command, "priya.practitioner"), "reason: Enter the reason")
    result = cli("accounts", command, "priya.practitioner", "--reason", "forgot it")
    assert result.exit_code == 0, result.output
    found = PRINTED.match(result.output.strip())
    assert found, result.output
    letter_id = int(found.group(1))
    assert found.group(2) == kind

    container = cli.container()
    with container.unit() as unit:
        letter = unit.session.get(Letter, letter_id)
        assert letter is not None and letter.kind == f"{kind}_reset"
        entry = unit.session.scalar(
            select(AuditEntry).where(AuditEntry.tag == f"reset:{kind}:requested")
        )
        assert entry is not None and (entry.actor_label or "").startswith("cli:")

    printed = cli("outbox", "print", str(letter_id))
    assert printed.exit_code == 0
    code_found = CODE_LINE.search(printed.output)
    assert code_found, printed.output
    # The code printed is the one kept (as a digest) for this person and purpose, once.
    purpose = CodePurpose.PIN_RESET if kind == "pin" else CodePurpose.PASSWORD_RESET
    other = CodePurpose.PASSWORD_RESET if kind == "pin" else CodePurpose.PIN_RESET
    with container.unit() as unit:
        person = unit.directory.person_by_username("priya.practitioner")
        assert person is not None
        assert not unit.codes.redeem(person.id, other, code_found.group(1))
        assert unit.codes.redeem(person.id, purpose, code_found.group(1))
        assert not unit.codes.redeem(person.id, purpose, code_found.group(1))


def test_accounts_reset_commands_refuse_nobody_and_inactive_accounts(cli: Cli) -> None:
    assert cli("demo", "load").exit_code == 0
    for command in ("reset-pin", "reset-password"):
        _one_line_error(cli("accounts", command, "ghost.person", "--reason", "asked"),
                        "no person with username")
    with cli.container().unit() as unit:
        person = unit.directory.person_by_username("priya.practitioner")
        assert person is not None
        person.status = PersonStatus.SUSPENDED
        unit.commit()
    _one_line_error(cli("accounts", "reset-pin", "priya.practitioner", "--reason", "asked"),
                    "suspended")
