"""Child records at scale: the import rate of `contactpoint children import`
and the latency of a practitioner's search (surname + date of birth, surname +
postcode district), end to end through `ChildrenService.search` (access check,
reason, query, audit entry, anomaly rules, commit), as a page request runs it.

    .venv/bin/python bench/children.py                       # SQLite, 1 million records
    .venv/bin/python bench/children.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/children.py --database-url ... --national   # 11 million, PostgreSQL

Records come from the synthetic generator (`contactpoint children synth`),
written to a CSV file first (not timed), then loaded through the same loader
as the command, in files of at most 1 million rows, one transaction each. With
PostgreSQL the URL names a server; the benchmark makes a database of its own
beside it and drops it afterwards. It prints; it is not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from sqlalchemy import func, select, text

from core.audit import AuditContext
from core.clock import SystemClock
from core.db import make_engine
from core.settings import InstanceSecrets, load_settings
from directory.children.loading import read_rows
from directory.children.models import Child
from directory.children.service import ChildQuery, Reason
from directory.children.synth import records, write
from directory.models import OrganisationKind, PersonStatus, Role
from directory.service import Grant, Principal, principal_for
from idp.container import Container
from idp.database import scratch_database, upgrade

OPERATOR = Principal(0, "cli:bench", (Grant(0, Role.PLATFORM_ADMIN),))
REASON = Reason("child_protection", "benchmark search, synthetic data only")
FILE_ROWS = 1_000_000
AREAS = ("NE", "SR", "DH", "TS", "DL", "CA", "LA", "BD", "LS", "HX", "HD", "WF", "YO", "HU", "DN")
DISTRICTS = [f"{area}{n}" for area in AREAS for n in range(1, 31)]


def _setup(container: Container, las: int, practitioners: int
           ) -> tuple[list[str], list[Principal]]:
    with container.unit(AuditContext(actor_label="cli:bench")) as unit:
        codes = []
        for n in range(las):
            org = unit.directory.create_organisation(
                code=f"LA{n:03d}", name=f"Council {n}", kind=OrganisationKind.LOCAL_AUTHORITY,
                accredited=True)
            codes.append(org.code)
        home = unit.directory.organisation_by_code("LA000")
        today = container.clock.today()
        people = []
        for n in range(practitioners):
            person = unit.directory.create_person(
                given_name="Bench", family_name=f"Marker{n}", work_email=f"bench{n}@example.org",
                work_phone=None, clearance_expires_on=today + timedelta(days=900),
                training_expires_on=today + timedelta(days=900))
            unit.directory.add_position(person, home, Role.PRACTITIONER,
                                        today - timedelta(days=1))
            person.status = PersonStatus.ACTIVE
            people.append(person.id)
        unit.commit()
        principals = [principal_for(unit.directory.person(pid), today) for pid in people]
    return codes, principals


def _write_part(path: Path, count: int, codes: list[str], seed: int) -> None:
    with path.open("w", newline="") as out:
        write(records(count, la_codes=codes, districts=DISTRICTS, seed=seed), out)


def _generate(path: Path, count: int, codes: list[str], first_seed: int) -> None:
    """One CSV file of `count` records, generated in parts of at most a million
    in a process per CPU (distinct seeds give distinct supplier identifiers),
    then joined under one header."""
    sizes = [min(FILE_ROWS, count - start) for start in range(0, count, FILE_ROWS)]
    parts = [path.with_name(f"{path.stem}.part{n}") for n in range(len(sizes))]
    with ProcessPoolExecutor(max_workers=min(len(parts), os.cpu_count() or 1)) as pool:
        for done in [pool.submit(_write_part, part, size, codes, first_seed + n)
                     for n, (part, size) in enumerate(zip(parts, sizes, strict=True))]:
            done.result()
    with path.open("wb") as out:
        for n, part in enumerate(parts):
            with part.open("rb") as handle:
                header = handle.readline()
                if n == 0:
                    out.write(header)
                shutil.copyfileobj(handle, out, 1 << 20)
            part.unlink()


def _backend_cpu(pid: int | None) -> float:
    """CPU seconds of a PostgreSQL backend on this machine (None: SQLite)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _workers_cpu() -> float:
    """CPU seconds of this process's children that have ended: the loader's
    worker processes, once a load has finished with them."""
    times = os.times()
    return times.children_user + times.children_system


def _load(container: Container, folder: Path, count: int, codes: list[str], file_rows: int
          ) -> tuple[float, float, float, float, float]:
    """(seconds generating files, seconds loading them, CPU seconds of this
    process loading them and of the worker processes it prepared rows in: on
    a shared machine the fairer figure, and CPU seconds of the PostgreSQL
    backend doing the writing)"""
    generated = loaded = cpu = workers = backend = 0.0
    done = 0
    part = 0
    while done < count:
        n = min(file_rows, count - done)
        path = folder / f"children-{part}.csv"
        started = time.perf_counter()
        _generate(path, n, codes, part * 100)
        generated += time.perf_counter() - started
        started = time.perf_counter()
        cpu_started = time.process_time()
        workers_started = _workers_cpu()
        rows, _total = read_rows(path)
        with container.unit(AuditContext(actor_label="cli:bench")) as unit:
            pid = (unit.session.scalar(text("SELECT pg_backend_pid()"))
                   if unit.session.get_bind().dialect.name == "postgresql" else None)
            backend_started = _backend_cpu(pid)
            report = unit.child_loader.load(OPERATOR, rows, source_code=codes[0],
                                            file_label=path.name)
            unit.commit()
            backend += _backend_cpu(pid) - backend_started
        loaded += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        workers += _workers_cpu() - workers_started
        assert report.created == n, report
        path.unlink()
        done += n
        part += 1
        print(f"  loaded {done:,} of {count:,} ({done / loaded:,.0f} records/s so far)",
              file=sys.stderr)
    return generated, loaded, cpu, workers, backend


def _samples(container: Container, searches: int) -> list[tuple[str, date, str]]:
    with container.unit() as unit:
        top = int(unit.session.scalar(select(func.max(Child.id))) or 0)
        rng = random.Random(11)
        ids = rng.sample(range(1, top + 1), min(searches, top))
        rows = unit.session.execute(
            select(Child.surname, Child.date_of_birth, Child.postcode_district)
            .where(Child.id.in_(ids))).all()
    return [(s, d, p or "NE1") for s, d, p in rows]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _search(container: Container, principals: list[Principal], queries: list[ChildQuery]
            ) -> tuple[float, float, float, float]:
    """Each search by the next practitioner in turn, so that none of them
    searches more often than a person could (the volume rule's limit an hour):
    the searches are the steady state of many practitioners, not one."""
    timings = []
    found = 0
    cpu_started = time.process_time()
    for n, query in enumerate(queries):
        principal = principals[n % len(principals)]
        started = time.perf_counter()
        with container.unit(AuditContext(actor_label=principal.username)) as unit:
            page = unit.children.search(principal, REASON, query)
            unit.commit()
        timings.append((time.perf_counter() - started) * 1000)
        found += page.total
    cpu = (time.process_time() - cpu_started) * 1000 / len(queries)
    return (statistics.median(timings), _percentile(timings, 0.99), found / len(queries), cpu)


def _disk(container: Container, url: str) -> str:
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    else:
        with container.engine.connect() as conn:
            size = int(conn.scalar(text("SELECT pg_database_size(current_database())")) or 0)
    return f"{size / 2**30:.2f} GiB"


def run(url: str, folder: Path, count: int, searches: int, las: int, file_rows: int,
        practitioners: int) -> list[tuple[str, str]]:
    engine = make_engine(url)
    upgrade(engine)
    settings = load_settings(
        overrides={"service": {"instance_dir": str(folder / "instance")},
                   "database": {"url": url},
                   "children": {"volume_per_hour": 60}},
        environ={},
    )
    keys = InstanceSecrets(session_key=secrets.token_bytes(32), data_key=secrets.token_bytes(32))
    container = Container(settings, secrets=keys, clock=SystemClock(), engine=engine)
    codes, principals = _setup(container, las, practitioners)
    generated, loaded, cpu, workers, backend = _load(container, folder, count, codes, file_rows)
    # Statistics, as a production database has them (autovacuum on PostgreSQL,
    # the loader's PRAGMA optimize on SQLite): without them SQLite may walk the
    # surname + date-of-birth index for a surname + district search.
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    samples = _samples(container, searches)
    by_dob = [ChildQuery(surname=s, date_of_birth=d) for s, d, _ in samples]
    by_district = [ChildQuery(surname=s, postcode_district=p) for s, _, p in samples]
    _search(container, principals, by_dob[:50])  # warm the cache and the pool
    dob50, dob99, dob_found, dob_cpu = _search(container, principals, by_dob)
    dis50, dis99, dis_found, dis_cpu = _search(container, principals, by_district)
    rows = [
        ("records loaded", f"{count:,} in {loaded:,.1f} s (+{generated:,.0f} s generating)"),
        ("import rate", f"{count / loaded:,.0f} records/s "
                        f"({count / (cpu + workers):,.0f} per CPU-second of the loader, "
                        "its process and workers)"),
        ("loader CPU (process + workers)", f"{cpu + workers:,.1f} s ({cpu:,.1f} + "
                                           f"{workers:,.1f})"),
        ("database backend CPU", f"{backend:,.1f} s" if backend else "(in process)"),
        ("disk used", _disk(container, url)),
        ("surname + date of birth", f"p50 {dob50:.1f} ms, p99 {dob99:.1f} ms "
                                    f"({dob_found:.1f} found on average; "
                                    f"{dob_cpu:.1f} ms of this process's CPU each)"),
        ("surname + postcode district", f"p50 {dis50:.1f} ms, p99 {dis99:.1f} ms "
                                        f"({dis_found:.1f} found on average; "
                                        f"{dis_cpu:.1f} ms of this process's CPU each)"),
    ]
    container.dispose()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--national", action="store_true",
                        help="11 million records (PostgreSQL only): the national scale.")
    parser.add_argument("--searches", type=int, default=2000)
    parser.add_argument("--practitioners", type=int, default=100,
                        help="People the searches are shared among (each searches in turn).")
    parser.add_argument("--las", type=int, default=150, help="Local authorities.")
    parser.add_argument("--dir", default=None, help="Folder for the SQLite file and CSV parts.")
    args = parser.parse_args()
    count = 11_000_000 if args.national else args.count
    if args.national and not args.database_url:
        parser.error("--national needs --database-url (PostgreSQL)")
    with tempfile.TemporaryDirectory(prefix="cp-bench-children-", dir=args.dir) as tmp, \
            ExitStack() as stack:
        if args.database_url:
            url, _name = stack.enter_context(scratch_database(args.database_url, "cp_bench"))
            backend = "PostgreSQL"
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            backend = "SQLite (WAL)"
        rows = run(url, Path(tmp), count, args.searches, args.las,
                   count if args.national else FILE_ROWS, args.practitioners)
    print(f"Child records, {count:,} synthetic, on {backend}; Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs shared")
    for label, value in rows:
        print(f"  {label:<30} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
