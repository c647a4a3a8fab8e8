"""A mixed load at fixed arrival rates for a fixed time, and the cores a
morning peak needs.

Five operations against `contactpoint serve` (gunicorn, one sync worker per
core), each arriving at its own fixed rate whatever the server does (an open
loop: a slow answer does not slow the arrivals, and latency is counted from
when the request was due, so queueing shows):

- `signin`: a complete sign-in, both steps, four requests (bench/signin.py's);
- `refresh`: POST /oauth2/token with a refresh token (rotating: each chain
  carries on with the token the last answer gave);
- `client_credentials`: POST /oauth2/token as a confidential client;
- `services`: GET /services?q=... (the service directory, signed in);
- `children`: POST /children, surname and postcode district with a reason
  (the child-record search, signed in; synthetic records).

First each operation runs alone for a short window at twice its rate, to
measure the server's CPU per operation (gunicorn master and workers, and with PostgreSQL its
backends, from /proc); then all five run together for `--duration` seconds.
It prints per operation: sent, ok, errors, throughput, p50 and p99 latency;
the server CPU; and from the CPU per sign-in, the cores needed for the
morning peak in which all 390,000 users sign in within one hour (108.3
sign-ins/s), with headroom.

    .venv/bin/python bench/load.py                    # SQLite (the default)
    .venv/bin/python bench/load.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Loopback only; every phase is bounded in time and in requests. Exits 1 if
any request failed. A benchmark, not a test: it prints.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import math
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # keep bench/tokens.py from shadowing the tokens package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.children import FILE_ROWS, OPERATOR, _load, _samples
from bench.oidc import (
    free_port,
    load_bench_settings,
    machine_busy,
    refresh_tokens,
    register_client,
    server_env,
    start_ours,
    stop,
    tree_cpu_seconds,
)
from bench.service_import import generate
from bench.signin import (
    TICKS,
    TOTP_PERIOD,
    Browser,
    People,
    PgBackends,
    SignInFailure,
    bench_database,
    csrf_token,
    make_people,
    percentile,
    printable_command,
    report_failures,
    row,
    sign_in,
    signed_in_browser,
)

PEAK_USERS = 390_000
PEAK_SECONDS = 3600
PEAK_RATE = PEAK_USERS / PEAK_SECONDS  # 108.3 sign-ins/s
TARGET_UTILISATION = 0.5  # cores busy at most half the time at the peak: headroom
OPERATIONS = ("signin", "refresh", "client_credentials", "services", "children")
# Well below what two cores serve, so that latency is measured short of
# saturation even on a machine shared with other work.
DEFAULT_RATES = {"signin": 1.0, "refresh": 5.0, "client_credentials": 5.0,
                 "services": 2.0, "children": 2.0}
REASON = {"reason": "referral", "reason_detail": "Load benchmark, synthetic data only"}


class Failed(Exception):
    pass


# -- what the operations need ----------------------------------------------------------------


@dataclass
class World:
    port: int
    people: People
    basic: str  # the client's Basic credentials
    refresh: deque[str]  # one refresh token per chain, taken and given back
    searchers: list[dict[str, str]]  # signed-in sessions' cookie jars
    children_csrf: list[str]  # each searcher's form token for /children
    service_names: list[str]
    child_queries: list[tuple[str, str]]  # (surname, postcode district)
    lock: threading.Lock = field(default_factory=threading.Lock)


def prepare(settings: Any, people: int, refresh_chains: int, services: int, children: int,
            processes: int, folder: Path) -> tuple[list[Any], str, list[str],
                                                   list[str], list[tuple[str, str]]]:
    """People with passwords, PINs and TOTP (bench/signin.py's, production
    argon2id); an approved client and refresh tokens as a code flow leaves
    them (bench/oidc.py's); services (bench/service_import.py's CSV through the
    import); child records from the synthetic generator (bench/children.py's)."""
    from sqlalchemy import select

    from core.audit import AuditContext
    from directory.models import Person as PersonRow
    from directory.models import PersonStatus
    from idp.container import Container

    made = make_people(settings, people, processes)
    container = Container(settings)
    try:
        with container.unit(AuditContext(actor_label="cli:bench")) as u:
            organisation = u.directory.organisation_by_code("BENCH")
            persons = list(u.session.scalars(
                select(PersonRow).where(PersonRow.status == PersonStatus.ACTIVE)))
            client_id, secret = register_client(u, organisation.id)
            tokens = refresh_tokens(container, u, client_id, persons, refresh_chains)
            report = u.services.import_csv(OPERATOR, generate(services, ["BENCH"]),
                                           source="bench.csv")
            u.commit()
            assert report.created == services, report
        _load(container, folder, children, ["BENCH"], FILE_ROWS)
        queries = [(surname, district) for surname, _dob, district in _samples(container, 200)]
    finally:
        container.dispose()
    names = [f"Service number {n}" for n in random.Random(3).sample(range(services), 50)]
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return made, basic, tokens, names, queries


# -- the operations ----------------------------------------------------------------------------


def _signin(world: World) -> None:
    person = world.people.take()
    try:
        step = sign_in(world.port, person)
    except Exception:
        person.last_step = int(time.time()) // TOTP_PERIOD + 1  # unknown: be careful
        raise
    else:
        person.last_step = step
    finally:
        world.people.give_back(person)


def _post_token(world: World, form: dict[str, str]) -> dict[str, Any]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", world.port, timeout=60)
    try:
        conn.request("POST", "/oauth2/token", body=urlencode(form), headers={
            "Authorization": f"Basic {world.basic}",
            "Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        raise Failed(f"POST /oauth2/token: {type(error).__name__}") from error
    finally:
        conn.close()
    if response.status != 200:
        raise Failed(f"POST /oauth2/token {form['grant_type']}: {response.status}")
    answer: dict[str, Any] = json.loads(body)
    return answer


def _refresh(world: World) -> None:
    with world.lock:
        if not world.refresh:
            raise Failed("refresh: no chain free (raise --refresh-chains)")
        token = world.refresh.popleft()
    answer = _post_token(world, {"grant_type": "refresh_token", "refresh_token": token})
    with world.lock:
        world.refresh.append(answer["refresh_token"])


def _client_credentials(world: World) -> None:
    _post_token(world, {"grant_type": "client_credentials", "scope": "admin"})


def _signed_in(world: World) -> tuple[Browser, int]:
    which = random.randrange(len(world.searchers))
    browser = Browser(world.port)
    browser.jar = dict(world.searchers[which])
    return browser, which


def _services(world: World) -> None:
    browser, _ = _signed_in(world)
    name = random.choice(world.service_names)
    try:
        status, _loc, page = browser.request("GET", "/services?" + urlencode({"q": name}))
    finally:
        browser.conn.close()
    if status != 200 or name not in page:
        raise Failed(f"GET /services: {status}" + ("" if status != 200 else ", not found"))


def _children(world: World) -> None:
    browser, which = _signed_in(world)
    surname, district = random.choice(world.child_queries)
    form = {"csrf_token": world.children_csrf[which], **REASON, "surname": surname,
            "postcode_district": district, "sort": "name", "page": "1"}
    try:
        status, _loc, _page = browser.request("POST", "/children", form)
    finally:
        browser.conn.close()
    if status != 200:
        raise Failed(f"POST /children: {status}")


WORK: dict[str, Callable[[World], None]] = {
    "signin": _signin, "refresh": _refresh, "client_credentials": _client_credentials,
    "services": _services, "children": _children,
}


def sign_in_searchers(world: World, count: int) -> None:
    """Sessions for the searches, each with its /children form token."""
    for _ in range(count):
        person = world.people.take()
        try:
            browser, person.last_step = signed_in_browser(world.port, person)
        finally:
            world.people.give_back(person)
        status, _loc, page = browser.request("GET", "/children")
        browser.conn.close()
        if status != 200:
            raise SystemExit(f"GET /children for a searcher: {status}")
        world.searchers.append(dict(browser.jar))
        world.children_csrf.append(csrf_token(page, "GET /children"))


# -- the open loop -----------------------------------------------------------------------------


@dataclass
class Tally:
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def run_phase(world: World, rates: dict[str, float], seconds: float, in_flight: int,
              grace: float = 30.0) -> tuple[dict[str, Tally], float]:
    """Each operation due at t0 + k / rate, for k while that is within
    `seconds`, handed to a pool of `in_flight` threads; latency from when it
    was due. Unfinished `grace` seconds after the end: counted as errors."""
    tallies = {op: Tally() for op in rates}
    lock = threading.Lock()
    futures: list[Future[None]] = []
    started = time.perf_counter() + 0.2

    def one(op: str, due: float) -> None:
        try:
            WORK[op](world)
        except (Failed, SignInFailure) as failure:
            with lock:
                tallies[op].errors[str(failure)] += 1
        except Exception as failure:  # counted, never lost with the thread
            with lock:
                tallies[op].errors[repr(failure)] += 1
        else:
            with lock:
                tallies[op].latencies.append(time.perf_counter() - due)

    def arrivals(op: str, rate: float, pool: ThreadPoolExecutor) -> None:
        count = int(seconds * rate)
        for k in range(count):
            due = started + k / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            with lock:
                tallies[op].sent += 1
                futures.append(pool.submit(one, op, due))

    with ThreadPoolExecutor(in_flight) as pool:
        schedulers = [threading.Thread(target=arrivals, args=(op, rate, pool), daemon=True)
                      for op, rate in rates.items() if rate > 0]
        for thread in schedulers:
            thread.start()
        for thread in schedulers:
            thread.join(seconds + 5)
        _done, pending = wait(list(futures), timeout=grace)
        for future in pending:
            future.cancel()
    wall = time.perf_counter() - started
    if pending:
        tallies[next(iter(rates))].errors[f"unfinished {grace:g} s after the end"] += len(pending)
    return tallies, wall


@dataclass
class Cost:
    server: float  # CPU seconds, gunicorn master and workers
    database: float  # CPU seconds, PostgreSQL backends of this database
    busy: float  # CPU seconds, every process on the machine
    client: float  # CPU seconds, this process: the load generator
    ok: int


def measured(server_pid: int, backends: PgBackends | None,
             phase: Callable[[], tuple[dict[str, Tally], float]]
             ) -> tuple[dict[str, Tally], float, Cost]:
    db0 = backends.cpu() if backends else {}
    cpu0, busy0, self0 = tree_cpu_seconds(server_pid), machine_busy(), os.times()
    tallies, wall = phase()
    cpu1, busy1, self1 = tree_cpu_seconds(server_pid), machine_busy(), os.times()
    db1 = backends.cpu() if backends else {}
    ok = sum(len(t.latencies) for t in tallies.values())
    return tallies, wall, Cost(cpu1 - cpu0, PgBackends.spent(db0, db1),
                               (busy1[0] - busy0[0]) / TICKS,
                               self1.user + self1.system - self0.user - self0.system, ok)


def parse_rates(values: list[str]) -> dict[str, float]:
    rates = dict(DEFAULT_RATES)
    for value in values:
        name, _, number = value.partition("=")
        if name not in rates or not re.fullmatch(r"\d+(\.\d+)?", number):
            raise SystemExit(f"--rate {value}: expected one of {', '.join(OPERATIONS)}=N")
        rates[name] = float(number)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds of the mixed load (default 30)")
    parser.add_argument("--alone", type=float, default=8.0,
                        help="seconds of each operation alone, for its CPU cost (default 8; "
                             "0 skips)")
    parser.add_argument("--rate", action="append", default=[], metavar="OP=N",
                        help="arrivals per second of one operation; defaults "
                             + ", ".join(f"{k}={v:g}" for k, v in DEFAULT_RATES.items()))
    parser.add_argument("--in-flight", type=int, default=48,
                        help="most requests outstanding at once (default 48)")
    parser.add_argument("--children", type=int, default=20_000,
                        help="synthetic child records (default 20,000)")
    parser.add_argument("--services", type=int, default=5_000,
                        help="services in the directory (default 5,000)")
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL server URL (a database is created beside the one "
                             "named and dropped afterwards); default SQLite")
    parser.add_argument("--keep", action="store_true", help="keep the instance folder")
    args = parser.parse_args(argv)
    rates = parse_rates(args.rate)
    if args.duration <= 0 or args.in_flight < 1:
        parser.error("--duration and --in-flight must be positive")

    cores = os.cpu_count() or 1
    command = printable_command()
    instance_dir = Path(tempfile.mkdtemp(prefix="cp-load-"))
    scratch = ExitStack()
    backends: PgBackends | None = None
    server = None
    phases: list[tuple[str, dict[str, Tally], float, Cost]] = []
    try:
        database_url, backends, database = bench_database(
            scratch, args.database_url, instance_dir, "cp_load")
        port = free_port()
        env = server_env(instance_dir, database_url, port)
        settings = load_bench_settings(env)
        print(f"command: {command}", flush=True)
        from core.db import make_engine
        from idp.database import upgrade

        engine = make_engine(database_url)
        upgrade(engine)
        engine.dispose()
        # Nobody signs in twice within one TOTP step, at the sign-in rate.
        people = math.ceil(2 * rates["signin"] * TOTP_PERIOD * 1.5) + 2 * args.in_flight
        chains = math.ceil(rates["refresh"] * 2) + args.in_flight
        print(f"preparing {people} people, {chains} refresh chains, {args.services} services, "
              f"{args.children} child records ...", flush=True)
        setup = time.perf_counter()
        made, basic, tokens, names, queries = prepare(
            settings, people, chains, args.services, args.children, cores, instance_dir)
        setup = time.perf_counter() - setup
        server = start_ours(env, instance_dir, port, cores)
        world = World(port, People(made), basic, deque(tokens), [], [], names, queries)
        sign_in_searchers(world, 8)
        print(f"gunicorn on port {port}, {cores} workers; warming up ...", flush=True)
        run_phase(world, {op: min(r, 2.0) for op, r in rates.items()}, 3, args.in_flight)

        if args.alone > 0:
            for op in OPERATIONS:
                if rates[op] <= 0:
                    continue
                # Twice its mixed rate: more samples, still short of saturation.
                print(f"{op} alone: {2 * rates[op]:g}/s for {args.alone:g} s ...", flush=True)
                tallies, wall, cost = measured(server.pid, backends, functools.partial(
                    run_phase, world, {op: 2 * rates[op]}, args.alone, args.in_flight))
                phases.append((op, tallies, wall, cost))
        print(f"mixed: {', '.join(f'{k} {v:g}/s' for k, v in rates.items())} "
              f"for {args.duration:g} s ...", flush=True)
        tallies, wall, cost = measured(server.pid, backends, lambda: run_phase(
            world, rates, args.duration, args.in_flight))
        phases.append(("mixed", tallies, wall, cost))
    finally:
        if server is not None:
            stop(server.process)
        if backends is not None:
            backends.engine.dispose()
        scratch.close()
        if not args.keep:
            shutil.rmtree(instance_dir, ignore_errors=True)

    return report(command, database, cores, setup, rates, args, phases, backends is not None)


def report(command: str, database: str, cores: int, setup: float, rates: dict[str, float],
           args: argparse.Namespace, phases: list[tuple[str, dict[str, Tally], float, Cost]],
           postgres: bool) -> int:
    _name, mixed, wall, cost = phases[-1]
    print()
    print("ContactPoint mixed load")
    print(f"  command   {command}")
    print(f"  machine   {cores} cores, {platform.machine()}, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"  database  {database}")
    print(f"  server    contactpoint serve (gunicorn), {cores} sync workers; at most "
          f"{args.in_flight} requests outstanding; setup {setup:.0f} s")
    print(f"  load      open loop, fixed arrival rates, {args.duration:g} s; latency from when "
          "each operation was due")
    print()
    print(f"  {'operation':<20} {'rate/s':>7} {'sent':>6} {'ok':>6} {'errors':>6} "
          f"{'ok/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    failures: Counter[str] = Counter()
    for op in OPERATIONS:
        tally = mixed.get(op)
        if tally is None:
            continue
        lat = tally.latencies
        print(f"  {op:<20} {rates[op]:>7g} {tally.sent:>6} {len(lat):>6} "
              f"{sum(tally.errors.values()):>6} {len(lat) / wall:>7.1f} "
              f"{percentile(lat, 0.5) * 1000:>8.0f} {percentile(lat, 0.99) * 1000:>8.0f}")
        failures.update({f"{op}: {k}": v for k, v in tally.errors.items()})
    print()
    print(row("server CPU, mixed load", f"{cost.server:.2f} s",
              f"{cost.server / wall:.2f} of {cores} cores over {wall:.1f} s"))
    if postgres:
        print(row("PostgreSQL backends' CPU, mixed load", f"{cost.database:.2f} s",
                  f"{cost.database / wall:.2f} cores"))
    other = max(0.0, cost.busy - cost.server - cost.database - cost.client)
    print(row("load generator CPU", f"{cost.client:.2f} s", f"{cost.client / wall:.2f} cores"))
    print(row("everything else on the machine", f"{other / wall:.2f} cores",
              "other people's work"))

    per_op: dict[str, float] = {}
    alone = [p for p in phases if p[0] != "mixed"]
    if alone:
        print()
        print(f"  {'alone, CPU per operation':<28} {'ok':>6} {'server ms':>10} {'db ms':>8} "
              f"{'per core/s':>11} {'p50 ms':>8}")
        for op, tallies, _wall, c in alone:
            lat = tallies[op].latencies
            failures.update({f"{op} alone: {k}": v for k, v in tallies[op].errors.items()})
            if not lat:
                continue
            each = (c.server + c.database) / len(lat)
            per_op[op] = each
            print(f"  {op:<28} {len(lat):>6} {c.server / len(lat) * 1000:>10.1f} "
                  f"{c.database / len(lat) * 1000:>8.1f} {1 / each:>11.1f} "
                  f"{percentile(lat, 0.5) * 1000:>8.0f}")
        predicted = sum(per_op.get(op, 0) * len(t.latencies) for op, t in mixed.items())
        if predicted:
            print(row("mixed CPU against the sum of the parts",
                      f"{(cost.server + cost.database) / predicted:.2f}",
                      "1.00: the operations cost the same together as alone"))

    signins = len(mixed["signin"].latencies) if "signin" in mixed else 0
    print()
    print(row(f"morning peak: {PEAK_USERS:,} sign-ins in one hour", f"{PEAK_RATE:.1f}/s"))
    if "signin" in per_op:
        need = PEAK_RATE * per_op["signin"]
        print(row("CPU per sign-in, alone (server + database)",
                  f"{per_op['signin'] * 1000:.1f} ms",
                  f"{1 / per_op['signin']:.1f} sign-ins per core-second"))
        print(row("cores busy at the peak, sign-ins alone", f"{need:.1f}"))
        print(row(f"cores to provision at {TARGET_UTILISATION:.0%} utilisation",
                  f"{math.ceil(need / TARGET_UTILISATION)}",
                  "headroom for uneven arrivals and the loss of a node"))
    if signins:
        each = (cost.server + cost.database) / signins
        need = PEAK_RATE * each
        print(row("CPU per sign-in with this mix around it", f"{each * 1000:.1f} ms",
                  "every operation of the mix, in its proportion, charged to sign-ins"))
        print(row("cores busy at the peak with the mix", f"{need:.1f}"))
        print(row(f"cores to provision at {TARGET_UTILISATION:.0%} utilisation, with the mix",
                  f"{math.ceil(need / TARGET_UTILISATION)}"))
    return report_failures(failures, "requests")


if __name__ == "__main__":
    sys.exit(main())
