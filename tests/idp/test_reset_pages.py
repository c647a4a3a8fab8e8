"""The reset pages as people use them: an admin sends a letter from the people
list (after confirming), the person resets with it and signs in with the new
secret; every failed proof looks the same."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from directory.models import Role
from idp.container import Container
from tests.factories import Member, World
from tests.idp.conftest import Browser, main_of, text_of
from tests.runlog import remember
from tokens.resets import ResetFailed

NEW_PIN = "735104"
NEW_PASSWORD = "lantern orchard velvet 1984"
LETTER = re.compile(r"letter (\d+)\)")
CODE_LINE = re.compile(r"reset code: (\S+)")


def send_letter(browser: Browser, member: Member, kind: str) -> int:
    """The admin's clicks: the people list, the link, the confirmation."""
    people = text_of(browser.client.get("/people"))
    path = f"/people/{member.person.id}/reset-{kind}"
    assert f'href="{path}"' in people
    confirm = browser.client.get(path)
    assert confirm.status_code == 200
    assert member.person.display_name in text_of(confirm)
    sent = browser.submit(path, {})
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/people")
    found = LETTER.search(text_of(browser.client.get("/people")))
    assert found, "no letter id in the confirmation banner"
    return int(found.group(1))


def printed_code(container: Container, letter_id: int) -> str:
    with container.unit() as unit:
        body = unit.outbox.print_letter(letter_id)
        unit.commit()
    found = CODE_LINE.search(body)
    assert found, body
    remember("letter code", found.group(1))
    return found.group(1)


def next_step(clock: FrozenClock) -> None:
    clock.advance(seconds=30)


def pin_steps(browser: Browser, container: Container, member: Member, letter: str,
              **wrong: str) -> Any:
    first = browser.submit("/reset-pin", {
        "username": wrong.get("username", member.username),
        "password": wrong.get("password", member.password),
    })
    if first.status_code != 302:
        return first
    assert first.headers["Location"].endswith("/reset-pin/code")
    return browser.submit("/reset-pin/code", {
        "code": wrong.get("code", member.totp(container)),
        "letter_code": wrong.get("letter_code", letter),
    })


def password_step(browser: Browser, container: Container, member: Member, letter: str,
                  **wrong: str) -> Any:
    return browser.submit("/reset-password", {
        "username": wrong.get("username", member.username),
        "code": wrong.get("code", member.totp(container)),
        "pin": wrong.get("pin", member.pin),
        "letter_code": wrong.get("letter_code", letter),
    })


@pytest.fixture
def people(world: World) -> tuple[Member, Member]:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Olivia")
    member = world.member(org, given_name="Priya")
    return admin, member


def test_a_pin_reset_from_the_people_list_to_signing_in_with_the_new_pin(
    container: Container, browser: Browser, another_browser: Browser,
    people: tuple[Member, Member], clock: FrozenClock,
) -> None:
    admin, member = people
    assert browser.sign_in(admin, container).status_code == 302
    code = printed_code(container, send_letter(browser, member, "pin"))

    # Steps cannot be skipped.
    assert another_browser.client.get("/reset-pin/new").headers["Location"].endswith("/reset-pin")
    assert another_browser.client.get("/reset-pin/code").headers["Location"].endswith("/reset-pin")

    proved = pin_steps(another_browser, container, member, code)
    assert proved.status_code == 302 and proved.headers["Location"].endswith("/reset-pin/new")
    mismatch = another_browser.submit(
        "/reset-pin/new", {"pin": NEW_PIN, "pin_confirmation": "735105"}
    )
    assert mismatch.status_code == 200 and "The PINs do not match" in text_of(mismatch)
    weak = another_browser.submit("/reset-pin/new", {"pin": "111111", "pin_confirmation": "111111"})
    assert "one digit repeated" in text_of(weak)
    done = another_browser.submit("/reset-pin/new", {"pin": NEW_PIN, "pin_confirmation": NEW_PIN})
    assert done.status_code == 302 and done.headers["Location"].endswith("/reset-pin/done")
    page = another_browser.client.get("/reset-pin/done")
    assert "Your PIN has been reset" in text_of(page) and member.username in text_of(page)

    next_step(clock)
    assert another_browser.sign_in(member, container, pin=NEW_PIN).status_code == 302
    next_step(clock)
    assert Browser(another_browser.client.application.test_client()).sign_in(
        member, container
    ).status_code == 401  # the old PIN
    with container.unit() as unit:
        tags = list(unit.session.scalars(
            select(AuditEntry.tag).where(AuditEntry.tag.like("reset:pin:%"))
            .order_by(AuditEntry.seq)
        ))
    assert tags[0] == "reset:pin:requested" and tags[-1] == "reset:pin:completed"


def test_a_password_reset_from_the_people_list_to_signing_in_with_the_new_password(
    container: Container, browser: Browser, another_browser: Browser,
    people: tuple[Member, Member], clock: FrozenClock,
) -> None:
    admin, member = people
    assert browser.sign_in(admin, container).status_code == 302
    code = printed_code(container, send_letter(browser, member, "password"))
    assert another_browser.client.get("/reset-password/new").headers["Location"].endswith(
        "/reset-password"
    )

    proved = password_step(another_browser, container, member, code)
    assert proved.status_code == 302
    assert proved.headers["Location"].endswith("/reset-password/new")
    weak = another_browser.submit(
        "/reset-password/new", {"password": "password", "password_confirmation": "password"}
    )
    assert weak.status_code == 200 and "govuk-error-message" in text_of(weak)
    done = another_browser.submit(
        "/reset-password/new",
        {"password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD},
    )
    assert done.status_code == 302 and done.headers["Location"].endswith("/reset-password/done")
    assert "Your password has been reset" in text_of(
        another_browser.client.get("/reset-password/done")
    )

    next_step(clock)
    member.password, old = NEW_PASSWORD, member.password
    assert another_browser.sign_in(member, container).status_code == 302
    member.password = old
    next_step(clock)
    fresh = Browser(another_browser.client.application.test_client())
    assert fresh.sign_in(member, container).status_code == 401


def test_every_failed_pin_reset_page_looks_the_same(
    container: Container, browser: Browser, people: tuple[Member, Member], clock: FrozenClock,
) -> None:
    admin, member = people
    assert browser.sign_in(admin, container).status_code == 302
    code = printed_code(container, send_letter(browser, member, "pin"))
    browser.sign_out()
    attempts = [
        {"username": "no.such.person"},
        {"password": "not the password 12"},
        {"letter_code": "7QK2M-9XHRT-ABCDE-FGHJK-MNPQR-STVWX"},
        {"code": "000000" if member.totp(container) != "000000" else "111111"},
    ]
    responses = []
    for wrong in attempts:
        next_step(clock)
        responses.append(pin_steps(browser, container, member, code, **wrong))
    assert {r.status_code for r in responses} == {401}
    assert len({main_of(r) for r in responses}) == 1
    assert ResetFailed.title.split(",")[0] in text_of(responses[0])
    # After all that, the letter still works: only a full proof uses it up.
    next_step(clock)
    assert pin_steps(browser, container, member, code).status_code == 302


def test_every_failed_password_reset_page_looks_the_same(
    container: Container, browser: Browser, people: tuple[Member, Member], clock: FrozenClock,
) -> None:
    admin, member = people
    assert browser.sign_in(admin, container).status_code == 302
    code = printed_code(container, send_letter(browser, member, "password"))
    browser.sign_out()
    attempts = [
        {"username": "no.such.person"},
        {"pin": "135792"},
        {"letter_code": "7QK2M-9XHRT-ABCDE-FGHJK-MNPQR-STVWX"},
        {"code": "000000" if member.totp(container) != "000000" else "111111"},
    ]
    responses = []
    for wrong in attempts:
        next_step(clock)
        responses.append(password_step(browser, container, member, code, **wrong))
    assert {r.status_code for r in responses} == {401}
    assert len({main_of(r) for r in responses}) == 1
    # The form is not refilled: nothing typed comes back on the page.
    assert member.username not in main_of(responses[1])


def test_who_may_not_send_a_reset_letter_is_refused_on_the_page(
    container: Container, world: World, browser: Browser, people: tuple[Member, Member],
) -> None:
    admin, member = people
    outsider = world.member(world.organisation("Southshire Council"), Role.ORGANISATION_ADMIN)
    assert browser.sign_in(outsider, container).status_code == 302
    for kind in ("pin", "password"):
        path = f"/people/{member.person.id}/reset-{kind}"
        assert browser.client.get(path).status_code == 403
        token = browser.token("/")
        refused = browser.client.post(path, data={"csrf_token": token})
        assert refused.status_code == 403
        assert member.person.display_name not in text_of(refused)
    browser.sign_out()
    # An admin for themselves: no link, and the page refuses.
    assert browser.sign_in(admin, container).status_code == 302
    assert f"/people/{admin.person.id}/reset-pin" not in text_of(browser.client.get("/people"))
    assert browser.client.get(f"/people/{admin.person.id}/reset-pin").status_code == 403
    with container.unit() as unit:
        refusals = list(unit.session.scalars(
            select(AuditEntry.tag).where(AuditEntry.outcome == "refused")
            .order_by(AuditEntry.seq)
        ))
        assert refusals == ["reset:pin:refused", "reset:password:refused"]
        assert unit.outbox.all() == []


def test_the_local_authority_team_sends_a_letter_from_the_persons_page(
    container: Container, world: World, browser: Browser, people: tuple[Member, Member],
) -> None:
    """The team has no people list, but may ask for a reset for their organisation's people."""
    _admin, member = people
    org = member.person.positions[0].organisation
    team = world.member(org, Role.LOCAL_AUTHORITY_TEAM, given_name="Tara")
    assert browser.sign_in(team, container).status_code == 302
    path = f"/people/{member.person.id}/reset-password"
    assert member.person.display_name in text_of(browser.client.get(path))
    assert browser.submit(path, {}).status_code == 302
    with container.unit() as unit:
        letters = unit.outbox.all()
        assert [letter.kind for letter in letters] == ["password_reset"]
        body = unit.outbox.print_letter(letters[0].id)
    assert f"Username: {member.username}" in body
    assert "/reset-password" in body and "Password reset code: " in body
