"""The database base class, engine and session factory.

SQLite (the embedded default) and PostgreSQL (production) behave alike here:
timestamps are stored as naive UTC and returned as aware UTC, and SQLite gets
WAL, foreign keys and a busy timeout so several processes can share it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every engine."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        # A small pool per process: opening a SQLite connection and setting its
        # pragmas costs more than most queries on the sign-in path. Each
        # gunicorn worker builds its own engine after the fork.
        memory = url in {"sqlite://", "sqlite:///:memory:"}
        engine = create_engine(
            url,
            echo=echo,
            # Errors and logs name the statement, never its values (codes,
            # digests, a child's name in a search).
            hide_parameters=True,
            poolclass=NullPool if memory else QueuePool,
            **({} if memory else {"pool_size": 5, "max_overflow": 10, "pool_timeout": 10}),
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def driver_errors(dialect: Dialect, statement: str | None = None) -> Iterator[None]:
    """The driver's own errors raised as SQLAlchemy raises them for statements
    it runs (OperationalError, IntegrityError, ...): callers, and the 503 for a
    database that is down, know only those. The values are never quoted."""
    base: type[Exception] = dialect.loaded_dbapi.Error
    try:
        yield
    except base as error:
        raise DBAPIError.instance(
            statement, None, error, base, hide_parameters=True, dialect=dialect) from error


class PreparedStatement:
    """A Core statement compiled once for one dialect and run on the DB-API
    cursor itself, with the type conversions SQLAlchemy would apply.

    For the hottest statements only (a token refresh is two of them): running
    a cached statement through SQLAlchemy's execution context costs several
    times what the database spends on it. The SQL is still written once, as a
    Core statement, and each dialect compiles its own text and placeholders.
    """

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        self.statement = statement
        self._dialect = dialect
        compiled = statement.compile(dialect=dialect)
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("statements with expanding parameters cannot be prepared")
        self.sql: str = compiled.string
        self._positional: bool = compiled.positional
        if self._positional:  # one value per placeholder, a name may repeat
            names = list(compiled.positiontup)
        else:  # named placeholders: each once
            names = list(dict.fromkeys(compiled.bind_names.values()))
        escaped = compiled.escaped_bind_names or {}
        self._keys = [escaped.get(name, name) for name in names]  # as the SQL text names them
        self._order = names
        # Values the caller gives, converted once each however often they appear;
        # literals in the statement (an enum member, say) converted here, once.
        self._given: dict[str, Any] = {}
        self._fixed: dict[str, Any] = {}
        for name in names:
            bind = compiled.binds[name]
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required or (bind.value is None and bind.callable is None):
                self._given[name] = convert
            else:
                value = bind.effective_value
                self._fixed[name] = value if convert is None else convert(value)
        columns = getattr(statement, "selected_columns", None) or []
        self._converters: list[Any] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in columns]
        self._converting = any(c is not None for c in self._converters)

    def parameters(self, values: dict[str, Any]) -> Any:
        """The DB-API parameters: a tuple for `?`-style drivers, else a dict."""
        ready = dict(self._fixed)  # a value not given raises KeyError, naming it
        for name, convert in self._given.items():
            value = values[name]
            ready[name] = value if convert is None else convert(value)
        if self._positional:
            return tuple(ready[name] for name in self._order)
        return {key: ready[name] for key, name in zip(self._keys, self._order, strict=True)}

    def rows(self, cursor: Any, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        parameters = self.parameters(values)
        with driver_errors(self._dialect, self.sql):
            cursor.execute(self.sql, parameters)
            fetched = cursor.fetchall()
        if not self._converting:
            return [tuple(row) for row in fetched]
        converters = self._converters
        return [tuple(value if convert is None else convert(value)
                      for value, convert in zip(row, converters, strict=True))
                for row in fetched]

    def run(self, cursor: Any, values: dict[str, Any]) -> int:
        """For a statement that returns no rows: how many rows it changed."""
        parameters = self.parameters(values)
        with driver_errors(self._dialect, self.sql):
            cursor.execute(self.sql, parameters)
        return int(cursor.rowcount)
