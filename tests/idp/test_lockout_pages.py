"""Lockout, unlocking and throttling, through the pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from core.clock import FrozenClock
from directory.models import Role
from idp.container import Container
from tests.factories import World
from tests.idp.conftest import Browser, audit_tags, main_of, sibling_app, text_of
from tokens.errors import SignInFailed, TooManyAttempts


def _wrong_password(browser: Browser, username: str):  # type: ignore[no-untyped-def]
    return browser.submit("/sign-in", {"username": username, "password": "not my password 7"})


def test_five_wrong_passwords_lock_the_account_and_the_right_factors_then_fail_alike(
    container: Container, world: World, browser: Browser
) -> None:
    member = world.member(world.organisation())
    failures = [_wrong_password(browser, member.username) for _ in range(5)]
    assert [f.status_code for f in failures] == [401] * 5
    locked = browser.sign_in(member, container)
    assert locked.status_code == 401
    assert main_of(locked) == main_of(failures[0])
    assert SignInFailed.title.split(".")[0] in text_of(locked)
    assert "signin:lockout" in audit_tags(container)
    assert browser.client.get("/").status_code == 302


@pytest.fixture
def locked_out(container: Container, world: World, browser: Browser):  # type: ignore[no-untyped-def]
    org = world.organisation()
    member = world.member(org, given_name="Lou")
    for _ in range(5):
        assert _wrong_password(browser, member.username).status_code == 401
    return org, member


def test_an_admin_of_the_same_organisation_unlocks_and_sign_in_works_again(
    container: Container, world: World, browser: Browser, another_browser: Browser,
    locked_out,  # type: ignore[no-untyped-def]
) -> None:
    org, member = locked_out
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Olivia")
    assert another_browser.sign_in(admin, container).status_code == 302
    people = text_of(another_browser.client.get("/people"))
    assert member.username in people and "Locked until" in people
    unlocked = another_browser.submit(
        f"/people/{member.person.id}/unlock", {}, page="/people"
    )
    assert unlocked.status_code == 302
    assert "can sign in again" in text_of(another_browser.client.get("/people"))
    assert browser.sign_in(member, container).status_code == 302
    assert member.person.display_name in text_of(browser.client.get("/"))


def test_an_admin_of_another_organisation_cannot_unlock(
    container: Container, world: World, browser: Browser, another_browser: Browser,
    locked_out,  # type: ignore[no-untyped-def]
) -> None:
    _org, member = locked_out
    stranger = world.member(
        world.organisation("Elsewhere Borough"), Role.ORGANISATION_ADMIN, given_name="Ed"
    )
    assert another_browser.sign_in(stranger, container).status_code == 302
    assert member.username not in text_of(another_browser.client.get("/people"))
    refused = another_browser.submit(
        f"/people/{member.person.id}/unlock", {}, page="/people"
    )
    assert refused.status_code == 403
    assert "signin:unlocked" not in audit_tags(container)
    assert browser.sign_in(member, container).status_code == 401


def test_an_admin_cannot_unlock_themselves(
    container: Container, world: World, browser: Browser, another_browser: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    assert another_browser.sign_in(admin, container).status_code == 302
    refused = another_browser.submit(f"/people/{admin.person.id}/unlock", {}, page="/people")
    assert refused.status_code == 403


def test_a_practitioner_cannot_see_people(
    container: Container, world: World, browser: Browser
) -> None:
    practitioner = world.member(world.organisation())
    assert browser.sign_in(practitioner, container).status_code == 302
    assert browser.client.get("/people").status_code == 403
    assert browser.submit(
        f"/people/{practitioner.person.id}/unlock", {}, page="/"
    ).status_code == 403


@pytest.fixture
def strict_app(container: Container, database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The same service with only three failures allowed per address and window."""
    flask_app, built = sibling_app(
        container, database_url, tmp_path / "instance",
        signin={"address_failures_per_window": 3},
    )
    yield flask_app
    built.dispose()


def test_too_many_failures_from_one_address_get_429_with_retry_after(
    strict_app: Flask, container: Container, clock: FrozenClock, world: World
) -> None:
    member = world.member(world.organisation())
    other = world.member(world.organisation("Elsewhere Borough"))
    browser = Browser(strict_app.test_client())
    for _ in range(3):
        assert _wrong_password(browser, "no.such.person").status_code == 401
    refused = browser.sign_in(member, container)  # even the right password
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    window = container.settings.signin.address_window_seconds
    assert 0 < retry_after <= window
    assert "Traceback" not in text_of(refused)
    assert f'data-error-id="{TooManyAttempts.error_id}"' in text_of(refused)
    # The account itself was not punished: someone at another address signs in.
    elsewhere = Browser(strict_app.test_client())
    elsewhere.client.environ_base["REMOTE_ADDR"] = "198.51.100.20"
    assert elsewhere.sign_in(member, container).status_code == 302
    # Activation is throttled per address as well.
    for _ in range(3):
        failed = browser.submit("/activate", {"username": other.username, "code": "AAAAA-BBBBB"})
        assert failed.status_code == 401
    throttled = browser.submit("/activate", {"username": other.username, "code": "AAAAA-BBBBB"})
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    # When the window has passed, the address may try again (with a code not yet used).
    clock.advance(seconds=retry_after)
    assert browser.sign_in(member, container, code=member.totp(container, 1)).status_code == 302
