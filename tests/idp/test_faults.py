"""Faults under load, against a real `contactpoint serve` (granian, two
workers) with threads of HTTP clients running sign-ins, client-credentials
grants and admin API reads the whole time:

- PostgreSQL stopped and started again (a throwaway cluster of this test's
  own, never the shared server): while it is away every request is answered
  at once, with 503 and a problem document (or the 503 page, or the OAuth
  `temporarily_unavailable` answer at the token endpoint), never a 500 and
  never a hang; the service recovers without help; every sign-in that got a
  success answer is in the database and in the audit log, whose chain
  `contactpoint audit verify` still accepts.
- One worker killed with SIGKILL, on granian and on gunicorn: at most the
  requests it was serving fail (gunicorn's sync worker serves one at a time),
  the other worker carries on, the server starts a new one.
- Redis stopped (a redis-server of this test's own): sign-in is refused with
  503 where throttling fails closed (the default), and carries on where the
  settings say it fails open; both recover when Redis is back.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from core.audit import AuditEntry
from core.clock import SystemClock
from core.settings import InstanceSecrets
from idp.cli import SERVERS, operator, queued_connections_migrate
from idp.container import Container
from idp.database import upgrade
from idp.oidc.clients import Registration
from tests.conftest import make_settings, need
from tests.factories import Member, World
from tests.idp.conftest import CSRF
from tests.idp.test_serve import (
    BIN,
    Node,
    _workers,
    serve_args,
    server_env,
    start_node,
    unused_port,
)
from tests.runlog import keep_command_output

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# No request may take longer than this, outage or not: the pool's connect and
# checkout timeouts are 5 s, and a refused connection is answered at once.
BOUND_SECONDS = 5.0
# How soon after the backend is back the service must succeed again by itself.
RECOVERY_SECONDS = 15.0
THROTTLING_REFUSED = 'data-error-id="shared_state.unavailable"'


# -- the load: threads of clients, every answer recorded ------------------------------------


@dataclass(frozen=True)
class Answer:
    op: str  # signin, token, api
    path: str
    started: float  # time.monotonic()
    seconds: float
    status: int | None  # None: no answer (the connection failed or timed out)
    error: str = ""  # the exception's class, when there was no answer
    location: str = ""
    content_type: str = ""
    retry_after: str | None = None
    body: str = ""

    @property
    def finished(self) -> float:
        return self.started + self.seconds


@dataclass
class Load:
    """Bounded: each thread stops when told or after `limit` seconds, and each
    request times out a little after BOUND_SECONDS."""

    base_url: str
    members: list[Member]
    container: Container
    client_basic: tuple[str, str] | None = None
    api_path: str | None = None
    answers: list[Answer] = field(default_factory=list)
    signed_in: list[tuple[Member, float]] = field(default_factory=list)
    limit: float = 60.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _api_token: str | None = None
    # People go round: a TOTP code is accepted once per person per 30 s step.
    _queue: deque[tuple[Member, int]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._queue.extend((member, -1) for member in self.members)

    def _step(self) -> int:
        return int(time.time()) // self.container.settings.totp.period_seconds

    def _http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=BOUND_SECONDS + 3,
                            follow_redirects=False)

    def _call(self, client: httpx.Client, op: str, method: str, path: str,
              **kwargs: object) -> Answer:
        started = time.monotonic()
        try:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            answer = Answer(op, path, started, time.monotonic() - started, None,
                            type(error).__name__)
        else:
            answer = Answer(op, path, started, time.monotonic() - started, response.status_code,
                            content_type=response.headers.get("content-type", ""),
                            retry_after=response.headers.get("retry-after"),
                            body=response.text,
                            location=response.headers.get("location", ""))
        with self._lock:
            self.answers.append(answer)
        return answer

    def _member(self) -> Member | None:
        """The first person in the queue whose code of this step is unspent.
        Not just the head: a person turned away before the code step joins
        the back at once, behind people who have spent this step's code."""
        with self._lock:
            step = self._step()
            for place, (member, spent) in enumerate(self._queue):
                if spent < step:
                    del self._queue[place]
                    return member
            return None

    def _sign_in(self) -> None:
        member = self._member()
        if member is None:
            time.sleep(0.2)
            return
        # Only a posted TOTP code can have been spent: a person turned away
        # before that step is free to go again at once. (Marking every
        # attempt used up all 40 people within a Redis outage, and sign-in
        # then waited for the next 30 s step, not for Redis; so did taking
        # only the head of the queue, when a spent person stood there.)
        code_step = -1
        try:
            code_step = self._sign_in_as(member)
        finally:
            with self._lock:
                self._queue.append((member, code_step))

    def _sign_in_as(self, member: Member) -> int:
        """The TOTP step whose code was posted, or -1 if none was."""
        with self._http() as client:
            page = self._call(client, "signin", "GET", "/sign-in")
            if page.status != 200 or not (found := CSRF.search(page.body)):
                return -1
            step = self._call(client, "signin", "POST", "/sign-in", data={
                "csrf_token": found.group(1) or found.group(2),
                "username": member.username, "password": member.password})
            if step.status != 302:
                return -1
            page = self._call(client, "signin", "GET", "/sign-in/token")
            if page.status != 200 or not (found := CSRF.search(page.body)):
                return -1
            done = self._call(client, "signin", "POST", "/sign-in/token", data={
                "csrf_token": found.group(1) or found.group(2),
                "code": member.totp(self.container), "pin": member.pin})
            code_step = self._step()  # taken after the code, so never earlier than its step
            if done.status == 302 and done.location == "/":
                with self._lock:
                    self.signed_in.append((member, done.finished))
            return code_step

    def _token(self) -> None:
        assert self.client_basic is not None
        with self._http() as client:
            answer = self._call(client, "token", "POST", "/oauth2/token", auth=self.client_basic,
                                data={"grant_type": "client_credentials", "scope": "admin"})
            if answer.status == 200:
                self._api_token = json.loads(answer.body)["access_token"]
            if self.api_path and self._api_token:
                self._call(client, "api", "GET", self.api_path,
                           headers={"Authorization": f"Bearer {self._api_token}"})

    def _run(self, work: Callable[[], None]) -> None:
        ends = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < ends:
            work()
            time.sleep(0.02)

    def start(self, signin_threads: int = 3, token_threads: int = 1) -> None:
        works = [self._sign_in] * signin_threads
        if self.client_basic is not None:
            works += [self._token] * token_threads
        for work in works:
            thread = threading.Thread(target=self._run, args=(work,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=4 * (BOUND_SECONDS + 3))
        assert not any(t.is_alive() for t in self._threads), "a client thread hangs"

    def successes_after(self, moment: float) -> list[Answer]:
        return [a for a in self.answers if a.started >= moment and a.status in (200, 302)]


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """The time.monotonic() at which `condition` first held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds} s")


def unavailable_answer_problems(answer: Answer) -> list[str]:
    """What is wrong with a 503: it must say when to try again and be a page, a
    problem document, or (at the token endpoint) RFC 6749's error JSON."""
    found = []
    if not answer.retry_after:
        found.append("no Retry-After")
    if answer.content_type.startswith("application/problem+json"):
        body = json.loads(answer.body)
        if body.get("status") != 503 or not body.get("title"):
            found.append(f"not a problem document: {answer.body[:200]}")
    elif answer.content_type.startswith("text/html"):
        if "data-error-id=" not in answer.body or "Traceback" in answer.body:
            found.append("not the 503 page")
    elif answer.path == "/oauth2/token" and answer.content_type.startswith("application/json"):
        if json.loads(answer.body).get("error") != "temporarily_unavailable":
            found.append(f"not temporarily_unavailable: {answer.body[:200]}")
    else:
        found.append(f"unexpected content type {answer.content_type!r}")
    return found


def assert_never_500_never_hung(answers: list[Answer]) -> None:
    assert answers, "no requests were made"
    slow = [a for a in answers if a.seconds >= BOUND_SECONDS]
    assert not slow, f"requests took {BOUND_SECONDS} s or more: {slow[:3]}"
    broken = [a for a in answers if a.status is not None and a.status >= 500 and a.status != 503]
    assert not broken, f"server errors: {[(a.path, a.status, a.body[:300]) for a in broken[:3]]}"
    bad = [(a.path, p) for a in answers if a.status == 503 for p in unavailable_answer_problems(a)]
    assert not bad, f"503 answers without a proper body: {bad[:5]}"


def assert_recorded(container: Container, signed_in: list[tuple[Member, float]]) -> None:
    """Every sign-in that got its success answer left its session and its
    audit entry (counted per person), and nothing else did."""
    ok = Counter(member.person.id for member, _ in signed_in)
    container.engine.dispose()  # connections from before any restart
    with container.unit() as unit:
        sessions = Counter(unit.session.scalars(text("SELECT person_id FROM auth_session")))
        audited = Counter(int(s or 0) for s in unit.session.scalars(
            select(AuditEntry.subject_id).where(AuditEntry.tag == "signin:success")))
    short = {p: (n, sessions[p], audited[p]) for p, n in ok.items()
             if sessions[p] < n or audited[p] < n}
    assert not short, f"(successes, sessions, audit entries) by person: {short}"
    # A sign-in whose commit landed as the connection broke may be recorded
    # without its answer; with a clean stop there are none.
    assert sessions == audited, (sessions - audited, audited - sessions)
    assert sum(ok.values()) <= sum(sessions.values())


def audit_verify(env: dict[str, str]) -> str:
    done = subprocess.run([str(BIN / "contactpoint"), "audit", "verify"], env=env,
                          capture_output=True, text=True, timeout=120)
    keep_command_output("audit-verify", done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@dataclass
class Seeded:
    container: Container
    members: list[Member]
    client_basic: tuple[str, str]
    organisation_id: int


def seed(container: Container, people: int) -> Seeded:
    world = World(container)
    try:
        organisation = world.organisation()
        members = [world.member(organisation, commit=False) for _ in range(people)]
        unit = world.unit
        client, secret = unit.clients.register(operator(), Registration(
            organisation_id=organisation.id, name="Fault client", redirect_uris=[],
            grant_types=["client_credentials"], scopes=["admin"]), "fault test")
        assert secret is not None
        unit.clients.approve(operator(), client.client_id, "test")
        unit.key_rotation.ensure()  # made once here rather than raced for by the workers
        unit.commit()
        return Seeded(container, members, (client.client_id, secret), organisation.id)
    finally:
        world.close()


# -- a PostgreSQL cluster of the test's own ------------------------------------------------


class ThrowawayPostgres:
    """initdb and pg_ctl on a spare loopback port, as the postgres user when run
    as root. Stopping it stops nobody else's database."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cp-faults-pg-"))
        self.data = self.root / "data"
        self.port = unused_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")
        # Quick commits: what is tested is the restart, not the disk.
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("fsync = off\n")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(PG_BIN / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{tool}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "30",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
                  "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Served:
    node: Node
    env: dict[str, str]
    seeded: Seeded
    server: str

    def load(self, people: slice | None = None, **extra: object) -> Load:
        members = self.seeded.members[people or slice(None)]
        return Load(f"http://127.0.0.1:{self.node.port}", members, self.seeded.container,
                    **extra)  # type: ignore[arg-type]


@contextmanager
def _serve(url: str, tmp_path: Path, people: int, workers: int = 2, server: str = SERVERS[0],
           **settings_env: str) -> Iterator[Served]:
    instance = tmp_path / "instance"
    instance.mkdir(parents=True, exist_ok=True)
    keys = InstanceSecrets(secrets.token_bytes(32), secrets.token_bytes(32))
    (instance / "session.key").write_text(keys.session_key.hex())
    (instance / "data.key").write_text(keys.data_key.hex())
    container = Container(make_settings(url, instance), secrets=keys, clock=SystemClock())
    try:
        upgrade(container.engine)
        seeded = seed(container, people)
        port = unused_port()
        env = server_env(url, instance, CONTACTPOINT_SERVICE__BASE_URL=f"http://127.0.0.1:{port}",
                         PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"), **settings_env)
        node = start_node(env, tmp_path / "server.log",
                          *serve_args(server, "--workers", str(workers)), port=port)
        try:
            yield Served(node, env, seeded, server)
        finally:
            node.stop()
    finally:
        container.dispose()


@pytest.fixture
def pg_cluster() -> Iterator[ThrowawayPostgres]:
    need(os.access(PG_BIN / "pg_ctl", os.X_OK), f"PostgreSQL server binaries not in {PG_BIN}")
    cluster = ThrowawayPostgres()
    try:
        cluster.start()
        admin = create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text('CREATE DATABASE "contactpoint"'))
        admin.dispose()
        yield cluster
    finally:
        cluster.remove()


@pytest.mark.slow
def test_postgresql_restarted_under_load_answers_503_at_once_and_recovers(
    pg_cluster: ThrowawayPostgres, tmp_path: Path,
) -> None:
    with _serve(pg_cluster.url("contactpoint"), tmp_path, people=90) as served:
        seeded = served.seeded
        load = served.load(client_basic=seeded.client_basic,
                           api_path=f"/api/v1/organisations/{seeded.organisation_id}")
        load.start()
        wait_for(lambda: len(load.signed_in) >= 3 and bool(load._api_token), 30,
                 "sign-ins and API reads before the restart")
        stopping = time.monotonic()
        pg_cluster.stop()
        down = time.monotonic()
        time.sleep(3)  # the gap: a restart takes longer under a real checkpoint
        restarting = time.monotonic()
        pg_cluster.start()
        up = time.monotonic()
        for op in ("signin", "token", "api"):
            wait_for(lambda op=op: any(a.op == op for a in load.successes_after(up)),
                     RECOVERY_SECONDS, f"{op} succeeds again after the restart")
        wait_for(lambda: any(t > up for _m, t in load.signed_in), RECOVERY_SECONDS,
                 "a complete sign-in after the restart")
        time.sleep(1)
        load.stop()

    answers = load.answers
    assert_never_500_never_hung(answers)
    # No request went unanswered: the gap is answered, not dropped.
    assert not [a for a in answers if a.status is None], [a for a in answers if a.status is None]
    in_gap = [a for a in answers if a.started >= down and a.finished <= restarting]
    assert in_gap, "no request fell in the gap"
    unavailable = [a for a in answers if a.status == 503]
    assert {a.op for a in unavailable} >= {"signin", "api"}, {a.op for a in unavailable}
    # Whatever needs the database in the gap is refused; nothing else is wrong.
    # (A client-credentials grant needs only the cached client and signing key,
    # and writes nothing: it may still be answered.)
    assert {a.status for a in in_gap} <= {200, 302, 503}
    assert {a.status for a in in_gap if a.op == "api"} == {503}
    assert {a.status for a in answers if a.finished < stopping} <= {200, 302}

    ok = len(load.signed_in)
    assert ok >= 4
    assert_recorded(seeded.container, load.signed_in)
    assert "audit chain intact" in audit_verify(served.env)


# -- one worker killed mid-load ------------------------------------------------------------


@pytest.fixture(params=SERVERS)
def served(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    if request.param == "granian":
        need(queued_connections_migrate(), "granian's workers each listen (SO_REUSEPORT): "
             "without `sysctl net.ipv4.tcp_migrate_req=1` (as root; .ci/run sets it) the "
             "connections queued on a killed worker are reset, not handed to another")
    with _serve(database_url, tmp_path, people=60, server=request.param) as node:
        yield node


@pytest.mark.slow
def test_a_worker_killed_mid_load_fails_only_its_requests(served: Served) -> None:
    load = served.load(client_basic=served.seeded.client_basic)
    load.start()
    wait_for(lambda: len(load.signed_in) >= 3, 20, "sign-ins before the kill")
    first = _workers(served.node)
    assert len(first) == 2
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    replaced = wait_for(lambda: len(now := _workers(served.node)) == 2 and victim not in now,
                        30, "the server starts a new worker")
    wait_for(lambda: len(load.successes_after(replaced)) >= 10, RECOVERY_SECONDS,
             "requests succeed after the replacement")
    load.stop()

    answers = load.answers
    assert_never_500_never_hung(answers)
    # Only what the killed worker was serving lost its answer; everything else
    # was answered. A sync worker serves one request at a time, on a
    # connection of its own. A granian worker held connections that clients
    # keep alive: a request sent on one just after the kill, before the client
    # saw it close, is lost too; so at most one per client (four here), and
    # none sent later than that.
    lost = [a for a in answers if a.status is None]
    if served.server == "gunicorn":
        assert len(lost) <= 1, lost
        assert all(a.started <= killed for a in lost)
    else:
        assert len(lost) <= 4, lost
        assert all(a.started <= killed + 0.5 for a in lost), (killed, lost)
    assert {a.status for a in answers} <= {200, 302, None}
    # The other worker carried on while the new one started.
    assert [a for a in load.successes_after(killed) if a.finished <= replaced] or \
        replaced - killed < 1
    assert_recorded(served.seeded.container, load.signed_in)
    assert "audit chain intact" in audit_verify(served.env)


# -- Redis stopped ---------------------------------------------------------------------------


class ThrowawayRedis:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = unused_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_for(lambda: self._pings(client), 10, "redis-server answers")

    @staticmethod
    def _pings(client: object) -> bool:
        import redis

        try:
            return bool(client.ping())  # type: ignore[attr-defined]
        except redis.exceptions.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def _ops(answers: list[Answer], start: float, end: float) -> list[Answer]:
    """The sign-in requests that began and ended within [start, end]."""
    return [a for a in answers if a.started >= start and a.finished <= end
            and a.status is not None and a.op == "signin"]


@pytest.mark.slow
def test_redis_stopped_under_load_follows_the_settings_for_each_kind(
    database_url: str, own_redis: ThrowawayRedis, tmp_path: Path,
) -> None:
    shared = {"CONTACTPOINT_SHARED_STATE__BACKEND": "redis",
              "CONTACTPOINT_SHARED_STATE__REDIS_URL": own_redis.url}
    with _serve(database_url, tmp_path / "closed", people=80, workers=1, **shared) as closed:
        # A second node on the same database and Redis that lets sign-in
        # through without throttling while Redis is down.
        open_env = dict(closed.env, CONTACTPOINT_SHARED_STATE__THROTTLING_WHEN_UNAVAILABLE="open",
                        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "open-metrics"))
        port = unused_port()
        open_env["CONTACTPOINT_SERVICE__BASE_URL"] = f"http://127.0.0.1:{port}"
        open_node = start_node(open_env, tmp_path / "open.log", "serve", "--workers", "1",
                               port=port)
        try:
            closed_load = closed.load(slice(0, 40))
            open_load = Load(f"http://127.0.0.1:{open_node.port}", closed.seeded.members[40:],
                             closed.seeded.container)
            for load in (closed_load, open_load):
                load.start(signin_threads=2)
            wait_for(lambda: len(closed_load.signed_in) >= 2 and len(open_load.signed_in) >= 2,
                     20, "sign-ins on both nodes before Redis stops")
            own_redis.stop()
            down = time.monotonic()
            wait_for(lambda: any(a.status == 503 for a in closed_load.answers
                                 if a.started >= down), 10, "the closed node refuses")
            wait_for(lambda: any(t > down + 0.5 for _m, t in open_load.signed_in), 10,
                     "the open node signs people in without Redis")
            time.sleep(max(0.0, down + 3 - time.monotonic()))  # an outage of 3 s at least
            restarting = time.monotonic()
            own_redis.start()
            up = time.monotonic()
            wait_for(lambda: any(t > up for _m, t in closed_load.signed_in), RECOVERY_SECONDS,
                     "the closed node signs people in again once Redis is back")
            for load in (closed_load, open_load):
                load.stop()
        finally:
            open_node.stop()

    for load in (closed_load, open_load):
        assert_never_500_never_hung(load.answers)
        assert not [a for a in load.answers if a.status is None]
    # Closed (the default): every step of sign-in posted while Redis was down
    # was refused, with the 503 page that names the cause by its id (the
    # pages with the forms need no shared state and are answered).
    posted = [a for a in _ops(closed_load.answers, down, restarting) if a.status != 200]
    assert posted and all(a.status == 503 and THROTTLING_REFUSED in a.body for a in posted)
    assert not [t for _m, t in closed_load.signed_in if down < t < restarting]
    # Open: password steps went through.
    let_through = [a for a in _ops(open_load.answers, down, restarting) if a.status == 302]
    assert {a.path for a in let_through} == {"/sign-in", "/sign-in/token"}
    assert_recorded(closed.seeded.container, closed_load.signed_in + open_load.signed_in)
    assert "audit chain intact" in audit_verify(closed.env)


def test_the_load_helpers_spot_a_bad_503() -> None:
    """The checks above can fail: a 503 without Retry-After, or with a stack
    trace for a page, is caught."""
    bare = Answer("api", "/api/v1/x", 0, 0.1, 503, content_type="text/plain")
    assert unavailable_answer_problems(bare) == ["no Retry-After",
                                                 "unexpected content type 'text/plain'"]
    page = Answer("signin", "/sign-in", 0, 0.1, 503, content_type="text/html", retry_after="5",
                  body="Traceback (most recent call last)")
    assert unavailable_answer_problems(page) == ["not the 503 page"]
    with pytest.raises(AssertionError, match="server errors"):
        assert_never_500_never_hung([Answer("token", "/oauth2/token", 0, 0.1, 500)])
    with pytest.raises(AssertionError, match="took"):
        assert_never_500_never_hung([Answer("token", "/oauth2/token", 0, 9.0, 200)])


def test_the_load_offers_anyone_whose_code_is_unspent() -> None:
    """The queue of people can fail the fault tests by itself: a person whose
    code of this step is spent, standing at the head, must not hold back
    those behind who were turned away before posting one."""
    settings = SimpleNamespace(totp=SimpleNamespace(period_seconds=30))
    spent, fresh, other = (Member(cast(Any, None), f"password {n}", "123456", "JBSWY3DP")
                           for n in range(3))
    load = Load("http://127.0.0.1:9", [], cast(Container, SimpleNamespace(settings=settings)))
    step = load._step()
    load._queue.extend([(spent, step), (fresh, -1), (other, step - 1)])
    assert load._member() is fresh
    assert load._member() is other
    assert load._member() is None
    assert [member for member, _ in load._queue] == [spent]
