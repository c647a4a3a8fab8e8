"""Token-endpoint throughput beside panva's oidc-provider, in one run.

POST /oauth2/token with `client_credentials` and with `refresh_token` (rotating:
each connection chains its own refresh token), 16 requests in flight, against
`contactpoint serve` (granian by default, one worker per core) and against
oidc-provider (the npm package pinned in bench/oidc_provider/package.json,
configured alike by bench/oidc_provider/server.mjs), both on loopback, both
driven by the same load generator: wrk, with a Lua script this benchmark writes.

The figure that matters is requests per CPU-second of the server's own
processes (the server's master and workers; the node process), read from /proc
before and after each measured window. Targets: at least as many per
CPU-second as oidc-provider, and never under 1,200. Throughput is printed too,
but wrk and anything else on the machine share its cores.

Scenarios alternate: each round runs every (grant, server) pair once, after a
short unmeasured warm-up of the same pair, the servers' order swapped from one
round to the next, so that a change in what else runs on the machine shows in
both servers' figures.

    .venv/bin/python bench/oidc.py                    # SQLite (the default)
    .venv/bin/python bench/oidc.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/oidc.py --their-store memory   # oidc-provider in memory only

oidc-provider keeps its grants in memory by default, and says at start that
this adapter is development-only and must be replaced to keep grants over a
restart and share them between processes. So it runs twice, side by side:
"oidc-provider" with that default, and "oidc-provider+db" with a SQLite file
set up like ours and a findAccount that reads the person's standing there, as
our refresh does: the configuration alike, both sides durable.

With PostgreSQL the URL names a server and a database to connect to; the
benchmark creates a database of its own beside it and drops it afterwards.
Needs wrk (`apt-get install wrk`), node and npm (it runs `npm install` in
bench/oidc_provider when node_modules is missing). Exits 1 if any request
failed (a non-2xx answer, or a refresh answer without a new refresh token).
This is a benchmark, not a test: it prints.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

# Run as `python bench/oidc.py`, this folder comes first on sys.path, where
# bench/tokens.py would shadow the `tokens` package: take the folder off.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

TARGET_PER_CPU_SECOND = 1200
TICKS = os.sysconf("SC_CLK_TCK")
PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
GRANTS = ("client_credentials", "refresh_token")
OURS, THEIRS, THEIRS_DB, BARE = "contactpoint", "oidc-provider", "oidc-provider+db", "bare server"
# oidc-provider's stores: its default adapter in memory, and a SQLite file like ours.
STORES = {"memory": THEIRS, "sqlite": THEIRS_DB}
TOKEN_PATH = "/oauth2/token"


# -- settings and the environment of our server ----------------------------------------


def server_env(instance_dir: Path, database_url: str, port: int) -> dict[str, str]:
    """The environment `contactpoint` runs in: the shipped defaults, this instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTPOINT_")}
    env["CONTACTPOINT_SERVICE__INSTANCE_DIR"] = str(instance_dir)
    env["CONTACTPOINT_DATABASE__URL"] = database_url
    # The issuer is the base URL: tokens name the server wrk talks to.
    env["CONTACTPOINT_SERVICE__BASE_URL"] = f"http://127.0.0.1:{port}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def load_bench_settings(env: dict[str, str]) -> Any:
    from core.settings import load_settings

    return load_settings(environ=env)


# -- what our server needs: a client, people, grants and their refresh tokens ---------------


@dataclass
class Credentials:
    client_id: str
    client_secret: str
    # One list of 16 (concurrency) fresh refresh tokens for every wrk run of the
    # refresh scenario: a run that stops mid-request leaves that connection's
    # token rotated server-side with the answer unread, so nothing is reused.
    refresh_sets: list[list[str]] = field(default_factory=list)
    # Where there are none left: a fresh set, minted right away (oidc-provider's).
    mint: Callable[[], list[str]] | None = None

    def next_refresh_set(self) -> list[str]:
        if self.refresh_sets:
            return self.refresh_sets.pop(0)
        if self.mint is None:
            raise SystemExit("no refresh tokens left")
        return self.mint()

    @property
    def basic(self) -> str:
        return base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()


def seed_ours(settings: Any, people: int, refresh_sets: int, concurrency: int) -> Credentials:
    """Like tests/factories.py World.organisation and World.member, without the
    argon2id credentials nobody here signs in with; then a client registered and
    approved through the registry, and grants as a code exchange leaves them."""
    from core.audit import AuditContext
    from directory.models import OrganisationKind, PersonStatus, Role
    from idp.container import Container

    container = Container(settings)
    try:
        with container.unit(AuditContext(actor_label="bench", client_address="bench")) as u:
            organisation = u.directory.create_organisation(
                code="BENCH", name="Benchmark Borough Council",
                kind=OrganisationKind.LOCAL_AUTHORITY, accredited=True,
            )
            u.commit()
            today = container.clock.today()
            persons = []
            for i in range(people):
                person = u.directory.create_person(
                    given_name="Bench", family_name=f"User{i:05d}",
                    work_email=f"bench{i}@example.org", work_phone=None,
                    clearance_expires_on=today + timedelta(days=900),
                    training_expires_on=today + timedelta(days=900),
                    username=f"bench.user{i:05d}",
                )
                u.directory.add_position(
                    person, organisation, Role.PRACTITIONER, today - timedelta(days=30)
                )
                person.status = PersonStatus.ACTIVE
                persons.append(person)
            u.commit()

            client_id, secret = register_client(u, organisation.id)
            sets = [refresh_tokens(container, u, client_id, persons, concurrency,
                                   start=s * concurrency) for s in range(refresh_sets)]
            return Credentials(client_id, secret, sets)
    finally:
        container.dispose()


def register_client(u: Any, organisation_id: int) -> tuple[str, str]:
    """A confidential client for every grant, registered and approved through the
    registry; the signing keys made once here rather than raced for by the workers."""
    from idp.cli import operator
    from idp.oidc.clients import Registration

    client, secret = u.clients.register(operator(), Registration(
        organisation_id=organisation_id, name="Benchmark client",
        redirect_uris=["https://rp.example.org/cb"],
        scopes=["openid", "profile", "admin"],
        grant_types=["client_credentials", "authorization_code", "refresh_token"],
    ), "bench")
    assert secret is not None
    u.clients.approve(operator(), client.client_id, "bench")
    u.commit()
    if u.key_rotation.ensure():
        u.commit()
    return client.client_id, secret


def refresh_tokens(container: Any, u: Any, client_id: str, persons: list[Any],
                   count: int, start: int = 0) -> list[str]:
    """`count` grants, one a person round the list from `start`, as a code
    exchange leaves them, and the refresh token it would have handed out for each."""
    from idp.oidc.models import Grant

    now = container.clock.now()
    issuer = container.settings.issuer
    values = []
    for c in range(count):
        person = persons[(start + c) % len(persons)]
        grant = Grant(
            client_id=client_id, person_id=person.id, auth_session_id=None,
            person_epoch=person.security_epoch, scope="openid profile", acr="AAL2",
            amr=["pwd", "otp", "pin"], auth_time=now, nonce=None,
            sid=secrets.token_urlsafe(16), resource=f"{issuer}/api/v1",
            created_at=now, expires_at=now + timedelta(hours=12),
            refresh_counter=0,
        )
        u.session.add(grant)
        u.session.flush()
        # The token a code exchange would have handed out (idp.oidc.provider:
        # the MAC of the grant's current counter).
        mac = container.digester.digest(f"refresh|{grant.id}|0|{grant.sid}")
        values.append(f"rt.{grant.id}.0.{mac}")
    u.commit()
    return values


# -- processes and their CPU time, from /proc -------------------------------------------------


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
    """utime+stime of the process (all its threads) and its reaped children, in seconds."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS


def tree_cpu_seconds(root: int) -> float:
    """The process, its live descendants, and (via cutime) those that exited."""
    total = cpu_seconds(root)
    for child in children(root):
        total += tree_cpu_seconds(child)
    return total


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


ACCESS_LOG = re.compile(r'^\S+ - \S+ \[[^\]]+\] "[A-Z]+ ')


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log, less gunicorn's access log (one line a request)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join([line for line in text if not ACCESS_LOG.match(line)][-lines:])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path  # stderr (and for gunicorn stdout, the access log too)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return status_kib(self.pid, "VmRSS") + sum(
            status_kib(c, "VmRSS") for c in children(self.pid))


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(port: int, method: str, path: str) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request(method, path)
        status = conn.getresponse().status
        conn.close()
        return status < 500
    except OSError:
        return False


def _launch(name: str, command: list[str], env: dict[str, str], log: Path, port: int,
            workers: int, probe: str, cwd: Path | None = None) -> Server:
    """Start a server of `workers` worker processes and wait for `probe` to answer."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode}:\n{tail(log)}")
        if len(children(process.pid)) >= workers and answers(port, "GET", probe):
            return Server(name, process, port, log)
        time.sleep(0.2)
    stop(process)
    raise SystemExit(f"{name} did not answer {probe} within 60 s:\n{tail(log)}")


def start_ours(env: dict[str, str], instance_dir: Path, port: int, workers: int,
               server_name: str = "gunicorn") -> Server:
    contactpoint = Path(sys.executable).with_name("contactpoint")
    command = [str(contactpoint), "serve", "--bind", f"127.0.0.1:{port}", "--server", server_name]
    return _launch(OURS, command, env, instance_dir / "server.log", port, workers, "/healthz")


def start_bare(work_dir: Path, port: int, workers: int, server_name: str,
               concurrency: int) -> tuple[Server, Credentials]:
    """bench/oidc_bare.py under the command line `contactpoint serve` runs: the
    ceiling of that server for a Python token answer (see that module)."""
    from idp.cli import SERVE_THREADS, server_command

    here = Path(__file__).resolve().parent
    creds = Credentials("bare-client", secrets.token_urlsafe(32),
                        mint=lambda: [secrets.token_urlsafe(32) for _ in range(concurrency)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTPOINT_")}
    env.update(BARE_CLIENT_ID=creds.client_id, BARE_CLIENT_SECRET=creds.client_secret,
               BARE_ISSUER=f"http://127.0.0.1:{port}",
               # oidc_bare from bench/; idp (gunicorn's config module) from the project
               PYTHONPATH=os.pathsep.join([str(here), str(here.parent)]))
    command = server_command(server_name, f"127.0.0.1:{port}", workers, SERVE_THREADS,
                             app="oidc_bare:app")
    server = _launch(BARE, command, env, work_dir / "bare.log", port, workers, "/", cwd=here)
    return server, creds


def npm_install() -> None:
    modules = PROVIDER_DIR / "node_modules"
    if (modules / "oidc-provider").is_dir() and (modules / "better-sqlite3").is_dir():
        return
    print("npm install in bench/oidc_provider ...", flush=True)
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=PROVIDER_DIR,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"npm install failed:\n{done.stdout}\n{done.stderr}")


def start_theirs(work_dir: Path, port: int, concurrency: int,
                 store: str = "memory") -> tuple[Server, Credentials]:
    """node server.mjs; its refresh tokens are minted on request, just before each
    run, as its in-memory adapter (an LRU cache) evicts grants left untouched.
    With store "sqlite" its models live in a SQLite file of the work folder
    (bench/oidc_provider/sqlite_adapter.mjs)."""
    name = STORES[store]
    log = work_dir / f"{name}.log"
    command = ["node", "server.mjs", str(port), "0"]
    env = dict(os.environ)
    env.pop("STORE", None)
    if store == "sqlite":
        env["STORE"] = str(work_dir / "oidc-provider.db")
    with log.open("wb") as err:
        process = subprocess.Popen(command, cwd=PROVIDER_DIR, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=err, env=env)
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout
    line = stdout.readline()  # printed once listening (start-up is quick)
    if not line:
        process.wait(timeout=10)
        raise SystemExit(f"oidc-provider exited with {process.returncode}:\n{tail(log)}")
    started = json.loads(line)

    def mint() -> list[str]:
        stdin.write(f"{concurrency}\n".encode())
        stdin.flush()
        tokens: list[str] = json.loads(stdout.readline())["refresh_tokens"]
        return tokens

    return Server(name, process, port, log), Credentials(
        started["client_id"], started["client_secret"], mint=mint)


def code_version() -> str:
    """The commit the server runs, and whether the work tree differs from it."""
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "core", "idp",
                            "directory", "tokens", "config"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return f"{head or 'unknown'}{' with uncommitted changes' if dirty else ''}"


def versions() -> tuple[str, str]:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    package = json.loads(
        (PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json").read_text())
    return node.stdout.strip(), package["version"]


# -- the load generator: wrk and a Lua script ----------------------------------------------------

LUA = r"""
-- Written by bench/oidc.py for one run of wrk; one connection per thread.
local grant = "%(grant)s"
local out_path = "%(out)s"
local tokens = { %(tokens)s }

wrk.method = "POST"
wrk.path = "%(path)s"
wrk.headers["Authorization"] = "Basic %(basic)s"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("token", tokens[#threads] or "")
end

function init(args)
  ok, failed, unchained, first_error = 0, 0, 0, ""
end

function request()
  local body
  if grant == "refresh_token" then
    body = "grant_type=refresh_token&refresh_token=" .. token
  else
    body = "grant_type=client_credentials&scope=admin"
  end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    failed = failed + 1
    if first_error == "" then first_error = status .. " " .. body end
    return
  end
  if not body:find('"access_token"%%s*:%%s*"') then
    failed = failed + 1
    if first_error == "" then first_error = status .. " no access_token: " .. body end
    return
  end
  if grant == "refresh_token" then
    local next_token = body:match('"refresh_token"%%s*:%%s*"([^"]+)"')
    if not next_token then
      unchained = unchained + 1
      if first_error == "" then first_error = status .. " no refresh_token: " .. body end
      return
    end
    token = next_token
  end
  ok = ok + 1
end

function done(summary, latency, requests)
  local f = assert(io.open(out_path, "w"))
  f:write(string.format("requests %%d\nduration_us %%d\n", summary.requests, summary.duration))
  local e = summary.errors
  f:write(string.format("socket_errors %%d %%d %%d %%d %%d\n",
                        e.connect, e.read, e.write, e.status, e.timeout))
  for _, t in ipairs(threads) do
    local err = string.gsub(t:get("first_error") or "", "[\r\n]", " ")
    f:write(string.format("thread %%d %%d %%d %%s\n", t:get("ok"), t:get("failed"),
                          t:get("unchained"), err))
  end
  for i = 1, #latency do  -- the histogram: each value (microseconds) recorded, and how often
    local value, count = latency(i)
    f:write(string.format("latency %%d %%d\n", value, count))
  end
  f:close()
end
"""


@dataclass
class WrkRun:
    ok: int = 0
    failed: int = 0  # non-2xx, or no token in the answer
    socket_errors: int = 0  # connect, read, write, timeout
    seconds: float = 0.0
    latency: Counter[int] = field(default_factory=Counter)  # microseconds -> count
    first_errors: list[str] = field(default_factory=list)
    cpu: float = 0.0  # the server's processes, during the run
    wall: float = 0.0  # the whole wrk process, start-up included, as the CPU figures
    wrk_cpu: float = 0.0
    busy_cpu: float = 0.0  # every process on the machine

    def add(self, other: WrkRun) -> None:
        self.ok += other.ok
        self.failed += other.failed
        self.socket_errors += other.socket_errors
        self.seconds += other.seconds
        self.latency.update(other.latency)
        self.first_errors += other.first_errors
        self.cpu += other.cpu
        self.wrk_cpu += other.wrk_cpu
        self.busy_cpu += other.busy_cpu
        self.wall += other.wall

    @property
    def errors(self) -> int:
        return self.failed + self.socket_errors

    def percentile(self, fraction: float) -> float:
        """In milliseconds, from wrk's histogram (one-microsecond buckets)."""
        total = sum(self.latency.values())
        if not total:
            return math.nan
        rank = max(1, math.ceil(fraction * total))
        seen = 0
        for value in sorted(self.latency):
            seen += self.latency[value]
            if seen >= rank:
                return value / 1000
        return max(self.latency) / 1000


def run_wrk(work_dir: Path, server: Server, creds: Credentials, grant: str, tokens: list[str],
            seconds: float, concurrency: int, timeout: float) -> WrkRun:
    out = work_dir / f"wrk-{secrets.token_hex(4)}.out"
    script = work_dir / f"wrk-{secrets.token_hex(4)}.lua"
    script.write_text(LUA % {
        "grant": grant, "out": str(out), "path": TOKEN_PATH, "basic": creds.basic,
        "tokens": ", ".join(f'"{t}"' for t in tokens),
    })
    command = [
        "wrk", f"-t{concurrency}", f"-c{concurrency}", f"-d{seconds:g}s",
        f"--timeout={timeout:g}s", "--latency", "-s", str(script),
        f"http://127.0.0.1:{server.port}",
    ]
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, busy0, wall0 = server.cpu(), machine_busy(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu1, busy1, wall1 = server.cpu(), machine_busy(), time.perf_counter()
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    run = WrkRun(cpu=cpu1 - cpu0, wall=wall1 - wall0, busy_cpu=(busy1[0] - busy0[0]) / TICKS,
                 wrk_cpu=(kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime))
    for line in out.read_text().splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "duration_us":
            run.seconds = int(rest) / 1e6
        elif kind == "socket_errors":
            connect, read, write, _status, timeouts = (int(x) for x in rest.split())
            run.socket_errors = connect + read + write + timeouts
        elif kind == "thread":
            ok, failed, unchained, err = [*rest.split(" ", 3), ""][:4]
            run.ok += int(ok)
            run.failed += int(failed) + int(unchained)
            if err:
                run.first_errors.append(err[:600])
        elif kind == "latency":
            value, count = rest.split()
            run.latency[int(value)] += int(count)
    out.unlink()
    script.unlink()
    return run


# -- the report ------------------------------------------------------------------------------------


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured seconds of each (grant, server) pair per round "
                             "(default 10)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds; each runs every pair once, the servers' order swapped "
                             "from one round to the next (default 2)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="unmeasured seconds of the same pair before each measured run "
                             "(default 2)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="connections (one wrk thread each), so requests in flight "
                             "(default 16)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="wrk's per-request timeout in seconds (default 30: a timed-out "
                             "refresh would break its connection's chain)")
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL server URL (a database is created beside the one "
                             "named and dropped afterwards); default SQLite")
    parser.add_argument("--server", choices=("granian", "gunicorn"), default=None,
                        help="the WSGI server `contactpoint serve` runs (default: its "
                             "default, granian)")
    parser.add_argument("--their-store", choices=("both", "memory", "sqlite"), default="both",
                        help="oidc-provider's adapter: its default in memory (which it calls "
                             "development-only), a SQLite file set up like ours (WAL, "
                             "synchronous=NORMAL) whose accounts findAccount reads, as our "
                             "refresh reads the person, or both, each a server of its own "
                             "(default both)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (server.log, oidc-provider.log)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--rounds, --seconds and --concurrency must be positive")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("node and npm are needed for oidc-provider")

    cores = os.cpu_count() or 1
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    command = re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", command)  # no passwords printed
    npm_install()
    node_version, op_version = versions()
    code = code_version()
    from idp.cli import SERVERS
    from idp.database import scratch_database

    args.server = args.server or SERVERS[0]
    stores = ("memory", "sqlite") if args.their_store == "both" else (args.their_store,)
    theirs_names = [STORES[store] for store in stores]
    everyone = (OURS, *theirs_names, BARE)

    # Every wrk run of the refresh scenario gets fresh tokens (see Credentials).
    refresh_runs = args.rounds * (2 if args.warmup > 0 else 1)
    work_dir = Path(tempfile.mkdtemp(prefix="cp-bench-oidc-"))
    scratch = ExitStack()
    backends: PgBackends | None = None
    servers: dict[str, Server] = {}
    results: dict[tuple[str, str], WrkRun] = {}
    rounds: dict[tuple[str, str], list[WrkRun]] = {}
    db_cpu: dict[tuple[str, str], float] = {}
    rss: dict[str, int] = {}
    failed = False
    try:
        if args.database_url:
            database_url, pg_name = scratch.enter_context(
                scratch_database(args.database_url, "cp_bench")
            )
            backends = PgBackends(args.database_url, pg_name)
            database = f"postgresql, database {pg_name} (dropped afterwards)"
        else:
            database_url = f"sqlite:///{work_dir / 'contactpoint.db'}"
            database = "sqlite (WAL), in a temporary folder"
        port = free_port()
        env = server_env(work_dir, database_url, port)
        settings = load_bench_settings(env)
        print(f"command: {command}", flush=True)
        print(f"machine: {cores} cores (nproc), {platform.machine()}, Python "
              f"{platform.python_version()}, node {node_version}, oidc-provider {op_version}, "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        print(f"code: {code}", flush=True)

        upgrade = subprocess.run(
            [str(Path(sys.executable).with_name("contactpoint")), "db", "upgrade"],
            env=env, capture_output=True, text=True, check=False,
        )
        if upgrade.returncode != 0:
            raise SystemExit(f"contactpoint db upgrade failed:\n{upgrade.stderr}")
        print(f"seeding: a client, {args.concurrency} people, "
              f"{refresh_runs * args.concurrency} grants with a refresh token each ...",
              flush=True)
        creds = {OURS: seed_ours(settings, args.concurrency, refresh_runs, args.concurrency)}

        servers[OURS] = start_ours(env, work_dir, port, cores, args.server)
        for store in stores:
            name = STORES[store]
            servers[name], creds[name] = start_theirs(
                work_dir, free_port(), args.concurrency, store)
        servers[BARE], creds[BARE] = start_bare(
            work_dir, free_port(), cores, args.server, args.concurrency)
        print(f"{OURS}: {args.server} on port {servers[OURS].port}, master {servers[OURS].pid}, "
              f"workers {' '.join(map(str, children(servers[OURS].pid)))}", flush=True)
        for name in theirs_names:
            print(f"{name} {op_version}: node {servers[name].pid} on port "
                  f"{servers[name].port}", flush=True)
        print(f"{BARE}: {args.server} serving bench/oidc_bare.py on port {servers[BARE].port}",
              flush=True)

        for number in range(args.rounds):
            order = everyone if number % 2 == 0 else everyone[::-1]
            for grant in GRANTS:
                for name in order:
                    server, cred = servers[name], creds[name]

                    def tokens(cred: Credentials = cred, grant: str = grant) -> list[str]:
                        return cred.next_refresh_set() if grant == "refresh_token" else []

                    print(f"round {number + 1}/{args.rounds}: {name}, {grant}, "
                          f"{args.warmup:g} + {args.seconds:g} s ...", flush=True)
                    if args.warmup > 0:
                        warm = run_wrk(work_dir, server, cred, grant, tokens(), args.warmup,
                                       args.concurrency, args.timeout)
                        results.setdefault((name, f"{grant} warm-up"), WrkRun()).add(warm)
                    db0 = backends.cpu() if backends and name == OURS else {}
                    run = run_wrk(work_dir, server, cred, grant, tokens(), args.seconds,
                                  args.concurrency, args.timeout)
                    if backends and name == OURS:
                        db_cpu[(name, grant)] = db_cpu.get((name, grant), 0.0) + PgBackends.spent(
                            db0, backends.cpu())
                    rounds.setdefault((name, grant), []).append(run)
                    results.setdefault((name, grant), WrkRun()).add(run)
                    if run.errors:
                        print(f"  {run.errors} errors; first: {run.first_errors[:1]}",
                              flush=True)
        for name, server in servers.items():
            rss[name] = server.rss_kib()
    finally:
        for server in servers.values():
            stop(server.process)
        if backends is not None:
            backends.engine.dispose()
        scratch.close()  # drops the scratch PostgreSQL database, if one was made
        logs = {name: tail(server.log, 40) for name, server in servers.items()}
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)

    def row(*cells: object) -> str:
        widths = (16, 19, 9, 8, 8, 7, 9, 7)
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  " + " ".join(f"{c:<{w}}" if i < 2 else f"{c:>{w}}" for i, (c, w) in pairs)

    per_cpu: dict[tuple[str, str], float] = {}
    print()
    print("ContactPoint token endpoint beside oidc-provider")
    print(f"  command   {command}")
    print(f"  machine   {cores} cores, {platform.machine()}, Python {platform.python_version()}, "
          f"node {node_version}, load average {os.getloadavg()[0]:.2f} at the end")
    print(f"  code      {code}")
    if args.server == "gunicorn":
        how = (f"gunicorn, {cores} sync workers; a new connection per request, as sync "
               "workers close it")
    else:
        how = f"granian, {cores} workers; connections kept alive"
    print(f"  ours      contactpoint serve ({how}); {database}, written on every request")
    kept = {
        THEIRS: ("its default in-memory adapter (an LRU cache of 1,000 entries; writes "
                 "nothing to a database; oidc-provider warns at start that it is "
                 "development-only, and it cannot be shared between processes)"),
        THEIRS_DB: ("a SQLite file like ours (WAL, synchronous=NORMAL; bench/oidc_provider/"
                    "sqlite_adapter.mjs), written at each refresh; findAccount reads the "
                    "person's status and clearance there"),
    }
    for name in theirs_names:
        print(f"  theirs    {name}: oidc-provider {op_version} (bench/oidc_provider/server.mjs), "
              f"one node process, {kept[name]}")
    print(f"  load      wrk -t{args.concurrency} -c{args.concurrency}, POST {TOKEN_PATH}, "
          f"client_secret_basic; {args.rounds} round(s) x {args.seconds:g} s per pair after "
          f"{args.warmup:g} s warm-up each, servers' order swapped each round")
    print("  tokens    access tokens: ES256 JWT (RFC 9068), 300 s, aud .../api/v1; refresh "
          "tokens rotate on every use, one chain per connection")
    print(f"  bare      bench/oidc_bare.py under the same {args.server} command line: reads the "
          "form, checks the client with a keyed hash, signs the access token, and nothing "
          "else (no framework, database, grant checks, log line or metrics)")
    print("  note      oidc-provider's refresh tokens have scope 'profile offline_access' (no "
          "'openid'), since with 'openid' it also signs an ID token on refresh; ours signs none")
    print()
    print(row("server", "grant", "req/s", "p50 ms", "p99 ms", "cores", "req/CPU-s", "errors"))
    for grant in GRANTS:
        for name in everyone:
            r = results[(name, grant)]
            rate = r.ok / r.seconds if r.seconds else 0.0
            per_cpu[(name, grant)] = r.ok / r.cpu if r.cpu else math.nan
            print(row(name, grant, f"{rate:.0f}", f"{r.percentile(0.5):.2f}",
                      f"{r.percentile(0.99):.2f}", f"{r.cpu / r.wall:.2f}",
                      f"{per_cpu[(name, grant)]:.0f}", r.errors))
    print()
    print("  per round, req per CPU-second: " + "; ".join(
        f"{name} {grant}: " + ", ".join(f"{x.ok / x.cpu:.0f}" for x in runs if x.cpu)
        for (name, grant), runs in rounds.items()))
    print("  wrk's own CPU, cores: " + "; ".join(
        f"{name} {grant} {r.wrk_cpu / r.wall:.2f}"
        for (name, grant), r in results.items() if "warm-up" not in grant))
    print("  whole machine busy, cores: " + "; ".join(
        f"{name} {grant} {r.busy_cpu / r.wall:.2f}"
        for (name, grant), r in results.items() if "warm-up" not in grant))
    if backends:
        for grant in GRANTS:
            mine, pg = results[(OURS, grant)], db_cpu.get((OURS, grant), 0.0)
            print(f"  PostgreSQL backends, {grant}: {pg / max(mine.ok, 1) * 1000:.3f} ms CPU per "
                  f"request, not in ours above; with it, {mine.ok / (mine.cpu + pg):.0f} "
                  "req per CPU-second")
    print("  resident memory after the run: " + "; ".join(
        f"{name} {kib / 1024:.0f} MiB" for name, kib in rss.items()))
    print()
    for name in theirs_names:
        print(f"  ratio: requests per CPU-second, ours / {name}; targets: >= {name} "
              f"and >= {TARGET_PER_CPU_SECOND}")
        for grant in GRANTS:
            ours, theirs = per_cpu[(OURS, grant)], per_cpu[(name, grant)]
            ratio = ours / theirs
            beside = "met" if ours >= theirs else "NOT met"
            floor = "met" if ours >= TARGET_PER_CPU_SECOND else "NOT met"
            print(f"  {grant:<19} {ours:.0f} / {theirs:.0f} = {ratio:.2f}   "
                  f">= {name}: {beside}; >= {TARGET_PER_CPU_SECOND}: {floor}")
        print()
    for name in theirs_names:
        print(f"  ceiling: the bare server ({args.server}) / {name}; the CPU a request may "
              f"spend beyond the bare answer and still match {name}, and what ours spends")
        for grant in GRANTS:
            bare, theirs, ours = (per_cpu[(who, grant)] for who in (BARE, name, OURS))
            budget, spent = (1 / theirs - 1 / bare) * 1e6, (1 / ours - 1 / bare) * 1e6
            verdict = (f"parity out of reach on {args.server}: the server with nothing in the "
                       f"way does not beat {name}" if budget <= 0 else
                       f"room for {budget:.0f} us a request beyond the bare answer; ours "
                       f"spends {spent:.0f} us")
            print(f"  {grant:<19} {bare:.0f} / {theirs:.0f} = {bare / theirs:.2f}   {verdict}")

    errors = {key: r for key, r in results.items() if r.errors}
    if errors:
        print()
        print("FAILED requests:")
        for (name, grant), r in errors.items():
            print(f"  {name} {grant}: {r.failed} failed answers, {r.socket_errors} socket errors")
            for first in dict.fromkeys(r.first_errors):
                print(f"    {first}")
        for name in {name for name, _ in errors}:
            print(f"  last lines of {name}'s log:")
            print("    " + logs[name].replace("\n", "\n    "))
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
