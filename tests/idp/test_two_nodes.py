"""Two real server processes on two loopback ports, one PostgreSQL database and
one Redis (shared_state.backend = redis): what one node learns, the other
knows. Failures counted on both lock the account; a token code used on one is
refused on the other; signing out on one ends the session on the other; a refresh
token rotated on one is refused on the other."""

from __future__ import annotations

import http.client
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
import redis
from sqlalchemy import create_engine, select

from core.audit import AuditEntry
from core.clock import SystemClock
from core.settings import InstanceSecrets
from idp.container import Container
from idp.database import scratch_database, upgrade
from tests.conftest import PG_ADMIN_URL, make_settings, need
from tests.factories import Member, World
from tests.idp.conftest import CSRF
from tests.idp.test_serve import Node, server_env, start_node
from tests.runlog import remember_cookies, remember_form

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class HttpBrowser:
    """One person's browser: cookies kept, forms posted with their CSRF token,
    pointed at whichever node the load balancer would pick."""

    cookies: dict[str, str] = field(default_factory=dict)

    def open(self, node: Node, method: str, path: str,
             form: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=15)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    for morsel in SimpleCookie(value).values():
                        if morsel.value:
                            self.cookies[morsel.key] = morsel.value
                        else:
                            self.cookies.pop(morsel.key, None)
            return response.status, {k.lower(): v for k, v in response.getheaders()}, text
        finally:
            conn.close()

    def submit(self, node: Node, path: str, fields: dict[str, str],
               page: str | None = None) -> int:
        _status, _headers, html = self.open(node, "GET", page or path)
        match = CSRF.search(html)
        assert match, f"no CSRF token on {page or path}"
        posted = {"csrf_token": match.group(1) or match.group(2), **fields}
        remember_form(posted)
        status, _h, _t = self.open(node, "POST", path, posted)
        remember_cookies(self.cookies.items())
        return status

    def sign_in(self, first: Node, second: Node, member: Member, code: str) -> int:
        step = self.submit(first, "/sign-in",
                           {"username": member.username, "password": member.password})
        if step != 302:
            return step
        return self.submit(second, "/sign-in/token", {"code": code, "pin": member.pin})


@dataclass
class Cluster:
    nodes: tuple[Node, Node]
    container: Container
    world: World
    prefix: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp_path = tmp_path_factory.mktemp("two_nodes")
    try:
        create_engine(PG_ADMIN_URL).connect().close()
        pg_up = True
    except Exception:
        pg_up = False
    need(pg_up, f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    try:
        redis_up = bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.exceptions.RedisError:
        redis_up = False
    need(redis_up, f"Redis is not reachable at {REDIS_URL}")

    prefix = f"cp-test-{uuid.uuid4().hex[:8]}:"
    with scratch_database(PG_ADMIN_URL, "cp_two_nodes") as (url, _name):
        instance = tmp_path / "instance"  # shared keys, as a secret store would mount them
        settings = make_settings(url, instance, shared_state={
            "backend": "redis", "redis_url": REDIS_URL, "redis_key_prefix": prefix,
        })
        keys = InstanceSecrets(secrets.token_bytes(32), secrets.token_bytes(32))
        instance.mkdir(parents=True)
        (instance / "session.key").write_text(keys.session_key.hex())
        (instance / "data.key").write_text(keys.data_key.hex())
        container = Container(settings, secrets=keys, clock=SystemClock())
        upgrade(container.engine)
        world = World(container)
        nodes = []
        try:
            for n in (1, 2):
                env = server_env(url, instance, **{
                    "CONTACTPOINT_SHARED_STATE__BACKEND": "redis",
                    "CONTACTPOINT_SHARED_STATE__REDIS_URL": REDIS_URL,
                    "CONTACTPOINT_SHARED_STATE__REDIS_KEY_PREFIX": prefix,
                    "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{n}"),
                })
                nodes.append(start_node(env, tmp_path / f"node{n}.log", "serve", "--workers", "1"))
            yield Cluster((nodes[0], nodes[1]), container, world, prefix)
        finally:
            for node in nodes:
                node.stop()
            world.close()
            container.dispose()
            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(f"{prefix}*"):
                client.delete(key)


def _tags(container: Container, person_id: int) -> list[str]:
    with container.unit() as unit:
        return list(unit.session.scalars(
            select(AuditEntry.tag).where(AuditEntry.subject_id == str(person_id))
            .order_by(AuditEntry.seq)
        ))


@pytest.mark.slow
def test_failures_on_both_nodes_lock_the_account(cluster: Cluster) -> None:
    one, two = cluster.nodes
    member = cluster.world.member(cluster.world.organisation())
    browser = HttpBrowser()
    for node in (one, two, one, two, one):
        status = browser.submit(node, "/sign-in",
                                {"username": member.username, "password": "not my password 7"})
        assert status == 401
    # The right password and factors, on either node: locked.
    assert browser.sign_in(two, two, member, member.totp(cluster.container)) == 401
    assert browser.sign_in(one, one, member, member.totp(cluster.container)) == 401
    assert "signin:lockout" in _tags(cluster.container, member.person.id)
    # The per-address counter lives in Redis and holds the failures of both nodes.
    now = datetime.now(UTC).timestamp()
    window = cluster.container.settings.signin.address_window_seconds
    key = f"{cluster.prefix}signin:address:127.0.0.1@{int(now // window)}"
    assert int(redis.Redis.from_url(REDIS_URL).get(key) or 0) >= 7


@pytest.mark.slow
def test_a_token_code_used_on_one_node_is_refused_on_the_other(cluster: Cluster) -> None:
    one, two = cluster.nodes
    member = cluster.world.member(cluster.world.organisation())
    code = member.totp(cluster.container)
    first = HttpBrowser()
    assert first.sign_in(one, one, member, code) == 302
    second = HttpBrowser()
    assert second.sign_in(two, two, member, code) == 401
    tags = _tags(cluster.container, member.person.id)
    assert tags.count("signin:success") == 1
    assert tags[-1] == "signin:second_factor:failure"


@pytest.mark.slow
def test_signing_out_on_one_node_ends_the_session_on_the_other(cluster: Cluster) -> None:
    one, two = cluster.nodes
    member = cluster.world.member(cluster.world.organisation(), given_name="Nadia")
    browser = HttpBrowser()
    # The password step on one node, the token step on the other.
    assert browser.sign_in(one, two, member, member.totp(cluster.container)) == 302
    status, _headers, home = browser.open(two, "GET", "/")
    assert status == 200 and member.username in home
    status, _headers, home = browser.open(one, "GET", "/")
    assert status == 200 and member.username in home
    kept = dict(browser.cookies)
    assert browser.submit(one, "/sign-out", {}, page="/") == 302
    status, headers, _ = browser.open(two, "GET", "/")
    assert status == 302 and headers["location"].endswith("/sign-in")
    # Even replaying the old cookie by hand: the session is over on the server.
    replay = HttpBrowser(cookies=kept)
    assert replay.open(two, "GET", "/")[0] == 302


@pytest.mark.slow
def test_a_refresh_token_rotated_on_one_node_is_refused_on_the_other(cluster: Cluster) -> None:
    from base64 import b64encode
    from datetime import timedelta
    from json import loads

    from idp.cli import operator
    from idp.oidc.clients import Registration
    from idp.oidc.models import Grant

    one, two = cluster.nodes
    world = cluster.world
    org = world.organisation()
    member = world.member(org)
    unit = world.unit
    client, secret = unit.clients.register(operator(), Registration(
        organisation_id=org.id, name="Two-node client", redirect_uris=["https://rp.example.org/cb"]),
        "two-node test")
    unit.clients.approve(operator(), client.client_id, "test")
    now = cluster.container.clock.now()
    grant = Grant(client_id=client.client_id, person_id=member.person.id, auth_session_id=None,
                  person_epoch=member.person.security_epoch, scope="openid profile", acr="AAL2",
                  amr=["pwd", "otp", "swk", "pin"], auth_time=now, nonce=None,
                  sid=secrets.token_urlsafe(16), resource="http://localhost:5000/api/v1",
                  created_at=now, expires_at=now + timedelta(hours=1), refresh_counter=0)
    unit.session.add(grant)
    unit.commit()
    # The token a code exchange hands out (idp.oidc.provider.Provider.refresh_token).
    mac = cluster.container.digester.digest(f"refresh|{grant.id}|0|{grant.sid}")
    first = f"rt.{grant.id}.0.{mac}"
    basic = "Basic " + b64encode(f"{client.client_id}:{secret}".encode()).decode()
    headers = {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"}

    def refresh(node: Node, token: str) -> tuple[int, dict[str, str]]:
        status, _h, body = node.request("POST", "/oauth2/token", urlencode(
            {"grant_type": "refresh_token", "refresh_token": token}), headers)
        return status, loads(body)

    status, body = refresh(one, first)
    assert status == 200, body
    second = body["refresh_token"]
    # The rotated-away token, on the other node: refused, and the family ends...
    status, body = refresh(two, first)
    assert status == 400 and body["error"] == "invalid_grant"
    # ...so the current one is refused on either node too.
    assert refresh(two, second)[1]["error"] == "invalid_grant"
    assert refresh(one, second)[1]["error"] == "invalid_grant"
    assert "oidc:refresh:reused" in _tags(cluster.container, member.person.id)
