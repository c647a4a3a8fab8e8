"""The children's pages: search with a reason, records (restricted when
shielded), the override after a warning, shielding, brokered contact, the
team's alerts and audit trail; refusals as pages, never stack traces."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from core.audit import AuditEntry
from directory.children.models import ChildRightKind
from directory.children.service import Reason
from idp.container import Container
from tests.directory.children.conftest import OPERATOR, Kids, row
from tests.directory.children.conftest import kids as kids  # the fixture, shared
from tests.idp.conftest import Browser, gov_date, text_of

REASON = {"reason": "referral", "reason_detail": "School nurse referral 2026/441"}


def _family(kids: Kids) -> None:
    kids.load([row(forename="Alice"), row(forename="Carly", postcode="NE1 7XY")])
    kids.shield(kids.child("Hartley", "Carly"))


def _search(browser: Browser, **fields: object):  # type: ignore[no-untyped-def]
    return browser.submit("/children", {**REASON, "surname": "Hartley",
                                        "date_of_birth": ["", "", ""], "sort": "name",
                                        "page": "1", **fields})


def test_search_needs_a_reason(kids: Kids, container: Container, browser: Browser) -> None:
    _family(kids)
    browser.sign_in(kids.practitioner, container)
    assert browser.client.get("/children").status_code == 200
    refused = _search(browser, reason="", reason_detail="")
    assert refused.status_code == 400
    assert "Select a reason" in text_of(refused) or "select a reason" in text_of(refused)
    assert "Alice" not in text_of(refused)


def test_search_shows_results_and_hides_shielded_on_hidden_fields(
        kids: Kids, container: Container, browser: Browser) -> None:
    _family(kids)
    browser.sign_in(kids.practitioner, container)
    by_name = _search(browser)
    assert by_name.status_code == 200
    page = text_of(by_name)
    assert "2 children found" in page and "Carly" in page and "Shielded" in page
    by_district = text_of(_search(browser, postcode_district="NE1"))
    assert "1 child found" in by_district and "Carly" not in by_district
    by_dob = _search(browser, date_of_birth=gov_date(date(2015, 3, 14)))
    assert "2 children found" in text_of(by_dob)


def test_a_record_asks_for_a_reason_then_shows_it(kids: Kids, container: Container,
                                                  browser: Browser) -> None:
    _family(kids)
    alice = kids.child("Hartley", "Alice")
    browser.sign_in(kids.practitioner, container)
    _search(browser)  # the search's reason is offered again
    ask = browser.client.get(f"/children/{alice.public_id}")
    assert ask.status_code == 200 and "School nurse referral 2026/441" in text_of(ask)
    shown = browser.submit(f"/children/{alice.public_id}", REASON)
    assert shown.status_code == 200
    assert "12 Station Road" in text_of(shown) and "07700 900123" in text_of(shown)
    refused = browser.submit(f"/children/{alice.public_id}", {"reason": "", "reason_detail": ""})
    assert refused.status_code == 400 and "Station Road" not in text_of(refused)


def test_a_shielded_record_is_restricted_and_offers_brokered_contact(
        kids: Kids, container: Container, browser: Browser, another_browser: Browser) -> None:
    _family(kids)
    carly = kids.child("Hartley", "Carly")
    browser.sign_in(kids.constable, container)
    shown = text_of(browser.submit(f"/children/{carly.public_id}", REASON))
    assert "Joanne Hartley" in shown and "Station Road" not in shown and "NE1" not in shown
    assert "Ask the local authority team for contact" in shown
    assert "Use the shield override" not in shown
    sent = browser.submit(f"/children/{carly.public_id}/contact",
                          {"message": "Attending tonight; need the school's contact details."})
    assert sent.status_code == 302
    another_browser.sign_in(kids.team, container)
    pending = another_browser.client.get("/children/contact-requests")
    assert "Attending tonight" in text_of(pending)
    with container.unit() as unit:
        request_id = unit.children.contact_requests(kids.p(kids.team))[0].id
    decided = another_browser.submit(f"/children/contact-requests/{request_id}",
                                     {"message": "The head will ring you.", "accept": "1"},
                                     page="/children/contact-requests")
    assert decided.status_code == 302
    mine = text_of(browser.client.get("/children/my-requests"))
    assert "accepted" in mine and "The head will ring you." in mine


def test_the_override_warns_then_opens_and_alerts(kids: Kids, container: Container,
                                                  browser: Browser) -> None:
    _family(kids)
    carly = kids.child("Hartley", "Carly")
    with container.unit() as unit:
        unit.children.grant_right(OPERATOR, unit.directory.person(kids.constable.person.id),
                                  ChildRightKind.SHIELD_OVERRIDE)
        unit.commit()
    browser.sign_in(kids.constable, container)
    first = text_of(browser.submit(f"/children/{carly.public_id}", REASON))
    assert "Use the shield override" in first
    warning = browser.submit(f"/children/{carly.public_id}/override", REASON,
                             page=f"/children/{carly.public_id}")
    assert "is logged" in text_of(warning)
    unconfirmed = browser.submit(f"/children/{carly.public_id}", {**REASON, "override": "1"})
    assert unconfirmed.status_code == 400 and "Station Road" not in text_of(unconfirmed)
    opened = browser.submit(f"/children/{carly.public_id}",
                            {**REASON, "override": "1", "confirm": "y"})
    assert opened.status_code == 200 and "12 Station Road" in text_of(opened)
    with container.unit() as unit:
        assert [a.rule for a in unit.children.alerts(kids.p(kids.team))] == ["shield_override"]


def test_the_team_records_a_decision_and_others_are_refused(
        kids: Kids, container: Container, browser: Browser, another_browser: Browser) -> None:
    _family(kids)
    alice = kids.child("Hartley", "Alice")
    browser.sign_in(kids.team, container)
    page = browser.client.get(f"/children/{alice.public_id}/shield")
    assert page.status_code == 200 and "No decision has been recorded" in text_of(page)
    bad = browser.submit(f"/children/{alice.public_id}/shield",
                         {"decision": "shield", "criteria": "court_order",
                          "evidence_reference": "", "review_on": ["", "", ""]})
    assert bad.status_code == 400 and "enter the evidence reference" in text_of(bad)
    done = browser.submit(f"/children/{alice.public_id}/shield",
                          {"decision": "shield", "criteria": "court_order",
                           "evidence_reference": "FC-88", "review_on": ["", "", ""]})
    assert done.status_code == 302
    assert "25 May 2027" in text_of(browser.client.get(f"/children/{alice.public_id}/shield"))
    assert browser.client.get("/children/shield-reviews").status_code == 200
    another_browser.sign_in(kids.practitioner, container)
    for path in (f"/children/{alice.public_id}/shield", "/children/alerts", "/children/audit",
                 "/children/contact-requests", "/children/shield-reviews"):
        refused = another_browser.client.get(path)
        assert refused.status_code == 403, path
        assert "Traceback" not in text_of(refused)


def test_alerts_and_audit_pages(kids: Kids, container: Container, browser: Browser,
                                another_browser: Browser) -> None:
    kids.load([row(surname="Prentice")])
    browser.sign_in(kids.practitioner, container)
    _search(browser, surname="Prentice")
    another_browser.sign_in(kids.team, container)
    alerts = another_browser.client.get("/children/alerts")
    assert "own surname" in text_of(alerts)
    with container.unit() as unit:
        alert_id = unit.children.alerts(kids.p(kids.team))[0].id
    closed = another_browser.submit(f"/children/alerts/{alert_id}/close", {},
                                    page="/children/alerts")
    assert closed.status_code == 302
    assert "No open alert" in text_of(another_browser.client.get("/children/alerts"))
    trail = text_of(another_browser.client.get("/children/audit"))
    assert "children:search" in trail and "alex.prentice" in trail


def test_pages_need_sign_in(client: object, kids: Kids) -> None:
    for path in ("/children", "/children/alerts", "/children/my-requests"):
        response = client.get(path)  # type: ignore[attr-defined]
        assert response.status_code == 302 and "/sign-in" in response.headers["Location"]


def test_the_conflict_queue_page(kids: Kids, container: Container, browser: Browser) -> None:
    kids.load([row()])
    kids.load([row(carer1_phone="07700 900999")], source="ORG003")
    browser.sign_in(kids.team, container)
    page = browser.client.get("/children/conflicts")
    assert "carers" in text_of(page) and "Northshire Health" in text_of(page)
    with container.unit() as unit:
        conflict_id = unit.children.conflicts(kids.p(kids.team))[0].id
    done = browser.submit(f"/children/conflicts/{conflict_id}", {"resolution": "accept"},
                          page="/children/conflicts")
    assert done.status_code == 302
    assert "No conflict is waiting" in text_of(browser.client.get("/children/conflicts"))


def _involvement(browser: Browser, public_id: str, **fields: object):  # type: ignore[no-untyped-def]
    return browser.submit(f"/children/{public_id}/services", {
        "role": "service", "starts_on": ["", "", ""], "ends_on": ["", "", ""], **fields})


def test_a_service_is_recorded_around_a_child_under_the_record_rules(
        kids: Kids, container: Container, browser: Browser, another_browser: Browser) -> None:
    _family(kids)
    alice = kids.child("Hartley", "Alice")
    browser.sign_in(kids.nurse, container)
    shown = text_of(browser.submit(f"/children/{alice.public_id}", REASON))
    assert "Record a service working with this child" in shown
    form = browser.client.get(f"/children/{alice.public_id}/services")
    assert form.status_code == 200 and "Service number" in text_of(form)
    assert "Hartley" not in text_of(form)  # the form shows nothing of the record
    # A sensitive service needs its grounds; an unknown number is named as such.
    clinic = str(kids.sexual_health.id)
    without = _involvement(browser, alice.public_id, service_id=clinic)
    assert without.status_code == 400 and "significant harm" in text_of(without)
    unknown = _involvement(browser, alice.public_id, service_id="999999")
    assert unknown.status_code == 400 and "no service with that number" in text_of(unknown)
    backwards = _involvement(browser, alice.public_id, service_id=str(kids.gp.id),
                             role="gp_practice", starts_on=gov_date(date(2026, 3, 1)),
                             ends_on=gov_date(date(2026, 2, 1)))
    assert backwards.status_code == 400 and "on or after the start date" in text_of(backwards)
    done = _involvement(browser, alice.public_id, service_id=clinic,
                        sensitive_basis="consent", starts_on=gov_date(date(2026, 9, 1)),
                        assessment_held="y")
    assert done.status_code == 302, text_of(done)
    # Only the responsible team reads the sensitive service, with its dates.
    own = text_of(browser.submit(f"/children/{alice.public_id}", REASON))
    assert "Clinic 4YP" not in own
    another_browser.sign_in(kids.team, container)
    team = text_of(another_browser.submit(f"/children/{alice.public_id}", REASON))
    assert "Clinic 4YP" in team and "1 Sep 2026" in team and "Sensitive" in team
    with container.unit() as unit:
        view = unit.children.view(kids.p(kids.team), Reason(REASON["reason"],
                                                            REASON["reason_detail"]),
                                  alice.public_id)
        [clinic_row] = [i for i in view.involvements if i.sensitive]
        assert clinic_row.practitioner_name == kids.nurse.person.display_name
        assert clinic_row.assessment_held


def test_only_the_service_organisation_or_the_team_records_a_service(
        kids: Kids, container: Container, browser: Browser) -> None:
    _family(kids)
    alice = kids.child("Hartley", "Alice")
    browser.sign_in(kids.constable, container)
    refused = _involvement(browser, alice.public_id, service_id=str(kids.gp.id))
    assert refused.status_code == 403
    assert _involvement(browser, "no-such-child", service_id=str(kids.gp.id)).status_code == 404
    with container.unit() as unit:
        assert unit.session.scalars(select(AuditEntry.outcome).where(
            AuditEntry.tag == "children:involvement")).all() == ["refused"]
