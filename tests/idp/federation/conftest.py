"""Two live instances of this service on loopback: the upstream one is an
organisation's own OpenID Connect provider (a full provider, with its own
database, people and keys), the other is the service under test, which signs
people in through it as a relying party.

The upstream is wrapped in a switch that, when on, spoils the signature of
the ID tokens its token endpoint returns: a provider that returns a bad
signature, seen from the wire.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.settings import InstanceSecrets
from directory.models import Organisation, Role
from idp.app import create_app
from idp.container import Container
from idp.federation.service import NewProvider
from idp.oidc.clients import Registration
from tests.conftest import make_settings
from tests.factories import Member, World
from tests.idp.oidc import conftest as provider_tests
from tests.idp.oidc.conftest import Person, free_port
from tests.runlog import remember, remember_cookies, remember_form

# The service under test, on its loopback port, as the provider tests run it.
clock, live, port, settings = (
    provider_tests.clock, provider_tests.live, provider_tests.port, provider_tests.settings)

CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
CALLBACK_PATH = "/sign-in/organisation/callback"


class Tamper:
    """WSGI middleware: with `spoil` set, the token endpoint's ID tokens leave
    with one signature byte changed."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.spoil = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        if not (self.spoil and environ.get("PATH_INFO") == "/oauth2/token"):
            return self.app(environ, start_response)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        document = json.loads(body)
        if "id_token" in document:
            head, payload, signature = document["id_token"].split(".")
            flipped = ("A" if signature[5] != "A" else "B")
            document["id_token"] = ".".join((head, payload, signature[:5] + flipped +
                                             signature[6:]))
        body = json.dumps(document).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]


def _serve(app: Callable[..., Iterable[bytes]], port: int) -> tuple[BaseWSGIServer,
                                                                    threading.Thread]:
    server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@dataclass
class UpstreamIdp:
    """The organisation's own provider: another instance of this service."""

    base: str
    container: Container
    world: World
    tamper: Tamper
    client_id: str
    secret: str
    person: Member
    admin: Member
    platform: Member
    others: list[Member] = field(default_factory=list)
    browsers: dict[str, Person] = field(default_factory=dict)

    def browser(self, member: Member | None = None) -> Person:
        """One browser a person, kept: a second visit finds their session at the
        provider, as a real one would (and a token code is never used twice)."""
        chosen = member or self.person
        if chosen.username not in self.browsers:
            self.browsers[chosen.username] = Person(self.base, chosen, self.container)
        return self.browsers[chosen.username]


def register_downstream(world: World, admin: Member, platform: Member, port: int,
                        **values: Any) -> tuple[str, str | None]:
    """The service under test, registered at the upstream as a first-party
    client (no consent page) and approved."""
    org_id = admin.person.positions[0].organisation_id
    registration = Registration(
        organisation_id=org_id, name="ContactPoint",
        redirect_uris=[f"http://127.0.0.1:{port}{CALLBACK_PATH}"],
        scopes=["openid", "profile", "email"], grant_types=["authorization_code"], **values,
    )
    unit = world.unit
    client, secret = unit.clients.register(world.principal(admin), registration)
    unit.clients.approve(world.principal(platform), client.client_id, "federation test")
    unit.clients.set_first_party(world.principal(platform), client.client_id, True,
                                 "federation test")
    unit.commit()
    remember("client secret", secret)
    return client.client_id, secret


@pytest.fixture
def upstream(tmp_path: Path, sqlite_template: Path, port: int) -> Iterator[UpstreamIdp]:
    """Its own SQLite database whatever the service under test runs on: what is
    tested is the relying party, and the provider's storage is not its concern."""
    upstream_port = free_port()
    while upstream_port == port:
        upstream_port = free_port()
    base = f"http://127.0.0.1:{upstream_port}"
    path = tmp_path / "upstream.db"
    shutil.copy(sqlite_template, path)
    settings = make_settings(f"sqlite:///{path}", tmp_path / "upstream-instance",
                             service={"base_url": base})
    keys = InstanceSecrets(session_key=secrets.token_bytes(32), data_key=secrets.token_bytes(32))
    container = Container(settings, secrets=keys,
                          clock=FrozenClock(datetime.now(UTC).replace(microsecond=0)))
    world = World(container)
    org = world.organisation("Northshire Council (its own sign-in)")
    platform = world.member(world.organisation("Upstream Platform"), Role.PLATFORM_ADMIN)
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Una")
    person = world.member(org, given_name="Priya", family_name="Upstream")
    stranger = world.member(org, given_name="Sam", family_name="Stranger")
    client_id, secret = register_downstream(world, admin, platform, port)
    assert secret is not None
    tamper = Tamper(create_app(container=container))
    server, thread = _serve(tamper, upstream_port)
    made = UpstreamIdp(base, container, world, tamper, client_id, secret, person,
                       admin, platform, [stranger])
    yield made
    for browser in made.browsers.values():
        browser.close()
    server.shutdown()
    thread.join(5)
    world.close()
    container.dispose()


@dataclass
class Here:
    """The service under test: an organisation with its provider registered,
    and the person whose upstream account is linked (or is to be)."""

    organisation: Organisation
    person: Member
    admin: Member


@pytest.fixture
def here(world: World, container: Container, upstream: UpstreamIdp) -> Here:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Ada")
    person = world.member(org, given_name="Priya", family_name="Shah")
    unit = world.unit
    unit.federation.add(world.principal(admin), NewProvider(
        organisation_id=org.id, issuer=upstream.base, client_id=upstream.client_id,
        username_claim="preferred_username", client_secret=upstream.secret,
    ))
    unit.commit()
    return Here(org, person, admin)


class Browser:
    """A person's browser at the service under test (its own cookie jar: the
    two services share 127.0.0.1, and cookies do not tell ports apart)."""

    def __init__(self, base: str, container: Container) -> None:
        self.base = base
        self.container = container
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=10)

    def close(self) -> None:
        self.http.close()

    def form(self, path: str, fields: dict[str, str], page: str | None = None) -> httpx.Response:
        shown = self.http.get(page or path)
        assert shown.status_code == 200, shown.text[:500]
        token = CSRF.search(shown.text)
        assert token, "no CSRF token"
        posted = {"csrf_token": unescape(token.group(1)), **fields}
        remember_form(posted)
        answer = self.http.post(path, data=posted)
        remember_cookies((c.name, c.value) for c in self.http.cookies.jar)
        return answer

    def sign_in(self, member: Member) -> httpx.Response:
        first = self.form("/sign-in", {"username": member.username,
                                       "password": member.password})
        assert first.status_code == 302, first.text[:300]
        return self.form("/sign-in/token", {"code": member.totp(self.container),
                                            "pin": member.pin})

    def start_federated(self, organisation: Organisation) -> str:
        """Choose the organisation; the URL of the provider's authorization request."""
        answer = self.form("/sign-in/organisation", {"organisation": str(organisation.id)})
        assert answer.status_code == 302, answer.text[:300]
        return answer.headers["Location"]

    def start_link(self, organisation: Organisation) -> str:
        answer = self.form("/account/organisation-account",
                           {"organisation": str(organisation.id)})
        assert answer.status_code == 302, answer.text[:300]
        return answer.headers["Location"]


@pytest.fixture
def browser(live: str, container: Container) -> Iterator[Browser]:
    made = Browser(live, container)
    yield made
    made.close()


@pytest.fixture
def fresh(live: str, container: Container) -> Iterator[Browser]:
    """Another browser at the service under test: the one that signs in upstream."""
    made = Browser(live, container)
    yield made
    made.close()


def through_upstream(upstream: UpstreamIdp, url: str, member: Member | None = None) -> str:
    """The person signs in at their organisation's provider; the callback URL."""
    assert url.startswith(upstream.base + "/")
    callback = upstream.browser(member).visit(url, consent=None)
    assert urlsplit(callback).path == CALLBACK_PATH, callback
    return callback


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def local(url: str) -> str:
    parts = urlsplit(url)
    return urljoin("/", parts.path + ("?" + parts.query if parts.query else ""))


def reasons(container: Container, tag: str) -> list[str]:
    with container.unit() as unit:
        entries = unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == tag).order_by(AuditEntry.seq))
        return [str((e.detail or {}).get("reason")) for e in entries]


def tags(container: Container) -> list[str]:
    with container.unit() as unit:
        return list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))
