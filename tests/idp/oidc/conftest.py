"""A live provider on a loopback port, and a relying party that uses it over HTTP.

The provider is the real app factory served by werkzeug in a thread; the
relying party is Authlib's own OAuth client (httpx), and the person's browser
is an httpx client that fills in the real sign-in and consent pages.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from core.clock import FrozenClock
from core.settings import Settings
from directory.models import Organisation, Role
from idp.app import create_app
from idp.container import Container
from idp.oidc.clients import Registration
from idp.oidc.models import ClientKind
from tests.conftest import make_settings
from tests.factories import Member, World
from tests.runlog import remember, remember_cookies, remember_form

CALLBACK = "https://rp.example.org/callback"
CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, port: int) -> Settings:
    return make_settings(database_url, tmp_path / "instance",
                         service={"base_url": f"http://127.0.0.1:{port}"})


@pytest.fixture
def clock() -> FrozenClock:
    # Relying-party libraries check `exp` and `iat` against the real time.
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def live(container: Container, port: int) -> Iterator[str]:
    app = create_app(container=container)
    server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(5)


@dataclass
class Registered:
    client_id: str
    secret: str | None
    organisation: Organisation


@dataclass
class Cast:
    """The people an OIDC test needs: an organisation, its admin, a platform admin
    (who approves), and a practitioner who signs in."""

    world: World
    organisation: Organisation
    admin: Member
    platform: Member
    person: Member
    registered: list[Registered] = field(default_factory=list)

    def register(self, approve: bool = True, first_party: bool = False,
                 **values: Any) -> Registered:
        values.setdefault("redirect_uris", [CALLBACK])
        values.setdefault("scopes", ["openid", "profile", "email", "positions", "clearance"])
        values.setdefault("grant_types", ["authorization_code", "refresh_token"])
        name = values.pop("name", "Case system")
        reg = Registration(organisation_id=self.organisation.id, name=name, **values)
        unit = self.world.unit
        client, secret = unit.clients.register(self.world.principal(self.admin), reg)
        if approve:
            unit.clients.approve(self.world.principal(self.platform), client.client_id, "checked")
        if first_party:
            unit.clients.set_first_party(self.world.principal(self.platform), client.client_id,
                                         True, "its own sign-in")
        unit.commit()
        remember("client secret", secret)
        made = Registered(client.client_id, secret, self.organisation)
        self.registered.append(made)
        return made


@pytest.fixture
def cast(world: World) -> Cast:
    org = world.organisation()
    platform_org = world.organisation("ContactPoint Platform")
    return Cast(
        world=world,
        organisation=org,
        admin=world.member(org, Role.ORGANISATION_ADMIN, given_name="Ada"),
        platform=world.member(platform_org, Role.PLATFORM_ADMIN, given_name="Pat"),
        person=world.member(org, given_name="Priya", family_name="Shah"),
    )


class Person:
    """A person's browser: follows the provider's pages, never the relying party's."""

    def __init__(self, base: str, member: Member, container: Container) -> None:
        self.base = base
        self.member = member
        self.container = container
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=10)

    def close(self) -> None:
        self.http.close()

    def _form(self, path: str, fields: dict[str, str]) -> httpx.Response:
        page = self.http.get(path)
        assert page.status_code == 200, page.text[:500]
        token = CSRF.search(page.text)
        assert token, "no CSRF token"
        posted = {"csrf_token": unescape(token.group(1)), **fields}
        remember_form(posted)
        answer = self.http.post(path, data=posted)
        remember_cookies((c.name, c.value) for c in self.http.cookies.jar)
        return answer

    def sign_in(self, code: str | None = None) -> httpx.Response:
        first = self._form("/sign-in", {"username": self.member.username,
                                        "password": self.member.password})
        assert first.status_code == 302, first.text[:300]
        return self._form("/sign-in/token", {"code": code or self.member.totp(self.container),
                                             "pin": self.member.pin})

    def visit(self, url: str, *, consent: str | None = "allow", max_hops: int = 10) -> str:
        """Go to `url` and follow the provider's redirects, signing in and
        answering the consent page, until one leaves for the relying party."""
        target = url
        for _ in range(max_hops):
            if not target.startswith(self.base):
                remember_form(query_of(target))  # the code for the relying party
                return target
            response = self.http.get(target)
            if response.status_code in (302, 303):
                location = urljoin(target, response.headers["Location"])
                if urlsplit(location).path == "/sign-in":
                    self.http.get(location)  # as a browser would: it remembers where to go next
                    done = self.sign_in()
                    assert done.status_code == 302, done.text[:300]
                    target = urljoin(self.base, done.headers["Location"])
                    continue
                target = location
                continue
            if response.status_code == 200 and 'name="decision"' in response.text:
                assert consent is not None, "a consent page was not expected"
                fields = {unescape(k): unescape(v) for k, v in HIDDEN.findall(response.text)}
                token = CSRF.search(response.text)
                assert token
                fields["csrf_token"] = unescape(token.group(1))
                fields["decision"] = consent
                remember_form(fields)
                answer = self.http.post("/oauth2/authorize", data=fields)
                assert answer.status_code in (302, 303), answer.text[:500]
                target = urljoin(self.base, answer.headers["Location"])
                continue
            raise AssertionError(f"stopped at {target}: {response.status_code}")
        raise AssertionError("too many redirects")


@pytest.fixture
def person(live: str, cast: Cast, container: Container) -> Iterator[Person]:
    browser = Person(live, cast.person, container)
    yield browser
    browser.close()


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def callback_client(**overrides: Any) -> dict[str, Any]:
    return {"redirect_uris": [CALLBACK], **overrides}


__all__ = ["CALLBACK", "Cast", "ClientKind", "Person", "query_of"]
