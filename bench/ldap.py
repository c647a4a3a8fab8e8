"""LDAP publish: a full publish into a throwaway slapd, then 1,000 changes.

    .venv/bin/python bench/ldap.py                                  # 390,000 people
    .venv/bin/python bench/ldap.py --people 50000 --connections 1,4
    .venv/bin/python bench/ldap.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

The directory (`--organisations` 2,000, `--services` 25,000, `--people`
390,000, each person with one current position, half of them in a service) is
written straight into the database with bulk INSERTs: publishing needs no
credentials, so no argon2 is spent making them. A throwaway slapd (mdb,
olcDbNoSync, as the tests use) is started for each connection count, and
`LdapPublisher.publish()` runs against the empty server (every entry an add),
then again with nothing changed, then after 1,000 people's phone numbers
changed. Printed: entries, seconds and entries/s for the full run by number of
parallel connections, the seconds of the no-change run and of the 1,000-change
run. This is a benchmark, not a test: it prints.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import delete, insert, select, update

from core.audit import (
    AuditContext,
    Auditor,
)
from core.clock import SystemClock
from core.db import make_engine, make_session_factory
from directory.ldap_connect import LdapTarget
from directory.ldap_publish import LdapPublisher
from directory.models import Organisation, Person, Position
from directory.services_models import LdapPublication, LdapRun, Service
from idp.database import scratch_database, upgrade
from tests.ldap_server import LdapServer

KINDS = ["gp_practice", "school", "health_visiting_team", "school_nursing_team", "other"]


def populate(engine: object, orgs: int, services: int, people: int) -> None:
    now = datetime.now(UTC)
    start = date.today() - timedelta(days=400)
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            insert(Organisation),
            [
                {
                    "id": i + 1, "code": f"ORG{i:05d}", "name": f"Organisation {i}",
                    "kind": "local_authority", "accreditation": "accredited",
                    "accreditation_changed_at": now, "accredited_on": start,
                }
                for i in range(orgs)
            ],
        )
        rows = []
        for i in range(services):
            rows.append(
                {
                    "id": i + 1, "public_id": str(uuid.uuid4()), "name": f"Service {i}",
                    "name_folded": f"service {i}", "kind": KINDS[i % len(KINDS)],
                    "organisation_id": i % orgs + 1, "address_line1": f"{i} High Street",
                    "town": "Northtown", "postcode": "NE1 1AA", "postcode_district": "NE1",
                    "phone": "0191 000 0000", "secure_email": f"svc{i}@nhs.example",
                    "opening_hours": "Mon-Fri 08:00-18:30", "starts_on": start,
                    "created_at": now, "updated_at": now,
                }
            )
        conn.execute(insert(Service), rows)
        chunk = 20000
        for lo in range(0, people, chunk):
            batch = range(lo, min(people, lo + chunk))
            conn.execute(
                insert(Person),
                [
                    {
                        "id": i + 1, "public_id": str(uuid.uuid4()), "username": f"user{i}",
                        "username_folded": f"user{i}", "given_name": f"Given{i % 997}",
                        "family_name": f"Family{i}", "work_email": f"user{i}@example.org",
                        "work_phone": "0191 123 4567", "status": "active",
                        "status_reason": "bench", "status_changed_at": now,
                        "security_epoch": 1, "created_at": now,
                    }
                    for i in batch
                ],
            )
            conn.execute(
                insert(Position),
                [
                    {
                        "person_id": i + 1, "organisation_id": i % orgs + 1,
                        "role": "practitioner", "starts_on": start,
                        "service_id": (i % services + 1) if i % 2 == 0 else None,
                    }
                    for i in batch
                ],
            )


def _cpu() -> float:
    """This process and its reaped children (the writer processes, once the
    publish has shut its pool down; slapd is reaped only after the run)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _proc_cpu(pid: int) -> float:
    """utime + stime of another process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def publisher(session_factory: object, target: LdapTarget, connections: int) -> LdapPublisher:
    session = session_factory()  # type: ignore[operator]
    clock = SystemClock()
    audit = Auditor(session, clock, AuditContext(actor_label="bench"))
    return LdapPublisher(session, clock, audit, target, connections=connections, page_size=1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--organisations", type=int, default=2000)
    parser.add_argument("--services", type=int, default=25000)
    parser.add_argument("--people", type=int, default=390000)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--connections", default="4", help="comma-separated, e.g. 1,4,8")
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ldap-"))
    scratch = ExitStack()
    if args.database_url:
        url, _name = scratch.enter_context(scratch_database(args.database_url, "cp_bench_ldap"))
    else:
        url = f"sqlite:///{work / 'bench.db'}"
    engine = make_engine(url)
    upgrade(engine)
    t = time.monotonic()
    populate(engine, args.organisations, args.services, args.people)
    print(f"populated {args.organisations} organisations, {args.services} services, "
          f"{args.people} people in {time.monotonic() - t:.1f} s ({engine.dialect.name})")
    factory = make_session_factory(engine)
    results = []
    # each round changes the phones to a value of its own, so every round has
    # exactly `--changes` people to modify
    for connections in [int(c) for c in args.connections.split(",")]:
        with engine.begin() as conn:
            conn.execute(delete(LdapPublication))
            conn.execute(delete(LdapRun))
        server = LdapServer(work / f"slapd-{connections}")
        server.create()
        server.start()
        target = LdapTarget(server.url, server.root_dn, server.root_password, server.suffix)
        try:
            assert server.process is not None
            own0, slapd0 = _cpu(), _proc_cpu(server.process.pid)
            full = publisher(factory, target, connections).publish()
            cpu = (_cpu() - own0, _proc_cpu(server.process.pid) - slapd0)
            noop = publisher(factory, target, connections).publish()
            with engine.begin() as conn:
                ids = list(conn.scalars(select(Person.id).order_by(Person.id).limit(args.changes)))
                phone = f"0191 765 {connections:04d}"
                conn.execute(update(Person).where(Person.id.in_(ids)).values(work_phone=phone))
            changed = publisher(factory, target, connections).publish()
        finally:
            server.stop()
        assert noop.writes == 0, noop
        assert changed.modified == args.changes, changed
        results.append((connections, full, noop, changed, cpu))

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, database {engine.dialect.name}")
    print(f"{'connections':>11} {'entries':>9} {'full s':>8} {'entries/s':>10} "
          f"{'no-change s':>12} {f'{args.changes} changes s':>16}")
    for connections, full, noop, changed, (own, slapd) in results:
        print(f"{connections:>11} {full.added:>9} {full.seconds:>8.1f} "
              f"{full.added / full.seconds:>10.0f} {noop.seconds:>12.1f} {changed.seconds:>16.1f}"
              f"   (full-run CPU: publisher {own:.0f} s, slapd {slapd:.0f} s)"
              )
    engine.dispose()
    shutil.rmtree(work, ignore_errors=True)  # the SQLite file and slapd data: gigabytes at 390k
    scratch.close()  # drops the scratch PostgreSQL database, if one was made


if __name__ == "__main__":
    main()
