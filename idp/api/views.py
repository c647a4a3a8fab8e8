"""The API's operations: each turns a JSON request into one call of
`directory.administration` or `directory.accreditation` (the same rules as the
admin console's pages) and the result into JSON. Errors of every kind leave as
RFC 9457 problem documents; nothing here decides who may do what.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from core.audit import AuditEntry
from core.errors import DomainError, FieldProblem, InvalidInput, ServiceUnavailable
from directory.accreditation import REASON_MAX, AccreditationChange
from directory.administration import PER_PAGE_MAX, Act, Page
from directory.models import (
    Organisation,
    Person,
    Position,
    PositionRequest,
    PositionRequestState,
    Role,
)
from directory.service import Principal
from idp import web
from idp.api import openapi
from idp.api.auth import Caller, NotAnAdministrator, caller
from idp.api.problems import domain_problem, problem
from idp.app import status_for
from idp.oidc.views import TokenRefused
from tokens.resets import ResetKind
from vetting.models import Application, ApplicationState

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

ID = "int(min=1, max=2147483647)"
PAGE_MAX = openapi.PAGE_MAX
PER_PAGE_DEFAULT = 50
QUERY_MAX = 100
# The same patterns the OpenAPI document states, checked here exactly as written
# there, so what the document calls valid is what the API accepts.
TEXT = re.compile(openapi.TEXT_PATTERN)
REASON = re.compile(openapi.REASON_PATTERN)
DIGITS = re.compile(r"[0-9]{1,9}")
NAME_MAX = openapi.NAME_MAX
EMAIL_MAX = openapi.EMAIL_MAX
PHONE_MAX = openapi.PHONE_MAX
USERNAME_MAX = openapi.USERNAME_MAX
DECISIONS = openapi.DECISIONS

F = TypeVar("F", bound=Callable[..., Any])


# -- errors --------------------------------------------------------------------------


@blueprint.before_app_request
def unrouted() -> Response | None:
    """A path under /api/v1 that matched no route, or not with this method: a
    problem document, not the HTML page the rest of the site shows."""
    failed = request.routing_exception
    prefix = blueprint.url_prefix or "/api/v1"
    if failed is None or not (request.path == prefix or request.path.startswith(prefix + "/")):
        return None
    if isinstance(failed, HTTPException) and failed.code in (404, 405):
        headers = dict(failed.get_headers())
        allow = {"Allow": headers["Allow"]} if "Allow" in headers else None
        return problem(failed.code, f"http.{failed.code}", failed.name,
                       failed.description or failed.name, headers=allow)
    return None


@blueprint.errorhandler(DomainError)
def domain_error(error: DomainError) -> Response:
    return domain_problem(error, status_for(error))


@blueprint.errorhandler(HTTPException)
def http_error(error: HTTPException) -> Response:
    code = error.code or 500
    return problem(code, f"http.{code}", error.name, error.description or error.name)


@blueprint.errorhandler(DBAPIError)
def database_unavailable(_error: DBAPIError) -> Response:
    current_app.logger.exception("database unavailable in API request %s", g.get("request_id"))
    return problem(503, ServiceUnavailable.error_id, ServiceUnavailable.title,
                   "Try again shortly.", headers={"Retry-After": "1"})


@blueprint.errorhandler(Exception)
def unexpected(error: Exception) -> Response:
    current_app.logger.exception("unhandled error in API request %s", g.get("request_id"))
    return problem(
        500,
        "internal",
        "Sorry, there is a problem with the service",
        f"Try again later. If you contact support, quote reference {g.get('request_id', '')}.",
    )


def _token_problem(refused: TokenRefused) -> Response:
    scheme = "DPoP" if refused.error == "invalid_dpop_proof" else "Bearer"
    challenge = f'{scheme} error="{refused.error}", error_description="{refused.description}"'
    if refused.error == "invalid_request" and refused.status == 401:
        challenge = f'{scheme} realm="contactpoint"'  # no token at all: RFC 6750 section 3.1
    title = "Forbidden" if refused.status == 403 else "Unauthorized"
    return problem(
        refused.status,
        f"token.{refused.error}",
        title,
        refused.description,
        headers={"WWW-Authenticate": challenge},
    )


def operation(*query: str) -> Callable[[F], F]:
    """Authorise by the bearer token, then run the view as its caller. `query`
    names the only query parameters the operation takes: any other is refused,
    as the document says, rather than silently ignored."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                who = caller()
            except TokenRefused as refused:
                return _token_problem(refused)
            except NotAnAdministrator:
                unit = web.unit()
                unit.audit.record("api:refused", "refused", subject_type="api",
                                  subject_id=request.path[:80],
                                  detail={"reason": "administers nothing"})
                unit.commit()
                return problem(403, "not_allowed", "You are not allowed to do that",
                               "This token's holder administers no organisation.")
            _only_query(*query)
            return view(who, *args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def _only_query(*query: str) -> None:
    unknown = sorted(set(request.args) - set(query))
    if unknown:
        raise InvalidInput([FieldProblem(name[:40], "This operation takes no such "
                                         "parameter") for name in unknown[:5]])


# -- input -------------------------------------------------------------------------


def _query_int(name: str, default: int, highest: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not DIGITS.fullmatch(raw) or not 1 <= int(raw) <= highest:
        raise InvalidInput(FieldProblem(name, f"Give a whole number from 1 to {highest}"))
    return int(raw)


def _paging() -> tuple[int, int]:
    return (_query_int("page", 1, PAGE_MAX),
            _query_int("per_page", PER_PAGE_DEFAULT, PER_PAGE_MAX))


def _search() -> str:
    query = request.args.get("q", "")
    if len(query) > QUERY_MAX or not TEXT.fullmatch(query):
        raise InvalidInput(FieldProblem(
            "q", f"Search with up to {QUERY_MAX} characters, without control characters"))
    return query


def _reason() -> str:
    body = request.get_json(silent=True)
    if not request.is_json or not isinstance(body, dict):
        raise InvalidInput(FieldProblem("body", "Send a JSON object with a reason"))
    reason = body.get("reason")
    if (not isinstance(reason, str) or not 1 <= len(reason) <= REASON_MAX
            or not REASON.fullmatch(reason)):
        raise InvalidInput(FieldProblem(
            "reason", f"Give the reason: up to {REASON_MAX} characters, not only spaces"))
    return reason


# -- output ------------------------------------------------------------------------


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _moment(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def organisation_json(org: Organisation) -> dict[str, Any]:
    return {
        "id": org.id,
        "code": org.code,
        "name": org.name,
        "kind": org.kind.value,
        "accreditation": org.accreditation.value,
        "accredited_on": _day(org.accredited_on),
        "accreditation_changed_at": _moment(org.accreditation_changed_at),
        "registration_authority_id": org.registration_authority_id,
    }


def person_summary(person: Person) -> dict[str, Any]:
    return {
        "id": person.id,
        "username": person.username,
        "given_name": person.given_name,
        "family_name": person.family_name,
        "display_name": person.display_name,
        "work_email": person.work_email,
        "status": person.status.value,
    }


def position_json(position: Position, today: date) -> dict[str, Any]:
    return {
        "id": position.id,
        "person_id": position.person_id,
        "organisation_id": position.organisation_id,
        "organisation_name": position.organisation.name,
        "role": position.role.value,
        "starts_on": _day(position.starts_on),
        "ends_on": _day(position.ends_on),
        "current": position.current_on(today),
    }


def person_json(person: Person, today: date) -> dict[str, Any]:
    return {
        **person_summary(person),
        "work_phone": person.work_phone,
        "status_reason": person.status_reason,
        "status_changed_at": _moment(person.status_changed_at),
        "clearance_expires_on": _day(person.clearance_expires_on),
        "training_expires_on": _day(person.training_expires_on),
        "positions": [position_json(p, today) for p in person.positions],
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": _moment(entry.at),
        "tag": entry.tag,
        "outcome": entry.outcome,
        "actor_id": entry.actor_id,
        "actor_label": entry.actor_label,
        "subject_type": entry.subject_type,
        "subject_id": entry.subject_id,
        "detail": entry.detail or {},
    }


def _link(number: int, per_page: int, **kept: str) -> str:
    params = {k: v for k, v in kept.items() if v}
    params.update(page=str(number), per_page=str(per_page))
    return f"{request.path}?{urlencode(params)}"


def page_json(page: Page[Any], items: Sequence[dict[str, Any]], **kept: str) -> dict[str, Any]:
    links = {
        "self": _link(page.number, page.per_page, **kept),
        "first": _link(1, page.per_page, **kept),
        "last": _link(page.pages, page.per_page, **kept),
    }
    if page.has_next:
        links["next"] = _link(page.number + 1, page.per_page, **kept)
    if page.has_previous:
        links["prev"] = _link(page.number - 1, page.per_page, **kept)
    return {
        "items": list(items),
        "page": page.number,
        "per_page": page.per_page,
        "total": page.total,
        "pages": page.pages,
        "links": links,
    }


def _change_json(change: AccreditationChange, key: str) -> Response:
    return jsonify({"organisation": organisation_json(change.organisation), key: change.people})


# -- the document --------------------------------------------------------------------


@blueprint.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi.document())


# -- organisations -------------------------------------------------------------------


@blueprint.get("/organisations")
@operation("page", "per_page")
def organisations(who: Caller) -> Response:
    number, per_page = _paging()
    every = web.unit().administration.organisations(who.principal)
    shown = every[(number - 1) * per_page : number * per_page]
    page: Page[Organisation] = Page(shown, len(every), number, per_page)
    return jsonify(page_json(page, [organisation_json(o) for o in shown]))


@blueprint.get(f"/organisations/<{ID}:organisation_id>")
@operation()
def organisation(who: Caller, organisation_id: int) -> Response:
    org = web.unit().administration.organisation_for(
        who.principal, Act.LIST_PEOPLE, organisation_id)
    return jsonify(organisation_json(org))


@blueprint.get(f"/organisations/<{ID}:organisation_id>/people")
@operation("q", "page", "per_page")
def people(who: Caller, organisation_id: int) -> Response:
    number, per_page = _paging()
    query = _search()
    page = web.unit().administration.people(
        who.principal, organisation_id, query=query, page=number, per_page=per_page)
    return jsonify(page_json(page, [person_summary(p) for p in page.items], q=query))


@blueprint.get(f"/organisations/<{ID}:organisation_id>/audit-trail")
@operation("page", "per_page")
def audit_trail(who: Caller, organisation_id: int) -> Response:
    number, per_page = _paging()
    unit = web.unit()
    page = unit.administration.audit_trail(
        who.principal, organisation_id, page=number, per_page=per_page)
    body = page_json(page, [audit_json(e) for e in page.items])
    unit.commit()  # reading the trail is itself on the trail
    return jsonify(body)


@blueprint.post(f"/organisations/<{ID}:organisation_id>/suspension")
@operation()
def suspend_organisation(who: Caller, organisation_id: int) -> Response:
    unit = web.unit()
    change = unit.accreditation.suspend(who.principal, organisation_id, _reason())
    unit.commit()
    return _change_json(change, "people_suspended")


@blueprint.post(f"/organisations/<{ID}:organisation_id>/accreditation")
@operation()
def accredit_organisation(who: Caller, organisation_id: int) -> Response:
    unit = web.unit()
    change = unit.accreditation.accredit(who.principal, organisation_id, _reason())
    unit.commit()
    return _change_json(change, "people_reinstated")


# -- people and positions ------------------------------------------------------------


@blueprint.get(f"/people/<{ID}:person_id>")
@operation()
def person(who: Caller, person_id: int) -> Response:
    unit = web.unit()
    target = unit.administration.person_for(who.principal, Act.LIST_PEOPLE, person_id)
    return jsonify(person_json(target, unit.clock.today()))


def _person_act(act: Callable[[Principal, int, str], Person], who: Caller,
                person_id: int) -> Response:
    """One of the administration service's acts on a person, with the body's reason."""
    unit = web.unit()
    target = act(who.principal, person_id, _reason())
    body = person_json(target, unit.clock.today())
    unit.commit()
    return jsonify(body)


@blueprint.post(f"/people/<{ID}:person_id>/suspension")
@operation()
def suspend_person(who: Caller, person_id: int) -> Response:
    return _person_act(web.unit().administration.suspend, who, person_id)


@blueprint.post(f"/people/<{ID}:person_id>/reinstatement")
@operation()
def reinstate_person(who: Caller, person_id: int) -> Response:
    return _person_act(web.unit().administration.reinstate, who, person_id)


@blueprint.post(f"/positions/<{ID}:position_id>/end")
@operation()
def end_position(who: Caller, position_id: int) -> Response:
    unit = web.unit()
    position = unit.administration.end_position(who.principal, position_id, _reason())
    body = position_json(position, unit.clock.today())
    unit.commit()
    return jsonify(body)


# -- delegated administration: closing, unlocking, reset letters -----------------------


@blueprint.post(f"/people/<{ID}:person_id>/closure")
@operation()
def close_person(who: Caller, person_id: int) -> Response:
    return _person_act(web.unit().administration.close, who, person_id)


@blueprint.post(f"/people/<{ID}:person_id>/unlock")
@operation()
def unlock_person(who: Caller, person_id: int) -> Response:
    unit = web.unit()
    reason = _reason()
    target = unit.administration.person_for(who.principal, Act.LIST_PEOPLE, person_id)
    unit.signin.unlock(who.principal, target, reason)
    body = person_json(target, unit.clock.today())
    unit.commit()
    return jsonify(body)


def _reset(who: Caller, person_id: int, kind: ResetKind) -> Response:
    unit = web.unit()
    sent = unit.resets.request(who.principal, person_id, kind, _reason())
    return jsonify({
        "person_id": sent.person.id,
        "kind": sent.kind.value,
        "letter_id": sent.letter_id,
        "expires_on": _day(sent.expires_on),
    })


@blueprint.post(f"/people/<{ID}:person_id>/pin-reset")
@operation()
def pin_reset(who: Caller, person_id: int) -> Response:
    return _reset(who, person_id, ResetKind.PIN)


@blueprint.post(f"/people/<{ID}:person_id>/password-reset")
@operation()
def password_reset(who: Caller, person_id: int) -> Response:
    return _reset(who, person_id, ResetKind.PASSWORD)


# -- delegated administration: sponsoring and movers -----------------------------------


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not request.is_json or not isinstance(body, dict):
        raise InvalidInput(FieldProblem("body", "Send a JSON object"))
    return body


def _field(body: dict[str, Any], name: str, most: int, *, required: bool = True,
           nullable: bool = False) -> str | None:
    """A string field checked exactly as the document states it."""
    value = body.get(name)
    if value is None and (nullable or (not required and name not in body)):
        return None
    if (not isinstance(value, str) or not 1 <= len(value) <= most
            or not REASON.fullmatch(value)):
        raise InvalidInput(FieldProblem(
            name, f"Give {name.replace('_', ' ')}: up to {most} characters, not only spaces"))
    return value


def _owed_reason(body: dict[str, Any]) -> str | None:
    """A reason optional for an organisation's own admins: the service refuses a
    platform admin's act without one (`directory.accreditation.reason_from`), as
    the console's page does."""
    return _field(body, "reason", REASON_MAX, required=False, nullable=True)


def _choice(body: dict[str, Any], name: str, choices: Sequence[str]) -> str:
    value = body.get(name)
    if not isinstance(value, str) or value not in choices:
        raise InvalidInput(FieldProblem(name, f"Choose one of: {', '.join(choices)}"))
    return value


ROLES = [r.value for r in Role]


def application_json(app: Application) -> dict[str, Any]:
    return {
        "id": app.id,
        "organisation_id": app.organisation_id,
        "role": app.role.value,
        "given_name": app.given_name,
        "family_name": app.family_name,
        "work_email": app.work_email,
        "work_phone": app.work_phone,
        "state": app.state.value,
        "sponsor_id": app.sponsor_id,
        "submitted_at": _moment(app.submitted_at),
        "decision": app.decision.value if app.decision else None,
        "decided_at": _moment(app.decided_at),
        "person_id": app.person_id,
    }


def position_request_json(asked: PositionRequest) -> dict[str, Any]:
    return {
        "id": asked.id,
        "person": person_summary(asked.person),
        "organisation_id": asked.organisation_id,
        "role": asked.role.value,
        "reason": asked.reason,
        "state": asked.state.value,
        "requested_by_id": asked.requested_by_id,
        "requested_at": _moment(asked.requested_at),
        "decided_by_id": asked.decided_by_id,
        "decided_at": _moment(asked.decided_at),
        "position_id": asked.position_id,
    }


@blueprint.route(f"/organisations/<{ID}:organisation_id>/applications", methods=["GET", "POST"])
@operation("state", "page", "per_page")
def applications(who: Caller, organisation_id: int) -> Response | tuple[Response, int]:
    """One rule for both methods: with two, an id out of range would answer 405
    (the path matched the other rule's pattern), which the document does not say."""
    if request.method == "POST":
        _only_query()
        return sponsor(who, organisation_id)
    return list_applications(who, organisation_id)


def list_applications(who: Caller, organisation_id: int) -> Response:
    number, per_page = _paging()
    raw = request.args.get("state")
    if raw is not None and raw not in {s.value for s in ApplicationState}:
        raise InvalidInput(FieldProblem("state", "Choose one of: " + ", ".join(
            s.value for s in ApplicationState)))
    state = ApplicationState(raw) if raw else None
    page = web.unit().vetting.applications_of(
        who.principal, organisation_id, state=state, page=number, per_page=per_page)
    return jsonify(page_json(page, [application_json(a) for a in page.items],
                             state=raw or ""))


def sponsor(who: Caller, organisation_id: int) -> tuple[Response, int]:
    """Sponsor a colleague: the application then waits for vetting."""
    unit = web.unit()
    body = _body()
    values = {
        "given_name": _field(body, "given_name", NAME_MAX),
        "family_name": _field(body, "family_name", NAME_MAX),
        "work_email": _field(body, "work_email", EMAIL_MAX),
        "work_phone": _field(body, "work_phone", PHONE_MAX, required=False, nullable=True),
    }
    role = Role(_choice(body, "role", ROLES))
    app = unit.vetting.sponsor(
        who.principal, organisation_id=organisation_id, given_name=values["given_name"] or "",
        family_name=values["family_name"] or "", work_email=values["work_email"] or "",
        work_phone=values["work_phone"], role=role, reason=_owed_reason(body))
    answer = application_json(app)
    unit.commit()
    return jsonify(answer), 201


@blueprint.route(f"/organisations/<{ID}:organisation_id>/position-requests",
                 methods=["GET", "POST"])
@operation("page", "per_page")
def position_requests(who: Caller, organisation_id: int) -> Response | tuple[Response, int]:
    """One rule for both methods, as `applications`."""
    if request.method == "POST":
        _only_query()
        return request_position(who, organisation_id)
    return list_position_requests(who, organisation_id)


def list_position_requests(who: Caller, organisation_id: int) -> Response:
    number, per_page = _paging()
    pending = web.unit().administration.position_requests(who.principal, organisation_id)
    shown = pending[(number - 1) * per_page : number * per_page]
    page: Page[PositionRequest] = Page(shown, len(pending), number, per_page)
    return jsonify(page_json(page, [position_request_json(r) for r in shown]))


def request_position(who: Caller, organisation_id: int) -> tuple[Response, int]:
    """Ask for a position for someone who already has an identity (a mover)."""
    unit = web.unit()
    body = _body()
    username = _field(body, "username", USERNAME_MAX) or ""
    role = Role(_choice(body, "role", ROLES))
    asked = unit.administration.request_position(
        who.principal, organisation_id, username=username, role=role, reason=_reason())
    answer = position_request_json(asked)
    unit.commit()
    return jsonify(answer), 201


@blueprint.post(f"/position-requests/<{ID}:request_id>/decision")
@operation()
def decide_position(who: Caller, request_id: int) -> Response:
    """Approve or refuse, by someone who neither asked nor is the subject."""
    unit = web.unit()
    body = _body()
    decision = _choice(body, "decision", DECISIONS)
    decided = unit.administration.decide_position(
        who.principal, request_id, approve=decision == PositionRequestState.APPROVED.value,
        reason=_reason())
    answer = position_request_json(decided)
    unit.commit()
    return jsonify(answer)
