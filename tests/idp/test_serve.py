"""`contactpoint serve` as an operator starts it: granian (the default) or
gunicorn with several workers, JSON request logs, and metrics that add up
whichever worker is scraped."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from idp.cli import SERVERS  # the default first
from tests.runlog import keep_command_output, keep_server_log

BIN = Path(sys.executable).parent


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(database_url: str, instance_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONTACTPOINT_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({
        "CONTACTPOINT_DATABASE__URL": database_url,
        "CONTACTPOINT_SERVICE__INSTANCE_DIR": str(instance_dir),
        "CONTACTPOINT_ARGON2__MEMORY_KIB": "1024",
        "CONTACTPOINT_ARGON2__TIME_COST": "1",
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        **extra,
    })
    return env


@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read().decode()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_node(env: dict[str, str], log: Path, *args: str, port: int | None = None) -> Node:
    port = port or unused_port()
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(BIN / "contactpoint"), *args, "--bind", f"127.0.0.1:{port}"],
            env=env, stdout=handle, stderr=subprocess.STDOUT,
        )
    node = Node(port, process, log)
    keep_server_log(log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if node.request("GET", "/healthz")[0] == 200:
                return node
        except OSError:
            time.sleep(0.2)
    node.stop()
    raise AssertionError(f"server did not answer within 120 s:\n{log.read_text()[-3000:]}")


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run([str(BIN / "contactpoint"), "db", "upgrade"], env=env,
                          capture_output=True, text=True, timeout=120)
    keep_command_output("db-upgrade", done.stderr)
    assert done.returncode == 0, done.stderr


@pytest.fixture(params=SERVERS)
def server_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def serve_args(server: str, *args: str) -> list[str]:
    """`serve` as an operator types it: nothing for the default server."""
    return ["serve", *args] if server == SERVERS[0] else ["serve", "--server", server, *args]


@pytest.fixture
def served(database_url: str, tmp_path: Path, server_name: str) -> Iterator[tuple[Node, Path]]:
    instance = tmp_path / "instance"
    env = server_env(database_url, instance)
    migrate(env)
    node = start_node(env, tmp_path / "server.log", *serve_args(server_name, "--workers", "2"))
    yield node, instance
    node.stop()


def test_granian_is_what_serve_runs_unless_told() -> None:
    """The token endpoint's figures (bench/oidc.py) are taken on what `serve`
    runs; on gunicorn's sync workers they cannot reach oidc-provider's."""
    from idp.cli import serve

    default = next(p.default for p in serve.params if p.name == "server")
    assert default == SERVERS[0] == "granian"


def _count(metrics: str, endpoint: str) -> float:
    found = re.search(
        rf'^contactpoint_request_duration_seconds_count\{{endpoint="{re.escape(endpoint)}"\}} '
        r"(\S+)$", metrics, re.M,
    )
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_serve_runs_workers_whose_metrics_add_up_and_whose_logs_are_json(
    served: tuple[Node, Path],
) -> None:
    node, instance = served
    workers = [p for p in Path("/proc").iterdir()
               if p.name.isdigit() and _parent(p) == node.process.pid]
    assert len(workers) == 2

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: node.request("GET", "/sign-in?next=%2F")[0],
                                 range(30)))
    assert statuses == [200] * 30
    # Whichever worker answers the scrape, it counts every worker's requests.
    for _ in range(6):
        status, headers, metrics = node.request("GET", "/metrics")
        assert status == 200 and headers["cache-control"] == "no-store"
        assert _count(metrics, "signin.start") == 30
    assert list((instance / "metrics").glob("*.db"))
    status, _headers, ready = node.request("GET", "/readyz")
    assert status == 200 and json.loads(ready) == {"status": "ready"}

    node.stop()
    lines = node.log.read_text().splitlines()
    requests = [json.loads(line) for line in lines
                if line.startswith("{") and '"event": "request"' in line]
    signins = [r for r in requests if r["endpoint"] == "signin.start"]
    assert len(signins) == 30
    assert {r["route"] for r in signins} == {"/sign-in"}
    assert len({r["request_id"] for r in signins}) == 30
    # No access log of the server's own, with its query strings.
    assert not any("next=" in line for line in lines)


def _parent(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _workers(node: Node) -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and _parent(p) == node.process.pid}


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_counts_are_kept(
    served: tuple[Node, Path],
) -> None:
    node, instance = served
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(lambda _: node.request("GET", "/sign-in")[0], range(20))) == {200}
    first = _workers(node)
    assert len(first) == 2
    victim = min(first)
    # A worker writes its live gauge as it loads the app. The first worker up
    # can answer all 20 while the other is still importing (seen on a busy
    # machine: the victim was killed mid-import), so wait for it to be up.
    booted = time.monotonic() + 60
    while (not list((instance / "metrics").glob(f"gauge_livesum_{victim}.db"))
           and time.monotonic() < booted):
        time.sleep(0.2)
    assert list((instance / "metrics").glob(f"gauge_livesum_{victim}.db"))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _workers(node)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the server did not start a new worker")
    # The others carry on, and what the dead worker counted still counts.
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(lambda _: node.request("GET", "/sign-in")[0], range(10))) == {200}
    _status, _headers, metrics = node.request("GET", "/metrics")
    assert _count(metrics, "signin.start") == 30
    # Its live gauge (connections in use) no longer counts: gunicorn says the
    # worker exited, and the scrape looks for workers that are gone (granian).
    assert not list((instance / "metrics").glob(f"gauge_livesum_{victim}.db"))


@pytest.mark.slow
def test_granian_serves_with_the_threads_asked_for(database_url: str, tmp_path: Path) -> None:
    """granian answers concurrent requests with the few Python threads a worker
    that `serve` asks for, not granian's default of hundreds."""
    instance = tmp_path / "instance"
    env = server_env(database_url, instance)
    migrate(env)
    node = start_node(env, tmp_path / "server.log", "serve", "--server", "granian",
                      "--workers", "1", "--threads", "3")
    try:
        command = (Path("/proc") / str(node.process.pid) / "cmdline").read_bytes().split(b"\0")
        assert command[command.index(b"--blocking-threads") + 1] == b"3"
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda _: node.request("GET", "/sign-in")[0], range(24)))
        assert statuses == [200] * 24
    finally:
        node.stop()
    requests = [json.loads(line) for line in node.log.read_text().splitlines()
                if line.startswith("{") and '"event": "request"' in line]
    assert len([r for r in requests if r["endpoint"] == "signin.start"]) == 24


@pytest.mark.parametrize("migrate_req", ["0", "1"])
def test_serve_warns_when_a_dead_granian_worker_would_take_its_queue_down(
    migrate_req: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """granian's workers listen on sockets of their own: with the sysctl off,
    a worker's death resets the connections queued for it. The operator is
    told once, at start, what to set; gunicorn (one shared socket) needs nothing."""
    from click.testing import CliRunner

    import idp.cli as cli

    sysctl = tmp_path / "tcp_migrate_req"
    sysctl.write_text(f"{migrate_req}\n")
    monkeypatch.setattr(cli, "MIGRATE_REQ", sysctl)
    started: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execvp", lambda _program, args: started.append(args))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    runner = CliRunner()

    # (arguments, the server started, whether it warns with the sysctl off)
    cases = ((["--workers", "2"], "granian", True),
             (["--workers", "1"], "granian", False),  # no other worker to hand over to
             (["--workers", "2", "--server", "gunicorn"], "gunicorn", False))
    for args, server, warns_when_off in cases:
        done = runner.invoke(cli.main, ["serve", *args], catch_exceptions=False)
        assert done.exit_code == 0
        assert Path(started[-1][0]).name == server
        warned = "net.ipv4.tcp_migrate_req" in done.output
        assert warned == (warns_when_off and migrate_req == "0"), args
