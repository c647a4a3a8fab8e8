"""The API's operations on an organisation's relying applications (list, show,
register with the secret shown once, a new secret, suspension) and on its
hardware token inventory (list, assign, lost, returned) and on its own identity
provider (add, show, accepted acr, removal). Refusals first
(another organisation's admin, a practitioner, an application's own token where
a person must act, a missing reason), then what an administrator can do."""

from __future__ import annotations

import io
from typing import Any

from flask import Flask
from joserfc.jwk import ECKey
from sqlalchemy import func, select

from core.audit import AuditEntry
from core.clock import FrozenClock
from directory.models import OrganisationKind, Role
from idp.container import Container
from idp.federation.service import NewProvider
from idp.oidc.models import ClientStatus, OAuthClient
from tests.idp.api.conftest import Cast
from tests.idp.api.test_api import _get, _post, _problem
from tests.idp.api.tokens import App, basic
from tests.idp.federation.meanwhile import assert_the_first_stands, provider_added_meanwhile
from tests.idp.test_logs import captured  # noqa: F401  (a fixture)
from tests.idp.test_token_pages import stock
from tokens.models import OtpToken, TokenState

REGISTRATION = {"name": "Case notes", "redirect_uris": ["https://notes.example.org/cb"],
                "scopes": ["openid", "profile"], "grant_types": ["authorization_code"]}


def _clients(container: Container) -> list[tuple[str, ClientStatus, str | None]]:
    with container.unit() as unit:
        return [(c.client_id, c.status, c.secret_digest) for c in unit.session.scalars(
            select(OAuthClient).order_by(OAuthClient.id))]


def _tags(container: Container, tag: str) -> int:
    with container.unit() as unit:
        return unit.session.scalar(
            select(func.count(AuditEntry.seq)).where(AuditEntry.tag == tag)) or 0


def _secret_works(app: Flask, client: App) -> bool:
    answer = app.test_client().post("/oauth2/token", headers=basic(client),
                                    data={"grant_type": "client_credentials", "scope": "admin"})
    return answer.status_code == 200


def test_outsiders_are_refused_every_operation_and_nothing_changes(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    before = _clients(container)
    machine = f"/api/v1/relying-applications/{cast.machine.client_id}"
    listed = f"/api/v1/organisations/{cast.org.id}/relying-applications"
    for who in (cast.other_admin, cast.practitioner):
        token = cast.token(app, container, clock, who)
        _problem(_get(app, listed, token), 403, "not_allowed")
        _problem(_get(app, machine, token), 403, "not_allowed")
        _problem(_post(app, listed, token, REGISTRATION), 403, "not_allowed")
        _problem(_post(app, f"{machine}/secret", token), 403, "not_allowed")
        _problem(_post(app, f"{machine}/suspension", token, {"reason": "x"}), 403,
                 "not_allowed")
    assert _clients(container) == before
    assert _secret_works(app, cast.machine)


def test_an_applications_own_token_registers_nothing_and_is_given_no_secret(
    app: Flask, container: Container, cast: Cast
) -> None:
    """Four eyes: a machine cannot be the person who asks, nor see a secret."""
    token = cast.machine_token(app)
    before = _clients(container)
    listed = f"/api/v1/organisations/{cast.org.id}/relying-applications"
    _problem(_post(app, listed, token, REGISTRATION), 403, "not_allowed")
    _problem(_post(app, f"/api/v1/relying-applications/{cast.tool.client_id}/secret", token),
             403, "not_allowed")
    _problem(_post(app, f"/api/v1/relying-applications/{cast.machine.client_id}/secret",
                   token), 403, "not_allowed")
    assert _clients(container) == before
    assert _tags(container, "oidc:client:refused") == 3
    # It may still read its organisation's applications, as an admin of it would.
    body = _get(app, listed, token).get_json()
    assert [c["client_id"] for c in body["items"]] == [cast.machine.client_id]


def test_registering_shows_the_secret_once_and_leaves_the_application_pending(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    listed = f"/api/v1/organisations/{cast.org.id}/relying-applications"
    answer = _post(app, listed, token, REGISTRATION)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    made: dict[str, Any] = answer.get_json()
    assert made["status"] == "pending" and made["organisation_id"] == cast.org.id
    assert made["redirect_uris"] == REGISTRATION["redirect_uris"]
    secret = made["secret"]
    assert isinstance(secret, str) and len(secret) >= 40
    # Never again: not on its page, not in the list, not in the database.
    shown = _get(app, f"/api/v1/relying-applications/{made['client_id']}", token)
    assert shown.status_code == 200 and "secret" not in shown.get_json()
    assert secret not in shown.get_data(as_text=True)
    page = _get(app, f"{listed}?per_page=1&page=2", token).get_json()
    assert page["total"] == 2 and page["pages"] == 2 and len(page["items"]) == 1
    assert "secret_digest" not in page["items"][0]
    assert all(secret != digest for _id, _status, digest in _clients(container))
    # Pending: it gets invalid_client until a platform admin approves it.
    assert not _secret_works(app, App(made["client_id"], secret))
    assert _tags(container, "oidc:client:registered") >= 1


def test_registration_is_checked_field_by_field(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    listed = f"/api/v1/organisations/{cast.org.id}/relying-applications"
    before = _clients(container)
    for field, bad in (("name", "   "), ("name", None), ("scopes", ["root"]),
                       ("redirect_uris", ["http://notes.example.org/cb"]),
                       ("redirect_uris", ["https://[::1/cb"]), ("dpop_required", "yes"),
                       ("auth_method", "none"), ("jwks", {"keys": []})):
        problem = _problem(_post(app, listed, token, {**REGISTRATION, field: bad}), 400,
                           "invalid_input")
        assert problem["errors"][0]["field"].split("[")[0] == field, (field, problem)
    # A platform admin's mistyped organisation: not found, not a database error.
    platform = cast.token(app, container, clock, cast.platform)
    _problem(_post(app, "/api/v1/organisations/999999/relying-applications", platform,
                   REGISTRATION), 404)
    assert _clients(container) == before


def test_a_new_secret_replaces_the_old_at_once(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    assert _secret_works(app, cast.machine)
    answer = _post(app, f"/api/v1/relying-applications/{cast.machine.client_id}/secret", token)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    fresh = answer.get_json()["secret"]
    assert not _secret_works(app, cast.machine)
    assert _secret_works(app, App(cast.machine.client_id, fresh))
    assert _tags(container, "oidc:client:secret_rotated") == 1


def test_suspending_needs_a_reason_and_then_the_application_gets_invalid_client(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    path = f"/api/v1/relying-applications/{cast.machine.client_id}/suspension"
    problem = _problem(_post(app, path, token, {}), 400, "invalid_input")
    assert problem["errors"][0]["field"] == "reason"
    assert _secret_works(app, cast.machine)
    answer = _post(app, path, token, {"reason": "left the contract"})
    assert answer.status_code == 200 and answer.get_json()["status"] == "suspended"
    assert not _secret_works(app, cast.machine)
    with container.unit() as unit:
        entry = unit.session.scalars(select(AuditEntry).where(
            AuditEntry.tag == "oidc:client:suspended")).one()
        assert entry.detail == {"reason": "left the contract"}
        assert entry.organisation_id == cast.org.id


def test_an_unknown_application_is_not_found(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    _problem(_get(app, "/api/v1/relying-applications/cp-nobody", token), 404)
    _problem(_post(app, "/api/v1/relying-applications/cp-nobody/suspension", token,
                   {"reason": "x"}), 404)


# -- the hardware token inventory ------------------------------------------------------


def _state(container: Container, token_id: int) -> tuple[TokenState, int | None]:
    with container.unit() as unit:
        row = unit.session.get(OtpToken, token_id)
        assert row is not None
        return row.state, row.person_id


def test_outsiders_are_refused_the_inventory_and_nothing_changes(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = stock(cast.world, cast.org, ["API-0001"])[0]
    tokens = f"/api/v1/tokens/{token.id}"
    for who in (cast.other_admin, cast.practitioner):
        bearer_token = cast.token(app, container, clock, who)
        _problem(_get(app, f"/api/v1/organisations/{cast.org.id}/tokens", bearer_token), 403,
                 "not_allowed")
        _problem(_post(app, f"{tokens}/assignment", bearer_token,
                       {"username": cast.staff[0].username, "reason": "x"}), 403)
        _problem(_post(app, f"{tokens}/loss", bearer_token, {"reason": "x"}), 403)
        _problem(_post(app, f"{tokens}/return", bearer_token, {"reason": "x"}), 403)
    assert _state(container, token.id) == (TokenState.IN_STOCK, None)


def test_an_admin_lists_assigns_reports_lost_and_records_returned(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    made = stock(cast.world, cast.org, ["API-0001", "API-0002", "API-0003"])
    token = cast.token(app, container, clock, cast.admin)
    listed = f"/api/v1/organisations/{cast.org.id}/tokens"
    page = _get(app, f"{listed}?per_page=2", token).get_json()
    assert [t["serial"] for t in page["items"]] == ["API-0001", "API-0002"]
    assert page["total"] == 3 and "secret_ciphertext" not in page["items"][0]
    first = f"/api/v1/tokens/{made[0].id}"
    # An organisation admin need not give a reason.
    answer = _post(app, f"{first}/assignment", token, {"username": cast.staff[0].username})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["state"] == "assigned"
    assert _state(container, made[0].id) == (TokenState.ASSIGNED, cast.staff[0].person.id)
    assigned = _get(app, f"{listed}?state=assigned", token).get_json()
    assert [t["serial"] for t in assigned["items"]] == ["API-0001"]
    # Not twice, and not to someone outside the organisation.
    _problem(_post(app, f"{first}/assignment", token, {"username": cast.staff[1].username}),
             409)
    problem = _problem(_post(app, f"/api/v1/tokens/{made[1].id}/assignment", token,
                             {"username": cast.other_admin.username}), 400, "invalid_input")
    assert problem["errors"][0]["field"] == "username"
    lost = _post(app, f"{first}/loss", token, {"reason": "left on a train"})
    assert lost.status_code == 200 and lost.get_json()["state"] == "lost"
    back = _post(app, f"{first}/return", token, {})
    assert back.status_code == 200 and back.get_json()["state"] == "returned"
    assert _state(container, made[0].id) == (TokenState.RETURNED, None)
    stolen = _post(app, f"/api/v1/tokens/{made[2].id}/loss", token, {"stolen": True})
    assert stolen.get_json()["state"] == "revoked"
    _problem(_post(app, f"/api/v1/tokens/{made[2].id}/loss", token, {"stolen": "yes"}), 400)
    _problem(_get(app, f"{listed}?state=melted", token), 400, "invalid_input")


def test_a_platform_admin_must_give_a_reason_for_every_token_act(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    made = stock(cast.world, cast.org, ["API-0001"])[0]
    token = cast.token(app, container, clock, cast.platform)
    path = f"/api/v1/tokens/{made.id}"
    for act, body in (("assignment", {"username": cast.staff[0].username}),
                      ("loss", {}), ("return", {})):
        problem = _problem(_post(app, f"{path}/{act}", token, body), 400, "invalid_input")
        assert problem["errors"][0]["field"] == "reason", act
    assert _state(container, made.id) == (TokenState.IN_STOCK, None)
    answer = _post(app, f"{path}/assignment", token,
                   {"username": cast.staff[0].username, "reason": "replacement ordered"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    with container.unit() as unit:
        entry = unit.session.scalars(select(AuditEntry).where(
            AuditEntry.tag == "token:assigned")).one()
        assert (entry.detail or {})["reason"] == "replacement ordered"


# -- the organisation's own identity provider ----------------------------------------------


def _provider(cast: Cast) -> None:
    cast.world.unit.federation.add(cast.world.principal(cast.admin), NewProvider(
        organisation_id=cast.org.id, issuer="https://login.northshire.example.org",
        client_id="contactpoint", username_claim="email", client_secret="upstream secret"))
    cast.world.unit.commit()


def _issuer(container: Container, org_id: int) -> str | None:
    with container.unit() as unit:
        found = unit.federation.provider_of(org_id)
        return found.issuer if found else None


def test_outsiders_and_machines_are_refused_the_identity_provider(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    _provider(cast)
    base = f"/api/v1/organisations/{cast.org.id}/identity-provider"
    for who in (cast.other_admin, cast.practitioner):
        token = cast.token(app, container, clock, who)
        _problem(_get(app, base, token), 403, "not_allowed")
        _problem(_post(app, f"{base}/accepted-acr", token, {"accepted_acr": ["x"]}), 403)
        _problem(_post(app, f"{base}/removal", token, {"reason": "x"}), 403)
    # An application's own token may not weaken how people sign in.
    _problem(_post(app, f"{base}/accepted-acr", cast.machine_token(app),
                   {"accepted_acr": ["urn:loa:high"]}), 403, "not_allowed")
    with container.unit() as unit:
        found = unit.federation.provider_of(cast.org.id)
        assert found is not None and found.accepted_acr == []


def test_an_admin_sees_sets_acr_and_removes_the_provider_never_its_secret(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    base = f"/api/v1/organisations/{cast.org.id}/identity-provider"
    _problem(_get(app, base, token), 404)
    _provider(cast)
    shown = _get(app, base, token)
    assert shown.status_code == 200
    assert shown.get_json()["issuer"] == "https://login.northshire.example.org"
    assert "upstream secret" not in shown.get_data(as_text=True)
    assert "credential" not in shown.get_data(as_text=True)
    answer = _post(app, f"{base}/accepted-acr", token, {"accepted_acr": ["urn:loa:high"]})
    assert answer.status_code == 200 and answer.get_json()["accepted_acr"] == ["urn:loa:high"]
    _problem(_post(app, f"{base}/accepted-acr", token, {"accepted_acr": "urn:loa:high"}), 400)
    problem = _problem(_post(app, f"{base}/removal", token, {}), 400, "invalid_input")
    assert problem["errors"][0]["field"] == "reason"
    removed = _post(app, f"{base}/removal", token, {"reason": "moving to another provider"})
    assert removed.status_code == 200 and removed.get_json()["links_removed"] == 0
    assert _issuer(container, cast.org.id) is None
    _problem(_post(app, f"{base}/removal", token, {"reason": "again"}), 404)


def test_a_platform_admin_owes_a_reason_for_registering_and_new_secrets(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.platform)
    listed = f"/api/v1/organisations/{cast.org.id}/relying-applications"
    body = {"name": "Case system", "redirect_uris": ["https://case.example.org/cb"]}
    before = _clients(container)
    problem = _problem(_post(app, listed, token, body), 400, "invalid_input")
    assert [e["field"] for e in problem["errors"]] == ["reason"]
    assert _clients(container) == before
    made = _post(app, listed, token, {**body, "reason": "council's request 42"})
    assert made.status_code == 201, made.get_data(as_text=True)
    client_id = made.get_json()["client_id"]
    secret = f"/api/v1/relying-applications/{client_id}/secret"
    problem = _problem(_post(app, secret, token, {}), 400, "invalid_input")
    assert [e["field"] for e in problem["errors"]] == ["reason"]
    assert _post(app, secret, token, {"reason": "leaked in a ticket"}).status_code == 200
    with container.unit() as unit:
        reasons = [(e.tag, (e.detail or {}).get("reason")) for e in unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag.like("oidc:client:%"))
            .order_by(AuditEntry.seq))]
    assert ("council's request 42" in [r for _t, r in reasons]
            and "leaked in a ticket" in [r for _t, r in reasons]), reasons


# -- adding the organisation's identity provider -------------------------------------------

UPSTREAM_SECRET = "api-typed-secret-Zr4wT8kq2Nv"
PROVIDER = {"issuer": "https://login.northshire.example.org", "client_id": "contactpoint",
            "client_secret": UPSTREAM_SECRET, "username_claim": "preferred_username"}


def _added(container: Container) -> list[dict[str, Any]]:
    with container.unit() as unit:
        return [e.detail or {} for e in unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == "federation:provider:added")
            .order_by(AuditEntry.seq))]


def test_outsiders_machines_and_strangers_add_no_identity_provider(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    base = f"/api/v1/organisations/{cast.org.id}/identity-provider"
    for who in (cast.other_admin, cast.practitioner):
        token = cast.token(app, container, clock, who)
        _problem(_post(app, base, token, PROVIDER), 403, "not_allowed")
    # Nor with no token, and an application's own token may not change how people sign in.
    anonymous = _problem(_post(app, base, None, PROVIDER), 401)
    assert UPSTREAM_SECRET not in str(anonymous)
    _problem(_post(app, base, cast.machine_token(app), PROVIDER), 403, "not_allowed")
    assert _issuer(container, cast.org.id) is None and _added(container) == []


def test_an_admin_adds_the_provider_and_never_sees_its_secret_again(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast,
    captured: io.StringIO,  # noqa: F811
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    base = f"/api/v1/organisations/{cast.org.id}/identity-provider"
    answer = _post(app, base, token, {**PROVIDER, "accepted_acr": ["urn:loa:high"]})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    made = answer.get_json()
    assert made["issuer"] == PROVIDER["issuer"] and made["auth_method"] == "client_secret_basic"
    assert made["accepted_acr"] == ["urn:loa:high"]
    assert made["redirect_uri"].endswith("/sign-in/organisation/callback")
    assert "client_secret" not in made and UPSTREAM_SECRET not in answer.get_data(as_text=True)
    shown = _get(app, base, token)
    assert shown.status_code == 200 and shown.get_json() == made
    assert UPSTREAM_SECRET not in shown.get_data(as_text=True)
    with container.unit() as unit:
        found = unit.federation.provider_of(cast.org.id)
        assert found is not None and UPSTREAM_SECRET not in found.credential_ciphertext
        assert unit.federation.credential(found).secret == UPSTREAM_SECRET
        [entry] = unit.session.scalars(select(AuditEntry).where(
            AuditEntry.tag == "federation:provider:added")).all()
        assert entry.actor_id == cast.admin.person.id and entry.organisation_id == cast.org.id
        assert "reason" not in entry.detail  # an organisation's own admin owes none
        assert UPSTREAM_SECRET not in str(entry.detail)
    # One provider an organisation: a second is refused and the first stays.
    again = _post(app, base, token, {**PROVIDER, "issuer": "https://other.example.org"})
    _problem(again, 409)
    assert UPSTREAM_SECRET not in again.get_data(as_text=True)
    assert _issuer(container, cast.org.id) == PROVIDER["issuer"]
    assert len(_added(container)) == 1
    assert UPSTREAM_SECRET not in captured.getvalue()


def test_a_provider_added_meanwhile_is_answered_as_a_second_one(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    """Two platform admins at the same moment: the later write meets the unique
    column after both checks found none, and gets the 409 a second one gets."""
    first = cast.world.member(cast.platform.person.positions[0].organisation,
                              Role.PLATFORM_ADMIN, given_name="Pat")
    token = cast.token(app, container, clock, cast.platform)
    base = f"/api/v1/organisations/{cast.org.id}/identity-provider"
    with provider_added_meanwhile(container, cast.world.principal(first), cast.org.id):
        answer = _post(app, base, token, {**PROVIDER, "reason": "the second of two at once"})
    problem = _problem(answer, 409, "conflict")
    assert "already has a provider" in problem["detail"]
    assert UPSTREAM_SECRET not in answer.get_data(as_text=True)
    assert_the_first_stands(container, cast.org.id)


def test_a_private_key_is_taken_in_place_of_a_secret_and_not_shown(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    pem = ECKey.generate_key("P-256").as_pem(private=True).decode()
    body = {**PROVIDER, "client_secret": None, "private_key": pem + "\n"}
    answer = _post(app, f"/api/v1/organisations/{cast.org.id}/identity-provider", token, body)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    assert answer.get_json()["auth_method"] == "private_key_jwt"
    assert "PRIVATE KEY" not in answer.get_data(as_text=True)
    with container.unit() as unit:
        found = unit.federation.provider_of(cast.org.id)
        assert found is not None and "PRIVATE KEY" not in found.credential_ciphertext
        assert unit.federation.credential(found).secret == pem.strip()


def test_adding_a_provider_is_checked_field_by_field_and_stores_nothing(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.admin)
    base = f"/api/v1/organisations/{cast.org.id}/identity-provider"
    pem = ECKey.generate_key("P-256").as_pem(private=True).decode()
    for changes, field in (
        ({"issuer": "http://login.northshire.example.org"}, "issuer"),
        ({"issuer": "not a url"}, "issuer"),
        ({"issuer": None}, "issuer"),
        ({"client_id": "  "}, "client_id"),
        ({"username_claim": ""}, "username_claim"),
        ({"client_secret": None}, "client_secret"),  # neither
        ({"private_key": pem}, "client_secret"),  # both
        ({"client_secret": None, "private_key": "not a key at all"}, "private_key"),
        ({"client_secret": "x" * 501}, "client_secret"),
        ({"accepted_acr": "urn:loa:high"}, "accepted_acr"),
    ):
        answer = _post(app, base, token, {**PROVIDER, **changes})
        problem = _problem(answer, 400, "invalid_input")
        assert [e["field"] for e in problem["errors"]] == [field], (changes, problem)
        assert UPSTREAM_SECRET not in answer.get_data(as_text=True)
        assert "not a key" not in answer.get_data(as_text=True)
    _problem(_post(app, base, token, ["not", "an", "object"]), 400, "invalid_input")
    assert _issuer(container, cast.org.id) is None and _added(container) == []


def test_a_platform_admin_adds_a_provider_only_with_a_reason(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    token = cast.token(app, container, clock, cast.platform)
    base = f"/api/v1/organisations/{cast.org.id}/identity-provider"
    for body in (PROVIDER, {**PROVIDER, "reason": None}):
        problem = _problem(_post(app, base, token, body), 400, "invalid_input")
        assert [e["field"] for e in problem["errors"]] == ["reason"]
    problem = _problem(_post(app, base, token, {**PROVIDER, "reason": "  "}), 400)
    assert [e["field"] for e in problem["errors"]] == ["reason"]
    assert _issuer(container, cast.org.id) is None and _added(container) == []
    # A mistyped organisation is not found, rather than a database error.
    _problem(_post(app, "/api/v1/organisations/999999/identity-provider", token,
                   {**PROVIDER, "reason": "council's request"}), 404)
    made = _post(app, base, token, {**PROVIDER, "reason": "council's request 17"})
    assert made.status_code == 201, made.get_data(as_text=True)
    assert [d["reason"] for d in _added(container)] == ["council's request 17"]


def test_the_areas_team_adds_a_schools_provider_and_another_areas_cannot(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast
) -> None:
    world = cast.world
    school = cast.area_school()
    far = world.organisation("Southshire Academy", OrganisationKind.SCHOOL)
    team = cast.token(app, container, clock,
                      world.member(cast.org, Role.LOCAL_AUTHORITY_TEAM, given_name="Lara"))
    _problem(_post(app, f"/api/v1/organisations/{far.id}/identity-provider", team, PROVIDER),
             403)
    assert _post(app, f"/api/v1/organisations/{school.id}/identity-provider", team,
                 PROVIDER).status_code == 201
    assert _issuer(container, school.id) == PROVIDER["issuer"]
    assert _issuer(container, far.id) is None
