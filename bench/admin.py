"""Admin console: listing and searching the people of a 20,000-strong organisation
among 390,000, over HTTP.

    .venv/bin/python bench/admin.py
    .venv/bin/python bench/admin.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

The population (`--organisations` 2,000, `--people` 390,000, each with one
current position; `--staff` 20,000 of them in the benchmark organisation) is
written straight into a scratch database with bulk INSERTs (SQLAlchemy Core):
listing needs no credentials, so no argon2 is spent on them. One organisation
admin is then made through the services, with a password, a PIN and a soft
token, and signs in over HTTP to `contactpoint serve` (gunicorn, one sync
worker per core). Each scenario (the first page, a deep page, searches by
surname, by two words, by username, one that finds nothing) is requested
`--requests` times, one at a time after a warm-up, and its p50 and p99 latency
printed. This is a benchmark, not a test: it prints.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # keep bench/tokens.py from shadowing the tokens package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, insert

from bench.signin import (
    Browser,
    children,
    csrf_token,
    expect,
    server_env,
    start_server,
    stop_server,
)
from core.db import make_engine
from directory.models import Organisation, Person, Position

GIVEN = (  # noqa: SIM905 - a list of words, read as one
    "Aisha Alex Amelia Ann Ben Chloe Chris Dan David Ella Emma Fatima Finn Grace Hannah "
    "Harry Isla Jack James Jane Jo Kai Kate Leo Liam Lily Lucy Maria Mark Mia Mohammed "
    "Noah Olivia Oscar Paul Priya Rachel Ravi Rosa Ruth Sam Sara Sean Sofia Tom Zara"
).split()
SYLLABLES = (  # noqa: SIM905
    "ash bar ber brook by card ches cole dal den don ell ers ford gar ham har hill ing ken "
    "lan ley lock mar mer mil mor new nor os pat ray rich rob ros sel smi son stan ter ton "
    "wal war wat well wick win wood worth"
).split()


def surnames(count: int, seed: int = 7) -> list[str]:
    """Made-up surnames of two or three syllables: a few thousand distinct ones, so
    that a three-letter prefix finds a few per cent of people, as real names do."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < count:
        parts = rng.choice([2, 2, 3])
        names.add("".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize())
    return sorted(names)


def populate(engine: Engine, organisations: int, people: int, staff: int) -> list[str]:
    """Bulk rows, as many a batch as the drivers take comfortably; returns usernames
    of the benchmark organisation's staff."""
    now = datetime.now(UTC)
    start = date.today() - timedelta(days=400)
    far = date.today() + timedelta(days=900)
    rng = random.Random(42)
    families = surnames(4000)
    staff_usernames: list[str] = []
    with engine.begin() as conn:
        conn.execute(
            insert(Organisation),
            [
                {
                    "id": i + 1,
                    "code": "BENCH" if i == 0 else f"ORG{i:05d}",
                    "name": "Benchmark Borough Council" if i == 0 else f"Organisation {i}",
                    "kind": "local_authority",
                    "accreditation": "accredited",
                    "accreditation_changed_at": now,
                    "accredited_on": start,
                    "registration_authority_id": i + 1,
                }
                for i in range(organisations)
            ],
        )
    batch = 10_000
    for first in range(0, people, batch):
        persons, positions = [], []
        for i in range(first, min(first + batch, people)):
            given, family = rng.choice(GIVEN), rng.choice(families)
            username = f"{given}.{family}{i}".lower()
            in_bench = i < staff
            if in_bench:
                staff_usernames.append(username)
            persons.append(
                {
                    "id": i + 1,
                    "public_id": str(uuid.uuid4()),
                    "username": username,
                    "username_folded": username,
                    "given_name": given,
                    "family_name": family,
                    "work_email": f"{username}@example.org",
                    "status": "active",
                    "status_reason": "bench",
                    "status_changed_at": now,
                    "security_epoch": 1,
                    "clearance_expires_on": far,
                    "training_expires_on": far,
                    "created_at": now,
                }
            )
            positions.append(
                {
                    "id": i + 1,
                    "person_id": i + 1,
                    "organisation_id": 1 if in_bench else 2 + i % (organisations - 1),
                    "role": "practitioner",
                    "starts_on": start,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(Person), persons)
            conn.execute(insert(Position), positions)
    return staff_usernames


def make_admin(settings: Any) -> tuple[str, str, str, Any]:
    """The one person who signs in: made through the services, production argon2."""
    import pyotp

    from core.audit import AuditContext
    from directory.models import PersonStatus, Role
    from idp.container import Container
    from tokens.models import PasswordCredential, PinCredential, TokenState

    password, pin = "bench admin lantern meadow 51", "602951"
    container = Container(settings)
    try:
        with container.unit(AuditContext(actor_label="bench")) as u:
            org = u.directory.organisation_by_code("BENCH")
            today = container.clock.today()
            person = u.directory.create_person(
                given_name="Bench",
                family_name="Admin",
                work_email="bench.admin@example.org",
                work_phone=None,
                clearance_expires_on=today + timedelta(days=900),
                training_expires_on=today + timedelta(days=900),
                username="bench.admin",
            )
            u.directory.add_position(person, org, Role.ORGANISATION_ADMIN, today)
            person.status = PersonStatus.ACTIVE
            now = container.clock.now()
            u.session.add(
                PasswordCredential(
                    person_id=person.id, hash=container.hasher.hash(password), set_at=now
                )
            )
            u.session.add(
                PinCredential(person_id=person.id, hash=container.hasher.hash(pin), set_at=now)
            )
            token, secret = u.otp.new_soft_token(person.id, org.id)
            token.state = TokenState.ACTIVE
            token.activated_at = now
            u.commit()
            org_id = org.id
    finally:
        container.dispose()
    totp = pyotp.TOTP(secret, interval=settings.totp.period_seconds, digits=settings.totp.digits)
    return "bench.admin", password, pin, (totp, org_id)


def sign_in(port: int, username: str, password: str, pin: str, totp: Any) -> Browser:
    browser = Browser(port)
    status, _, page = browser.request("GET", "/sign-in")
    expect(status, 200, "", None, "GET /sign-in")
    form = {"csrf_token": csrf_token(page, "sign-in"), "username": username, "password": password}
    status, location, _ = browser.request("POST", "/sign-in", form)
    expect(status, 302, location, "/sign-in/token", "POST /sign-in")
    status, _, page = browser.request("GET", "/sign-in/token")
    form = {"csrf_token": csrf_token(page, "token"), "code": totp.now(), "pin": pin}
    status, location, _ = browser.request("POST", "/sign-in/token", form)
    expect(status, 302, location, "/", "POST /sign-in/token")
    return browser


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(
    browser: Browser, path: str, requests: int, warmup: int, expect_text: str
) -> list[float]:
    for _ in range(warmup):
        browser.request("GET", path)
    took = []
    for _ in range(requests):
        started = time.perf_counter()
        status, _, page = browser.request("GET", path)
        took.append((time.perf_counter() - started) * 1000)
        if status != 200 or expect_text not in page:
            raise SystemExit(f"GET {path}: {status}, {expect_text!r} not in the page")
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=390_000)
    parser.add_argument("--staff", type=int, default=20_000)
    parser.add_argument("--organisations", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=200, help="per scenario (default 200)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--database-url", default="", help="PostgreSQL server URL; default SQLite")
    parser.add_argument("--keep", action="store_true", help="keep the instance folder")
    args = parser.parse_args(argv)
    if not 0 < args.staff < args.people or args.organisations < 2:
        parser.error("need 0 < --staff < --people and at least 2 organisations")

    from core.settings import load_settings
    from idp.database import scratch_database, upgrade

    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    instance_dir = Path(tempfile.mkdtemp(prefix="cp-bench-admin-"))
    scratch = ExitStack()
    server = None
    results: list[tuple[str, int, list[float]]] = []
    try:
        if args.database_url:
            database_url, name = scratch.enter_context(
                scratch_database(args.database_url, "cp_bench")
            )
            database = f"postgresql, database {name} (dropped afterwards)"
        else:
            database_url = f"sqlite:///{instance_dir / 'contactpoint.db'}"
            database = "sqlite (WAL), in a temporary folder"
        env = server_env(instance_dir, database_url)
        settings = load_settings(environ=env)
        engine = make_engine(database_url)
        upgrade(engine)
        print(f"command: {command}", flush=True)
        print(f"populating {args.people:,} people in {args.organisations:,} organisations ...",
              flush=True)
        started = time.perf_counter()
        staff = populate(engine, args.organisations, args.people, args.staff)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:  # ids were given: move the sequences past them
                for table in ("organisation", "person", "position"):
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                        f"(SELECT max(id) FROM {table}))"
                    )
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        else:
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        populate_seconds = time.perf_counter() - started
        engine.dispose()
        username, password, pin, (totp, org_id) = make_admin(settings)

        cores = os.cpu_count() or 1
        server = start_server(env, instance_dir, cores, "gunicorn")
        print(f"gunicorn on port {server.port}, {len(children(server.pid))} workers", flush=True)
        browser = sign_in(server.port, username, password, pin, totp)

        target = random.Random(1).choice(staff)
        surname_prefix = target.split(".")[1][:3]
        given = target.split(".")[0]
        base = f"/admin/organisations/{org_id}"
        total_staff = args.staff + 1  # and the admin
        per_page = 25
        deep = (total_staff // per_page) // 2
        scenarios = [
            ("list, first page", base, f"{total_staff:,} people"),
            (f"list, page {deep} of {-(-total_staff // per_page)}",
             f"{base}?{urlencode({'page': deep})}", f"Page {deep} of"),
            (f"search a surname prefix ({surname_prefix!r})",
             f"{base}?{urlencode({'q': surname_prefix})}", "found"),
            (f"search two words ({given} {surname_prefix})",
             f"{base}?{urlencode({'q': f'{given} {surname_prefix}'})}", "found"),
            ("search a username", f"{base}?{urlencode({'q': target})}", "1 person found"),
            ("search, nothing found", f"{base}?{urlencode({'q': 'qqqzz'})}", "0 people found"),
        ]
        for label, path, wanted in scenarios:
            print(f"{label}: {args.requests} requests ...", flush=True)
            took = measure(browser, path, args.requests, args.warmup, wanted)
            status, _, page = browser.request("GET", path)
            found = page.split('id="result-count">')[1].split("<")[0].strip()
            results.append((f"{label}: {found}", status, took))
        browser.conn.close()
    finally:
        if server is not None:
            stop_server(server)
        scratch.close()
        if not args.keep:
            shutil.rmtree(instance_dir, ignore_errors=True)

    print()
    python = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {python}")
    print(f"database: {database}")
    print(f"population: {args.people:,} people, {args.organisations:,} organisations, "
          f"{args.staff:,} in the benchmark organisation; bulk insert {populate_seconds:.1f} s")
    print("one request at a time, over HTTP to gunicorn; 25 people a page\n")
    print(f"{'scenario':<62} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for label, _, took in results:
        print(f"{label:<62} {percentile(took, 0.5):>8.1f} {percentile(took, 0.99):>8.1f} "
              f"{statistics.fmean(took):>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
