"""The API's delegated administration beyond suspending: sponsoring, movers'
positions and their decisions, closing, unlocking and reset letters. Refusals
first (another organisation, separation of duties, a missing reason), then
what an administrator can do, each on the audit trail of the organisation."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from directory.models import PersonStatus, PositionRequest, Role
from idp.container import Container
from tests.factories import Member
from tests.idp.api.conftest import Cast
from tests.idp.api.test_api import _get, _post, _problem, _status
from tests.tokens.test_signin import set_lock
from tokens.attempts import guard_for
from vetting.models import Application

SPONSOR = {"given_name": "Nia", "family_name": "New", "work_email": "nia@example.org",
           "role": "practitioner"}


def _locked(container: Container, member: Member) -> bool:
    with container.unit() as unit:
        return guard_for(unit.session, member.person.id).locked_permanently


def _counts(container: Container) -> tuple[int, int, int]:
    with container.unit() as unit:
        return (len(unit.session.scalars(select(Application.id)).all()),
                len(unit.session.scalars(select(PositionRequest.id)).all()),
                len(unit.outbox.all()))


def _trail(app: Flask, token: str, org_id: int) -> list[dict[str, Any]]:
    body = _get(app, f"/api/v1/organisations/{org_id}/audit-trail?per_page=100", token)
    items: list[dict[str, Any]] = body.get_json()["items"]
    return items


def test_another_organisations_admin_is_refused_every_new_operation(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.other_admin)
    staff = cast.staff[0]
    set_lock(container, staff, permanent=True)
    before = _counts(container)
    org = f"/api/v1/organisations/{cast.org.id}"
    for path in (f"{org}/applications", f"{org}/position-requests"):
        _problem(_get(app, path, token), 403, "not_allowed")
    _problem(_post(app, f"{org}/applications", token, SPONSOR), 403)
    _problem(_post(app, f"{org}/position-requests", token,
                   {"username": staff.username, "role": "practitioner", "reason": "x"}), 403)
    for act in ("closure", "unlock", "pin-reset", "password-reset"):
        _problem(_post(app, f"/api/v1/people/{staff.person.id}/{act}", token,
                       {"reason": "walker"}), 403)
    assert _counts(container) == before and _locked(container, staff)
    assert _status(container, staff.person.id) is PersonStatus.ACTIVE


def test_a_reason_is_required_and_bodies_are_checked_field_by_field(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    staff = cast.staff[0]
    set_lock(container, staff, permanent=True)
    for act in ("unlock", "pin-reset", "password-reset"):
        problem = _problem(_post(app, f"/api/v1/people/{staff.person.id}/{act}", token, {}),
                           400, "invalid_input")
        assert problem["errors"][0]["field"] == "reason"
    org = f"/api/v1/organisations/{cast.org.id}"
    for field, bad in (("given_name", "  "), ("family_name", None), ("work_email", "x" * 255),
                       ("role", "emperor"), ("work_phone", 7)):
        body = {**SPONSOR, field: bad}
        problem = _problem(_post(app, f"{org}/applications", token, body), 400)
        assert [e["field"] for e in problem["errors"]] == [field], field
    invalid_email = {**SPONSOR, "work_email": "not an address"}
    assert _problem(_post(app, f"{org}/applications", token, invalid_email),
                    400)["errors"][0]["field"] == "work_email"
    assert _locked(container, staff) and _counts(container)[0] == 0


def test_a_platform_admin_sponsors_only_with_a_reason(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.platform)
    path = f"/api/v1/organisations/{cast.org.id}/applications"
    for body in (SPONSOR, {**SPONSOR, "reason": None}, {**SPONSOR, "reason": "   "},
                 {**SPONSOR, "reason": "\u00a0\t"}):
        problem = _problem(_post(app, path, token, body), 400, "invalid_input")
        assert [e["field"] for e in problem["errors"]] == ["reason"], body
        assert _counts(container)[0] == 0
    made = _post(app, path, token, {**SPONSOR, "reason": "the council's request 42"})
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.get_json()["sponsor_id"] == cast.platform.person.id
    [entry] = [e for e in _trail(app, token, cast.org.id)
               if e["tag"] == "vetting:application:submitted"]
    assert entry["detail"] == {"role": "practitioner", "reason": "the council's request 42"}
    assert _counts(container)[0] == 1


def test_an_admin_sponsors_unlocks_and_sends_letters_and_the_trail_shows_it(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    org = f"/api/v1/organisations/{cast.org.id}"
    made = _post(app, f"{org}/applications", token, {**SPONSOR, "work_phone": None})
    assert made.status_code == 201, made.get_data(as_text=True)
    application = made.get_json()
    assert application["state"] == "submitted"
    assert application["sponsor_id"] == cast.admin.person.id
    second = _post(app, f"{org}/applications", token, {**SPONSOR, "given_name": "Ola"})
    assert second.status_code == 201
    listed = _get(app, f"{org}/applications?per_page=1", token).get_json()
    assert listed["total"] == 2 and listed["items"][0]["given_name"] == "Ola"
    assert listed["links"]["next"] == f"{org}/applications?page=2&per_page=1"
    assert _get(app, f"{org}/applications?state=cleared", token).get_json()["total"] == 0
    _problem(_get(app, f"{org}/applications?state=odd", token), 400)
    staff = cast.staff[1]
    set_lock(container, staff, permanent=True)
    unlocked = _post(app, f"/api/v1/people/{staff.person.id}/unlock", token,
                     {"reason": "rang the desk"})
    assert unlocked.status_code == 200 and not _locked(container, staff)
    letter = _post(app, f"/api/v1/people/{staff.person.id}/pin-reset", token,
                   {"reason": "forgot it"})
    assert letter.status_code == 200, letter.get_data(as_text=True)
    assert letter.get_json()["kind"] == "pin" and letter.get_json()["letter_id"]
    assert _post(app, f"/api/v1/people/{staff.person.id}/password-reset", token,
                 {"reason": "forgot it"}).get_json()["kind"] == "password"
    tags = {e["tag"]: e for e in _trail(app, token, cast.org.id)}
    assert {"vetting:application:submitted", "signin:unlocked", "reset:pin:requested",
            "reset:password:requested"} <= set(tags)
    # An organisation's own admin owes no reason for sponsoring.
    assert tags["vetting:application:submitted"]["detail"] == {"role": "practitioner"}
    assert tags["signin:unlocked"]["detail"]["reason"] == "rang the desk"
    assert tags["reset:pin:requested"]["detail"]["reason"] == "forgot it"


def test_only_the_team_and_platform_admins_close_accounts(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    target = cast.staff[2].person.id
    admin = cast.token(app, container, clock, cast.admin)
    _problem(_post(app, f"/api/v1/people/{target}/closure", admin, {"reason": "left"}), 403)
    assert _status(container, target) is PersonStatus.ACTIVE
    platform = cast.token(app, container, clock, cast.platform)
    _problem(_post(app, f"/api/v1/people/{target}/closure", platform, {"reason": " "}), 400)
    done = _post(app, f"/api/v1/people/{target}/closure", platform, {"reason": "left"})
    assert done.status_code == 200 and done.get_json()["status"] == "closed"
    _problem(_post(app, f"/api/v1/people/{target}/closure", platform, {"reason": "x"}), 409)


def test_a_mover_is_asked_for_by_one_admin_and_decided_by_another(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    second = cast.world.member(cast.org, Role.ORGANISATION_ADMIN, given_name="Ben",
                               family_name="Second")
    token = cast.token(app, container, clock, cast.admin)
    org = f"/api/v1/organisations/{cast.org.id}"
    mover = {"username": cast.other_admin.username, "role": "practitioner",
             "reason": "joins our team"}
    _problem(_post(app, f"{org}/position-requests", token, {**mover, "reason": ""}), 400)
    _problem(_post(app, f"{org}/position-requests", token, {**mover, "username": "no.one"}),
             400)
    asked = _post(app, f"{org}/position-requests", token, mover)
    assert asked.status_code == 201, asked.get_data(as_text=True)
    request_id = asked.get_json()["id"]
    assert asked.get_json()["state"] == "pending"
    pending = _get(app, f"{org}/position-requests", token).get_json()
    assert [r["id"] for r in pending["items"]] == [request_id] and pending["total"] == 1
    decision = f"/api/v1/position-requests/{request_id}/decision"
    # Nobody decides what they asked for; an application is nobody's second pair of eyes.
    own = _problem(_post(app, decision, token, {"decision": "approved", "reason": "ok"}), 403)
    assert "Someone else" in own["detail"]
    machine = cast.machine_token(app)
    _problem(_post(app, decision, machine, {"decision": "approved", "reason": "ok"}), 403)
    _problem(_post(app, f"{org}/position-requests", machine, mover), 403)
    other = cast.token(app, container, clock, cast.other_admin)
    _problem(_post(app, decision, other, {"decision": "approved", "reason": "mine"}), 403)
    second_token = cast.token(app, container, clock, second)
    _problem(_post(app, decision, second_token, {"decision": "maybe", "reason": "ok"}), 400)
    done = _post(app, decision, second_token, {"decision": "approved", "reason": "checked"})
    assert done.status_code == 200, done.get_data(as_text=True)
    assert done.get_json()["state"] == "approved" and done.get_json()["position_id"]
    _problem(_post(app, decision, second_token, {"decision": "refused", "reason": "x"}), 409)
    assert _get(app, f"{org}/position-requests", token).get_json()["total"] == 0
    tags = [e["tag"] for e in _trail(app, token, cast.org.id)]
    assert "admin:position:requested" in tags and "admin:position:approved" in tags


def test_an_application_sponsors_for_its_own_organisation_without_a_person(
    app: Flask, cast: Cast
) -> None:
    machine = cast.machine_token(app)
    made = _post(app, f"/api/v1/organisations/{cast.org.id}/applications", machine, SPONSOR)
    assert made.status_code == 201 and made.get_json()["sponsor_id"] is None
    _problem(_post(app, f"/api/v1/organisations/{cast.other_org.id}/applications", machine,
                   SPONSOR), 403)


def test_a_local_authority_team_acts_in_its_area_over_the_api(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    world = cast.world
    school = cast.area_school()
    teacher = world.member(school, given_name="Tom", family_name="Teacher")
    team = world.member(cast.org, Role.LOCAL_AUTHORITY_TEAM, given_name="Lara")
    token = cast.token(app, container, clock, team)
    set_lock(container, teacher, permanent=True)
    listed = _get(app, "/api/v1/organisations", token).get_json()
    assert {o["id"] for o in listed["items"]} == {cast.org.id, school.id}
    assert _post(app, f"/api/v1/people/{teacher.person.id}/unlock", token,
                 {"reason": "asked"}).status_code == 200
    assert _post(app, f"/api/v1/organisations/{school.id}/applications", token,
                 SPONSOR).status_code == 201
    # Not the other organisation, which is in nobody's area of ours.
    _problem(_post(app, f"/api/v1/people/{cast.other_admin.person.id}/unlock", token,
                   {"reason": "x"}), 403)
    with container.unit() as unit:
        entries = unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == "signin:unlocked")).all()
        assert [e.organisation_id for e in entries] == [school.id]
