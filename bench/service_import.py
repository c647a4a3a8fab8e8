"""The service directory's CSV bulk load: rows per second for a first import,
a re-run of the same file (nothing to write) and a file with 10% changed rows.

    .venv/bin/python bench/service_import.py                 # SQLite (a throwaway file)
    .venv/bin/python bench/service_import.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/service_import.py --count 25000 --organisations 150

Each run goes through `ServicesService.import_csv`, as `contactpoint directory
import-services` does: every row validated (postcode, phone, email, dates,
organisation, duplicate references), then bulk INSERTs/UPDATEs in batches of
1,000, one audit entry, one commit. With PostgreSQL the URL names a server; the
benchmark makes a database of its own beside it and drops it afterwards.
This is a benchmark, not a test: it prints.
"""

from __future__ import annotations

import argparse
import csv
import io
import platform
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)


from core.audit import AuditContext
from core.clock import FrozenClock
from core.db import make_engine
from core.settings import InstanceSecrets, load_settings
from directory.models import OrganisationKind, Role
from directory.service import Grant, Principal
from directory.services import CSV_COLUMNS
from idp.container import Container
from idp.database import scratch_database, upgrade

OPERATOR = Principal(0, "cli:bench", (Grant(0, Role.PLATFORM_ADMIN),))
KINDS = ("gp_practice", "school", "health_visiting_team", "school_nursing_team",
         "childrens_social_care", "youth_offending_team", "early_years_setting")


def generate(count: int, codes: list[str], changed_every: int = 0) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for n in range(count):
        phone = "0191 496 0999" if changed_every and n % changed_every == 0 else "0191 496 0000"
        writer.writerow([
            f"S{n:06d}", codes[n % len(codes)], f"Service number {n}", KINDS[n % len(KINDS)],
            f"{n % 300 + 1} High Street", "", "Northtown", f"NE{n % 99 + 1} {n % 9}AB", phone,
            f"service{n}@council.gov.uk", "Mon-Fri 9am-5pm", "2020-01-01", "",
        ])
    return out.getvalue()


def run(url: str, instance_dir: Path, count: int, organisations: int) -> list[tuple[str, str, str]]:
    engine = make_engine(url)
    upgrade(engine)
    settings = load_settings(
        overrides={"service": {"instance_dir": str(instance_dir)}, "database": {"url": url}},
        environ={},
    )
    keys = InstanceSecrets(session_key=secrets.token_bytes(32), data_key=secrets.token_bytes(32))
    container = Container(settings, secrets=keys, clock=FrozenClock(), engine=engine)
    rows: list[tuple[str, str, str]] = []
    with container.unit(AuditContext(actor_label="cli:bench")) as unit:
        codes = []
        for n in range(organisations):
            org = unit.directory.create_organisation(
                code=f"LA{n:04d}", name=f"Council {n}", kind=OrganisationKind.LOCAL_AUTHORITY,
                accredited=True,
            )
            codes.append(org.code)
        unit.commit()
    for label, content in (
        ("first import", generate(count, codes)),
        ("re-run, nothing changed", generate(count, codes)),
        ("10% of rows changed", generate(count, codes, changed_every=10)),
    ):
        with container.unit(AuditContext(actor_label="cli:bench")) as unit:
            started = time.perf_counter()
            report = unit.services.import_csv(OPERATOR, content, source="bench.csv")
            unit.commit()
            seconds = time.perf_counter() - started
        rows.append((f"{label} ({report.created} new, {report.updated} updated)",
                     f"{count / seconds:,.0f} rows/s", f"{seconds:.2f} s"))
    container.dispose()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--count", type=int, default=25_000)
    parser.add_argument("--organisations", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cp-bench-services-") as tmp, ExitStack() as stack:
        if args.database_url:
            url, _name = stack.enter_context(scratch_database(args.database_url, "cp_bench"))
            backend = "PostgreSQL"
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            backend = "SQLite (WAL)"
        rows = run(url, Path(tmp) / "instance", args.count, args.organisations)
    print(f"Service CSV import of {args.count:,} rows on {backend}; "
          f"Python {platform.python_version()}, one process")
    print(f"  {'run':<52} {'rate':>16}  time")
    print("  " + "-" * 80)
    for label, rate, note in rows:
        print(f"  {label:<52} {rate:>16}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
