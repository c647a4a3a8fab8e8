"""Health, readiness, metrics and request ids, as operators' machines see them."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import select, text

from core.audit import AuditEntry
from core.settings import InstanceSecrets
from idp.app import create_app
from idp.container import Container
from tests.conftest import make_settings
from tests.factories import World
from tests.idp.conftest import Browser, main_of, sibling_app


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _problem(response) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    body = json.loads(response.get_data(as_text=True))
    assert body["status"] == 503 and body["type"] == "about:blank" and body["title"]
    return body  # type: ignore[no-any-return]


def _no_internals(body: str) -> None:
    lowered = body.lower()
    for word in ("version", "sqlite", "postgres", "redis://", "traceback", "127.0.0.1",
                 "0003", "alembic", "psycopg", "error:"):
        assert word not in lowered, word


def test_healthz_and_readyz_answer_without_internals(client) -> None:  # type: ignore[no-untyped-def]
    alive = client.get("/healthz")
    assert alive.status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert json.loads(ready.get_data(as_text=True)) == {"status": "ready"}
    _no_internals(ready.get_data(as_text=True))
    assert "Server" not in ready.headers or "Python" not in ready.headers.get("Server", "")


def test_readyz_is_503_when_the_schema_is_behind_and_ready_when_it_is_ahead(
    container: Container, client
) -> None:  # type: ignore[no-untyped-def]
    with container.engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        behind = client.get("/readyz")
        body = _problem(behind)
        assert body["checks"] == {"database": "ok", "migrations": "failing"}
        assert behind.headers["Cache-Control"] == "no-store"
        _no_internals(behind.get_data(as_text=True))
        # A revision this code does not know is a newer one (rolling upgrade): ready.
        with container.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'fffffffffff1'"))
        assert client.get("/readyz").status_code == 200
    finally:
        # The PostgreSQL test database outlives this test; alembic_version is not
        # among the tables emptied between tests.
        with container.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})


def test_readyz_is_503_when_the_database_or_redis_is_unreachable(
    container: Container, database_url: str, tmp_path: Path
) -> None:
    port = unused_port()
    keys = InstanceSecrets(container.secrets.session_key, container.secrets.data_key)
    nowhere = make_settings(
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/none", tmp_path / "nowhere"
    )
    down = Container(nowhere, secrets=keys, clock=container.clock)
    try:
        answer = create_app(container=down).test_client().get("/readyz")
        assert _problem(answer)["checks"] == {"database": "failing", "migrations": "failing"}
        _no_internals(answer.get_data(as_text=True))
    finally:
        down.dispose()

    app, built = sibling_app(
        container, database_url, tmp_path / "redis",
        shared_state={"backend": "redis", "redis_url": f"redis://127.0.0.1:{port}/0"},
    )
    try:
        answer = app.test_client().get("/readyz")
        assert _problem(answer)["checks"] == {
            "database": "ok", "migrations": "ok", "redis": "failing"
        }
    finally:
        built.dispose()


def test_readyz_checks_ldap_only_when_configured(
    container: Container, database_url: str, tmp_path: Path
) -> None:
    port = unused_port()
    app, built = sibling_app(
        container, database_url, tmp_path / "ldap",
        ldap={"url": f"ldap://127.0.0.1:{port}", "bind_dn": "cn=admin,dc=example",
              "password": "ldap secret 1", "base_dn": "dc=example", "timeout_seconds": 1},
    )
    try:
        answer = app.test_client().get("/readyz")
        body = _problem(answer)
        assert body["checks"]["ldap"] == "failing"
        assert "ldap secret 1" not in answer.get_data(as_text=True)
    finally:
        built.dispose()


def test_metrics_only_from_allowed_addresses(
    container: Container, database_url: str, tmp_path: Path, app: Flask
) -> None:
    local = app.test_client().get("/metrics")
    assert local.status_code == 200
    assert "contactpoint_request_duration_seconds" in local.get_data(as_text=True)
    assert local.headers["Cache-Control"] == "no-store"
    outside = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert outside.status_code == 404
    assert "contactpoint_" not in outside.get_data(as_text=True)
    assert main_of(outside) == main_of(app.test_client().get("/no/such"))

    listed, built = sibling_app(
        container, database_url, tmp_path / "m",
        observability={"metrics_allowed": "192.0.2.0/24"},
    )
    try:
        client = listed.test_client()
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
        assert client.get("/metrics").status_code == 404  # loopback is not in the list now
    finally:
        built.dispose()


def test_metrics_behind_a_proxy_need_the_peer_and_the_client_allowed(
    container: Container, database_url: str, tmp_path: Path
) -> None:
    proxied, built = sibling_app(
        container, database_url, tmp_path / "p", service={"trusted_proxies": 1}
    )
    try:
        client = proxied.test_client()
        # A client on the internet, forwarded by a local proxy: refused.
        forwarded = {"X-Forwarded-For": "203.0.113.9"}
        assert client.get("/metrics", headers=forwarded).status_code == 404
        # A forged loopback address from outside: refused, the peer is not allowed.
        forged = client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"},
                            environ_base={"REMOTE_ADDR": "203.0.113.9"})
        assert forged.status_code == 404
        assert client.get("/metrics").status_code == 200
    finally:
        built.dispose()


def test_sign_ins_and_lockouts_are_counted_by_outcome(
    container: Container, world: World, browser: Browser
) -> None:
    before = {o: sample("contactpoint_signins_total", outcome=o)
              for o in ("success", "password_failure", "second_factor_failure")}
    locks = sample("contactpoint_lockouts_total", kind="timed")
    member = world.member(world.organisation())
    assert browser.sign_in(member, container).status_code == 302
    browser.sign_out()
    other = world.member(world.organisation(), given_name="Lou")
    for _ in range(5):
        wrong = browser.submit("/sign-in", {"username": other.username,
                                            "password": "not my password 7"})
        assert wrong.status_code == 401
    assert sample("contactpoint_signins_total", outcome="success") == before["success"] + 1
    assert (sample("contactpoint_signins_total", outcome="password_failure")
            == before["password_failure"] + 5)
    assert sample("contactpoint_lockouts_total", kind="timed") == locks + 1
    assert sample("contactpoint_request_duration_seconds_count", endpoint="signin.start") > 0
    assert sample("contactpoint_db_pool_checkouts_total") > 0


def test_a_rolled_back_audit_entry_counts_nothing(container: Container, app: Flask) -> None:
    before = sample("contactpoint_signins_total", outcome="success")
    with container.unit() as unit:
        unit.audit.record("signin:success")
        unit.session.flush()
        unit.session.rollback()
    assert sample("contactpoint_signins_total", outcome="success") == before
    with container.unit() as unit:
        unit.audit.record("signin:success")
        unit.commit()
    assert sample("contactpoint_signins_total", outcome="success") == before + 1


def test_each_request_has_an_id_in_the_response_and_in_its_audit_entries(
    container: Container, world: World, browser: Browser, database_url: str, tmp_path: Path
) -> None:
    member = world.member(world.organisation())
    first = browser.submit("/sign-in", {"username": member.username, "password": member.password})
    request_id = first.headers["X-Request-ID"]
    assert len(request_id) == 32
    with container.unit() as unit:
        recorded = unit.session.scalars(
            select(AuditEntry.request_id).where(AuditEntry.tag == "signin:password:success")
        ).one()
    assert recorded == request_id

    # Untrusted by default: a client cannot choose what the audit log says.
    chosen = browser.client.get("/sign-in", headers={"X-Request-ID": "chosen-by-client"})
    assert chosen.headers["X-Request-ID"] != "chosen-by-client"

    trusting, built = sibling_app(
        container, database_url, tmp_path / "t", observability={"trust_request_id": True}
    )
    try:
        client = trusting.test_client()
        taken = client.get("/sign-in", headers={"X-Request-ID": "lb-7f3a.42"})
        assert taken.headers["X-Request-ID"] == "lb-7f3a.42"
        # Not an id: anything that could break a log line or the audit record is replaced.
        forged = 'x", "level": "forged'
        odd = client.get("/sign-in", headers={"X-Request-ID": forged})
        assert odd.headers["X-Request-ID"] != forged
        assert len(odd.headers["X-Request-ID"]) == 32
    finally:
        built.dispose()


def test_a_page_that_needs_an_unreachable_database_is_503_not_500(
    container: Container, tmp_path: Path
) -> None:
    port = unused_port()
    keys = InstanceSecrets(container.secrets.session_key, container.secrets.data_key)
    nowhere = make_settings(
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/none", tmp_path / "nowhere"
    )
    down = Container(nowhere, secrets=keys, clock=container.clock)
    try:
        browser = Browser(create_app(container=down).test_client())
        page = browser.submit("/sign-in", {"username": "someone", "password": "whatever 12345"})
        assert page.status_code == 503 and page.headers["Retry-After"] == "5"
        assert 'data-error-id="unavailable"' in page.get_data(as_text=True)
        _no_internals(main_of(page))
        token = browser.token("/sign-in")
        api = browser.client.post("/sign-in", data={"csrf_token": token, "username": "someone",
                                                    "password": "whatever 12345"},
                                  headers={"Accept": "application/json"})
        assert _problem(api)["error_id"] == "unavailable"
    finally:
        down.dispose()


def test_a_commit_that_fails_after_the_page_is_made_is_503_not_500(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database can go away between the view's answer and the commit that
    follows it (a restart under load): the answer is then the 503, not a 500."""
    from sqlalchemy.exc import OperationalError

    from idp.container import Unit

    def lost(_unit: Unit) -> None:
        raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(Unit, "touched_database", property(lambda _unit: True))
    monkeypatch.setattr(Unit, "commit", lost)
    client = create_app(container=container).test_client()
    page = client.get("/sign-in")
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert 'data-error-id="unavailable"' in page.get_data(as_text=True)
    _no_internals(main_of(page))
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    api = client.get("/sign-in", headers={"Accept": "application/json"})
    assert api.status_code == 503 and _problem(api)["error_id"] == "unavailable"


def test_a_scrape_forgets_the_live_gauges_of_workers_that_are_gone(tmp_path: Path) -> None:
    """granian, unlike gunicorn, says nothing when a worker dies: without the
    sweep its connections in use would be counted for ever."""
    import os
    import subprocess
    import sys

    from idp.metrics import forget_dead_workers

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead, alive = int(finished.stdout), os.getpid()
    for pid in (dead, alive):
        for name in (f"gauge_livesum_{pid}.db", f"gauge_liveall_{pid}.db",
                     f"counter_{pid}.db", f"histogram_{pid}.db", f"gauge_all_{pid}.db"):
            (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a metrics file")

    assert forget_dead_workers(str(tmp_path)) == [dead]
    left = {p.name for p in tmp_path.iterdir()}
    # The dead worker's counts stay (what it counted happened); its live gauges go.
    assert left == {
        f"gauge_livesum_{alive}.db", f"gauge_liveall_{alive}.db", f"counter_{alive}.db",
        f"histogram_{alive}.db", f"gauge_all_{alive}.db",
        f"counter_{dead}.db", f"histogram_{dead}.db", f"gauge_all_{dead}.db", "notes.txt",
    }
    assert forget_dead_workers(str(tmp_path)) == []
