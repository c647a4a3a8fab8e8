"""`contactpoint orgs accredit|suspend|reinstate`, as an operator runs them: the
accreditation service the console and the API use, a reason required, one-line
errors, and the operator on the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from directory.models import Accreditation, PersonStatus, Role
from tests.factories import World
from tests.idp.test_cli import Cli, _one_line_error


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(database_url, tmp_path / "cli-instance")
    assert runner("orgs", "add", "NCC", "Northshire", "--kind", "local_authority",
                  "--accredited").exit_code == 0
    assert runner("orgs", "add", "NPS", "Northshire Primary", "--kind", "school",
                  "--registration-authority", "NCC").exit_code == 0
    yield runner
    runner.close()


def _accreditation(cli: Cli, code: str) -> Accreditation:
    with cli.container().unit() as unit:
        return unit.directory.organisation_by_code(code).accreditation


def _entries(cli: Cli, tag: str) -> list[tuple[dict[str, object], str | None, int | None]]:
    with cli.container().unit() as unit:
        return [(e.detail, e.actor_label, e.organisation_id) for e in unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == tag))]


def test_refusals_are_one_line_and_change_nothing(cli: Cli) -> None:
    for command in ("accredit", "suspend", "reinstate"):
        _one_line_error(cli("orgs", command, "NPS"), "reason: Enter the reason")
        _one_line_error(cli("orgs", command, "NPS", "--reason", "   "), "reason")
        _one_line_error(cli("orgs", command, "NOPE", "--reason", "checked"), "NOPE")
    assert _accreditation(cli, "NPS") is Accreditation.PENDING
    _one_line_error(cli("orgs", "suspend", "NPS", "--reason", "x"), "not accredited")
    _one_line_error(cli("orgs", "accredit", "NCC", "--reason", "x"), "already accredited")
    assert _entries(cli, "organisation:accredited") == []


def test_accredit_suspend_and_reinstate_with_the_people_of_the_organisation(cli: Cli) -> None:
    done = cli("orgs", "accredit", "NPS", "--reason", "inspection passed")
    assert done.exit_code == 0, done.output
    assert done.output.strip() == "accredited NPS: 0 people can sign in again"
    assert _accreditation(cli, "NPS") is Accreditation.ACCREDITED
    container = cli.container()
    world = World(container)
    school = world.unit.directory.organisation_by_code("NPS")
    school_id = school.id
    teacher = world.member(school, Role.PRACTITIONER, given_name="Tom")
    world.close()
    suspended = cli("orgs", "suspend", "NPS", "--reason", "safeguarding concern")
    assert suspended.exit_code == 0, suspended.output
    assert suspended.output.strip() == "suspended NPS: 1 people lost access"
    with container.unit() as unit:
        assert unit.directory.person(teacher.person.id).status is PersonStatus.SUSPENDED
    back = cli("orgs", "reinstate", "NPS", "--reason", "concern resolved")
    assert back.exit_code == 0, back.output
    assert back.output.strip() == "accredited NPS: 1 people can sign in again"
    with container.unit() as unit:
        assert unit.directory.person(teacher.person.id).status is PersonStatus.ACTIVE
    for tag, reason in (("organisation:accredited", "inspection passed"),
                        ("organisation:suspended", "safeguarding concern"),
                        ("organisation:reaccredited", "concern resolved")):
        [(detail, actor, organisation_id)] = _entries(cli, tag)
        assert detail["reason"] == reason
        assert (actor or "").startswith("cli:")
        assert organisation_id == school_id
