"""How many audited transactions one database commits a second, and what the
hash chain's single head row costs: every audited transaction locks
`audit_head` from its first entry until it commits (core/audit.py), so on
PostgreSQL they commit one after another, across all nodes.

    .venv/bin/python bench/audit.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/audit.py                    # SQLite (one writer at a time anyway)

For each number of concurrent writers (threads, each with its own connection),
for `--seconds`: transactions that insert one row into a table of their own
and commit ("plain"), then transactions that also append one audit entry
("audited", as a sign-in step or a search does), then ones that append two.
Prints commits per second and p50 / p99 commit latency of each, and the ratio
audited / plain: the ceiling the chain puts on a database, to set beside the
morning peak's audited events. With PostgreSQL the URL names a server; the
benchmark makes a database of its own beside it and drops it afterwards. It
prints; it is not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from sqlalchemy import create_engine, text

from core.audit import AuditContext
from core.clock import SystemClock
from core.settings import InstanceSecrets, load_settings
from idp.container import Container
from idp.database import scratch_database, upgrade

KINDS = (("plain", 0), ("audited", 1), ("audited twice", 2))


def _writer(container: Container, entries: int, deadline: float, latencies: list[float],
            number: int) -> None:
    done = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        with container.unit(AuditContext(actor_label=f"bench:{number}")) as unit:
            unit.session.execute(text("INSERT INTO bench_write (writer, n) VALUES (:w, :n)"),
                                 {"w": number, "n": done})
            for _ in range(entries):
                unit.audit.record("bench:write", subject_type="bench", subject_id=done,
                                  detail={"writer": number})
            unit.commit()
        latencies.append((time.perf_counter() - started) * 1000)
        done += 1


def _round(container: Container, writers: int, entries: int, seconds: float
           ) -> tuple[float, float, float]:
    per_writer: list[list[float]] = [[] for _ in range(writers)]
    deadline = time.perf_counter() + seconds
    threads = [threading.Thread(target=_writer, args=(container, entries, deadline,
                                                       per_writer[n], n))
               for n in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies = sorted(value for values in per_writer for value in values)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return len(latencies) / wall, statistics.median(latencies), p99


def run(url: str, folder: Path, writer_counts: list[int], seconds: float) -> None:
    sqlite = url.startswith("sqlite")
    engine = create_engine(url, pool_size=max(writer_counts) + 2, max_overflow=0,
                           **({"connect_args": {"timeout": 30}} if sqlite else {}))
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_write (id INTEGER PRIMARY KEY"
                          + ("" if sqlite else " GENERATED ALWAYS AS IDENTITY")
                          + ", writer INTEGER NOT NULL, n INTEGER NOT NULL)"))
        if sqlite:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    settings = load_settings(
        overrides={"service": {"instance_dir": str(folder / "instance")},
                   "database": {"url": url}},
        environ={},
    )
    keys = InstanceSecrets(session_key=secrets.token_bytes(32), data_key=secrets.token_bytes(32))
    container = Container(settings, secrets=keys, clock=SystemClock(), engine=engine)
    name = "SQLite (WAL)" if sqlite else "PostgreSQL"
    print(f"Audited transactions on {name}; Python {platform.python_version()}, "
          f"{len(os.sched_getaffinity(0))} CPUs; {seconds:g} s a round")
    print(f"  {'writers':>7}  {'kind':<14} {'commits/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'of plain':>9}")
    for writers in writer_counts:
        plain = 0.0
        for kind, entries in KINDS:
            rate, p50, p99 = _round(container, writers, entries, seconds)
            plain = rate if entries == 0 else plain
            print(f"  {writers:>7}  {kind:<14} {rate:>10,.0f} {p50:>8.2f} {p99:>8.2f} "
                  f"{rate / plain:>9.2f}")
    container.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--writers", default="1,4,16",
                        help="Concurrent writers of each round, comma-separated.")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    writer_counts = [int(n) for n in args.writers.split(",")]
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-audit-")))
        if args.database_url:
            url, _ = stack.enter_context(scratch_database(args.database_url, "bench_audit"))
        else:
            url = f"sqlite:///{folder / 'audit.db'}"
        run(url, folder, writer_counts, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
