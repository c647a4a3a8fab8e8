"""Sign-in throughput beside argon2id throughput, in one run.

Complete sign-ins (both steps over HTTP: GET and POST /sign-in, GET and POST
/sign-in/token) against `contactpoint serve` (granian by default, one worker
per core), and argon2id verifications with the same parameters in one process per
core. The figure that matters is the server's CPU time per sign-in against the
CPU time of the two argon2id verifications each sign-in makes (password, then
PIN): the target is at most 15% more. Throughput is printed too, but the load
generator and anything else on the machine share its cores.

Phases alternate: argon2id, sign-ins, argon2id, sign-ins, ..., argon2id, so a
change in what else runs on the machine shows as spread between the rounds.

Each round also signs in against a bare server (bench/signin_bare.py, unless
--no-bare): a Flask app of the same four requests, the same two argon2id
verifications and a TOTP check, and nothing else, under the same command line.
It is the floor under any Flask sign-in here; the difference is the service's
own work (database, lockout, audit, sessions, forms, pages, logs, metrics).

    .venv/bin/python bench/signin.py                    # SQLite (the default)
    .venv/bin/python bench/signin.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

With PostgreSQL the URL names a server and a database to connect to; the
benchmark creates a database of its own beside it and drops it afterwards.
Exits 1 if any sign-in failed. This is a benchmark, not a test: it prints.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import os
import platform
import re
import secrets
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

# Run as `python bench/signin.py`, this folder comes first on sys.path, where
# bench/tokens.py would shadow the `tokens` package: take the folder off
# (worker processes inherit the corrected path).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

TARGET_OVERHEAD = 0.15
TICKS = os.sysconf("SC_CLK_TCK")
TOTP_PERIOD = 30
CSRF_INPUT = re.compile(r"<input[^>]*\bname=\"csrf_token\"[^>]*>")
VALUE = re.compile(r"\bvalue=\"([^\"]*)\"")


# -- settings and the environment of the server ------------------------------------------


def server_env(instance_dir: Path, database_url: str) -> dict[str, str]:
    """The environment `contactpoint` runs in: the shipped defaults, this instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTPOINT_")}
    env["CONTACTPOINT_SERVICE__INSTANCE_DIR"] = str(instance_dir)
    env["CONTACTPOINT_DATABASE__URL"] = database_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def load_bench_settings(env: dict[str, str]) -> Any:
    from core.settings import load_settings

    return load_settings(environ=env)


# -- argon2id on its own ------------------------------------------------------------------


def _argon2_worker(
    params: tuple[int, int, int], seconds: float, barrier: Any, results: Any
) -> None:
    from core.settings import Argon2Settings
    from tokens.passwords import SecretHasher

    hasher = SecretHasher(Argon2Settings(*params))
    secret = "correct horse battery staple 42"
    stored = hasher.hash(secret)
    hasher.verify(stored, secret)  # warm: the first call pays for allocator setup
    barrier.wait()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    count = 0
    while True:
        if not hasher.verify(stored, secret):  # the very call the sign-in service makes
            results.put(("error", "argon2id verification failed"))
            return
        count += 1
        if time.perf_counter() - wall0 >= seconds:
            break
    results.put((count, time.perf_counter() - wall0, time.process_time() - cpu0))


@dataclass(frozen=True)
class Argon2Run:
    processes: int
    verifications: int
    per_second: float  # all processes together
    cpu_per_verification: float  # seconds


def measure_argon2(params: tuple[int, int, int], processes: int, seconds: float) -> Argon2Run:
    """`processes` verifying at once for `seconds`; rates summed, CPU from each process."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_argon2_worker, args=(params, seconds, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    for outcome in outcomes:
        if outcome[0] == "error":
            raise SystemExit(f"argon2id measurement: {outcome[1]}")
    count = sum(int(o[0]) for o in outcomes)
    rate = sum(o[0] / o[1] for o in outcomes)
    cpu = sum(float(o[2]) for o in outcomes)
    return Argon2Run(processes, count, rate, cpu / count)


# -- people, made through the services with production argon2 parameters -------------------


_pool_hasher: Any = None


def _pool_init(params: tuple[int, int, int]) -> None:
    global _pool_hasher
    from core.settings import Argon2Settings
    from tokens.passwords import SecretHasher

    _pool_hasher = SecretHasher(Argon2Settings(*params))


def _pool_hash(secret: str) -> str:
    hashed: str = _pool_hasher.hash(secret)
    return hashed


@dataclass
class Person:
    username: str
    password: str
    pin: str
    totp: Any  # pyotp.TOTP
    last_step: int = -1  # the TOTP step of the last code used: each is accepted once
    password_hash: str = ""  # what the bare server checks (bench/signin_bare.py)
    pin_hash: str = ""


def make_people(settings: Any, count: int, processes: int) -> list[Person]:
    """Like tests/factories.py World.member, with the settings' (production) argon2."""
    import pyotp

    from core.audit import AuditContext
    from directory.models import OrganisationKind, PersonStatus, Role
    from idp.container import Container
    from tokens.attempts import guard_for
    from tokens.models import PasswordCredential, PinCredential, TokenState

    a = settings.argon2
    params = (a.memory_kib, a.time_cost, a.parallelism)
    passwords = [f"bench {secrets.token_hex(6)} password {i}" for i in range(count)]
    pins = [f"{secrets.randbelow(10**6):06d}" for _ in range(count)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx, initializer=_pool_init,
                             initargs=(params,)) as pool:
        hashes = list(pool.map(_pool_hash, passwords + pins, chunksize=16))
    password_hashes, pin_hashes = hashes[:count], hashes[count:]

    container = Container(settings)
    people: list[Person] = []
    try:
        with container.unit(AuditContext(actor_label="bench", client_address="bench")) as u:
            organisation = u.directory.create_organisation(
                code="BENCH", name="Benchmark Borough Council",
                kind=OrganisationKind.LOCAL_AUTHORITY, accredited=True,
            )
            u.commit()
            today = container.clock.today()
            for i in range(count):
                now = container.clock.now()
                username = f"bench.user{i:05d}"
                person = u.directory.create_person(
                    given_name="Bench", family_name=f"User{i:05d}",
                    work_email=f"bench{i}@example.org", work_phone=None,
                    clearance_expires_on=today + timedelta(days=900),
                    training_expires_on=today + timedelta(days=900),
                    username=username,
                )
                u.directory.add_position(
                    person, organisation, Role.PRACTITIONER, today - timedelta(days=30)
                )
                person.status = PersonStatus.ACTIVE
                u.session.add(PasswordCredential(
                    person_id=person.id, hash=password_hashes[i], set_at=now
                ))
                u.session.add(PinCredential(person_id=person.id, hash=pin_hashes[i], set_at=now))
                token, secret = u.otp.new_soft_token(person.id, organisation.id)
                token.state = TokenState.ACTIVE
                token.activated_at = now
                # Steady state: a person who has signed in before has a guard row.
                guard_for(u.session, person.id)
                if i % 200 == 199:
                    u.commit()
                people.append(Person(
                    username, passwords[i], pins[i],
                    pyotp.TOTP(secret, digits=settings.totp.digits,
                               interval=settings.totp.period_seconds),
                    password_hash=password_hashes[i], pin_hash=pin_hashes[i],
                ))
            u.commit()
    finally:
        container.dispose()
    return people


# -- the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process and its reaped children, in seconds."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS


def tree_cpu_seconds(master: int) -> float:
    """The gunicorn master, its live workers, and (via cutime) workers that exited."""
    return cpu_seconds(master) + sum(cpu_seconds(w) for w in children(master))


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    workers: int

    @property
    def pid(self) -> int:
        return self.process.pid


def start_server(env: dict[str, str], instance_dir: Path, workers: int, kind: str) -> Server:
    contactpoint = Path(sys.executable).with_name("contactpoint")
    port = free_port()
    command = [str(contactpoint), "serve", "--bind", f"127.0.0.1:{port}", "--server", kind]
    return _launch(command, env, instance_dir / "server.log", port, workers, "/healthz")


def start_bare_server(people: list[Person], instance_dir: Path, workers: int, kind: str
                      ) -> Server:
    """bench/signin_bare.py under the command line `contactpoint serve` runs."""
    from idp.cli import SERVE_THREADS, server_command

    here = Path(__file__).resolve().parent
    people_file = instance_dir / "bare-people.json"
    people_file.write_text(json.dumps({
        p.username: [p.password_hash, p.pin_hash, p.totp.secret] for p in people}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTPOINT_")}
    # The project first, so `tokens` is the package and not bench/tokens.py.
    env.update(BARE_PEOPLE=str(people_file), BARE_SECRET_KEY=secrets.token_hex(32),
               PYTHONPATH=os.pathsep.join([str(here.parent), str(here)]))
    port = free_port()
    command = server_command(kind, f"127.0.0.1:{port}", workers, SERVE_THREADS,
                             app="signin_bare:app")
    return _launch(command, env, instance_dir / "bare.log", port, workers, "/sign-in",
                   cwd=here)


def _launch(command: list[str], env: dict[str, str], log: Path, port: int, workers: int,
            probe: str, cwd: Path | None = None) -> Server:
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out,
                                   stderr=subprocess.STDOUT)
    server = Server(process, port, log, workers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command[0]} exited with {process.returncode}:\n{tail(log)}")
        if len(children(process.pid)) >= workers and answers(port, probe):
            return server
        time.sleep(0.2)
    stop_server(server)
    raise SystemExit(f"{command[0]} did not answer {probe} within 60 s:\n{tail(log)}")


def answers(port: int, path: str) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- the load generator ---------------------------------------------------------------------


class SignInFailure(Exception):
    pass


class Browser:
    """One sign-in's cookie jar and connection; http.client reopens the connection
    after each response, as gunicorn's sync workers close it."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.jar: dict[str, str] = {}

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        headers = {"User-Agent": "contactpoint-bench/1"}
        if self.jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as error:
            self.conn.close()
            raise SignInFailure(f"{method} {path}: {type(error).__name__}") from error
        for raw in response.headers.get_all("Set-Cookie") or []:
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(raw)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = morsel.value
        return response.status, urlsplit(response.headers.get("Location", "")).path, text


def csrf_token(page: str, where: str) -> str:
    tag = CSRF_INPUT.search(page)
    value = VALUE.search(tag.group(0)) if tag else None
    if value is None:
        raise SignInFailure(f"{where}: no csrf_token in the page")
    return value.group(1)


def expect(status: int, wanted: int, location: str, wanted_location: str | None, what: str) -> None:
    if status != wanted or (wanted_location is not None and location != wanted_location):
        got = f"{status} -> {location}" if location else str(status)
        raise SignInFailure(f"{what}: got {got}")


def sign_in(port: int, person: Person) -> int:
    """Both steps, as a browser would; returns the TOTP step of the code used."""
    browser, step = signed_in_browser(port, person)
    browser.conn.close()
    return step


def signed_in_browser(port: int, person: Person) -> tuple[Browser, int]:
    """Both steps; the browser, holding the session cookie, and the TOTP step used."""
    browser = Browser(port)
    try:
        status, _, page = browser.request("GET", "/sign-in")
        expect(status, 200, "", None, "GET /sign-in")
        form = {
            "csrf_token": csrf_token(page, "GET /sign-in"),
            "username": person.username,
            "password": person.password,
        }
        status, location, _ = browser.request("POST", "/sign-in", form)
        expect(status, 302, location, "/sign-in/token", "POST /sign-in")
        status, _, page = browser.request("GET", "/sign-in/token")
        expect(status, 200, "", None, "GET /sign-in/token")
        token = csrf_token(page, "GET /sign-in/token")
        now = time.time()
        form = {"csrf_token": token, "code": person.totp.at(now), "pin": person.pin}
        status, location, _ = browser.request("POST", "/sign-in/token", form)
        expect(status, 302, location, "/", "POST /sign-in/token")
        if not browser.jar:
            raise SignInFailure("POST /sign-in/token: no session cookie")
        return browser, int(now) // TOTP_PERIOD
    except BaseException:
        browser.conn.close()
        raise


class People:
    """Hands out people so that nobody's code is offered twice in one TOTP step.

    A code is accepted once per person per step, so people go round in a queue;
    if the one at the front has used the current step, everyone behind has too,
    and the generator waits for the next step (counted: it means too few people).
    """

    def __init__(self, people: list[Person]) -> None:
        self.queue = deque(people)
        self.lock = threading.Lock()
        self.waited = 0.0

    def take(self) -> Person:
        while True:
            with self.lock:
                step = int(time.time()) // TOTP_PERIOD
                if self.queue and self.queue[0].last_step < step:
                    return self.queue.popleft()
                pause = (step + 1) * TOTP_PERIOD - time.time() + 0.01
                self.waited += pause
            time.sleep(max(pause, 0.01))

    def give_back(self, person: Person) -> None:
        with self.lock:
            self.queue.append(person)


@dataclass
class LoadResult:
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return len(self.latencies)


def run_load(port: int, people: People, concurrency: int, seconds: float) -> LoadResult:
    result = LoadResult()
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def loop() -> None:
        while time.perf_counter() < stop_at:
            person = people.take()
            started = time.perf_counter()
            try:
                step = sign_in(port, person)
            except Exception as failure:  # counted and reported, never lost with the thread
                person.last_step = int(time.time()) // TOTP_PERIOD + 1  # unknown: be careful
                reason = str(failure) if isinstance(failure, SignInFailure) else repr(failure)
                with lock:
                    result.failures[reason] += 1
            else:
                person.last_step = step
                with lock:
                    result.latencies.append(time.perf_counter() - started)
            finally:
                people.give_back(person)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.wall = time.perf_counter() - began
    return result


# -- the report ------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def row(label: str, value: str, note: str = "") -> str:
    return f"  {label:<46} {value:>14}  {note}".rstrip()


class PgBackends:
    """CPU of the PostgreSQL backends serving the benchmark's database (same machine)."""

    def __init__(self, admin_url: str, name: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.name = name

    def cpu(self) -> dict[int, float]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            pids = conn.scalars(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :name"),
                {"name": self.name},
            ).all()
        return {int(pid): cpu_seconds(int(pid)) for pid in pids}

    @staticmethod
    def spent(before: dict[int, float], after: dict[int, float]) -> float:
        """Backends that ended in between are lost; the pool keeps them open."""
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def printable_command() -> str:
    """How this benchmark was started, with any password in a URL masked."""
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    return re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", command)


def bench_database(scratch: ExitStack, server_url: str, folder: Path, prefix: str
                   ) -> tuple[str, PgBackends | None, str]:
    """(URL, its backends' CPU reader, a description): with a PostgreSQL server
    URL, a database of the benchmark's own beside it, dropped when `scratch`
    closes; otherwise SQLite in `folder`."""
    if not server_url:
        return (f"sqlite:///{folder / 'contactpoint.db'}", None,
                "sqlite (WAL), in a temporary folder")
    from idp.database import scratch_database

    url, name = scratch.enter_context(scratch_database(server_url, prefix))
    return url, PgBackends(server_url, name), f"postgresql, database {name} (dropped afterwards)"


@dataclass
class Round:
    """One load phase, bracketed by argon2id measurements before and after it."""

    load: LoadResult
    server_cpu: float
    client_cpu: float
    busy_cpu: float  # every process on the machine
    db_cpu: float  # PostgreSQL backends serving the benchmark's database
    argon2_before: Argon2Run
    argon2_after: Argon2Run | None = None

    @property
    def verify_cpu(self) -> float:
        after = self.argon2_after or self.argon2_before
        return (self.argon2_before.cpu_per_verification + after.cpu_per_verification) / 2

    @property
    def signin_cpu(self) -> float:
        return self.server_cpu / self.load.ok if self.load.ok else math.nan

    @property
    def overhead(self) -> float:
        return self.signin_cpu / (2 * self.verify_cpu) - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds of sign-in load in all, split over the rounds (default 30)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="load phases, each between two argon2id phases, so that a change "
                             "in what else the machine does shows as spread (default 3)")
    parser.add_argument("--concurrency", type=int, default=6,
                        help="sign-ins in flight at once (default 6)")
    parser.add_argument("--argon2-seconds", type=float, default=3.0,
                        help="seconds of each argon2id phase (default 3)")
    parser.add_argument("--people", type=int, default=0,
                        help="people to create (default: enough that none is needed twice "
                             "within 30 s at the argon2id-bound rate)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of unmeasured sign-ins first (default 3)")
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL server URL (a database is created beside the one "
                             "named and dropped afterwards); default SQLite")
    parser.add_argument("--keep", action="store_true",
                        help="keep the instance folder (and its server.log)")
    parser.add_argument("--server", choices=["granian", "gunicorn"], default=None,
                        help="the WSGI server `contactpoint serve` runs (default: its "
                             "default, granian)")
    parser.add_argument("--no-bare", action="store_true",
                        help="skip the bare server's round (bench/signin_bare.py), the floor "
                             "under any Flask sign-in on the same server")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.concurrency < 1:
        parser.error("--rounds, --duration and --concurrency must be positive")

    cores = os.cpu_count() or 1
    command = printable_command()
    instance_dir = Path(tempfile.mkdtemp(prefix="cp-bench-"))
    scratch = ExitStack()
    backends: PgBackends | None = None
    server: Server | None = None
    rounds: list[Round] = []
    bare_server: Server | None = None
    bare_rounds: list[Round] = []
    try:
        database_url, backends, database = bench_database(
            scratch, args.database_url, instance_dir, "cp_bench")
        env = server_env(instance_dir, database_url)
        settings = load_bench_settings(env)
        a = settings.argon2
        params = (a.memory_kib, a.time_cost, a.parallelism)
        print(f"command: {command}", flush=True)

        print(f"argon2id: {cores} processes for {args.argon2_seconds:g} s ...", flush=True)
        first_argon2 = measure_argon2(params, cores, args.argon2_seconds)

        upgrade = subprocess.run(
            [str(Path(sys.executable).with_name("contactpoint")), "db", "upgrade"],
            env=env, capture_output=True, text=True, check=False,
        )
        if upgrade.returncode != 0:
            raise SystemExit(f"contactpoint db upgrade failed:\n{upgrade.stderr}")

        bound = first_argon2.per_second / 2  # sign-ins/s if argon2id were all they cost
        count = args.people or math.ceil(bound * TOTP_PERIOD * 1.2) + 4 * args.concurrency
        print(f"creating {count} people ...", flush=True)
        setup_started = time.perf_counter()
        people = People(make_people(settings, count, cores))
        setup_seconds = time.perf_counter() - setup_started

        from idp.cli import SERVERS

        args.server = args.server or SERVERS[0]
        server = start_server(env, instance_dir, cores, args.server)
        print(f"{args.server} on port {server.port}: master {server.pid}, workers "
              f"{' '.join(map(str, children(server.pid)))}; warming up ...", flush=True)
        warm = run_load(server.port, people, args.concurrency, args.warmup)
        if not args.no_bare:
            bare_server = start_bare_server(list(people.queue), instance_dir, cores, args.server)
            print(f"bare server ({args.server}, bench/signin_bare.py) on port "
                  f"{bare_server.port}; warming up ...", flush=True)
            warm.failures.update(
                run_load(bare_server.port, people, args.concurrency, args.warmup).failures)

        def measured(target: Server, seconds: float, argon2: Argon2Run) -> Round:
            db0 = backends.cpu() if backends and target is server else {}
            cpu0, busy0, self0 = tree_cpu_seconds(target.pid), machine_busy(), os.times()
            load = run_load(target.port, people, args.concurrency, seconds)
            cpu1, busy1, self1 = tree_cpu_seconds(target.pid), machine_busy(), os.times()
            db1 = backends.cpu() if backends and target is server else {}
            client = (self1.user + self1.system) - (self0.user + self0.system)
            return Round(load, cpu1 - cpu0, client, (busy1[0] - busy0[0]) / TICKS,
                         PgBackends.spent(db0, db1), argon2)

        # Each round: the service, then (unless --no-bare) the bare server, both
        # between the same two argon2id phases, so the machine's drift over
        # minutes falls on both alike.
        argon2 = first_argon2
        phase = args.duration / args.rounds
        for number in range(args.rounds):
            if number:
                print(f"argon2id: {cores} processes for {args.argon2_seconds:g} s ...", flush=True)
                argon2 = measure_argon2(params, cores, args.argon2_seconds)
                rounds[-1].argon2_after = argon2
                if bare_rounds:
                    bare_rounds[-1].argon2_after = argon2
            print(f"round {number + 1}/{args.rounds}: {phase:g} s of sign-ins, "
                  f"{args.concurrency} at a time ...", flush=True)
            rounds.append(measured(server, phase, argon2))
            if bare_server is not None:
                print(f"round {number + 1}/{args.rounds}: the bare server, {phase:g} s ...",
                      flush=True)
                bare_rounds.append(measured(bare_server, phase, argon2))
        workers = children(server.pid)
        worker_rss = [status_kib(w, "VmRSS") for w in workers]
        worker_hwm = [status_kib(w, "VmHWM") for w in workers]
        master_rss = status_kib(server.pid, "VmRSS")
        master = server.pid
        stop_server(server)
        if bare_server is not None:
            stop_server(bare_server)

        print(f"argon2id: {cores} processes for {args.argon2_seconds:g} s ...", flush=True)
        rounds[-1].argon2_after = measure_argon2(params, cores, args.argon2_seconds)
        if bare_rounds:
            bare_rounds[-1].argon2_after = rounds[-1].argon2_after
    finally:
        for running in (server, bare_server):
            if running is not None:
                stop_server(running)
        if backends is not None:
            backends.engine.dispose()
        scratch.close()  # drops the scratch PostgreSQL database, if one was made
        if not args.keep:
            shutil.rmtree(instance_dir, ignore_errors=True)

    argon2_runs = [rounds[0].argon2_before] + [r.argon2_after for r in rounds if r.argon2_after]
    verify_rate = statistics.fmean(run.per_second for run in argon2_runs)
    verify_cpu = statistics.fmean(run.cpu_per_verification for run in argon2_runs)
    latencies = [x for r in rounds for x in r.load.latencies]
    ok = len(latencies)
    wall = sum(r.load.wall for r in rounds)
    server_cpu = sum(r.server_cpu for r in rounds)
    client_cpu = sum(r.client_cpu for r in rounds)
    db_cpu = sum(r.db_cpu for r in rounds)
    other_cpu = max(0.0, sum(r.busy_cpu for r in rounds) - server_cpu - client_cpu - db_cpu)
    signin_rate = ok / wall if wall else 0.0
    signin_cpu = server_cpu / ok if ok else math.nan
    overhead = signin_cpu / (2 * verify_cpu) - 1
    throughput_ratio = signin_rate / (verify_rate / 2)
    failures: Counter[str] = Counter(warm.failures)
    for r in rounds:
        failures.update(r.load.failures)
    mib = 1024
    spread = sorted(r.overhead for r in rounds)

    print()
    print("ContactPoint sign-in benchmark")
    print(f"  command   {command}")
    print(f"  machine   {cores} cores, {platform.machine()}, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"  database  {database}")
    print(f"  server    contactpoint serve --server {args.server}, {cores} workers; "
          f"{args.concurrency} sign-ins in flight")
    print(f"  argon2id  m={a.memory_kib} KiB, t={a.time_cost}, p={a.parallelism} "
          "(the shipped settings)")
    print(f"  setup     {count} people in {setup_seconds:.1f} s "
          f"({2 * count} argon2id hashes in {cores} processes)")
    print(f"  phases    {len(argon2_runs)} x {args.argon2_seconds:g} s argon2id, alternating "
          f"with {args.rounds} x {phase:g} s sign-ins (after {args.warmup:g} s warm-up)")
    print()
    print(row("argon2id, one process per core", ""))
    print(row("verifications/s, all cores", f"{verify_rate:.1f}",
              "phases: " + ", ".join(f"{run.per_second:.1f}" for run in argon2_runs)))
    print(row("CPU per verification", f"{verify_cpu * 1000:.2f} ms",
              "phases: " + ", ".join(f"{run.cpu_per_verification * 1000:.2f}"
                                     for run in argon2_runs)))
    print(row("verifications per CPU-second", f"{1 / verify_cpu:.1f}"))
    print(row("bound: sign-ins/s if argon2id were all", f"{verify_rate / 2:.1f}",
              "verifications/s / 2"))
    print()
    print(row("sign-ins: both steps over HTTP, 4 requests", ""))
    print(row("complete sign-ins", f"{ok}", f"in {wall:.1f} s (+{warm.ok} in warm-up)"))
    print(row("failed sign-ins", f"{sum(failures.values())}", "warm-up included"))
    print(row("sign-ins/s", f"{signin_rate:.1f}"))
    if ok:
        print(row("latency p50 / p99", f"{percentile(latencies, 0.5) * 1000:.0f} / "
                  f"{percentile(latencies, 0.99) * 1000:.0f} ms",
                  f"whole sign-in; mean {statistics.fmean(latencies) * 1000:.0f} ms"))
    print(row("server CPU, master + workers", f"{server_cpu:.2f} s",
              f"{server_cpu / wall:.2f} of {cores} cores"))
    print(row("server CPU per sign-in", f"{signin_cpu * 1000:.2f} ms"))
    print(row("sign-ins per server CPU-second", f"{1 / signin_cpu:.1f}"))
    if backends:
        print(row("PostgreSQL backends' CPU per sign-in", f"{db_cpu / max(ok, 1) * 1000:.2f} ms",
                  "not in the server CPU above"))
    print(row("load generator CPU per sign-in", f"{client_cpu / max(ok, 1) * 1000:.2f} ms",
              f"{client_cpu / wall:.2f} cores, taken from the server's"))
    print(row("other processes on the machine", f"{other_cpu / wall:.2f} cores",
              "during the sign-in phases"))
    if people.waited:
        print(row("waited for a fresh TOTP step", f"{people.waited:.1f} s",
                  "too few people: raise --people"))
    print()
    print(row("ratio", ""))
    print(row("sign-ins/s / (verifications/s / 2)", f"{throughput_ratio:.3f}",
              f"throughput: {(1 / throughput_ratio - 1) * 100:+.0f}%, load generator and "
              "other processes included"))
    print(row("CPU per sign-in / CPU of 2 verifications", f"{signin_cpu / (2 * verify_cpu):.3f}",
              f"{signin_cpu * 1000:.1f} ms / {2 * verify_cpu * 1000:.1f} ms"))
    verdict = "met" if overhead <= TARGET_OVERHEAD else "NOT met"
    print(row("sign-in CPU over its 2 argon2id", f"{overhead * 100:+.1f} %",
              f"target <= +{TARGET_OVERHEAD * 100:.0f} %: {verdict}; rounds "
              + ", ".join(f"{x * 100:+.1f}" for x in spread)))
    if backends and ok:
        with_db = (server_cpu + db_cpu) / ok / (2 * verify_cpu) - 1
        print(row("the same, PostgreSQL backends included", f"{with_db * 100:+.1f} %"))
    if bare_rounds:
        bare_ok = sum(r.load.ok for r in bare_rounds)
        bare_cpu = sum(r.server_cpu for r in bare_rounds) / bare_ok if bare_ok else math.nan
        bare_overhead = bare_cpu / (2 * verify_cpu) - 1
        print()
        print(row("the floor: a bare Flask sign-in, same server", "",
                  "bench/signin_bare.py: the same 4 requests, 2 argon2id, a TOTP check"))
        print(row("complete sign-ins", f"{bare_ok}",
                  f"in {sum(r.load.wall for r in bare_rounds):.1f} s, a phase after each of ours"))
        print(row("server CPU per sign-in", f"{bare_cpu * 1000:.2f} ms"))
        print(row("bare sign-in CPU over its 2 argon2id", f"{bare_overhead * 100:+.1f} %",
                  "rounds " + ", ".join(f"{r.overhead * 100:+.1f}" for r in bare_rounds)))
        print(row("ours over the bare sign-in", f"{(signin_cpu - bare_cpu) * 1000:.1f} ms",
                  "the service's own work a sign-in; rounds " + ", ".join(
                      f"{(ours.signin_cpu - floor.signin_cpu) * 1000:.1f}"
                      for ours, floor in zip(rounds, bare_rounds, strict=True))))
        for r in bare_rounds:
            failures.update(r.load.failures)
    print()
    print(row("resident memory (VmRSS) after the run", ""))
    for pid, rss, hwm in zip(workers, worker_rss, worker_hwm, strict=True):
        print(row(f"worker {pid}", f"{rss / mib:.1f} MiB", f"peak {hwm / mib:.1f} MiB"))
    print(row(f"master {master}", f"{master_rss / mib:.1f} MiB"))
    return report_failures(failures, "sign-ins")


def report_failures(failures: Counter[str], what: str) -> int:
    """Print what failed, by reason; the exit status a benchmark ends with."""
    if not failures:
        return 0
    print()
    print(f"FAILED {what}, by reason:")
    for reason, times in failures.most_common():
        print(f"  {times:>6}  {reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
