"""Fixtures shared by every test.

Every test that touches the database runs twice: on SQLite (a fresh copy of a
migrated template file) and on PostgreSQL (one database per test run, emptied
between tests). PostgreSQL tests skip with a reason when no server answers,
except under CI=true, where they must run.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from core.clock import FrozenClock
from core.db import make_engine
from core.settings import InstanceSecrets, Settings, load_settings
from idp import logs
from idp.container import Container, Unit
from idp.database import scratch_database, upgrade
from idp.models import Base
from tests.factories import World
from tests.runlog import RUN, RunLog

PG_ADMIN_URL = os.environ.get("CONTACTPOINT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
FAST_ARGON2 = {"memory_kib": 1024, "time_cost": 1, "parallelism": 1}


# Whether this session collected the whole suite, for the test that checks its logs.
WHOLE_RUN = pytest.StashKey[bool]()
_DESELECTED = pytest.StashKey[int]()


def need(condition: bool, reason: str) -> None:
    """Skip when a service is missing, but fail under CI, where it must be there."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required under CI=true: {reason}")
        pytest.skip(reason)


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        config = items[0].config
        config.stash[_DESELECTED] = config.stash.get(_DESELECTED, 0) + len(items)


@pytest.hookimpl(trylast=True)  # after -k, -m and --lf have deselected theirs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `runs_last` go to the end: they read what the others left."""
    last = [item for item in items if item.get_closest_marker("runs_last")]
    items[:] = [item for item in items if item not in last] + last
    suite = Path(__file__).parent
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    covered = config.args_source == pytest.Config.ArgsSource.TESTPATHS or all(
        "::" not in arg and (path == suite or path in suite.parents)
        for arg, path in zip(config.args, named, strict=True))
    config.stash[WHOLE_RUN] = covered and not config.stash.get(_DESELECTED, 0)


@pytest.fixture(scope="session", autouse=True)
def run_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunLog]:
    """Every line our code logs in this run, kept in one file as well as
    written where it goes (see tests/runlog.py)."""
    run = RunLog(tmp_path_factory.mktemp("run-log"))
    logs.tee(run.stream)
    RUN.append(run)
    try:
        yield run
    finally:
        RUN.remove(run)
        logs.tee(None)
        run.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """A database of this run's own, so parallel runs cannot collide."""
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect():
            pass
    except OperationalError:
        yield None
        return
    admin.dispose()
    with scratch_database(PG_ADMIN_URL, "cp_test") as (url, _name):
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


_RESTART_SEQUENCES = (
    "DO $$ DECLARE s regclass; BEGIN "
    "FOR s IN SELECT oid::regclass FROM pg_class WHERE relkind = 'S' "
    "AND relnamespace = 'public'::regnamespace LOOP PERFORM setval(s, 1, false); END LOOP; END $$"
)


def _empty_postgres(engine: Engine) -> None:
    """Empty every table and restart every id, as a fresh database would be.

    DELETE with triggers off (the audit log's append-only trigger, the foreign
    keys) costs a few milliseconds for these small tables; TRUNCATE of them all
    costs 150 ms or more, on every PostgreSQL test. TRUNCATE remains the way
    when the test role may not switch triggers off.
    """
    tables = Base.metadata.sorted_tables
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for table in reversed(tables):
                conn.execute(text(f'DELETE FROM "{table.name}"'))  # noqa: S608
            conn.execute(text(_RESTART_SEQUENCES))
            conn.execute(
                text("INSERT INTO audit_head (id, seq, last_hash) VALUES (1, 0, :h)"),
                {"h": "0" * 64},
            )
        return
    except ProgrammingError:
        pass  # not a superuser
    names = ", ".join(f'"{t.name}"' for t in tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        conn.execute(
            text("INSERT INTO audit_head (id, seq, last_hash) VALUES (1, 0, :h)"), {"h": "0" * 64}
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "contactpoint.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("pg_database")
    need(url is not None, f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    engine = make_engine(url)
    _empty_postgres(engine)
    engine.dispose()
    yield url


def make_settings(database_url: str, instance_dir: Path, **sections: dict[str, object]) -> Settings:
    overrides: dict[str, dict[str, object]] = {
        "service": {"instance_dir": str(instance_dir)},
        "database": {"url": database_url},
        "argon2": dict(FAST_ARGON2),
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_settings(overrides=overrides, environ={})


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "instance")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def container(settings: Settings, clock: FrozenClock) -> Iterator[Container]:
    keys = InstanceSecrets(session_key=secrets.token_bytes(32), data_key=secrets.token_bytes(32))
    built = Container(settings, secrets=keys, clock=clock)
    yield built
    built.dispose()


@pytest.fixture
def unit(container: Container) -> Iterator[Unit]:
    with container.unit() as work:
        yield work


@pytest.fixture
def world(container: Container) -> Iterator[World]:
    made = World(container)
    yield made
    made.close()
