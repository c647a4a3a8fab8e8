"""Token pages: the inventory an organisation admin sees, assignment, the
person's activation, resync, loss with its confirmation, the replacement page;
and no page shows or changes another organisation's tokens."""

from __future__ import annotations

import base64

import pyotp
import pytest
from flask import Flask
from sqlalchemy import select

from directory.models import Organisation, Role
from directory.service import Grant, Principal
from idp.container import Container
from tests.factories import Member, World
from tests.idp.conftest import Browser, text_of
from tests.tokens.pskc_files import Package, build_pskc
from tokens.models import AuthenticatorPolicy, OtpToken, TokenState
from tokens.pskc import parse_pskc

OPERATOR = Principal(0, "cli:test", (Grant(0, Role.PLATFORM_ADMIN),))
SECRET = b"page tests secret 20"
HOTP = pyotp.HOTP(base64.b32encode(SECRET).decode())


def stock(world: World, org: Organisation, serials: list[str]) -> list[OtpToken]:
    packages = parse_pskc(
        build_pskc([Package(serial=s, secret=SECRET) for s in serials]), source="t.xml"
    )
    world.unit.inventory.import_packages(OPERATOR, org, packages, source="t.xml",
                                         reason="new stock")
    world.unit.commit()
    return list(world.unit.session.scalars(
        select(OtpToken).where(OtpToken.serial.in_(serials)).order_by(OtpToken.serial)
    ))


def state_of(container: Container, token: OtpToken) -> TokenState:
    with container.unit() as unit:
        row = unit.session.get(OtpToken, token.id)
        assert row is not None
        return row.state


@pytest.fixture
def org(world: World) -> Organisation:
    return world.organisation()


@pytest.fixture
def admin(world: World, org: Organisation) -> Member:
    return world.member(org, Role.ORGANISATION_ADMIN, given_name="Ada")


def test_an_admin_assigns_and_the_person_activates_resyncs_and_reports_loss(
    container: Container, world: World, org: Organisation, admin: Member,
    browser: Browser, another_browser: Browser,
) -> None:
    tokens = stock(world, org, [f"PG{n:03d}" for n in range(55)])
    member = world.member(org, given_name="Mo")
    assert browser.sign_in(admin, container).status_code == 302

    listing = browser.client.get("/tokens")
    assert listing.status_code == 200
    body = text_of(listing)
    assert "PG000" in body and "PG049" in body and "PG050" not in body
    assert "Page 1 of 2" in body
    assert "PG054" in text_of(browser.client.get(f"/tokens?organisation={org.id}&page=2"))

    token = tokens[0]
    detail = f"/tokens/{token.id}"
    # Someone unknown, or the admin themself: the same refusal, nothing assigned.
    for username in ("no.such.person", admin.username):
        refused = browser.submit(f"{detail}/assign", {"username": username}, page=detail)
        assert refused.status_code == 400
        assert "There is no one with that username" in text_of(refused)
    assigned = browser.submit(f"{detail}/assign", {"username": member.username}, page=detail)
    assert assigned.status_code == 302
    assert state_of(container, token) is TokenState.ASSIGNED
    assert "assigned" in text_of(browser.client.get("/tokens?state=assigned")).lower()

    # The person, signed in with the soft token, activates the hardware one.
    person = another_browser
    assert person.sign_in(member, container).status_code == 302
    assert "PG000" in text_of(person.client.get("/tokens/mine"))
    wrong = person.submit(f"{detail}/activate", {"code": "000000"})
    assert wrong.status_code == 200 and "The code is not right" in text_of(wrong)
    assert person.submit(f"{detail}/activate", {"code": HOTP.at(0)}).status_code == 302
    assert state_of(container, token) is TokenState.ACTIVE

    # Out of step: the person resyncs it.
    resynced = person.submit(f"{detail}/resync", {"first_code": HOTP.at(40),
                                                  "second_code": HOTP.at(41)})
    assert resynced.status_code == 302

    # History, as the admin sees it.
    history = text_of(browser.client.get(detail))
    for event in ("Imported", "Assigned", "Activated", "Resynced"):
        assert event in history
    # The seed is never shown again, in any form.
    b32 = base64.b32encode(SECRET).decode().rstrip("=")
    for page in (history, text_of(person.client.get("/tokens/mine")),
                 text_of(browser.client.get("/tokens"))):
        assert b32 not in page and base64.b64encode(SECRET).decode() not in page

    # Loss: a confirmation page first, then the token stops and the person is signed out.
    confirm = browser.client.get(f"{detail}/lost")
    assert confirm.status_code == 200 and "signed out on every device" in text_of(confirm)
    unanswered = browser.submit(f"{detail}/lost", {})
    assert unanswered.status_code == 200
    assert state_of(container, token) is TokenState.ACTIVE
    assert browser.submit(f"{detail}/lost", {"what": "lost"}).status_code == 302
    assert state_of(container, token) is TokenState.LOST
    gone = person.client.get("/tokens/mine")
    assert gone.status_code == 302 and "/sign-in" in gone.headers["Location"]


def test_a_replacement_is_activated_on_the_public_page_then_signs_in(
    container: Container, world: World, org: Organisation, admin: Member, browser: Browser,
) -> None:
    (old, new) = stock(world, org, ["OLDTOKEN", "NEWTOKEN"])
    member = world.member(org, given_name="Rae")
    inventory = world.unit.inventory
    inventory.assign(world.principal(admin), old.serial, member.person)
    world.unit.commit()
    inventory.activate(world.principal(member), old.id, HOTP.at(0))
    inventory.report_lost(world.principal(admin), old.id)
    inventory.assign(world.principal(admin), new.serial, member.person)
    world.unit.commit()

    page = browser.client.get("/activate/replacement")
    assert page.status_code == 200
    fields = {"username": member.username, "password": member.password, "pin": member.pin}
    wrong_pin = browser.submit("/activate/replacement", {**fields, "pin": "111111",
                                                          "code": HOTP.at(0)})
    wrong_code = browser.submit("/activate/replacement", {**fields, "code": "123456"})
    assert wrong_pin.status_code == wrong_code.status_code == 401
    # One message whatever was wrong.
    assert "do not match our records" in text_of(wrong_pin)
    assert text_of(wrong_pin).count("do not match") == text_of(wrong_code).count("do not match")
    done = browser.submit("/activate/replacement", {**fields, "code": HOTP.at(0)})
    assert done.status_code == 302 and done.headers["Location"].endswith("/sign-in")
    assert state_of(container, new) is TokenState.ACTIVE
    signed = browser.sign_in(member, container, code=HOTP.at(1))
    assert signed.status_code == 302
    with container.unit() as unit:
        assert unit.session.get(OtpToken, old.id).state is TokenState.LOST  # type: ignore[union-attr]


def test_the_holder_reporting_their_own_token_is_signed_out(
    container: Container, world: World, org: Organisation, admin: Member, browser: Browser,
) -> None:
    (token,) = stock(world, org, ["MYOWN1"])
    member = world.member(org)
    world.unit.inventory.assign(world.principal(admin), token.serial, member.person)
    world.unit.commit()
    assert browser.sign_in(member, container).status_code == 302
    reported = browser.submit(f"/tokens/{token.id}/lost", {"what": "stolen"})
    assert reported.status_code == 302 and reported.headers["Location"].endswith("/signed-out")
    assert state_of(container, token) is TokenState.REVOKED
    assert browser.client.get("/").status_code == 302


def test_no_page_shows_or_changes_another_organisations_tokens(
    container: Container, world: World, org: Organisation, admin: Member, browser: Browser,
) -> None:
    (token,) = stock(world, org, ["THEIRS1"])
    member = world.member(org)
    other = world.organisation("Southshire")
    stranger = world.member(other, Role.ORGANISATION_ADMIN, given_name="Sid")
    stock(world, other, ["OURS1"])
    assert browser.sign_in(stranger, container).status_code == 302
    # Their own list holds only their own tokens.
    own = text_of(browser.client.get("/tokens"))
    assert "OURS1" in own and "THEIRS1" not in own
    for path in (f"/tokens?organisation={org.id}", f"/tokens/{token.id}",
                 f"/tokens/{token.id}/lost", f"/tokens/{token.id}/resync",
                 f"/tokens/{token.id}/activate"):
        assert browser.client.get(path).status_code == 403, path
    token_value = browser.token("/tokens")
    for path, data in (
        (f"/tokens/{token.id}/assign", {"username": member.username}),
        (f"/tokens/{token.id}/lost", {"what": "stolen"}),
        (f"/tokens/{token.id}/resync", {"first_code": "123456", "second_code": "654321"}),
        (f"/tokens/{token.id}/activate", {"code": "123456"}),
    ):
        response = browser.client.post(path, data={"csrf_token": token_value, **data})
        assert response.status_code == 403, path
    assert state_of(container, token) is TokenState.IN_STOCK
    # A practitioner has no inventory at all.
    practitioner = Browser(browser.client.application.test_client())
    assert practitioner.sign_in(member, container).status_code == 302
    assert practitioner.client.get("/tokens").status_code == 403
    assert practitioner.client.get(f"/tokens/{token.id}").status_code == 403


def test_an_organisation_admin_sets_the_authenticator_policy_on_its_page(
    app: Flask, container: Container, world: World
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    browser = Browser(app.test_client())
    assert browser.sign_in(admin, container).status_code == 302
    page = f"/tokens/policy/{org.id}"
    shown = browser.client.get(page)
    assert shown.status_code == 200
    saved = browser.submit(
        page,
        {"allowed": ["hardware_token", "security_key"], "attestation": "direct",
         "user_verification": "required"},
    )
    assert saved.status_code == 302
    with container.unit() as unit:
        row = unit.session.get(AuthenticatorPolicy, org.id)
        assert row is not None
        assert (row.allow_soft_token, row.allow_hardware_token, row.allow_security_key) == (
            False, True, True,
        )
        assert (row.attestation, row.user_verification) == ("direct", "required")
    # Nothing allowed at all is refused with a field error, and nothing changes.
    refused = browser.submit(page, {"attestation": "none", "user_verification": "preferred"})
    assert refused.status_code == 200
    assert "Choose at least one authenticator" in refused.get_data(as_text=True)
    with container.unit() as unit:
        row = unit.session.get(AuthenticatorPolicy, org.id)
        assert row is not None and row.allow_soft_token is False and row.attestation == "direct"


@pytest.mark.parametrize("who", ["other_admin", "practitioner"])
def test_nobody_else_sees_or_sets_an_organisations_policy(
    who: str, app: Flask, container: Container, world: World
) -> None:
    org = world.organisation()
    other = world.organisation("Southshire Council")
    actor = (
        world.member(other, Role.ORGANISATION_ADMIN) if who == "other_admin" else world.member(org)
    )
    browser = Browser(app.test_client())
    assert browser.sign_in(actor, container).status_code == 302
    page = f"/tokens/policy/{org.id}"
    assert browser.client.get(page).status_code == 403
    posted = browser.submit(
        page, {"allowed": ["soft_token"], "attestation": "none", "user_verification": "preferred"},
        page="/tokens/mine",
    )
    assert posted.status_code == 403
    with container.unit() as unit:
        assert unit.session.get(AuthenticatorPolicy, org.id) is None
