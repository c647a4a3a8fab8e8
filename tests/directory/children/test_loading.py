"""Loading supplied records: matching, re-runs, conflicts, bad rows."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.errors import InvalidInput
from directory.children.loading import read_rows
from directory.children.models import (
    Child,
    ChildConflict,
    ChildFormerName,
    ChildInvolvement,
    ChildSupply,
    Gender,
    ReturnIntention,
    Whereabouts,
)
from directory.children.preparing import COLUMNS
from directory.children.service import ChildQuery
from directory.children.synth import records, write
from tests.directory.children.conftest import (
    OPERATOR,
    REASON,
    Kids,
    as_csv,
    audit_entries,
    row,
    schema_of,
)


def _count(kids: Kids, model: type) -> int:
    with kids.container.unit() as unit:
        return int(unit.session.scalar(select(func.count()).select_from(model)) or 0)


def test_rerunning_a_file_changes_nothing(kids: Kids) -> None:
    rows = [row(forename=f"Kid{chr(65 + n)}", source_scheme="nhs_number",
                source_id=f"999000{n:03d}0") for n in range(0)]
    rows = [row(forename="Amelia"), row(forename="Ben", date_of_birth="2016-02-02"),
            row(forename="Cara", source_scheme="pupil_number", source_id="A123456789012")]
    first = kids.load(rows)
    assert (first.created, first.unchanged) == (3, 0)
    before = kids.child("Hartley", "Ben")
    again = kids.load(rows)
    assert (again.created, again.updated, again.linked, again.unchanged) == (0, 0, 0, 3)
    after = kids.child("Hartley", "Ben")
    assert (after.updated_at, after.content_digest) == (before.updated_at, before.content_digest)


def test_same_source_corrects_its_own_record(kids: Kids) -> None:
    kids.load([row(source_scheme="pupil_number", source_id="P1")])
    report = kids.load([row(source_scheme="pupil_number", source_id="P1",
                            address_line1="99 New Street", postcode="NE2 9ZZ")])
    assert report.updated == 1
    with kids.container.unit() as unit:
        view = unit.children.view(kids.p(kids.practitioner), REASON,
                                  kids.child("Hartley").public_id)
    assert view.address and view.address["postcode"] == "NE2 9ZZ"
    assert _count(kids, Child) == 1


def test_second_source_matches_by_name_dob_postcode_and_conflicts_go_to_the_queue(
        kids: Kids) -> None:
    kids.load([row()])
    linked = kids.load([row(source_scheme="nhs_number", source_id="9990000018")],
                       source="ORG003")
    assert (linked.created, linked.linked, linked.conflicts) == (0, 1, 0)
    conflicting = row(source_scheme="nhs_number", source_id="9990000018",
                      carer1_phone="07700 900999")
    report = kids.load([conflicting], source="ORG003")
    assert report.conflicts == 1
    with kids.container.unit() as unit:
        view = unit.children.view(kids.p(kids.team), REASON, kids.child("Hartley").public_id)
        queue = unit.children.conflicts(kids.p(kids.team))
        unit.commit()
    assert view.carers[0]["phone"] == "07700 900123"  # not written over the top
    assert [c.fields for c in queue] == [["carers"]]
    assert kids.load([conflicting], source="ORG003").unchanged == 1
    assert _count(kids, ChildConflict) == 1
    assert _count(kids, ChildSupply) == 2


def test_bad_rows_are_all_reported_and_nothing_is_written(kids: Kids) -> None:
    rows = [row(forename=f"Good{chr(65 + n)}") for n in range(5)] + [
        row(date_of_birth="2015-13-01"),
        row(postcode="XX"),
        row(gender="boy", local_authority="NOPE"),
        row(source_scheme="nhs_number", source_id="1234567890"),
    ] + [row(forename="Later")]
    with pytest.raises(InvalidInput) as refused:
        kids.load(rows)
    found = {(p.row, p.field) for p in refused.value.problems}
    assert found == {(7, "date_of_birth"), (8, "postcode"), (9, "gender"),
                     (9, "local_authority"), (10, "source_id")}
    assert "test.csv, row 7, date_of_birth:" in str(refused.value)
    assert _count(kids, Child) == 0


def test_a_scheme_without_an_identifier_is_checked_too(kids: Kids) -> None:
    rows = [row(forename="Good"), row(source_scheme="council_case_reference_number")]
    with pytest.raises(InvalidInput) as refused:
        kids.load(rows)
    assert [(p.row, p.field) for p in refused.value.problems] == [(3, "source_scheme")]
    assert _count(kids, Child) == 0


def test_a_batch_failing_late_leaves_nothing(kids: Kids) -> None:
    from directory.children import loading
    rows = [row(forename="Kid", surname=f"Name{chr(65 + n // 26)}{chr(65 + n % 26)}")
            for n in range(30)] + [row(whereabouts="somewhere")]
    original = loading.BATCH
    loading.BATCH = 10  # several batches are written before the bad row
    try:
        with pytest.raises(InvalidInput) as refused:
            kids.load(rows)
    finally:
        loading.BATCH = original
    assert [(p.row, p.field) for p in refused.value.problems] == [(32, "whereabouts")]
    assert _count(kids, Child) == 0


def test_a_concern_column_is_refused(kids: Kids) -> None:
    content = as_csv([{**row(), "concern": "worried about home"}], (*COLUMNS, "concern"))
    from directory.children.loading import csv_text_rows
    with kids.container.unit() as unit, pytest.raises(InvalidInput) as refused:
        unit.child_loader.load(OPERATOR, csv_text_rows(content), source_code="ORG001",
                               file_label="x.csv")
    assert [(p.row, p.field) for p in refused.value.problems] == [(2, "concern")]


def test_duplicate_identifiers_in_one_file(kids: Kids) -> None:
    rows = [row(source_scheme="pupil_number", source_id="P1"),
            row(forename="Other", source_scheme="pupil_number", source_id="P1")]
    with pytest.raises(InvalidInput) as refused:
        kids.load(rows)
    assert refused.value.problems[0].message == "the same identifier is on row 2"


def test_synthetic_jsonl_and_csv_load_the_same(kids: Kids, tmp_path: Path) -> None:
    made = list(records(40, la_codes=["ORG001"], schools=[kids.school.public_id],
                        gps=[kids.gp.public_id], today=kids.container.clock.today()))
    assert all(r["source_id"].startswith("999" if r["source_scheme"] == "nhs_number" else "SYN")
               for r in made)
    assert {r["source_scheme"] for r in made} == {"nhs_number", "local_id"}
    jsonl = tmp_path / "kids.jsonl"
    with jsonl.open("w") as out:
        write(iter(made), out, jsonl=True)
    csv_path = tmp_path / "kids.csv"
    with csv_path.open("w", newline="") as out:
        write(iter(made), out)
    rows, total = read_rows(jsonl)
    with kids.container.unit() as unit:
        first = unit.child_loader.load(OPERATOR, rows, source_code="ORG003",
                                       file_label=jsonl.name)
        unit.commit()
    assert (first.created, total) == (40, 40)
    rows, total = read_rows(csv_path)
    with kids.container.unit() as unit:
        again = unit.child_loader.load(OPERATOR, rows, source_code="ORG003",
                                       file_label=csv_path.name)
        unit.commit()
    assert (again.unchanged, total) == (40, 40)


def test_bad_json_line_is_named(kids: Kids, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row()) + "\n{not json\n")
    rows, _ = read_rows(path)
    with kids.container.unit() as unit, pytest.raises(InvalidInput) as refused:
        unit.child_loader.load(OPERATOR, rows, source_code="ORG001", file_label=path.name)
    assert [(p.row, p.field) for p in refused.value.problems] == [(2, "row")]
    assert io  # keep the import for readers adding stream-based cases


@pytest.mark.parametrize("accept", [True, False])
def test_the_team_resolves_a_conflict(kids: Kids, accept: bool) -> None:
    kids.load([row()])
    kids.load([row(source_scheme="nhs_number", source_id="9990000018",
                   carer1_phone="07700 900999")], source="ORG003")
    with kids.container.unit() as unit:
        conflict = unit.children.conflicts(kids.p(kids.team))[0]
        from core.errors import NotAllowed
        with pytest.raises(NotAllowed):
            unit.children.resolve_conflict(kids.p(kids.other_team), conflict.id, accept=True,
                                           loader=unit.child_loader)
    with kids.container.unit() as unit:
        unit.children.resolve_conflict(kids.p(kids.team), conflict.id, accept=accept,
                                       loader=unit.child_loader)
        unit.commit()
    with kids.container.unit() as unit:
        view = unit.children.view(kids.p(kids.team), REASON, kids.child("Hartley").public_id)
        assert unit.children.conflicts(kids.p(kids.team)) == []
        unit.commit()
    assert view.carers[0]["phone"] == ("07700 900999" if accept else "07700 900123")
    # the accepting body's next identical load changes nothing
    again = kids.load([row(source_scheme="nhs_number", source_id="9990000018",
                           carer1_phone="07700 900999")], source="ORG003")
    assert again.unchanged == 1


@pytest.fixture
def small_batches() -> Iterator[None]:
    from directory.children import loading
    original = loading.BATCH
    loading.BATCH = 10  # so a few dozen rows make a "large" file
    try:
        yield
    finally:
        loading.BATCH = original


def _many(count: int, **values: Any) -> list[dict[str, Any]]:
    return [row(forename="Kid", surname=f"Name{chr(65 + n // 26)}{chr(65 + n % 26)}",
                source_scheme="local_id", source_id=f"L{n}", **values) for n in range(count)]


def test_a_first_load_rebuilds_every_index_and_later_loads_still_match(
        kids: Kids, small_batches: None) -> None:
    schema = schema_of(kids)
    assert schema["child"][0] and schema["child_supply"][1]  # there is something to lose
    first = kids.load(_many(35))
    assert first.created == 35
    assert schema_of(kids) == schema
    # Matching works against what the first load wrote: by identifier, then by
    # name + date of birth + postcode for another body's rows.
    assert kids.load(_many(35)).unchanged == 35
    by_key = kids.load([{**r, "source_scheme": "", "source_id": ""} for r in _many(3)],
                       source="ORG003")
    assert (by_key.created, by_key.linked) == (0, 3)
    with kids.container.unit() as unit:
        page = unit.children.search(kids.p(kids.practitioner), REASON,
                                    ChildQuery(surname="NameAC", date_of_birth=date(2015, 3, 14)))
        unit.commit()
    assert [c.forename for c in page.items] == ["Kid"]
    entries = audit_entries(kids, "children:imported")
    assert [e.detail["first_load"] for e in entries] == [True, False, False]


def test_a_failed_first_load_leaves_the_indexes_and_no_rows(
        kids: Kids, small_batches: None) -> None:
    schema = schema_of(kids)
    with pytest.raises(InvalidInput) as refused:
        kids.load([*_many(25), row(gender="boy")])
    assert [(p.row, p.field) for p in refused.value.problems] == [(27, "gender")]
    assert _count(kids, Child) == 0
    assert schema_of(kids) == schema


def test_a_duplicate_in_a_first_load_is_still_named_by_row(
        kids: Kids, small_batches: None) -> None:
    rows = _many(30)
    rows[24] = {**rows[24], "source_id": "L3"}
    with pytest.raises(InvalidInput) as refused:
        kids.load(rows)
    assert [(p.row, p.message) for p in refused.value.problems] == [
        (26, "the same identifier is on row 5")]
    assert _count(kids, Child) == 0


@pytest.mark.parametrize("first_load", [True, False])
def test_every_field_reads_back_as_supplied(kids: Kids, small_batches: None,
                                            first_load: bool) -> None:
    """New records are written as prebuilt driver tuples, around SQLAlchemy's
    own conversions: each kind of value must still read back through the ORM."""
    if not first_load:
        kids.load([row(forename="Existing", surname="Other")])
    left = row(forename="Zed", surname="Ó Súilleabháin", gender="not_specified",
               date_of_birth="2010-02-28", date_of_death="2024-06-01",
               whereabouts="left_england", address_line1="", town="", postcode="",
               return_intention="yes", retain_to_25="yes", former_names="Zed Smith",
               school=kids.school.public_id, school_start="2015-09-01",
               gp_practice=kids.gp.public_id, source_scheme="nhs_number",
               source_id="9990000018")
    kids.load([*_many(12), left])
    with kids.container.unit() as unit:
        child = unit.session.scalars(select(Child).where(Child.forename == "Zed")).one()
        supply = unit.session.scalars(select(ChildSupply).where(
            ChildSupply.child_id == child.id)).one()
        stored = (child.gender, child.date_of_birth, child.date_of_death, child.whereabouts,
                  child.return_intention, child.retain_to_25, child.shielded,
                  child.surname_key, child.postcode_district, child.address_enc,
                  child.archived_on, child.created_at.tzinfo, child.created_at == child.updated_at,
                  supply.scheme, supply.supplied_at == child.created_at)
        view = unit.children.view(kids.p(kids.practitioner), REASON, child.public_id)
        unit.commit()
    assert stored == (Gender.NOT_SPECIFIED, date(2010, 2, 28), date(2024, 6, 1),
                      Whereabouts.LEFT_ENGLAND, ReturnIntention.YES, True, False,
                      "osuilleabhain", None, None, None, UTC, True, "nhs_number", True)
    assert view.carers[0]["phone"] == "07700 900123"
    with kids.container.unit() as unit:
        other = unit.session.scalars(select(Child).where(Child.surname == "NameAB")).one()
        assert (other.retain_to_25, other.whereabouts, other.postcode_district,
                other.return_intention) == (False, Whereabouts.CURRENT_ADDRESS, "NE1", None)


# -- files read in blocks, parsed where they are prepared ---------------------------------


def _file_rows_match_a_plain_read(path: Path, content: str) -> list[tuple[int, Any]]:
    """What FileRows gives, block by block, is what one csv.reader over the
    whole text gives: the same rows under the same numbers."""
    from directory.children.loading import FileRows, csv_text_rows
    by_blocks = list(FileRows(path))
    assert by_blocks == list(csv_text_rows(content))
    return by_blocks


def test_blocks_end_where_rows_end_even_inside_quoted_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from directory.children import loading
    from directory.children.loading import FileRows
    monkeypatch.setattr(loading, "CHUNK", 3)
    rows = [row(forename=f"Kid{chr(65 + n)}") for n in range(9)]
    # A town over three lines (quoted, as spreadsheets write it), a blank
    # line and a row of empty cells: each counts as a row number.
    rows[1]["town"] = "North\nEast\nShire"
    rows[6]["address_line2"] = 'The "Old" Mill, Lane\nEnd'
    content = as_csv(rows)
    lines = content.splitlines(keepends=True)
    lines.insert(6, "\r\n")
    lines.insert(8, "," * (len(COLUMNS) - 1) + "\r\n")
    content = "".join(lines)
    path = tmp_path / "kids.csv"
    path.write_text(content, newline="")
    found = _file_rows_match_a_plain_read(path, content)
    assert [number for number, _ in found] == [2, 3, 4, 6, 8, 9, 10, 11, 12]
    assert found[1][1]["town"] == "North\nEast\nShire"
    blocks = list(FileRows(path).blocks())
    # Cut after whole rows only: every block holds the rows its count says.
    assert sum(b.count for b in blocks) == 11
    assert [b.first_number for b in blocks] == [
        2 + sum(b.count for b in blocks[:n]) for n in range(len(blocks))]
    assert all(len(list(b.rows())) <= b.count for b in blocks)
    assert blocks[0].raw(3)["town"] == "North\nEast\nShire"


def test_a_stray_quote_is_read_as_the_csv_module_reads_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from directory.children import loading
    monkeypatch.setattr(loading, "CHUNK", 2)
    rows = [row(forename=f"Kid{chr(65 + n)}") for n in range(5)]
    content = as_csv(rows).replace("KidB", 'Ki"dB', 1)  # a quote inside an unquoted field
    path = tmp_path / "kids.csv"
    path.write_text(content, newline="")
    found = _file_rows_match_a_plain_read(path, content)
    assert [number for number, _ in found] == [2, 3, 4, 5, 6]


def test_json_lines_are_read_in_blocks_too(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from directory.children import loading
    from directory.children.loading import FileRows
    monkeypatch.setattr(loading, "CHUNK", 2)
    path = tmp_path / "kids.jsonl"
    path.write_text("\n".join([json.dumps(row(forename="Ann")), "", "[1]", "{bad",
                               json.dumps(row(forename="Bea"))]) + "\n")
    found = list(FileRows(path))
    assert [(n, r.get("forename", r.get("__error__"))) for n, r in found] == [
        (1, "Ann"), (3, "not an object"), (4, "not valid JSON (Expecting property name "
                                             "enclosed in double quotes)"), (5, "Bea")]


def test_a_file_through_workers_names_rows_as_the_file_numbers_them(
        kids: Kids, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from directory.children import loading, preparing
    monkeypatch.setattr(loading, "CHUNK", 4)
    monkeypatch.setattr(preparing, "PARALLEL_FROM", 10)
    monkeypatch.setattr(loading, "BATCH", 10)
    rows = [row(forename="Kid", surname=f"Name{chr(65 + n // 26)}{chr(65 + n % 26)}",
                source_scheme="local_id", source_id=f"L{n}") for n in range(30)]
    rows[2]["town"] = "Two\nlines"  # rows after it are a line further down the file
    rows[20]["postcode"] = "XX"
    path = tmp_path / "kids.csv"

    def load_file() -> loading.LoadReport:
        path.write_text(as_csv(rows), newline="")
        with kids.container.unit() as unit:
            unit.child_loader.workers = 1
            report = unit.child_loader.load(OPERATOR, read_rows(path)[0], source_code="ORG001",
                                            file_label="kids.csv")
            unit.commit()
            return report

    with pytest.raises(InvalidInput) as refused:
        load_file()
    assert [(p.row, p.field) for p in refused.value.problems] == [(22, "postcode")]
    rows[20]["postcode"] = "NE1 4AB"
    assert load_file().created == 30
    # A changed row in a re-run is read back from its block to be written.
    rows[25]["forename"] = "Kidd"
    report = load_file()
    assert (report.updated, report.unchanged) == (1, 29)
    assert kids.child("NameAZ").forename == "Kidd"


def test_names_with_backslashes_read_back_as_supplied(kids: Kids) -> None:
    """PostgreSQL's COPY text format gives a backslash meaning: the loader
    escapes one in a name (and former names), on either database."""
    kids.load([row(forename="Ann\\Marie", surname="O\\Brien",
                   former_names="Ann\\Marie Smith\\Jones")])
    child = kids.child("O\\Brien")
    assert (child.forename, child.surname) == ("Ann\\Marie", "O\\Brien")
    with kids.container.unit() as unit:
        former = unit.session.execute(select(ChildFormerName.forename,
                                             ChildFormerName.surname)).one()
    assert tuple(former) == ("Ann\\Marie", "Smith\\Jones")


def test_copy_text_fields() -> None:
    from directory.children.preparing import copy_field, copy_line
    assert [copy_field(v) for v in (None, True, False, 7, "plain", "a\\b\tc\nd\re")] == [
        "\\N", "t", "f", "7", "plain", "a\\\\b\\tc\\nd\\re"]
    assert copy_line((1, None, "x\ty")) == "1\t\\N\tx\\ty"


@pytest.mark.parametrize("batch", [1, 2000])
def test_two_of_a_body_s_identifiers_stay_two_children_in_any_batch(
        kids: Kids, monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    """Two rows alike in name, date of birth and postcode but under two of the
    body's identifiers are two children, whether or not an earlier batch had
    written the first when the second is matched; neither takes the other's
    details. A later row under the first identifier still finds its own."""
    from directory.children import loading
    kids.load([row(forename="Other", source_scheme="local_id", source_id="X0")])
    monkeypatch.setattr(loading, "BATCH", batch)
    first = row(source_scheme="local_id", source_id="T1", school=kids.school.public_id)
    second = row(source_scheme="local_id", source_id="T2", gp_practice=kids.gp.public_id)
    report = kids.load([first, second])
    assert (report.created, report.updated, report.linked) == (2, 0, 0)
    again = kids.load([first, second])
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    changed = kids.load([{**first, "town": "Southtown"}])
    assert (changed.created, changed.updated) == (0, 1)
    with kids.container.unit() as unit:
        children = unit.session.execute(
            select(Child.id, Child.updated_at).where(Child.forename == "Amelia")
            .order_by(Child.id)).all()
        roles = [[role.value for role in unit.session.scalars(
            select(ChildInvolvement.role).where(ChildInvolvement.child_id == child_id))]
            for child_id, _ in children]
    assert len(children) == 2
    assert roles == [["educational_setting"], ["gp_practice"]]
