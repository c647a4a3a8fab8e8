"""Preparing rows (checks, keys, sealing) and doing it in worker processes:
a row comes out the same wherever it was prepared, problems found by a
worker name their rows, and a worker that fails fails the whole load."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select

from core.crypto import DataCipher, SecretDigester
from core.errors import InvalidInput
from directory.children import loading, preparing
from directory.children.loading import ChildLoader
from directory.children.models import Child, ChildFormerName, ChildInvolvement, ChildSupply
from directory.children.preparing import (
    Lookups,
    Prepared,
    PreparedRow,
    RowPreparer,
    RowProblems,
    in_chunks,
    prepared_rows,
    time_ordered_uuid,
)
from directory.children.rules import identifier_for, valid_identifier
from directory.children.synth import records
from directory.services_models import ServiceKind
from tests.directory.children.conftest import REASON, Kids, row, schema_of

KEY = bytes(range(32))
TODAY = date(2026, 12, 1)
CODES = ["ORG001", "ORG002"]


def _preparer(key: bytes = KEY) -> RowPreparer:
    lookups = Lookups({"ORG001": 7, "ORG002": 8},
                      {"S1": (11, ServiceKind.SCHOOL), "G1": (12, ServiceKind.GP_PRACTICE)},
                      TODAY, 3)
    return RowPreparer(lookups, DataCipher(key), SecretDigester(key))


def _rows(count: int) -> list[tuple[int, dict[str, Any]]]:
    """Synthetic rows with every kind of value, and bad ones among them."""
    made = list(records(count, la_codes=CODES, schools=["S1"], gps=["G1"], today=TODAY))
    made[3]["former_names"] = "Zoe Smith|Zoë  Jones"
    made[5]["whereabouts"], made[5]["return_intention"] = "left_england", "yes"
    made[7]["date_of_death"], made[7]["retain_to_25"] = "2026-11-30", "yes"
    made[9]["postcode"] = "XX"  # bad
    made[12]["gender"], made[12]["local_authority"] = "boy", "NOPE"  # bad twice
    made[20]["school"] = "G1"  # a GP practice is no school: bad
    return list(enumerate(made, start=2))


def _opened(preparer: RowPreparer, prepared: PreparedRow) -> tuple[Any, ...]:
    """A prepared row with its random parts (public id, ciphertexts) replaced
    by what the ciphertexts open to under that public id."""
    child, supply = list(prepared.child), list(prepared.supply)
    public_id = child[0]
    opened = [preparer.cipher.decrypt_text(value, f"child:{public_id}:{what}")
              if value else None
              for value, what in ((child[10], "address"), (child[13], "carers"),
                                  (supply[1], "source:3"))]
    child[0] = child[10] = child[13] = supply[1] = None
    return (prepared._replace(child=tuple(child), supply=tuple(supply)), opened)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers from 10 rows on, 4 rows a chunk, batches of 10: a few dozen
    rows go through the whole pipeline."""
    monkeypatch.setattr(preparing, "CHUNK", 4)
    monkeypatch.setattr(preparing, "PARALLEL_FROM", 10)
    monkeypatch.setattr(loading, "BATCH", 10)


def _through_workers(rows: list[tuple[int, dict[str, Any]]], preparer: RowPreparer,
                     workers: int) -> list[tuple[Prepared, Mapping[str, Any]]]:
    """Each row prepared, with the row as supplied that its chunk gives back."""
    found = [(prepared, chunk.raw(prepared.number))
             for prepared, chunk in prepared_rows(in_chunks(rows), preparer, workers)]
    assert multiprocessing.active_children() == []  # the pool is gone afterwards
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_prepare_each_row_as_this_process_does(small_chunks: None,
                                                       workers: int) -> None:
    rows = _rows(30)
    preparer = _preparer()
    here = [preparer.prepare_row(number, raw) for number, raw in rows]
    there = _through_workers(rows, preparer, workers)
    assert [raw for _, raw in there] == [raw for _, raw in rows]  # in order, with its row
    assert [type(p) for p, _ in there] == [type(p) for p in here]
    for (theirs, _), ours in zip(there, here, strict=True):
        if isinstance(ours, RowProblems):
            assert theirs == ours
        else:
            assert isinstance(theirs, PreparedRow)
            assert _opened(preparer, theirs) == _opened(preparer, ours)
            assert theirs.child[0] != ours.child[0]  # each row its own public id
    refused = {(p.number, q.field) for p, _ in there if isinstance(p, RowProblems)
               for q in p.problems}
    assert refused == {(11, "postcode"), (14, "gender"), (14, "local_authority"),
                       (22, "school")}


def test_small_files_and_no_workers_stay_in_this_process(
        small_chunks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a worker was started")

    monkeypatch.setattr(preparing, "ProcessPoolExecutor", no_pool)
    preparer = _preparer()
    assert len(list(prepared_rows(in_chunks(_rows(30)[:9]), preparer, workers=1))) == 9
    assert len(list(prepared_rows(in_chunks(_rows(30)), preparer, workers=0))) == 30


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (3, 2), (16, 4)])
def test_a_worker_a_core_but_the_writer_s(monkeypatch: pytest.MonkeyPatch, cores: int,
                                          workers: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert preparing.default_workers() == workers


def test_keys_and_digests_are_those_records_already_hold() -> None:
    """Re-running a file loaded before this code must still change nothing:
    the content digest, match key and identifier digest of a row, under a
    fixed key, as the loader computed them before rows were prepared apart."""
    raw = row(source_scheme="nhs_number", source_id="9990000018", forename="Zoë",
              surname="O'Brien", former_names="Zoe Smith|Zoë  Jones",
              address_line2="Flat 2", postcode="ne1 4ab", carer1_name="Joanne O'Brien",
              carer2_name="Sam Smith", carer2_relationship="father",
              carer2_phone="+44 1632 960123", school="S1", school_start="2019-09-01",
              gp_practice="G1", retain_to_25="yes")
    prepared = _preparer().prepare_row(2, raw)
    assert isinstance(prepared, PreparedRow)
    assert (prepared.content_digest, prepared.match_key, prepared.id_digest) == (
        "97437dde2812c1505f79507a8b82542b", "0e30060c725b8307e240a7da8b42f8a9",
        "a8c4074969345659050f98045fd9730a")


def test_the_content_digest_is_of_the_sorted_items_repr() -> None:
    preparer = _preparer()
    digester = preparer.digester
    for number, raw in _rows(40):
        checked = preparer.check(raw)
        if isinstance(checked, list):
            continue
        content = checked.content
        assert preparer.content_digest(content) == digester.digest(
            "content\x1f" + repr(sorted(content.items())))[:32], number


def test_public_ids_are_version_7_uuids_in_time_order() -> None:
    made = [time_ordered_uuid() for _ in range(200)]
    parsed = [uuid.UUID(m) for m in made]
    assert all(p.version == 7 and p.variant == uuid.RFC_4122 for p in parsed)
    assert [str(p) for p in parsed] == made
    assert len(set(made)) == len(made)
    assert [m[:8] for m in made] == sorted(m[:8] for m in made)


def test_an_nhs_number_of_other_digits_is_refused_not_a_crash() -> None:
    preparer = _preparer()
    for odd in ("999000001\u00b2", "\u0669\u0669\u0669\u0660\u0660\u0660\u0660\u0660\u0661"
                "\u0668"):
        checked = preparer.check(row(source_scheme="nhs_number", source_id=odd))
        assert isinstance(checked, list)
        assert [(p.field, p.message) for p in checked] == [
            ("source_id", "not a valid NHS number")]


# -- whole loads through workers ----------------------------------------------------------


def _load(kids: Kids, rows: list[dict[str, Any]], workers: int = 1,
          source: str = "ORG001") -> loading.LoadReport:
    from directory.children.loading import csv_text_rows
    from tests.directory.children.conftest import OPERATOR, as_csv
    with kids.container.unit() as unit:
        loader = unit.child_loader
        loader.workers = workers
        report = loader.load(OPERATOR, csv_text_rows(as_csv(rows)), source_code=source,
                             file_label="test.csv")
        unit.commit()
        return report


def _count(kids: Kids, model: type) -> int:
    with kids.container.unit() as unit:
        return int(unit.session.scalar(select(func.count()).select_from(model)) or 0)


def _many(kids: Kids, count: int) -> list[dict[str, Any]]:
    return [row(forename="Kid", surname=f"Name{chr(65 + n // 26)}{chr(65 + n % 26)}",
                source_scheme="local_id", source_id=f"L{n}", school=kids.school.public_id,
                gp_practice=kids.gp.public_id, school_start="2019-09-04",
                former_names=f"Kid Before{chr(65 + n % 26)}") for n in range(count)]


def test_a_load_through_workers_writes_what_one_process_would(
        kids: Kids, small_chunks: None) -> None:
    rows = _many(kids, 33)
    report = _load(kids, rows)
    assert (report.rows, report.created) == (33, 33)
    assert multiprocessing.active_children() == []
    assert (_count(kids, ChildSupply), _count(kids, ChildInvolvement),
            _count(kids, ChildFormerName)) == (33, 66, 33)
    with kids.container.unit() as unit:
        child = unit.session.scalars(select(Child).where(Child.surname == "NameBC")).one()
        view = unit.children.view(kids.p(kids.team), REASON, child.public_id)
        supply = unit.session.scalars(select(ChildSupply).where(
            ChildSupply.child_id == child.id)).one()
        assert supply.id_enc is not None
        source_ref = kids.container.cipher.decrypt_text(
            supply.id_enc, f"child:{child.public_id}:source:{kids.la.id}")
        unit.commit()
    assert valid_identifier(child.identifier) and child.identifier == identifier_for(child.id)
    assert (view.address or {}).get("postcode") == "NE1 4AB"
    assert view.carers[0]["phone"] == "07700 900123"
    assert source_ref == "L28"
    # The same file again, prepared in this process this time: the digests the
    # workers made are this process's, so nothing changes.
    again = _load(kids, rows, workers=0)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 33)


def test_problems_found_by_workers_name_their_rows_and_nothing_is_written(
        kids: Kids, small_chunks: None) -> None:
    schema = schema_of(kids)
    rows = _many(kids, 30)
    rows[3] = {**rows[3], "date_of_birth": "2015-13-01"}
    rows[17] = {**rows[17], "postcode": "XX"}
    rows[26] = {**rows[26], "source_id": "L2"}  # the identifier of the row three
    with pytest.raises(InvalidInput) as refused:
        _load(kids, rows)
    assert [(p.row, p.field, p.message) for p in refused.value.problems] == [
        (5, "date_of_birth", "not a date in the form YYYY-MM-DD"),
        (19, "postcode", "not a valid UK postcode"),
        (28, "source_id", "the same identifier is on row 4"),
    ]
    assert multiprocessing.active_children() == []
    assert _count(kids, Child) == 0
    assert schema_of(kids) == schema


def test_too_many_problems_stops_the_workers(
        kids: Kids, small_chunks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "MAX_PROBLEMS", 5)
    rows = [{**r, "gender": "boy"} for r in _many(kids, 40)]
    with pytest.raises(InvalidInput) as refused:
        _load(kids, rows)
    problems = refused.value.problems
    assert [p.row for p in problems] == [2, 3, 4, 5, 6, None]
    assert problems[-1].message == "too many problems; stopped checking"
    assert multiprocessing.active_children() == []


class _Failing(RowPreparer):
    """A preparer whose worker raises on one row, or dies there (as one the
    system killed would). It must be importable by a worker, hence here."""

    how = "raise"

    def prepare_row(self, number: int, raw: Mapping[str, Any]) -> Prepared:
        if number == 25:
            if self.how == "die":
                os._exit(3)
            raise RuntimeError("worker failed on row 25")
        return super().prepare_row(number, raw)


class _Dying(_Failing):
    how = "die"


@pytest.mark.parametrize(("kind", "raised"), [(_Failing, RuntimeError),
                                              (_Dying, BrokenProcessPool)])
def test_a_worker_that_fails_fails_the_load_and_leaves_nothing(
        kids: Kids, small_chunks: None, monkeypatch: pytest.MonkeyPatch,
        kind: type[_Failing], raised: type[Exception]) -> None:
    schema = schema_of(kids)

    def failing(self: ChildLoader, source_id: int) -> RowPreparer:
        made = RowPreparer.__new__(kind)
        made.__dict__.update(real(self, source_id).__dict__)
        return made

    real = ChildLoader.preparer
    monkeypatch.setattr(ChildLoader, "preparer", failing)
    with pytest.raises(raised):
        _load(kids, _many(kids, 40))
    assert multiprocessing.active_children() == []
    assert _count(kids, Child) == 0
    assert schema_of(kids) == schema


def test_a_write_that_fails_stops_the_workers_and_leaves_nothing(
        kids: Kids, small_chunks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database refusing a batch midway (here, the second) while workers
    are still preparing: the load fails, the workers stop, nothing stays."""
    schema = schema_of(kids)
    real = ChildLoader._write
    calls: list[int] = []

    def refusing(self: ChildLoader, *args: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        real(self, *args)

    monkeypatch.setattr(ChildLoader, "_write", refusing)
    with pytest.raises(RuntimeError, match="went away"):
        _load(kids, _many(kids, 40))
    assert multiprocessing.active_children() == []
    assert _count(kids, Child) == 0
    assert schema_of(kids) == schema


@pytest.fixture(autouse=True)
def _no_stray_workers() -> Iterator[None]:
    yield
    assert multiprocessing.active_children() == []
