"""Security keys through the pages: registration, sign-in with a key, the
step-up that a level-3 page asks for, and the refusals, with the software
authenticator standing in for the browser's navigator.credentials."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from sqlalchemy import select

from core.clock import FrozenClock
from directory.models import Organisation
from idp.container import Container
from tests.factories import Member, World
from tests.idp.conftest import Browser, audit_tags, csrf_from, main_of, text_of
from tests.tokens.soft_authenticator import SoftAuthenticator
from tokens.errors import SignInFailed
from tokens.models import AuthenticatorPolicy, SecurityKey

OPTIONS = re.compile(r'data-webauthn-options="([^"]*)"')


def options_on(response: Any) -> str:
    match = OPTIONS.search(text_of(response))
    assert match, "no WebAuthn options on the page"
    return html.unescape(match.group(1))


def ceremony(browser: Browser, path: str, answer: Any, **fields: str) -> Any:
    """Load the page once (it issues the challenge), answer it, post the form."""
    page = browser.client.get(path)
    assert page.status_code == 200, text_of(page)
    credential = answer(options_on(page))
    return browser.client.post(
        path, data={"csrf_token": csrf_from(text_of(page)), "credential": credential, **fields}
    )


def register_key(browser: Browser, key: SoftAuthenticator, name: str = "Blue key", **wrong: Any):  # type: ignore[no-untyped-def]
    return ceremony(browser, "/keys/add", lambda o: key.create(o, **wrong), name=name)


def key_sign_in(browser: Browser, member: Member, key: SoftAuthenticator,
                pin: str | None = None, **wrong: Any):  # type: ignore[no-untyped-def]
    first = browser.submit("/sign-in", {"username": member.username, "password": member.password})
    assert first.status_code == 302
    return ceremony(
        browser, "/sign-in/key", lambda o: key.get(o, **wrong),
        pin=member.pin if pin is None else pin,
    )


def keys_of(container: Container, member: Member) -> list[tuple[int, str]]:
    """(id, name) of the person's live keys."""
    with container.unit() as unit:
        return [
            (k.id, k.name) for k in unit.session.scalars(
                select(SecurityKey).where(
                    SecurityKey.person_id == member.person.id, SecurityKey.removed_at.is_(None)
                )
            )
        ]


def live_sessions(container: Container, member: Member) -> list[tuple[str, list[str]]]:
    """(acr, amr) of the person's open sessions."""
    with container.unit() as unit:
        return [(r.acr, list(r.amr)) for r in unit.sessions.open_sessions(member.person.id)]


@pytest.fixture
def org(world: World) -> Organisation:
    return world.organisation()


@pytest.fixture
def alex(world: World, org: Organisation) -> Member:
    return world.member(org, given_name="Alex")


@pytest.fixture
def key() -> SoftAuthenticator:
    return SoftAuthenticator()


def with_key(container: Container, clock: FrozenClock, browser: Browser, member: Member,
             key: SoftAuthenticator) -> int:
    """Sign in with the token, register a key, sign out; the key's id."""
    assert browser.sign_in(member, container).status_code == 302
    assert register_key(browser, key).status_code == 302
    browser.sign_out()
    clock.advance(seconds=container.settings.totp.period_seconds)  # a fresh token code
    return keys_of(container, member)[0][0]


def test_a_person_registers_a_key_and_signs_in_with_it_at_level_3(
    container: Container, clock: FrozenClock, browser: Browser, alex: Member,
    key: SoftAuthenticator,
) -> None:
    assert browser.sign_in(alex, container).status_code == 302
    page = browser.client.get("/keys/add")
    body = text_of(page)
    # The browser code comes from /assets-local, never inline: the CSP allows no other.
    assert '<script type="module" src="/assets-local/webauthn.js"></script>' in body
    assert "<script>" not in body
    assert browser.client.get("/assets-local/webauthn.js").status_code == 200

    done = register_key(browser, key, name="Lanyard key")
    assert done.status_code == 302 and done.headers["Location"] == "/keys"
    listing = text_of(browser.client.get("/keys"))
    assert "Lanyard key" in listing
    assert "key:registered" in audit_tags(container)

    browser.sign_out()
    signed = key_sign_in(browser, alex, key)
    assert signed.status_code == 302
    home = text_of(browser.client.get("/"))
    assert "AAL3 (pwd, hwk, pin)" in home
    assert live_sessions(container, alex) == [("AAL3", ["pwd", "hwk", "pin"])]


def test_the_token_page_offers_a_key_and_the_key_page_the_token(
    browser: Browser, alex: Member
) -> None:
    browser.submit("/sign-in", {"username": alex.username, "password": alex.password})
    assert 'href="/sign-in/key"' in text_of(browser.client.get("/sign-in/token"))
    assert 'href="/sign-in/token"' in text_of(browser.client.get("/sign-in/key"))


def test_the_key_step_needs_the_password_step_first(browser: Browser) -> None:
    response = browser.client.get("/sign-in/key")
    assert response.status_code == 302 and response.headers["Location"] == "/sign-in"


@pytest.mark.parametrize(
    ("pin", "wrong"),
    [
        ("135791", {}),
        (None, {"origin": "https://phish.example"}),
        (None, {"rp_id": "phish.example"}),
        (None, {"sign_count": 0}),
    ],
)
def test_a_failed_key_sign_in_is_the_uniform_failure(
    container: Container, clock: FrozenClock, browser: Browser, alex: Member,
    key: SoftAuthenticator, pin: str | None, wrong: dict[str, Any],
) -> None:
    with_key(container, clock, browser, alex, key)
    key_sign_in(browser, alex, key)  # the counter moves to 1
    browser.sign_out()
    failed = key_sign_in(browser, alex, key, pin=pin, **wrong)
    assert failed.status_code == 401
    assert SignInFailed().message.split(".")[0] in text_of(failed)
    wrong_password = browser.submit(
        "/sign-in", {"username": alex.username, "password": "wrong password 99"}
    )
    assert main_of(failed) == main_of(wrong_password)
    assert live_sessions(container, alex) == []
    # Back at the start: the key step needs the password again.
    assert browser.client.get("/sign-in/key").headers["Location"] == "/sign-in"


def test_a_key_step_without_a_pin_asks_for_it(
    container: Container, clock: FrozenClock, browser: Browser, alex: Member,
    key: SoftAuthenticator,
) -> None:
    with_key(container, clock, browser, alex, key)
    response = key_sign_in(browser, alex, key, pin="")
    assert response.status_code == 200
    assert "Enter your PIN" in text_of(response)
    assert live_sessions(container, alex) == []


def test_a_refused_registration_shows_an_error_and_keeps_nothing(
    container: Container, browser: Browser, alex: Member, key: SoftAuthenticator
) -> None:
    assert browser.sign_in(alex, container).status_code == 302
    refused = register_key(browser, key, origin="https://phish.example")
    assert refused.status_code == 400
    assert "could not be registered" in text_of(refused)
    # The page offers a fresh challenge, which works.
    retry = browser.client.post("/keys/add", data={
        "csrf_token": csrf_from(text_of(refused)), "name": "Second try",
        "credential": key.create(options_on(refused)),
    })
    assert retry.status_code == 302
    assert [name for _, name in keys_of(container, alex)] == ["Second try"]


def test_removal_asks_a_level_2_session_to_step_up_then_confirms(
    container: Container, clock: FrozenClock, browser: Browser, alex: Member,
    key: SoftAuthenticator,
) -> None:
    key_id = with_key(container, clock, browser, alex, key)
    assert browser.sign_in(alex, container).status_code == 302
    page = f"/keys/{key_id}/remove"

    # Level 2: both the page and the action send the person to the step-up.
    step_up = f"/keys/step-up?next=/keys/{key_id}/remove"
    assert browser.client.get(page).headers["Location"] == step_up
    posted = browser.client.post(
        page, data={"csrf_token": browser.token("/keys"), "confirm": "yes"}
    )
    assert posted.status_code == 302 and posted.headers["Location"] == step_up
    assert len(keys_of(container, alex)) == 1

    # A wrong PIN at the step-up: refused, still level 2.
    refused = ceremony(browser, step_up, key.get, pin="135791")
    assert refused.status_code == 401
    assert SignInFailed().message.split(".")[0] in text_of(refused)
    assert live_sessions(container, alex)[0][0] == "AAL2"

    # The key and the PIN: level 3, and on to the page that asked.
    raised = ceremony(browser, step_up, key.get, pin=alex.pin)
    assert raised.status_code == 302 and raised.headers["Location"] == page
    assert live_sessions(container, alex) == [("AAL3", ["pwd", "otp", "swk", "pin", "hwk"])]
    assert "session:stepped_up" in audit_tags(container)

    confirm = browser.client.get(page)
    assert confirm.status_code == 200 and "Remove this key" in text_of(confirm)
    # Without the confirmation field nothing is removed.
    assert browser.client.post(page, data={"csrf_token": csrf_from(text_of(confirm))}
                               ).status_code == 200
    assert len(keys_of(container, alex)) == 1
    removed = browser.client.post(
        page, data={"csrf_token": csrf_from(text_of(confirm)), "confirm": "yes"}
    )
    assert removed.status_code == 302 and removed.headers["Location"] == "/keys"
    assert keys_of(container, alex) == []
    assert "key:removed" in audit_tags(container)
    # An already-stepped-up session goes straight through the step-up page.
    assert browser.client.get("/keys/step-up?next=/keys").headers["Location"] == "/keys"


def test_a_session_signed_in_with_a_key_needs_no_step_up(
    container: Container, clock: FrozenClock, browser: Browser, alex: Member,
    key: SoftAuthenticator,
) -> None:
    key_id = with_key(container, clock, browser, alex, key)
    assert key_sign_in(browser, alex, key).status_code == 302
    assert browser.client.get(f"/keys/{key_id}/remove").status_code == 200


def test_another_persons_key_cannot_be_removed(
    container: Container, clock: FrozenClock, world: World, org: Organisation,
    browser: Browser, another_browser: Browser, alex: Member, key: SoftAuthenticator,
) -> None:
    key_id = with_key(container, clock, browser, alex, key)
    sam = world.member(org, given_name="Sam")
    sams_key = SoftAuthenticator()
    with_key(container, clock, another_browser, sam, sams_key)
    assert key_sign_in(another_browser, sam, sams_key).status_code == 302
    assert another_browser.client.get(f"/keys/{key_id}/remove").status_code == 404
    assert len(keys_of(container, alex)) == 1


def test_step_up_without_a_key_or_where_keys_are_forbidden_explains_itself(
    container: Container, world: World, org: Organisation, browser: Browser, alex: Member
) -> None:
    assert browser.sign_in(alex, container).status_code == 302
    none = text_of(browser.client.get("/keys/step-up?next=/keys"))
    assert "you have none registered" in none
    assert "data-webauthn-options" not in none
    world.unit.session.add(AuthenticatorPolicy(
        organisation_id=org.id, allow_soft_token=True, allow_hardware_token=True,
        allow_security_key=False, attestation="none", user_verification="preferred",
    ))
    world.unit.commit()
    assert "does not allow them" in text_of(browser.client.get("/keys/step-up?next=/keys"))
    refused = browser.client.get("/keys/add")
    assert refused.status_code == 403
    assert 'data-error-id="keys.not_allowed"' in text_of(refused)
    assert "does not allow security keys" in text_of(browser.client.get("/keys"))
