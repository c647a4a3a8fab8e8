"""The service directory pages: search with filters and paging, a service with
its practitioners, and the admins' create, edit and close pages, which no one
from another organisation can use (tenant isolation)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from core.errors import NotAllowed
from directory.models import Organisation, Role
from directory.service import Principal
from directory.services_models import Service
from idp.container import Container
from tests.directory.test_services import audit_tags, details
from tests.factories import World
from tests.idp.conftest import Browser, gov_date, text_of


def form_data(org: Organisation | None = None, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Riverside Surgery", "kind": "gp_practice", "address_line1": "1 River Street",
        "address_line2": "", "town": "Northtown", "postcode": "ne1 4st",
        "phone": "0191 496 0000", "secure_email": "riverside@nhs.net",
        "opening_hours": "Mon-Fri", "starts_on": gov_date(date(2020, 1, 1)),
        "ends_on": ["", "", ""],
    }
    if org is not None:
        data["organisation_id"] = str(org.id)
    data.update(overrides)
    return data


def make_service(container: Container, actor: Principal, org: Organisation,
                 **overrides: object) -> int:
    with container.unit() as unit:
        service = unit.services.create(actor, org.id, details(**overrides))
        unit.commit()
        return service.id


def stored(container: Container, service_id: int) -> Service:
    with container.unit() as unit:
        service = unit.session.get(Service, service_id)
        assert service is not None
        unit.session.expunge(service)
        return service


def test_an_admin_adds_changes_and_closes_a_service_after_confirming(
    container: Container, world: World, browser: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    assert browser.sign_in(admin, container).status_code == 302
    created = browser.submit("/services/new", form_data(org))
    assert created.status_code == 302, text_of(created)
    with container.unit() as unit:
        service_id = unit.session.scalar(select(Service.id))
    assert service_id is not None
    page = browser.client.get(f"/services/{service_id}")
    assert "Riverside Surgery" in text_of(page) and "NE1 4ST" in text_of(page)

    edit_page = browser.client.get(f"/services/{service_id}/edit")
    assert 'value="Riverside Surgery"' in text_of(edit_page)
    changed = browser.submit(f"/services/{service_id}/edit",
                             form_data(phone="0191 496 1111"))
    assert changed.status_code == 302
    assert stored(container, service_id).phone == "0191 496 1111"

    confirm = browser.client.get(f"/services/{service_id}/close")
    assert "Close the service" in text_of(confirm)
    assert stored(container, service_id).ends_on is None  # the GET changed nothing
    closed = browser.submit(f"/services/{service_id}/close", {})
    assert closed.status_code == 302
    assert stored(container, service_id).ends_on is not None
    assert audit_tags(container)[-3:] == ["service:created", "service:updated", "service:closed"]


def test_problems_are_shown_on_their_fields_and_nothing_is_saved(
    container: Container, world: World, browser: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    assert browser.sign_in(admin, container).status_code == 302
    response = browser.submit("/services/new", form_data(org, postcode="NOWHERE",
                                                         secure_email="nope"))
    assert response.status_code == 400
    body = text_of(response)
    assert "not a valid UK postcode" in body and "not a valid email address" in body
    assert 'class="govuk-error-summary"' in body
    with container.unit() as unit:
        assert unit.services.count() == 0


def test_an_admin_of_another_organisation_cannot_edit_or_close(
    container: Container, world: World, browser: Browser
) -> None:
    org, other = world.organisation(), world.organisation("Southshire")
    owner = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    outsider = world.member(other, Role.ORGANISATION_ADMIN)
    service_id = make_service(container, owner, org)
    assert browser.sign_in(outsider, container).status_code == 302
    before = audit_tags(container)
    # The outsider may read the directory, but not change another organisation's entry.
    assert browser.client.get(f"/services/{service_id}").status_code == 200
    assert "Change the service" not in text_of(browser.client.get(f"/services/{service_id}"))
    for path in (f"/services/{service_id}/edit", f"/services/{service_id}/close"):
        refused = browser.client.get(path)
        assert refused.status_code == 403
        assert f'data-error-id="{NotAllowed.error_id}"' in text_of(refused)
    token = browser.token("/services")
    for path, data in ((f"/services/{service_id}/edit", form_data(name="Hijacked")),
                       (f"/services/{service_id}/close", {})):
        assert browser.client.post(path, data={"csrf_token": token, **data}).status_code == 403
    # Nor create one for it: the organisation is not among the choices, and is refused if forced.
    forced = browser.client.post("/services/new",
                                 data={"csrf_token": token, **form_data(org)})
    assert forced.status_code == 400
    with container.unit() as unit:
        assert unit.services.count() == 1
    kept = stored(container, service_id)
    assert kept.name == "Riverside Surgery" and kept.ends_on is None
    assert audit_tags(container) == before


def test_a_practitioner_searches_filters_pages_and_sees_who_works_there(
    container: Container, world: World, browser: Browser
) -> None:
    org = world.organisation()
    admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    reader = world.member(org, given_name="Rita")
    nurse = world.member(org, given_name="Nora", family_name="Nurse")
    surgery = make_service(container, admin, org)
    for n in range(25):
        make_service(container, admin, org, name=f"Team {n:02d}", kind="school_nursing_team",
                     postcode="NE2 1AA")
    make_service(container, admin, org, name="Old Team", kind="school_nursing_team",
                 ends_on="2021-01-01")
    with container.unit() as unit:
        unit.services.attach_position(admin, nurse.person.positions[0].id, surgery)
        unit.commit()
    assert browser.sign_in(reader, container).status_code == 302

    found = text_of(browser.client.get("/services?q=SURGERY"))
    assert "1 service found" in found and "Nora Nurse" in found
    assert nurse.person.work_email in found

    first = text_of(browser.client.get("/services?kind=school_nursing_team&district=ne2"))
    assert "25 services found" in first and "Page 1 of 2" in first
    assert "Team 00" in first and "Team 20" not in first
    assert "page=2" in first and "district=ne2" in first
    second = text_of(browser.client.get("/services?kind=school_nursing_team&district=ne2&page=2"))
    assert "Team 20" in second and "Team 00" not in second

    assert "Old Team" not in text_of(browser.client.get("/services?q=old"))
    with_closed = text_of(browser.client.get("/services?q=old&closed=1"))
    assert "Old Team" in with_closed and "Closed" in with_closed
    detail = text_of(browser.client.get(f"/services/{surgery}"))
    assert "Nora Nurse" in detail and "riverside.surgery@nhs.net" in detail
    assert "Change the service" not in detail
    assert browser.client.get(f"/services/{surgery}/edit").status_code == 403
    assert browser.client.get("/services/new").status_code == 403


def test_a_person_whose_clearance_lapsed_is_refused(
    container: Container, world: World, browser: Browser
) -> None:
    org = world.organisation()
    admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    service_id = make_service(container, admin, org)
    member = world.member(org)
    assert browser.sign_in(member, container).status_code == 302
    assert browser.client.get("/services").status_code == 200
    with container.unit() as unit:
        person = unit.directory.person(member.person.id)
        person.clearance_expires_on = date(2020, 1, 1)
        unit.commit()
    for path in ("/services", f"/services/{service_id}"):
        response = browser.client.get(path)
        assert response.status_code in (302, 403), path
        assert "Riverside" not in text_of(response)


def test_anonymous_visitors_are_sent_to_sign_in(browser: Browser, world: World) -> None:
    for path in ("/services", "/services/1", "/services/new", "/services/1/edit",
                 "/services/1/close"):
        response = browser.client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/sign-in")


def test_an_admin_places_and_removes_a_practitioner_of_their_own_organisation_only(
    container: Container, world: World, browser: Browser
) -> None:
    org, other = world.organisation(), world.organisation("Southshire")
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    nurse = world.member(org, given_name="Nora", family_name="Nurse")
    stranger = world.member(other, given_name="Stan", family_name="Stranger")
    service_id = make_service(container, world.principal(admin), org)
    assert browser.sign_in(admin, container).status_code == 302
    page = f"/services/{service_id}"
    for username in (stranger.username, "nobody.here"):
        refused = browser.submit(f"{page}/practitioners", {"username": username}, page=page)
        assert refused.status_code == 400
        assert "there is no one with that username working in the organisation" in text_of(
            refused)
    placed = browser.submit(f"{page}/practitioners", {"username": nurse.username}, page=page)
    assert placed.status_code == 302
    assert "Nora Nurse" in text_of(browser.client.get(page))
    position_id = nurse.person.positions[0].id
    removed = browser.submit(f"{page}/practitioners/{position_id}/remove", {}, page=page)
    assert removed.status_code == 302
    assert "Nora Nurse" not in text_of(browser.client.get(page))
    assert audit_tags(container)[-2:] == ["service:position_attached",
                                          "service:position_detached"]


def test_an_admin_of_another_organisation_cannot_place_or_remove_people(
    container: Container, world: World, browser: Browser
) -> None:
    org, other = world.organisation(), world.organisation("Southshire")
    owner = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    nurse = world.member(org, given_name="Nora", family_name="Nurse")
    outsider = world.member(other, Role.ORGANISATION_ADMIN)
    service_id = make_service(container, owner, org)
    position_id = nurse.person.positions[0].id
    with container.unit() as unit:
        unit.services.attach_position(owner, position_id, service_id)
        unit.commit()
    assert browser.sign_in(outsider, container).status_code == 302
    page = f"/services/{service_id}"
    assert "Add a practitioner" not in text_of(browser.client.get(page))
    assert browser.submit(f"{page}/practitioners", {"username": nurse.username},
                          page=page).status_code == 403
    assert browser.submit(f"{page}/practitioners/{position_id}/remove", {},
                          page=page).status_code == 403
    with container.unit() as unit:
        assert unit.directory.person(nurse.person.id).positions[0].service_id == service_id
