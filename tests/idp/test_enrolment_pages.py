"""Enrolment through the pages, from the sponsor's form to the newcomer's first
sign-in, and the refusals along the way."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

import pyotp
import pytest
from flask import Flask
from markupsafe import escape
from sqlalchemy import func, select

from core.clock import FrozenClock
from directory.models import Organisation, PersonStatus, Role
from idp.container import Container
from tests.factories import Member, World
from tests.idp.conftest import (
    Browser,
    audit_tags,
    error_summary,
    gov_date,
    text_of,
    totp_secret_on,
)
from tests.runlog import remember
from tests.vetting.test_staff_import import proposal
from tokens.errors import ActivationFailed
from vetting.models import Application, ApplicationState, IdentityCheck

NEW_PASSWORD = "granite lemon parachute 58"
NEW_PIN = "602851"


@dataclass
class Cast:
    org: Organisation
    sponsor: Member
    officer_a: Member
    officer_b: Member
    signed_in: dict[str, Browser] = field(default_factory=dict)

    def browser(self, app: Flask, container: Container, who: str) -> Browser:
        """Each person signs in once (a second sign-in would reuse the token code)."""
        if who not in self.signed_in:
            self.signed_in[who] = _browser(app, getattr(self, who), container)
        return self.signed_in[who]


@pytest.fixture
def cast(world: World) -> Cast:
    org = world.organisation()
    return Cast(
        org,
        world.member(org, Role.ORGANISATION_ADMIN, given_name="Olivia"),
        world.member(org, Role.VETTING_OFFICER, given_name="Victor"),
        world.member(org, Role.VETTING_OFFICER, given_name="Vera"),
    )


def _browser(app: Flask, member: Member, container: Container) -> Browser:
    browser = Browser(app.test_client())
    assert browser.sign_in(member, container).status_code == 302
    return browser


def _location(response: object) -> str:
    assert response.status_code == 302, text_of(response)[:2000]  # type: ignore[attr-defined]
    return urlsplit(response.headers["Location"]).path  # type: ignore[attr-defined]


def _application_count(container: Container) -> int:
    with container.unit() as unit:
        return int(unit.session.scalar(select(func.count()).select_from(Application)) or 0)


def _application(container: Container, application_id: int) -> Application:
    with container.unit() as unit:
        found = unit.session.get(Application, application_id)
        assert found is not None
        unit.session.expunge(found)
        return found


def _sponsor(app: Flask, container: Container, cast: Cast, family_name: str = "Newstarter") -> int:
    sponsor = cast.browser(app, container, "sponsor")
    response = sponsor.submit(
        "/applications/new",
        {
            "organisation_id": str(cast.org.id),
            "given_name": "Sam",
            "family_name": family_name,
            "work_email": f"sam.{family_name.lower()}@example.org",
            "work_phone": "01234 567890",
            "role": Role.PRACTITIONER.value,
        },
    )
    match = re.fullmatch(r"/applications/(\d+)", _location(response))
    assert match
    return int(match.group(1))


def _record_checks(browser: Browser, container: Container, application_id: int) -> None:
    today = container.clock.today()
    page = f"/applications/{application_id}"
    checks = {
        "identity": {
            "identity-confidence": "medium",
            "identity-method": "face_to_face",
            "identity-checked_on": gov_date(today - timedelta(days=3)),
            "identity-evidence_reference": "NCC-ID-0042",
        },
        "certificate": {
            "certificate-certificate_number": "0012 3456 7890",
            "certificate-issued_on": gov_date(today - timedelta(days=20)),
            "certificate-outcome": "nothing_recorded",
        },
        "training": {"training-completed_on": gov_date(today - timedelta(days=2))},
        "agreement": {"agreement-signed_on": gov_date(today - timedelta(days=2))},
    }
    for name, fields in checks.items():
        response = browser.submit(f"{page}/{name}", fields, page=page, prefix=name)
        assert _location(response) == page, name


def _decide(browser: Browser, application_id: int, decision: str = "cleared"):  # type: ignore[no-untyped-def]
    page = f"/applications/{application_id}"
    return browser.submit(
        f"{page}/decision",
        {"decision-decision": decision, "decision-reason": "All checks satisfactory"},
        page=page,
        prefix="decision",
    )


def _letter(world: World) -> tuple[str, str]:
    waiting = world.unit.outbox.waiting()
    assert len(waiting) == 1 and waiting[0].kind == "activation"
    body = world.unit.outbox.print_letter(waiting[0].id)
    world.unit.commit()
    username = re.search(r"Username: (\S+)", body)
    code = re.search(r"Activation code: (\S+)", body)
    assert username and code
    remember("activation code", code.group(1))
    return username.group(1), code.group(1)


def _cleared(app: Flask, container: Container, world: World, cast: Cast) -> tuple[str, str]:
    application_id = _sponsor(app, container, cast)
    _record_checks(cast.browser(app, container, "officer_a"), container, application_id)
    assert _location(_decide(cast.browser(app, container, "officer_b"), application_id))
    return _letter(world)


def _totp_now(secret: str, container: Container, offset_steps: int = 0) -> str:
    period = container.settings.totp.period_seconds
    at = int(container.clock.now().timestamp()) + offset_steps * period
    return pyotp.TOTP(secret, interval=period).at(at)


def test_the_whole_enrolment_through_the_pages(
    app: Flask, container: Container, clock: FrozenClock, world: World, cast: Cast
) -> None:
    application_id = _sponsor(app, container, cast)
    assert _application(container, application_id).state is ApplicationState.SUBMITTED

    officer_a = cast.browser(app, container, "officer_a")
    _record_checks(officer_a, container, application_id)
    detail = text_of(officer_a.client.get(f"/applications/{application_id}"))
    assert "medium confidence, face to face" in detail
    assert "Certificate 001234567890" in detail

    # Four eyes: the officer who recorded the checks may not decide.
    refused = _decide(officer_a, application_id)
    assert refused.status_code == 403
    assert _application(container, application_id).state is ApplicationState.SUBMITTED
    assert world.unit.outbox.waiting() == []

    officer_b = cast.browser(app, container, "officer_b")
    decided = _decide(officer_b, application_id)
    assert _location(decided) == f"/applications/{application_id}"
    assert "Cleared. Sam Newstarter is enrolled" in text_of(
        officer_b.client.get(f"/applications/{application_id}")
    )
    assert _application(container, application_id).state is ApplicationState.CLEARED

    username, code = _letter(world)
    newcomer = Browser(app.test_client())
    # Before activation the newcomer cannot sign in.
    assert newcomer.submit(
        "/sign-in", {"username": username, "password": NEW_PASSWORD}
    ).status_code == 401

    assert _location(
        newcomer.submit("/activate", {"username": username, "code": code})
    ) == "/activate/password"
    assert _location(
        newcomer.submit(
            "/activate/password",
            {"password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD},
        )
    ) == "/activate/token"
    token_page = newcomer.client.get("/activate/token")
    assert token_page.status_code == 200
    secret = totp_secret_on(token_page)
    assert _location(
        newcomer.submit("/activate/token", {"code": _totp_now(secret, container)})
    ) == "/activate/pin"
    assert _location(
        newcomer.submit("/activate/pin", {"pin": NEW_PIN, "pin_confirmation": NEW_PIN})
    ) == "/activate/done"
    assert username in text_of(newcomer.client.get("/activate/done"))

    clock.advance(seconds=container.settings.totp.period_seconds)  # a code not yet used
    assert _location(
        newcomer.submit("/sign-in", {"username": username, "password": NEW_PASSWORD})
    ) == "/sign-in/token"
    assert _location(
        newcomer.submit("/sign-in/token", {"code": _totp_now(secret, container), "pin": NEW_PIN})
    ) == "/"
    home = text_of(newcomer.client.get("/"))
    assert "Sam Newstarter" in home and username in home
    tags = audit_tags(container)
    for tag in ("vetting:application:submitted", "vetting:decision:refused",
                "vetting:decision:cleared", "vetting:enrolled", "activation:completed",
                "signin:success"):
        assert tag in tags


def test_a_sponsor_cannot_apply_for_another_organisation(
    app: Flask, container: Container, world: World, cast: Cast
) -> None:
    other = world.organisation("Elsewhere Borough")
    sponsor = cast.browser(app, container, "sponsor")
    before = _application_count(container)
    response = sponsor.submit(
        "/applications/new",
        {
            "organisation_id": str(other.id),
            "given_name": "Kim",
            "family_name": "Outsider",
            "work_email": "kim@example.org",
            "role": Role.PRACTITIONER.value,
        },
    )
    # The form offers only the sponsor's own organisations; another's id is a field error.
    assert response.status_code in (200, 403)
    if response.status_code == 200:
        assert 'href="#organisation_id"' in error_summary(response)
    assert _application_count(container) == before
    assert "vetting:application:submitted" not in audit_tags(container)


def test_a_practitioner_cannot_sponsor(
    app: Flask, container: Container, world: World, cast: Cast
) -> None:
    practitioner = _browser(app, world.member(cast.org), container)
    response = practitioner.submit(
        "/applications/new",
        {
            "organisation_id": str(cast.org.id),
            "given_name": "Kim",
            "family_name": "Nobody",
            "work_email": "kim@example.org",
            "role": Role.PRACTITIONER.value,
        },
        page="/applications/new",
    )
    assert response.status_code in (200, 403)
    if response.status_code == 200:
        assert "Only an organisation admin can sponsor" in text_of(response)
    assert _application_count(container) == 0


def test_another_organisations_application_does_not_exist_for_its_sponsor_or_officers(
    app: Flask, container: Container, world: World, cast: Cast
) -> None:
    application_id = _sponsor(app, container, cast)
    elsewhere = world.organisation("Elsewhere Borough")
    other_sponsor = _browser(
        app, world.member(elsewhere, Role.ORGANISATION_ADMIN, given_name="Ed"), container
    )
    assert other_sponsor.client.get(f"/applications/{application_id}").status_code == 404
    assert "Sam Newstarter" not in text_of(other_sponsor.client.get("/applications"))
    other_officer = _browser(
        app, world.member(elsewhere, Role.VETTING_OFFICER, given_name="Oona"), container
    )
    page = f"/applications/{application_id}"
    assert other_officer.client.get(page).status_code == 404
    recorded = other_officer.submit(
        f"{page}/training",
        {"training-completed_on": gov_date(container.clock.today())},
        page="/applications",
        prefix="training",
    )
    assert recorded.status_code == 404
    assert _application(container, application_id).training is None


def _activation_failure(browser: Browser, username: str, code: str):  # type: ignore[no-untyped-def]
    response = browser.submit("/activate", {"username": username, "code": code})
    assert response.status_code == 401
    assert str(escape(ActivationFailed.title)) in text_of(response)
    return error_summary(response)


def test_expired_used_and_wrong_codes_are_refused_with_one_message(
    app: Flask, container: Container, clock: FrozenClock, world: World, cast: Cast
) -> None:
    username, code = _cleared(app, container, world, cast)
    wrong = _activation_failure(Browser(app.test_client()), username, "ABCDE-FGHJK-MNPQR")
    unknown = _activation_failure(Browser(app.test_client()), "no.such.person", code)

    # Used once, it is spent.
    first = Browser(app.test_client())
    assert _location(first.submit("/activate", {"username": username, "code": code}))
    used = _activation_failure(Browser(app.test_client()), username, code)
    assert wrong == unknown == used

    # A second newcomer's code, fifteen days later, has expired.
    second_id = _sponsor(app, container, cast, family_name="Latecomer")
    _record_checks(cast.browser(app, container, "officer_a"), container, second_id)
    assert _location(_decide(cast.browser(app, container, "officer_b"), second_id))
    late_username, late_code = _letter(world)
    clock.advance(days=15)
    expired = _activation_failure(Browser(app.test_client()), late_username, late_code)
    assert expired == wrong
    assert "activation:code:success" in audit_tags(container)
    assert audit_tags(container).count("activation:code:failure") == 4


def test_weak_password_and_weak_pin_are_refused_and_the_stage_holds(
    app: Flask, container: Container, world: World, cast: Cast
) -> None:
    username, code = _cleared(app, container, world, cast)
    newcomer = Browser(app.test_client())
    assert _location(newcomer.submit("/activate", {"username": username, "code": code}))

    for weak in ("password1234", "sam newstarter", "short"):
        refused = newcomer.submit(
            "/activate/password", {"password": weak, "password_confirmation": weak}
        )
        assert refused.status_code == 200
        body = text_of(refused)
        assert "govuk-error-message" in body and 'href="#password"' in body
        assert _location(newcomer.client.get("/activate/token")) == "/activate/password"
    mismatch = newcomer.submit(
        "/activate/password",
        {"password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD + "x"},
    )
    assert "The passwords do not match" in text_of(mismatch)
    assert _location(newcomer.client.get("/activate/token")) == "/activate/password"

    assert _location(newcomer.submit(
        "/activate/password", {"password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD}
    )) == "/activate/token"
    secret = totp_secret_on(newcomer.client.get("/activate/token"))
    wrong_code = newcomer.submit("/activate/token", {"code": "000000"})
    assert wrong_code.status_code == 200 and "The code is not right" in text_of(wrong_code)
    assert _location(newcomer.client.get("/activate/pin")) == "/activate/token"
    assert _location(
        newcomer.submit("/activate/token", {"code": _totp_now(secret, container)})
    ) == "/activate/pin"

    for weak in ("111111", "123456", "654321", "12345", "12a456"):
        refused = newcomer.submit("/activate/pin", {"pin": weak, "pin_confirmation": weak})
        assert refused.status_code == 200, weak
        body = text_of(refused)
        assert "govuk-error-message" in body and 'href="#pin"' in body, weak
        assert newcomer.client.get("/activate/pin").status_code == 200
    with container.unit() as unit:
        person = unit.directory.person_by_username(username)
        assert person is not None and person.status is PersonStatus.AWAITING_ACTIVATION
    assert "activation:completed" not in audit_tags(container)


def test_a_hand_made_date_with_missing_parts_is_a_field_error_not_a_crash(
    app: Flask, container: Container, world: World, cast: Cast
) -> None:
    application_id = _sponsor(app, container, cast)
    officer = cast.browser(app, container, "officer_a")
    page = f"/applications/{application_id}"
    for parts in ([], ["25"], ["25", "11"], ["1", "2", "2026", "4"], ["31", "2", "2026"]):
        response = officer.submit(
            f"{page}/training", {"training-completed_on": parts}, page=page, prefix="training"
        )
        assert response.status_code == 400, parts
        assert 'href="#training-completed_on"' in error_summary(response), parts
    assert _application(container, application_id).training is None


def test_a_newcomer_given_a_hardware_token_is_asked_for_its_code_not_shown_an_app_secret(
    app: Flask, container: Container, world: World
) -> None:
    from tests.tokens.pskc_files import Package, build_pskc
    from tokens.pskc import parse_pskc

    org = world.organisation()
    admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    newcomer = world.newcomer(org)
    code = world.unit.activation.issue_code(newcomer)
    packages = parse_pskc(build_pskc([Package(serial="HW-ENROL-7")]), source="t.xml")
    world.unit.inventory.import_packages(admin, org, packages, source="t.xml")
    world.unit.inventory.assign(admin, "HW-ENROL-7", newcomer)
    world.unit.commit()

    browser = Browser(app.test_client())
    browser.submit("/activate", {"username": newcomer.username, "code": code})
    browser.submit(
        "/activate/password", {"password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD}
    )
    page = browser.client.get("/activate/token")
    assert page.status_code == 200
    body = text_of(page)
    assert "HW-ENROL-7" in body
    assert 'id="totp-secret"' not in page.get_data(as_text=True)
    assert "QR code to add your token" not in page.get_data(as_text=True)


def test_a_sponsor_confirms_a_colleague_found_in_the_organisations_directory(
    app: Flask, container: Container, world: World
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    application_id = proposal(world, org)
    browser = _browser(app, admin, container)
    page = browser.client.get(f"/applications/{application_id}")
    assert "Confirm and send for vetting" in text_of(page)
    confirmed = browser.submit(
        f"/applications/{application_id}/confirm", {}, page=f"/applications/{application_id}"
    )
    assert _location(confirmed) == f"/applications/{application_id}"
    stored = _application(container, application_id)
    assert stored.state is ApplicationState.SUBMITTED
    assert stored.sponsor_id == admin.person.id
    assert "vetting:application:submitted" in audit_tags(container)


@pytest.mark.parametrize("who", ["other_admin", "practitioner", "platform_admin"])
def test_nobody_but_the_organisations_sponsor_confirms_a_proposal(
    who: str, app: Flask, container: Container, world: World
) -> None:
    org = world.organisation()
    application_id = proposal(world, org)
    elsewhere = world.organisation("Southshire Council")
    actor = {
        "other_admin": lambda: world.member(elsewhere, Role.ORGANISATION_ADMIN),
        "practitioner": lambda: world.member(org),
        "platform_admin": lambda: world.member(elsewhere, Role.PLATFORM_ADMIN),
    }[who]()
    browser = _browser(app, actor, container)
    page = f"/applications/{application_id}"
    token_page = "/applications" if who != "platform_admin" else page
    response = browser.submit(f"{page}/confirm", {}, page=token_page)
    # Others' proposals do not exist for them; a platform admin sees it but is no sponsor.
    assert response.status_code == (403 if who == "platform_admin" else 404)
    stored = _application(container, application_id)
    assert stored.state is ApplicationState.PROPOSED and stored.sponsor_id is None


def test_the_home_postcode_is_optional_and_a_bad_one_is_named(
    app: Flask, container: Container, world: World, cast: Cast
) -> None:
    application_id = _sponsor(app, container, cast)
    officer = cast.browser(app, container, "officer_a")
    page = f"/applications/{application_id}"
    fields = {
        "identity-confidence": "high",
        "identity-method": "face_to_face",
        "identity-checked_on": gov_date(container.clock.today()),
        "identity-evidence_reference": "NCC-ID-0099",
    }
    assert 'id="identity-home_postcode"' in text_of(officer.client.get(page))
    bad = officer.submit(f"{page}/identity", {**fields, "identity-home_postcode": "NE1 XYZ"},
                         page=page, prefix="identity")
    assert bad.status_code == 400
    assert 'href="#identity-home_postcode"' in error_summary(bad)
    assert "Enter a real UK postcode" in error_summary(bad)
    assert _application(container, application_id).identity_check is None
    good = officer.submit(f"{page}/identity", {**fields, "identity-home_postcode": "ne1 4ab"},
                          page=page, prefix="identity")
    assert _location(good) == page
    with container.unit() as unit:
        key = unit.session.scalar(select(IdentityCheck.home_postcode_key).where(
            IdentityCheck.application_id == application_id))
    assert key is not None and len(key) == 32
