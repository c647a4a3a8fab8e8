"""A unit of work has one database connection, shared by its session and its
prepared statements: a token refresh rotates its grant with a prepared
statement and may write replay marks or audit entries through the session in
the same request, and on SQLite a second connection would wait on the first's
write lock. What one writes commits or rolls back with the other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, select, update

from idp.container import Container, Unit

metadata = MetaData()
counters = Table("unit_probe", metadata, Column("id", Integer, primary_key=True),
                 Column("value", Integer, nullable=False))
SET = update(counters).where(counters.c.id == bindparam("row")).values(value=bindparam("to"))


@pytest.fixture
def probe(container: Container) -> Iterator[None]:
    metadata.create_all(container.engine)
    with container.engine.begin() as connection:
        connection.execute(counters.insert(), [{"id": 1, "value": 0}, {"id": 2, "value": 0}])
    yield
    metadata.drop_all(container.engine)


def _values(container: Container) -> list[int]:
    with container.engine.connect() as connection:
        return list(connection.scalars(select(counters.c.value).order_by(counters.c.id)))


def _prepared_set(unit: Unit, row: int, to: int) -> int:
    return unit.execute(SET, {"row": row, "to": to})


def test_prepared_writes_commit_without_a_session(container: Container, probe: None) -> None:
    with container.unit() as unit:
        assert not unit.touched_database
        assert _prepared_set(unit, 1, 5) == 1
        assert unit.touched_database and "session" not in unit.__dict__
        unit.commit()
    assert _values(container) == [5, 0]


@pytest.mark.parametrize("prepared_first", [True, False])
def test_prepared_and_session_writes_are_one_transaction(
    container: Container, probe: None, prepared_first: bool
) -> None:
    def both(unit: Unit, first: int, second: int) -> None:
        if prepared_first:
            _prepared_set(unit, 1, first)
            unit.session.execute(SET, {"row": 2, "to": second})
        else:
            unit.session.execute(SET, {"row": 2, "to": second})
            _prepared_set(unit, 1, first)

    with container.unit() as unit:  # closed without a commit: neither write stays
        both(unit, 7, 8)
    assert _values(container) == [0, 0]
    with container.unit() as unit:
        both(unit, 7, 8)
        unit.commit()
    assert _values(container) == [7, 8]
    with container.unit() as unit:
        both(unit, 9, 9)
        unit.rollback()
        unit.commit()
    assert _values(container) == [7, 8]


def test_a_closed_unit_s_session_still_answers(container: Container, probe: None) -> None:
    unit = container.unit()
    _prepared_set(unit, 1, 3)
    unit.commit()
    unit.close()
    # As with any SQLAlchemy session: used after closing, it takes a new connection.
    assert unit.session.scalar(select(counters.c.value).where(counters.c.id == 1)) == 3
    unit.close()
