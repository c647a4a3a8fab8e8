"""Prepared statements (core.db.PreparedStatement) must answer exactly as
SQLAlchemy's own execution does, on SQLite and PostgreSQL: the token refresh
relies on it for its grant, its person and the rotation that makes a stolen
refresh token worthless."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Engine,
    Enum,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    select,
    update,
)

from core.db import PreparedStatement, UTCDateTime, make_engine


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


metadata = MetaData()
things = Table(
    "prepared_statement_probe",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), nullable=False),
    Column("colour", Enum(Colour, native_enum=False, length=10), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("seen_at", UTCDateTime, nullable=True),
    Column("born_on", Date, nullable=False),
    Column("counter", Integer, nullable=False),
    Column("flag", Boolean, nullable=False),
)

NOW = datetime(2026, 12, 2, 5, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    metadata.create_all(made)
    with made.begin() as connection:
        connection.execute(things.insert(), [
            {"id": 1, "name": "one", "colour": Colour.RED, "tags": ["pwd", "otp"],
             "seen_at": NOW, "born_on": date(2015, 3, 14), "counter": 3, "flag": True},
            {"id": 2, "name": "two", "colour": Colour.BLUE, "tags": [],
             "seen_at": None, "born_on": date(2020, 1, 1), "counter": 0, "flag": False},
            {"id": 3, "name": "three", "colour": Colour.RED, "tags": {"a": 1},
             "seen_at": NOW - timedelta(days=400), "born_on": date(2019, 6, 30),
             "counter": 7, "flag": False},
        ])
    yield made
    metadata.drop_all(made)
    made.dispose()


# A name used twice, an enum literal, and booleans computed in SQL.
READ = (
    select(things.c.id, things.c.name, things.c.colour, things.c.tags, things.c.seen_at,
           things.c.born_on, things.c.counter, things.c.flag,
           (things.c.born_on <= bindparam("day", type_=Date)).label("born_by_day"),
           and_(things.c.born_on <= bindparam("day", type_=Date),
                things.c.colour == Colour.RED).label("red_and_born"))
    .where(things.c.id >= bindparam("from_id"))
    .order_by(things.c.id)
)
BUMP = (
    update(things)
    .where(things.c.id == bindparam("thing"), things.c.counter == bindparam("was"))
    .values(counter=bindparam("now"), seen_at=bindparam("when"))
)


def raw_rows(engine: Engine, statement: object, values: dict[str, object]) -> list[tuple]:
    prepared = PreparedStatement(statement, engine.dialect)
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        try:
            return prepared.rows(cursor, values)
        finally:
            cursor.close()


@pytest.mark.parametrize("day", [date(2016, 1, 1), date(2030, 1, 1), date(2000, 1, 1)])
def test_rows_are_what_sqlalchemy_returns(engine: Engine, day: date) -> None:
    values = {"day": day, "from_id": 1}
    with engine.connect() as connection:
        expected = [tuple(row) for row in connection.execute(READ, values)]
    got = raw_rows(engine, READ, values)
    assert got == expected
    first = got[0]
    # The conversions a caller relies on, spelled out.
    assert first[2] == Colour.RED and isinstance(first[2], Colour)
    assert first[3] == ["pwd", "otp"]
    assert first[4] == NOW and first[4].tzinfo is not None
    assert first[5] == date(2015, 3, 14)
    assert first[7] is True
    assert got[1][4] is None and got[1][7] is False
    assert [row[8] for row in got] == [day >= row[5] for row in got]
    assert [row[9] for row in got] == [day >= row[5] and row[2] == Colour.RED for row in got]


def test_no_row_is_an_empty_list(engine: Engine) -> None:
    assert raw_rows(engine, READ, {"day": date(2030, 1, 1), "from_id": 99}) == []


def _stored(engine: Engine) -> tuple[int, datetime]:
    with engine.connect() as connection:
        counter, seen = connection.execute(
            select(things.c.counter, things.c.seen_at).where(things.c.id == 1)).one()
    return counter, seen


@pytest.mark.parametrize("ending", ["rollback", "commit"])
def test_an_update_runs_in_the_callers_transaction_and_counts_its_rows(
    engine: Engine, ending: str
) -> None:
    prepared = PreparedStatement(BUMP, engine.dialect)
    later = NOW + timedelta(minutes=5)
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        assert prepared.run(cursor, {"thing": 1, "was": 3, "now": 4, "when": later}) == 1
        # Only from the value read: a second runner with the same 'was' changes nothing.
        assert prepared.run(cursor, {"thing": 1, "was": 3, "now": 5, "when": NOW}) == 0
        cursor.close()
        getattr(connection.connection, ending)()
    assert _stored(engine) == ((3, NOW) if ending == "rollback" else (4, later))


def test_an_aware_datetime_is_required_as_sqlalchemy_requires_it(engine: Engine) -> None:
    prepared = PreparedStatement(BUMP, engine.dialect)
    with pytest.raises(ValueError, match="naive"):
        prepared.parameters({"thing": 1, "was": 3, "now": 4, "when": datetime(2026, 1, 1)})


def test_a_missing_value_is_named(engine: Engine) -> None:
    prepared = PreparedStatement(READ, engine.dialect)
    with pytest.raises(KeyError, match="from_id"):
        prepared.parameters({"day": date(2020, 1, 1)})


def test_expanding_parameters_are_refused(engine: Engine) -> None:
    statement = select(things.c.id).where(things.c.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="expanding"):
        PreparedStatement(statement, engine.dialect)


def test_driver_errors_come_as_sqlalchemy_s_without_the_values(engine: Engine) -> None:
    """The token endpoint answers 503 for SQLAlchemy's OperationalError; a
    statement run on the cursor must raise the same kinds, and quote no value."""
    from sqlalchemy.exc import IntegrityError

    rename = PreparedStatement(
        update(things).where(things.c.id == bindparam("thing")).values(name=bindparam("to")),
        engine.dialect)
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        with pytest.raises(IntegrityError) as raised:
            rename.run(cursor, {"thing": 1, "to": None})
        cursor.close()
        connection.connection.rollback()
    assert "UPDATE prepared_statement_probe" in str(raised.value)
    assert "'thing'" not in str(raised.value) and "[parameters" not in str(raised.value)
