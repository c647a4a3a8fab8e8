"""`contactpoint tokens import` and `tokens list`, as an operator runs them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.audit import AuditEntry
from tests.idp.test_cli import Cli, _one_line_error
from tests.tokens.pskc_files import PRESHARED_KEY, Package, build_pskc
from tokens.models import OtpToken, TokenState


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(database_url, tmp_path / "cli-instance")
    assert runner("orgs", "add", "NCC", "Northshire", "--kind", "local_authority",
                  "--accredited").exit_code == 0
    yield runner
    runner.close()


def _count(cli: Cli) -> int:
    with cli.container().unit() as unit:
        return int(unit.session.scalar(select(func.count()).select_from(OtpToken)) or 0)


def test_import_an_encrypted_file_with_its_key_then_list(cli: Cli, tmp_path: Path) -> None:
    pskc = tmp_path / "batch.pskc"
    pskc.write_bytes(build_pskc([Package(serial=f"C{n:03d}") for n in range(120)],
                                psk=PRESHARED_KEY))
    key = tmp_path / "batch.key"
    key.write_text(PRESHARED_KEY.hex())
    missing_key = cli("tokens", "import", str(pskc), "--org", "NCC")
    assert missing_key.exit_code == 1
    assert "nothing was imported" in missing_key.output
    assert "pre-shared key" in missing_key.output
    assert _count(cli) == 0

    # The operator says why, as for every act of the platform's (one line if not).
    _one_line_error(cli("tokens", "import", str(pskc), "--org", "NCC", "--key-file", str(key)),
                    "reason: Enter the reason")
    assert _count(cli) == 0
    result = cli("tokens", "import", str(pskc), "--org", "NCC", "--key-file", str(key),
                 "--reason", "first delivery")
    assert result.exit_code == 0, result.output
    assert "imported 120 tokens into NCC" in result.output
    with cli.container().unit() as unit:
        states = set(unit.session.scalars(select(OtpToken.state)))
        assert states == {TokenState.IN_STOCK}
        entry = unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == "token:imported")).one()
        assert entry.detail["reason"] == "first delivery"

    listed = cli("tokens", "list", "--org", "NCC")
    assert listed.exit_code == 0
    assert "C000" in listed.output and "C049" in listed.output and "C050" not in listed.output
    assert "120 in all" in listed.output
    assert "C119" in cli("tokens", "list", "--org", "NCC", "--page", "3").output
    assert "0 in all" in cli("tokens", "list", "--org", "NCC", "--state", "active").output

    # The same file again: every serial is taken, nothing changes.
    again = cli("tokens", "import", str(pskc), "--org", "NCC", "--key-file", str(key),
                "--reason", "again")
    assert again.exit_code == 1
    assert "batch.pskc, row 1, SerialNo: serial C000 is already in the inventory" in again.output
    assert _count(cli) == 120


def test_a_bad_file_lists_every_problem_and_imports_nothing(cli: Cli, tmp_path: Path) -> None:
    pskc = tmp_path / "bad.xml"
    pskc.write_bytes(build_pskc([
        Package(serial="OK1"), Package(serial="BAD2", algorithm="urn:nope"),
        Package(serial="BAD3", secret=None),
    ]))
    result = cli("tokens", "import", str(pskc), "--org", "NCC")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "bad.xml, row 2, Key: serial BAD2" in result.output
    assert "bad.xml, row 3, Secret: serial BAD3" in result.output
    assert _count(cli) == 0
    unknown = cli("tokens", "import", str(pskc), "--org", "NOPE")
    assert unknown.exit_code != 0 and "NOPE" in unknown.output
