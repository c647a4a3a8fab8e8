"""The child-record API: a relying application searches and views for the
practitioner signed in through it, under the rules the pages follow. Every
hidden field of a shielded record is tried through search, sort, count, paging
and the error paths; refusals are audited with the application's client id.

Tokens come from the real authorization code flow. Pages here hold 2 results
and a search may match 3 before it must be narrowed, so four Hartleys (one
shielded) cross both limits."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.settings import Settings
from directory.children.models import SensitiveBasis
from directory.children.rules import name_key
from directory.models import PersonStatus, Role
from idp.api import openapi
from idp.oidc.models import OAuthClient
from tests.conftest import make_settings
from tests.directory.children.conftest import Kids, hartleys, row
from tests.directory.children.conftest import kids as kids  # the fixture, shared
from tests.factories import Member
from tests.idp.api.tokens import App, admin_tool, bearer, client_token, person_token, register
from tests.idp.conftest import Browser
from tests.idp.oidc.helpers import DPoPKey

PROBLEM = "application/problem+json"
REASON = {"reason": "child_protection", "reason_detail": "Referral from school nurse, 1234"}
VISIBLE = {"public_id", "identifier", "forename", "surname", "gender", "date_of_birth",
           "parent_name", "shielded", "restricted"}
SEARCH = "/api/v1/children/search"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "instance",
                         children={"page_size": 2, "max_results": 3})


@dataclass
class Records:
    kids: Kids
    flask: Flask
    clock: FrozenClock
    case_system: App  # a relying application allowed children.read
    machine: App  # an application with children.read acting for itself
    admin_tool: App  # allowed the admin scope only

    def token(self, member: Member, app: App | None = None,
              scope: str = "openid children.read", dpop: DPoPKey | None = None) -> str:
        return person_token(self.flask, self.kids.container, self.clock, member,
                            app or self.case_system, scope, dpop=dpop)

    def search(self, token: str, **body: Any) -> Any:
        return self.flask.test_client().post(
            SEARCH, headers=bearer(token), json={**REASON, "surname": "Hartley", **body})

    def view(self, token: str, public_id: str, reason: str = REASON["reason"],
             detail: str = REASON["reason_detail"]) -> Any:
        return self.flask.test_client().get(
            f"/api/v1/children/{public_id}",
            headers={**bearer(token), "ContactPoint-Reason": reason,
                     "ContactPoint-Reason-Detail": detail})

    def walk(self, token: str, **body: Any) -> list[tuple[int, int, int | None, list[str]]]:
        """Every page of a search: (page, pages, total, forenames), and one past the end."""
        seen = []
        page = 1
        while True:
            answer = self.search(token, page=page, **body)
            assert answer.status_code == 200, answer.get_data(as_text=True)
            assert answer.headers["Cache-Control"] == "no-store"
            found = answer.get_json()
            seen.append((found["page"], found["pages"], found["total"],
                         [c["forename"] for c in found["items"]]))
            if page > found["pages"]:
                return seen
            page += 1


@pytest.fixture
def records(kids: Kids, app: Flask, clock: FrozenClock) -> Records:
    """Four Hartleys in NE1 at one school and GP, the third shielded; a case
    system of the council allowed children.read."""
    world = kids.world
    tool, approver = admin_tool(world)
    la_admin = world.member(kids.la, Role.ORGANISATION_ADMIN, family_name="Adams")
    case_system = register(world, kids.la, la_admin, approver, name="Case system",
                           scopes=["openid", "children.read"])
    machine = register(world, kids.la, la_admin, approver, name="Batch matcher",
                       redirect_uris=[], grant_types=["client_credentials"],
                       scopes=["children.read"])
    hartleys(kids)
    return Records(kids, app, clock, case_system, machine, tool)


def _problem(response: Any, status: int, type_suffix: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status and body["instance"] == response.request.path
    if type_suffix:
        assert body["type"].endswith("/" + type_suffix), body["type"]
    return body


def _entries(kids: Kids, *tags: str) -> list[AuditEntry]:
    with kids.container.unit() as unit:
        found = list(unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag.in_(tags)).order_by(AuditEntry.seq)))
        unit.session.expunge_all()
        return found


def test_a_practitioner_searches_and_views_through_an_application(records: Records) -> None:
    kids = records.kids
    token = records.token(kids.practitioner)
    # By name (a visible field) all four are found, so the cap of 3 asks to narrow.
    broad = records.search(token).get_json()
    assert broad == {"items": [], "page": 1, "pages": 1, "per_page": 2, "total": None,
                     "too_many": True}
    narrow = records.search(token, forename="C")
    assert narrow.status_code == 200 and narrow.headers["Cache-Control"] == "no-store"
    [carly] = narrow.get_json()["items"]
    assert (carly["forename"], carly["restricted"], carly["date_of_birth"]) == (
        "Carly", True, "2015-03-10")
    alice = records.search(token, forename="Alice").get_json()["items"][0]
    assert alice["restricted"] is False
    # Names compare without accents or case, as on the pages.
    accented = records.search(token, surname="HÁRTLEY", forename="alice").get_json()
    assert [c["public_id"] for c in accented["items"]] == [alice["public_id"]]
    shown = records.view(token, alice["public_id"])
    assert shown.status_code == 200, shown.get_data(as_text=True)
    assert shown.headers["Cache-Control"] == "no-store"
    record = shown.get_json()
    assert record["address"]["address_line1"] == "12 Station Road"
    assert record["carers"] == [{"name": "Joanne Hartley", "relationship": "mother",
                                 "phone": "07700 900123"}]
    assert record["former_names"] == ["Alice Brooks"]
    assert record["responsible_la"] == "Northshire County Council"
    assert sorted(i["service_name"] for i in record["involvements"]) == [
        "Northtown Primary", "Quayside Surgery"]
    # Audited as the pages' searches and views are, with the application named.
    client_id = records.case_system.client_id
    searches = _entries(kids, "children:search")
    assert [(e.outcome, e.actor_id) for e in searches] == [
        ("success", kids.practitioner.person.id)] * 4
    assert searches[0].detail["too_many"] is True
    assert searches[0].detail["criteria"] == {"surname": "Hartley", "sort": "name", "page": 1}
    assert searches[1].detail["shown"] == [kids.child("Hartley", "Carly").identifier]
    assert {e.detail["client_id"] for e in searches} == {client_id}
    assert {e.detail["reason_detail"] for e in searches} == {REASON["reason_detail"]}
    [viewed] = _entries(kids, "children:view")
    assert (viewed.outcome, viewed.subject_id, viewed.actor_id) == (
        "success", kids.child("Hartley", "Alice").identifier, kids.practitioner.person.id)
    assert viewed.detail == {"reason": "child_protection",
                             "reason_detail": REASON["reason_detail"], "restricted": False,
                             "override": False, "client_id": client_id}


def test_a_view_takes_its_reason_from_headers_in_printable_ascii(records: Records) -> None:
    token = records.token(records.kids.practitioner)
    alice = records.kids.child("Hartley", "Alice")
    detail = "  Atgyfeiriad ysgol: cyf. 2026/441 (50% urgent)  "
    assert records.view(token, alice.public_id, detail=detail).status_code == 200
    assert _entries(records.kids, "children:view")[-1].detail["reason_detail"] == detail.strip()
    refused = _problem(records.view(token, alice.public_id, detail="Cyfeiriad Gw\xeayr 2026"),
                       400, "invalid_input")
    assert [e["field"] for e in refused["errors"]] == ["reason_detail"]
    assert "Station Road" not in json.dumps(refused)


@pytest.mark.parametrize("hidden", ["postcode_district", "school", "gp", "service"])
def test_a_hidden_field_never_finds_a_shielded_record_through_the_api(
    records: Records, hidden: str
) -> None:
    kids = records.kids
    carly = kids.child("Hartley", "Carly")
    criteria: dict[str, Any] = {
        "postcode_district": {"postcode_district": "ne1"},
        "school": {"school_service_id": kids.school.id},
        "gp": {"gp_service_id": kids.gp.id},
        "service": {"service_id": kids.gp.id},
    }[hidden]
    secrets = (carly.public_id, carly.identifier, "Carly", "NE1 2AB")
    for member in (kids.practitioner, kids.other_team, kids.constable):
        token = records.token(member)
        for sort in ("name", "date_of_birth"):
            # Counted, sorted and paged without her: 3 of a cap of 3, two a page,
            # and asking past the end shows the last page again.
            pages = records.walk(token, sort=sort, **criteria)
            assert pages == [(1, 2, 3, ["Alice", "Bella"]), (2, 2, 3, ["Daisy"]),
                             (2, 2, 3, ["Daisy"])], (member.person.family_name, sort)
            # The same narrowing by a visible field finds her, restricted.
            by_name = records.search(token, sort=sort, forename="Carly").get_json()
            assert [(c["forename"], c["restricted"]) for c in by_name["items"]] == [
                ("Carly", True)]
            named = records.search(token, sort=sort, forename="Carly", **criteria).get_json()
            assert (named["items"], named["total"], named["pages"]) == ([], 0, 1)
        # Errors say what is wrong with the input, the same whatever the hidden field
        # would have matched, and never echo a hidden value.
        for bad, field in (({"sort": "postcode"}, "sort"), ({"surname": "H"}, "surname"),
                           ({"page": 0}, "page"), ({"date_of_birth": "2015-3-10"},
                                                   "date_of_birth"),
                           ({"reason": ""}, "reason"), ({"nearby": "NE1 2AB"}, "nearby")):
            answer = records.search(token, **{**criteria, **bad})
            assert answer.status_code == 400, (bad, answer.get_data(as_text=True))
            body = _problem(answer, 400, "invalid_input")
            assert [e["field"] for e in body["errors"]] == [field], bad
            text = answer.get_data(as_text=True)
            assert not [s for s in secrets if s in text], (bad, text)
            elsewhere = {k: (v + 1000 if isinstance(v, int) else "NE9") for k, v in
                         criteria.items()}
            assert records.search(token, **{**elsewhere, **bad}).get_json() == body
    # The team that shielded her finds her on the same fields, unrestricted.
    team = records.token(kids.team)
    found = records.search(team, forename="Carly", **criteria).get_json()
    assert [(c["forename"], c["restricted"]) for c in found["items"]] == [("Carly", False)]
    assert records.search(team, **criteria).get_json()["too_many"] is True  # all four


def test_a_shielded_record_shows_what_the_page_shows_ordinary_users(records: Records) -> None:
    kids = records.kids
    carly = kids.child("Hartley", "Carly")
    for member in (kids.practitioner, kids.nurse, kids.constable, kids.other_team):
        answer = records.view(records.token(member), carly.public_id)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        record = answer.get_json()
        assert set(record) == VISIBLE
        assert (record["restricted"], record["shielded"], record["parent_name"]) == (
            True, True, "Joanne Hartley")
        text = answer.get_data(as_text=True)
        for hidden in ("Station Road", "NE1", "07700", "Brooks", "Northtown Primary",
                       "Quayside", "Northshire County Council"):
            assert hidden not in text, (member.person.family_name, hidden)
    # Its responsible team sees everything.
    whole = records.view(records.token(kids.team), carly.public_id).get_json()
    assert whole["restricted"] is False and whole["address"]["postcode"] == "NE1 2AB"
    assert whole["former_names"] == ["Carly Brooks"]
    views = _entries(kids, "children:view")
    assert [e.detail["restricted"] for e in views] == [True] * 4 + [False]
    assert {e.detail["client_id"] for e in views} == {records.case_system.client_id}


def test_sensitive_services_and_source_identifiers_follow_the_record_rules(
    records: Records
) -> None:
    kids = records.kids
    alice = kids.child("Hartley", "Alice")
    with kids.container.unit() as unit:
        unit.children.record_involvement(kids.p(kids.nurse), alice.public_id,
                                         kids.sexual_health.id,
                                         sensitive_basis=SensitiveBasis.CONSENT)
        unit.commit()
    kids.load([row(surname="Evans", forename="Ffion", source_scheme="nhs_number",
                   source_id="9990000018")], source="ORG003")
    ffion = kids.child("Evans")
    clinic = {"service_id": kids.sexual_health.id}
    for member in (kids.practitioner, kids.nurse, kids.other_team):
        token = records.token(member)
        services = [i["service_name"] for i in
                    records.view(token, alice.public_id).get_json()["involvements"]]
        assert "Clinic 4YP" not in services and "Quayside Surgery" in services
        assert records.search(token, **clinic).get_json()["total"] == 0
        identifiers = records.view(token, ffion.public_id).get_json()["source_identifiers"]
        # The health body that supplied Ffion's NHS number reads it; nobody else does.
        expected = ([{"scheme": "nhs_number", "value": "9990000018"}]
                    if member is kids.nurse else [])
        assert identifiers == expected, member.person.family_name
    team = records.token(kids.team)
    involvements = records.view(team, alice.public_id).get_json()["involvements"]
    assert [i["service_name"] for i in involvements if i["sensitive"]] == ["Clinic 4YP"]
    found = records.search(team, **clinic).get_json()
    assert [c["forename"] for c in found["items"]] == ["Alice"]
    assert records.view(team, ffion.public_id).get_json()["source_identifiers"] == []


def test_refusals_are_problems_and_are_audited_with_the_application(
    records: Records, world: Any
) -> None:
    kids = records.kids
    client_id = records.case_system.client_id
    alice = kids.child("Hartley", "Alice")
    token = records.token(kids.practitioner)
    # No reason, or one not on the list: refused by the service and audited.
    none = _problem(records.search(token, reason="", reason_detail=""), 400, "invalid_input")
    assert {e["field"] for e in none["errors"]} == {"reason", "reason_detail"}
    _problem(records.search(token, reason="curiosity"), 400, "invalid_input")
    _problem(records.view(token, alice.public_id, reason="", detail=""), 400)
    short = _problem(records.view(token, alice.public_id, detail="x"), 400)
    assert [e["field"] for e in short["errors"]] == ["reason_detail"]
    refused = [e for e in _entries(kids, "children:search", "children:view")
               if e.outcome == "refused"]
    assert [(e.tag, e.detail["why"], e.detail["client_id"]) for e in refused] == [
        ("children:search", "no reason", client_id)] * 2 + [
        ("children:view", "no reason", client_id)] * 2
    assert "Station Road" not in json.dumps(short)
    # An unknown record: a 404 problem, audited as not found.
    _problem(records.view(token, "no-such-record"), 404, "children.unknown")
    assert _entries(kids, "children:view")[-1].outcome == "not_found"
    # A person without a role whose work is with children, though the token is good.
    la_admin = world.member(kids.la, Role.ORGANISATION_ADMIN, family_name="Ames")
    admin_token = records.token(la_admin)
    _problem(records.search(admin_token), 403, "children.not_allowed")
    _problem(records.view(admin_token, alice.public_id), 403, "children.not_allowed")
    assert [(e.tag, e.outcome, e.actor_id, e.detail["client_id"]) for e in
            _entries(kids, "children:search", "children:view")[-2:]] == [
        ("children:search", "refused", la_admin.person.id, client_id),
        ("children:view", "refused", la_admin.person.id, client_id)]
    # An application's own token, even with the scope: nobody to act for.
    machine = client_token(records.flask, records.machine, scope="children.read")
    _problem(records.search(machine), 403, "children.no_practitioner")
    _problem(records.view(machine, alice.public_id), 403, "children.no_practitioner")
    last = _entries(kids, "children:search", "children:view")[-2:]
    assert [(e.tag, e.outcome, e.actor_id, e.actor_label) for e in last] == [
        (tag, "refused", None, f"client:{records.machine.client_id}")
        for tag in ("children:search", "children:view")]
    # A token without the scope, none at all, or a session cookie.
    admin_scope = records.token(kids.practitioner, app=records.admin_tool, scope="openid admin")
    narrow = records.search(admin_scope)
    _problem(narrow, 403, "token.insufficient_scope")
    assert 'error="insufficient_scope"' in narrow.headers["WWW-Authenticate"]
    _problem(records.flask.test_client().post(SEARCH, json=REASON), 401, "token.invalid_request")
    browser = Browser(records.flask.test_client())
    records.clock.advance(seconds=30)
    assert browser.sign_in(kids.practitioner, kids.container).status_code == 302
    _problem(browser.client.post(SEARCH, json={**REASON, "surname": "Hartley"}), 401)
    # The person is read afresh: suspended since the token was issued, refused.
    with kids.container.unit() as unit:
        unit.directory.person(kids.practitioner.person.id).status = PersonStatus.SUSPENDED
        unit.commit()
    _problem(records.search(token), 401, "token.invalid_token")
    # Input the document does not allow.
    nurse = records.token(kids.nurse)
    _problem(records.flask.test_client().post(SEARCH, headers=bearer(nurse), data="surname=x"),
             400, "invalid_input")
    _problem(records.flask.test_client().post(f"{SEARCH}?surname=Hartley", headers=bearer(nurse),
                                              json={**REASON, "surname": "Hartley"}), 400)
    _problem(records.search(nurse, page=True), 400)
    _problem(records.search(nurse, school_service_id="1"), 400)
    _problem(records.flask.test_client().get(SEARCH.replace("search", alice.public_id),
                                             headers={**bearer(nurse),
                                                      "ContactPoint-Reason": "referral",
                                                      "ContactPoint-Reason-Detail": "%FF%FE"}),
             400)


def test_a_lapsed_clearance_or_a_lost_scope_is_refused_on_the_next_call(
    records: Records
) -> None:
    kids = records.kids
    token = records.token(kids.practitioner)
    assert records.search(token, forename="Alice").status_code == 200
    with kids.container.unit() as unit:
        person = unit.directory.person(kids.practitioner.person.id)
        person.clearance_expires_on = date(2026, 11, 24)
        unit.commit()
    answer = records.search(token, forename="Alice")
    _problem(answer, 401, "token.invalid_token")
    assert "Alice" not in answer.get_data(as_text=True)
    # An application no longer allowed the scope: its tokens stop working for it.
    nurse = records.token(kids.nurse)
    assert records.search(nurse, forename="Alice").status_code == 200
    with kids.container.unit() as unit:
        client = unit.session.scalars(select(OAuthClient).where(
            OAuthClient.client_id == records.case_system.client_id)).one()
        client.scopes = ["openid"]
        unit.commit()
    records.flask.extensions["contactpoint_oidc"].clients.forget(records.case_system.client_id)
    _problem(records.search(nurse, forename="Alice"), 403, "token.insufficient_scope")


def test_a_dpop_bound_token_works_only_with_its_proof(
    records: Records, world: Any
) -> None:
    kids = records.kids
    la_admin = world.member(kids.la, Role.ORGANISATION_ADMIN, family_name="Abbot")
    _tool, approver = admin_tool(world)
    bound_app = register(world, kids.la, la_admin, approver, name="Mobile case app",
                         scopes=["openid", "children.read"], dpop_required=True)
    key = DPoPKey()
    token = records.token(kids.practitioner, app=bound_app, dpop=key)
    issuer = records.flask.extensions["contactpoint_oidc"].issuer
    now = records.clock.now().timestamp()
    body = {**REASON, "surname": "Hartley", "forename": "Alice"}
    proof = key.proof("POST", f"{issuer}{SEARCH}", access_token=token, iat=now)
    good = records.flask.test_client().post(
        SEARCH, json=body, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert good.status_code == 200, good.get_data(as_text=True)
    assert [c["forename"] for c in good.get_json()["items"]] == ["Alice"]
    # As a plain bearer token, or with a proof made for another request: refused.
    _problem(records.search(token, forename="Alice"), 401, "token.invalid_token")
    alice = kids.child("Hartley", "Alice")
    for_view = key.proof("GET", f"{issuer}/api/v1/children/{alice.public_id}",
                         access_token=token, iat=now)
    wrong = records.flask.test_client().post(
        SEARCH, json=body, headers={"Authorization": f"DPoP {token}", "DPoP": for_view})
    _problem(wrong, 401, "token.invalid_dpop_proof")
    assert wrong.headers["WWW-Authenticate"].startswith("DPoP")
    # The proof made for the view opens the view.
    viewed = records.flask.test_client().get(
        f"/api/v1/children/{alice.public_id}",
        headers={"Authorization": f"DPoP {token}", "DPoP": for_view,
                 "ContactPoint-Reason": REASON["reason"],
                 "ContactPoint-Reason-Detail": REASON["reason_detail"]})
    assert viewed.status_code == 200, viewed.get_data(as_text=True)
    assert _entries(kids, "children:view")[-1].detail["client_id"] == bound_app.client_id


def test_the_scope_is_offered_and_documented(records: Records) -> None:
    flask = records.flask
    discovery = flask.test_client().get("/.well-known/openid-configuration").get_json()
    assert "children.read" in discovery["scopes_supported"]
    doc = flask.test_client().get("/api/v1/openapi.json").get_json()
    assert set(doc["paths"]["/children/search"]) == {"post"}
    assert set(doc["paths"]["/children/{public_id}"]) == {"get"}
    search = doc["components"]["schemas"]["ChildSearch"]
    assert search["additionalProperties"] is False
    assert {"postcode_district", "school_service_id", "gp_service_id", "service_id"} <= set(
        search["properties"])


def test_the_documented_reason_and_surname_rules_are_the_service_rules(
    settings: Settings
) -> None:
    """The document states the shipped minimum detail and the surname rule as
    patterns; what they accept, the service accepts."""
    assert settings.children.reason_detail_min_length == openapi.REASON_DETAIL_MIN
    detail = re.compile(openapi.REASON_DETAIL_PATTERN)
    header = re.compile(openapi.REASON_DETAIL_HEADER_PATTERN)
    for text in ("123456789", " 123456789 ", "1234567890", "\u3000 1234 567 8 \u2009",
                 "\xa0abcdefghij\xa0", "a" * 300):
        accepted = len(text.strip()) >= openapi.REASON_DETAIL_MIN
        assert bool(detail.fullmatch(text)) is accepted, repr(text)
        if text.isascii():
            assert bool(header.fullmatch(text)) is accepted, repr(text)
    surname = re.compile(openapi.SURNAME_PATTERN)
    for name in ("Oe", "Ōe", "Øy", "ßx", "O'B", "Ħa", "ĸĸ", "\u01c5\u01c5", "Ab", "É-è"):
        if surname.fullmatch(name):
            assert len(name_key(name)) >= 2, name
    assert surname.fullmatch("Ōe") and surname.fullmatch("É-è")
    assert not surname.fullmatch("Ħa") and not surname.fullmatch("O")
