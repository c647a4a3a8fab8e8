"""The JSON admin API: each operation's success and its refusals, paging, and
problem documents, with tokens from the real token endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.settings import InstanceSecrets
from directory.models import Accreditation, Organisation, Person, PersonStatus
from idp.app import create_app
from idp.container import Container
from idp.oidc.models import ClientKind
from tests.conftest import make_settings
from tests.idp.api.conftest import Cast
from tests.idp.api.tokens import basic, bearer, client_token, register
from tests.idp.conftest import Browser
from tests.idp.oidc.conftest import free_port
from tests.idp.oidc.helpers import DPoPKey

PROBLEM = "application/problem+json"


def _get(app: Flask, path: str, token: str | None) -> Any:
    return app.test_client().get(path, headers=bearer(token) if token else {})


def _post(app: Flask, path: str, token: str | None, body: Any = None) -> Any:
    return app.test_client().post(path, headers=bearer(token) if token else {}, json=body)


def _problem(response: Any, status: int, type_suffix: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["instance"] == response.request.path
    if type_suffix:
        assert body["type"].endswith("/" + type_suffix), body["type"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def _tags(container: Container) -> list[tuple[str, str, int | None, str | None]]:
    with container.unit() as unit:
        return [tuple(r) for r in unit.session.execute(  # type: ignore[misc]
            select(AuditEntry.tag, AuditEntry.outcome, AuditEntry.actor_id,
                   AuditEntry.actor_label).order_by(AuditEntry.seq))]


def _status(container: Container, person_id: int) -> PersonStatus:
    with container.unit() as unit:
        person = unit.session.get(Person, person_id)
        assert person is not None
        return person.status


def test_the_document_is_public_openapi_3_1_and_names_every_route(app: Flask) -> None:
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    doc = response.get_json()
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    routes = {
        "/api/v1" + rule.rule.removeprefix("/api/v1")
        for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1")
    }
    documented = {
        "/api/v1" + path.replace("{", "<").replace("}", ">") for path in doc["paths"]
    }
    as_flask = {r.replace("<int(min=1, max=2147483647):", "<") for r in routes}
    assert as_flask == documented
    for path, item in doc["paths"].items():
        for method, op in item.items():
            rule = next(r for r in app.url_map.iter_rules()
                        if r.rule.replace("<int(min=1, max=2147483647):", "<")
                        == "/api/v1" + path.replace("{", "<").replace("}", ">"))
            assert method.upper() in (rule.methods or set()), (path, method)
            if path != "/openapi.json":
                assert {"401", "403", "503"} <= set(op["responses"])
    # And the other way: every method a route answers is documented.
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            path = rule.rule.removeprefix("/api/v1").replace(
                "<int(min=1, max=2147483647):", "{").replace("<", "{").replace(">", "}")
            assert {m.lower() for m in (rule.methods or set()) - {"HEAD", "OPTIONS"}} == set(
                doc["paths"][path]), path
    # Every operation's tag is one the document declares.
    declared = {t["name"] for t in doc["tags"]}
    used = {tag for item in doc["paths"].values() for op in item.values() for tag in op["tags"]}
    assert used == declared, (used - declared, declared - used)


def test_an_admin_lists_and_searches_their_people_a_page_at_a_time(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    base = f"/api/v1/organisations/{cast.org.id}/people"
    first = _get(app, f"{base}?per_page=2", token)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    body = first.get_json()
    # Ada Admin, Bea Brown, Cal Brown, Dee Carter, Priya Shah: by family name.
    assert body["total"] == 5 and body["pages"] == 3 and body["page"] == 1
    assert [p["family_name"] for p in body["items"]] == ["Admin", "Brown"]
    assert body["links"]["next"] == f"{base}?page=2&per_page=2"
    assert "prev" not in body["links"]
    last = _get(app, body["links"]["last"], token).get_json()
    assert [p["family_name"] for p in last["items"]] == ["Shah"]
    assert last["links"]["prev"] == f"{base}?page=2&per_page=2" and "next" not in last["links"]
    found = _get(app, f"{base}?q=brown", token).get_json()
    assert [p["given_name"] for p in found["items"]] == ["Bea", "Cal"]
    assert found["links"]["self"] == f"{base}?q=brown&page=1&per_page=50"
    assert _get(app, f"{base}?q=nobody", token).get_json()["total"] == 0
    for bad, field in (("per_page=101", "per_page"), ("per_page=0", "per_page"),
                       ("page=abc", "page"), ("page=-1", "page"), ("page=1.5", "page"),
                       ("q=%00x", "q"), ("q=" + "a" * 101, "q")):
        problem = _problem(_get(app, f"{base}?{bad}", token), 400, "invalid_input")
        assert [e["field"] for e in problem["errors"]] == [field], bad
    orgs = _get(app, "/api/v1/organisations", token).get_json()
    assert [o["name"] for o in orgs["items"]] == ["Northshire County Council"]
    org = _get(app, f"/api/v1/organisations/{cast.org.id}", token).get_json()
    assert org["code"] == cast.org.code and org["accreditation"] == "accredited"


def test_reading_a_person_shows_what_the_console_shows_and_never_secrets(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    target = cast.staff[0].person
    body = _get(app, f"/api/v1/people/{target.id}", token).get_json()
    assert body["username"] == target.username and body["status"] == "active"
    assert [p["organisation_id"] for p in body["positions"]] == [cast.org.id]
    assert body["positions"][0]["current"] is True
    assert set(body) == {
        "id", "username", "given_name", "family_name", "display_name", "work_email", "status",
        "work_phone", "status_reason", "status_changed_at", "clearance_expires_on",
        "training_expires_on", "positions"}
    text = _get(app, f"/api/v1/people/{target.id}", token).get_data(as_text=True)
    for secret in ("hash", "argon2", "security_epoch", "public_id", "totp", "pin"):
        assert secret not in text.lower().replace("positions", "")
    # Nobody acts on their own account, here as on the pages.
    own = _problem(_get(app, f"/api/v1/people/{cast.admin.person.id}", token), 403)
    assert "own account" in own["detail"]


def test_an_admin_suspends_and_reinstates_with_a_reason_and_it_is_audited(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    target = cast.staff[1].person
    path = f"/api/v1/people/{target.id}"
    missing = _problem(_post(app, f"{path}/suspension", token, {}), 400, "invalid_input")
    assert missing["errors"][0]["field"] == "reason"
    blank = _problem(_post(app, f"{path}/suspension", token, {"reason": "   "}), 400)
    assert blank["errors"][0]["field"] == "reason"
    not_json = app.test_client().post(f"{path}/suspension", headers=bearer(token),
                                      data="reason=x")
    assert _problem(not_json, 400)["errors"][0]["field"] == "body"
    assert _status(container, target.id) is PersonStatus.ACTIVE
    done = _post(app, f"{path}/suspension", token, {"reason": "left suddenly"})
    assert done.status_code == 200, done.get_data(as_text=True)
    assert done.get_json()["status"] == "suspended"
    assert _status(container, target.id) is PersonStatus.SUSPENDED
    acted = [t for t in _tags(container) if t[0] == "admin:suspended"]
    assert acted and acted[-1][2] == cast.admin.person.id
    again = _problem(_post(app, f"{path}/suspension", token, {"reason": "again"}), 409)
    assert again["type"].endswith("/conflict")
    back = _post(app, f"{path}/reinstatement", token, {"reason": "came back"})
    assert back.status_code == 200 and back.get_json()["status"] == "active"
    twice = _problem(_post(app, f"{path}/reinstatement", token, {"reason": "x"}), 409,
                     "directory.cannot_reinstate")
    assert "not suspended" in twice["detail"]


def test_an_admin_ends_a_position_and_reads_the_audit_trail_a_page_at_a_time(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    position = cast.staff[2].person.positions[0]
    ended = _post(app, f"/api/v1/positions/{position.id}/end", token, {"reason": "moved on"})
    assert ended.status_code == 200, ended.get_data(as_text=True)
    assert ended.get_json()["current"] is False and ended.get_json()["ends_on"]
    _problem(_post(app, f"/api/v1/positions/{position.id}/end", token, {"reason": "x"}), 409)
    trail = f"/api/v1/organisations/{cast.org.id}/audit-trail"
    first = _get(app, f"{trail}?per_page=1", token).get_json()
    assert first["items"][0]["tag"] == "admin:position:ended"
    assert first["items"][0]["detail"]["reason"] == "moved on"
    assert first["total"] > 1 and first["links"]["next"] == f"{trail}?page=2&per_page=1"
    assert any(t[0] == "admin:audit:read" and t[2] == cast.admin.person.id
               for t in _tags(container))


def test_an_application_acts_for_its_own_organisation_as_its_admin(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.machine_token(app)
    listed = _get(app, f"/api/v1/organisations/{cast.org.id}/people", token)
    assert listed.status_code == 200 and listed.get_json()["total"] == 5
    target = cast.staff[0].person
    done = _post(app, f"/api/v1/people/{target.id}/suspension", token, {"reason": "HR feed"})
    assert done.status_code == 200, done.get_data(as_text=True)
    acted = [t for t in _tags(container) if t[0] == "admin:suspended"]
    assert acted[-1][2:] == (None, f"client:{cast.machine.client_id}")
    # Not elsewhere, and not the accreditation of its own organisation.
    _problem(_get(app, f"/api/v1/organisations/{cast.other_org.id}/people", token), 403)
    _problem(_get(app, f"/api/v1/people/{cast.other_admin.person.id}", token), 403)
    _problem(_post(app, f"/api/v1/organisations/{cast.org.id}/suspension", token,
                   {"reason": "x"}), 403)
    refused = [t for t in _tags(container) if t[1] == "refused"]
    assert refused and all(t[3] == f"client:{cast.machine.client_id}" for t in refused[-2:])


def test_a_platform_admin_suspends_and_reaccredits_an_organisation(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    admin_token = cast.token(app, container, clock, cast.admin)
    path = f"/api/v1/organisations/{cast.org.id}"
    # An organisation admin cannot change their own organisation's accreditation.
    _problem(_post(app, f"{path}/suspension", admin_token, {"reason": "x"}), 403)
    token = cast.token(app, container, clock, cast.platform)
    done = _post(app, f"{path}/suspension", token, {"reason": "audit failed"})
    assert done.status_code == 200, done.get_data(as_text=True)
    body = done.get_json()
    assert body["organisation"]["accreditation"] == "suspended"
    assert body["people_suspended"] == 5
    assert _status(container, cast.staff[0].person.id) is PersonStatus.SUSPENDED
    # The admin's own token stopped working with their access.
    _problem(_get(app, f"{path}/people", admin_token), 401, "token.invalid_token")
    _problem(_post(app, f"{path}/suspension", token, {"reason": "again"}), 409,
             "directory.accreditation_unchanged")
    back = _post(app, f"{path}/accreditation", token, {"reason": "fixed"})
    assert back.status_code == 200 and back.get_json()["people_reinstated"] == 5
    with container.unit() as unit:
        org = unit.session.get(Organisation, cast.org.id)
        assert org is not None and org.accreditation is Accreditation.ACCREDITED
    assert _status(container, cast.staff[0].person.id) is PersonStatus.ACTIVE


def test_outsiders_are_refused_alike_whether_the_thing_exists_or_not(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.other_admin)
    staff = cast.staff[0].person
    before = _tags(container)
    for path in (f"/api/v1/organisations/{cast.org.id}",
                 f"/api/v1/organisations/{cast.org.id}/people",
                 f"/api/v1/organisations/{cast.org.id}/audit-trail",
                 f"/api/v1/people/{staff.id}", "/api/v1/people/999999",
                 "/api/v1/organisations/999999"):
        assert _problem(_get(app, path, token), 403, "not_allowed")["detail"]
    for path in (f"/api/v1/people/{staff.id}/suspension",
                 f"/api/v1/people/{staff.id}/reinstatement",
                 f"/api/v1/positions/{staff.positions[0].id}/end",
                 f"/api/v1/organisations/{cast.org.id}/suspension",
                 f"/api/v1/organisations/{cast.org.id}/accreditation"):
        _problem(_post(app, path, token, {"reason": "walker"}), 403)
    assert _status(container, staff.id) is PersonStatus.ACTIVE
    refusals = [t for t in _tags(container)[len(before):] if t[1] == "refused"]
    assert len(refusals) == 11 and {t[2] for t in refusals} == {cast.other_admin.person.id}
    # Their own organisation's list shows nobody of ours.
    mine = _get(app, "/api/v1/organisations", token).get_json()
    assert [o["id"] for o in mine["items"]] == [cast.other_org.id]


def test_tokens_that_are_missing_wrong_or_no_longer_good_are_refused(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    path = f"/api/v1/organisations/{cast.org.id}/people"
    none = _problem(_get(app, path, None), 401, "token.invalid_request")
    assert none["title"] == "Unauthorized"
    assert _get(app, path, None).headers["WWW-Authenticate"].startswith("Bearer")
    bad = _get(app, path, "not-a-token")
    _problem(bad, 401, "token.invalid_token")
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    # A practitioner's token, even with the admin scope.
    practitioner = cast.token(app, container, clock, cast.practitioner)
    _problem(_get(app, path, practitioner), 403, "not_allowed")
    _problem(_get(app, "/api/v1/organisations", practitioner), 403, "not_allowed")
    assert _tags(container)[-1] == ("api:refused", "refused", cast.practitioner.person.id,
                                    cast.practitioner.username)
    # An admin's token without the admin scope.
    narrow = cast.token(app, container, clock, cast.admin, scope="openid")
    refused = _get(app, path, narrow)
    _problem(refused, 403, "token.insufficient_scope")
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    # A token for another resource.
    register(cast.world, cast.org, cast.admin, cast.platform, kind=ClientKind.RESOURCE_SERVER,
             grant_types=[], redirect_uris=[], scopes=[],
             resource_uri="https://records.example.org/api")
    elsewhere = client_token(app, cast.machine, resource="https://records.example.org/api")
    _problem(_get(app, path, elsewhere), 401, "token.invalid_token")
    # A session cookie is not a token.
    browser = Browser(app.test_client())
    clock.advance(seconds=30)
    assert browser.sign_in(cast.admin, container).status_code == 302
    _problem(browser.client.get(path), 401, "token.invalid_request")
    # Expired.
    good = cast.token(app, container, clock, cast.admin)
    machine = cast.machine_token(app)
    assert _get(app, path, good).status_code == 200
    clock.advance(seconds=container.settings.oidc.access_token_seconds + 1)
    _problem(_get(app, path, good), 401, "token.invalid_token")
    _problem(_get(app, path, machine), 401, "token.invalid_token")
    # A suspended person's token.
    admin_token = cast.token(app, container, clock, cast.admin)
    platform_token = cast.token(app, container, clock, cast.platform)
    assert _post(app, f"/api/v1/people/{cast.admin.person.id}/suspension", platform_token,
                 {"reason": "investigation"}).status_code == 200
    _problem(_get(app, path, admin_token), 401, "token.invalid_token")
    # An application that is no longer approved.
    machine = cast.machine_token(app)
    assert _get(app, path, machine).status_code == 200
    unit = cast.world.unit
    unit.clients.suspend(cast.world.principal(cast.platform), cast.machine.client_id, "leak")
    unit.commit()
    app.extensions["contactpoint_oidc"].clients.forget(cast.machine.client_id)
    _problem(_get(app, path, machine), 401, "token.invalid_token")


def test_unknown_routes_and_methods_answer_problems(app: Flask, cast: Cast) -> None:
    _problem(app.test_client().get("/api/v1/nothing-here"), 404, "http.404")
    _problem(app.test_client().get("/api/v1/people/0"), 404)
    wrong = app.test_client().delete(f"/api/v1/people/{cast.staff[0].person.id}")
    _problem(wrong, 405, "http.405")
    assert "GET" in wrong.headers["Allow"]
    # Posts too: no CSRF page, no HTML.
    _problem(app.test_client().post("/api/v1/nothing-here", json={}), 404, "http.404")
    _problem(app.test_client().post("/api/v1/organisations", json={}), 405, "http.405")


def test_a_database_outage_is_a_503_problem_not_a_stack_trace(tmp_path: Path) -> None:
    settings = make_settings(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
                             tmp_path / "instance")
    container = Container(settings, secrets=InstanceSecrets(b"k" * 32, b"d" * 32))
    try:
        client = create_app(container=container).test_client()
        answer = client.get("/api/v1/organisations", headers=bearer("a.b.c"))
        body = _problem(answer, 503, "unavailable")
        assert answer.headers["Retry-After"] == "1"
        assert "psycopg" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    finally:
        container.dispose()


def test_a_body_too_large_is_a_413_problem(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    huge = {"reason": "x" * (1024 * 1024 + 1)}
    answer = _post(app, f"/api/v1/people/{cast.staff[0].person.id}/suspension", token, huge)
    _problem(answer, 413, "http.413")
    assert _status(container, cast.staff[0].person.id) is PersonStatus.ACTIVE


def test_a_dpop_bound_application_token_works_only_with_its_proof(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    issuer = app.extensions["contactpoint_oidc"].issuer
    key = DPoPKey()
    now = clock.now().timestamp()
    answer = app.test_client().post(
        "/oauth2/token", headers={**basic(cast.machine),
                                  "DPoP": key.proof("POST", f"{issuer}/oauth2/token", iat=now)},
        data={"grant_type": "client_credentials", "scope": "admin"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["token_type"] == "DPoP"
    token = answer.get_json()["access_token"]
    path = f"/api/v1/organisations/{cast.org.id}/people"
    proof = key.proof("GET", f"{issuer}{path}", access_token=token, iat=now)
    good = app.test_client().get(path, headers={"Authorization": f"DPoP {token}",
                                                "DPoP": proof})
    assert good.status_code == 200, good.get_data(as_text=True)
    # As a plain bearer token, or with a proof for another request, it is refused.
    _problem(_get(app, path, token), 401, "token.invalid_token")
    other = key.proof("GET", f"{issuer}/api/v1/organisations", access_token=token, iat=now)
    wrong = app.test_client().get(path, headers={"Authorization": f"DPoP {token}",
                                                 "DPoP": other})
    _problem(wrong, 401, "token.invalid_dpop_proof")
    assert wrong.headers["WWW-Authenticate"].startswith("DPoP")


def test_an_application_never_approved_gets_no_token_for_the_api(
    app: Flask, cast: Cast
) -> None:
    pending = register(cast.world, cast.org, cast.admin, cast.platform, approve=False,
                       redirect_uris=[], grant_types=["client_credentials"], scopes=["admin"],
                       name="Unchecked")
    answer = app.test_client().post(
        "/oauth2/token", headers=basic(pending),
        data={"grant_type": "client_credentials", "scope": "admin"})
    assert answer.status_code == 401 and answer.get_json()["error"] == "invalid_client"
