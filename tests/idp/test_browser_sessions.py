"""The browser session: how the cookie is set, when it changes, and every way
it ends (sign-out, idle, absolute limit, suspension, lapse), seen from the web."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from core.clock import FrozenClock
from directory.models import PersonStatus
from idp.container import Container
from tests.factories import Member, World
from tests.idp.conftest import Browser, sibling_app
from tokens.models import AuthSession

COOKIE = "cp_session"


def _set_cookie_header(response: object, name: str = COOKIE) -> str:
    headers = response.headers.getlist("Set-Cookie")  # type: ignore[attr-defined]
    found = [h for h in headers if h.startswith(f"{name}=")]
    assert found, f"no {name} cookie set"
    return str(found[-1])


def _attributes(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def _goes_to_sign_in(response: object) -> bool:
    location = response.headers.get("Location", "")  # type: ignore[attr-defined]
    return response.status_code == 302 and urlsplit(location).path == "/sign-in"  # type: ignore[attr-defined]


def _ended_reasons(container: Container, member: Member) -> list[str | None]:
    with container.unit() as unit:
        rows = unit.session.query(AuthSession).filter_by(person_id=member.person.id).all()
        return [r.ended_reason for r in rows]


def test_the_session_cookie_is_http_only_and_same_site_lax_and_not_secure_on_loopback(
    container: Container, browser: Browser
) -> None:
    assert container.settings.on_loopback  # the default base_url, http://localhost:5000
    header = _set_cookie_header(browser.client.get("/sign-in"))
    attributes = _attributes(header)
    assert "httponly" in attributes
    assert "samesite=lax" in header.lower()
    assert "secure" not in attributes


@pytest.fixture
def https_app(
    container: Container, database_url: str, tmp_path: Path
) -> Iterator[Flask]:
    flask_app, built = sibling_app(
        container, database_url, tmp_path / "instance",
        service={"base_url": "https://contactpoint.example.org"},
    )
    yield flask_app
    built.dispose()


def test_the_session_cookie_is_secure_when_the_service_is_on_https(https_app: Flask) -> None:
    response = https_app.test_client().get("/sign-in", base_url="https://contactpoint.example.org")
    header = _set_cookie_header(response)
    assert "secure" in _attributes(header)
    assert "httponly" in _attributes(header)
    assert "samesite=lax" in header.lower()
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_signing_in_gives_a_new_session_and_the_old_cookies_are_worth_nothing(
    container: Container, world: World, browser: Browser
) -> None:
    member = world.member(world.organisation())
    client = browser.client
    client.get("/sign-in")
    before = _cookie(client)
    assert browser.submit(
        "/sign-in", {"username": member.username, "password": member.password}
    ).status_code == 302
    after_password = _cookie(client)
    assert browser.submit(
        "/sign-in/token", {"code": member.totp(container), "pin": member.pin}
    ).status_code == 302
    after_token = _cookie(client)
    assert len({before, after_password, after_token}) == 3
    assert client.get("/").status_code == 200

    # A cookie planted before sign-in (session fixation) or taken mid-way is not signed in.
    for old in (before, after_password):
        client.set_cookie(COOKIE, old)
        assert _goes_to_sign_in(client.get("/"))
        assert _goes_to_sign_in(client.get("/sign-in/token"))
    client.set_cookie(COOKIE, after_token)
    assert client.get("/").status_code == 200


def test_signing_out_ends_the_session_on_the_server(
    container: Container, world: World, browser: Browser
) -> None:
    member = world.member(world.organisation())
    assert browser.sign_in(member, container).status_code == 302
    signed_in_cookie = _cookie(browser.client)
    out = browser.sign_out()
    assert out.status_code == 302
    assert urlsplit(out.headers["Location"]).path == "/signed-out"
    assert _goes_to_sign_in(browser.client.get("/"))

    # Replaying the cookie from before sign-out: the server has ended that session.
    browser.client.set_cookie(COOKIE, signed_in_cookie)
    assert _goes_to_sign_in(browser.client.get("/"))
    assert _goes_to_sign_in(browser.client.get("/applications"))
    assert _ended_reasons(container, member) == ["signed out"]


def test_thirty_minutes_idle_ends_the_session(
    container: Container, clock: FrozenClock, world: World, browser: Browser
) -> None:
    member = world.member(world.organisation())
    assert browser.sign_in(member, container).status_code == 302
    clock.advance(minutes=29)
    assert browser.client.get("/").status_code == 200
    clock.advance(minutes=29)
    assert browser.client.get("/").status_code == 200  # activity kept it alive
    clock.advance(minutes=31)
    assert _goes_to_sign_in(browser.client.get("/"))
    assert _ended_reasons(container, member) == ["idle limit"]


def test_twelve_hours_ends_the_session_however_busy(
    container: Container, clock: FrozenClock, world: World, browser: Browser
) -> None:
    member = world.member(world.organisation())
    assert browser.sign_in(member, container).status_code == 302
    for _ in range(12 * 3 - 1):  # every 20 minutes, up to 11 h 40 min
        clock.advance(minutes=20)
        assert browser.client.get("/").status_code == 200
    clock.advance(minutes=20)  # 12 h after sign-in
    assert _goes_to_sign_in(browser.client.get("/"))
    assert _ended_reasons(container, member) == ["absolute limit"]


def test_suspending_a_person_ends_their_open_browser_session(
    container: Container, world: World, browser: Browser
) -> None:
    member = world.member(world.organisation())
    assert browser.sign_in(member, container).status_code == 302
    assert browser.client.get("/").status_code == 200
    world.unit.session.refresh(member.person)
    world.unit.directory.set_status(
        member.person, PersonStatus.SUSPENDED, "under investigation", tag="person:suspended"
    )
    world.unit.commit()
    assert _goes_to_sign_in(browser.client.get("/"))
    assert _ended_reasons(container, member) == ["access ended"]
    # And signing in again is refused.
    assert browser.sign_in(member, container).status_code == 401


def test_lapsed_clearance_ends_an_open_browser_session(
    container: Container, clock: FrozenClock, world: World, browser: Browser
) -> None:
    clock.set(datetime(2026, 11, 25, 23, 50, tzinfo=UTC))
    member = world.member(world.organisation(), clearance_days=0)  # valid until today
    assert browser.sign_in(member, container).status_code == 302
    assert browser.client.get("/").status_code == 200
    clock.advance(minutes=15)  # past midnight, well inside the idle limit
    assert _goes_to_sign_in(browser.client.get("/"))
    assert _ended_reasons(container, member) == ["access lapsed"]
