"""The child-record API: search and view for a relying application acting for
the practitioner signed in through it (a person's access token with scope
`children.read`, DPoP-bound where the application is registered so).

Each operation is one call of `directory.children` with the same values the
pages pass (`ChildQuery`, `Reason`) and the application's client id for the
audit log: who may search, what a shielded record shows, which services and
source identifiers appear, and every audit entry are decided there, never
here. Names and reasons never sit in URLs: a search is a POST with a JSON
body, and a view carries its reason in request headers (printable ASCII, as
header values are).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from functools import wraps
from typing import Any, TypeVar

from flask import jsonify, request
from werkzeug.wrappers import Response

from core.errors import FieldProblem, InvalidInput
from directory.children.service import (
    ChildPage,
    ChildQuery,
    ChildSummary,
    ChildView,
    Reason,
)
from idp import web
from idp.api import openapi
from idp.api.auth import Caller, NoPractitioner, practitioner
from idp.api.problems import problem
from idp.api.views import _token_problem, blueprint
from idp.oidc.views import TokenRefused

F = TypeVar("F", bound=Callable[..., Any])

TEXT = re.compile(openapi.TEXT_PATTERN)
ASCII = re.compile(openapi.ASCII_PATTERN)
SURNAME = re.compile(openapi.SURNAME_PATTERN)
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
REASON_HEADER = "ContactPoint-Reason"
DETAIL_HEADER = "ContactPoint-Reason-Detail"


def child_operation(tag: str) -> Callable[[F], F]:
    """Authorise by the token (a person's, with `children.read`), then run the
    view for that person. An application's own token is refused and audited
    under the operation's tag, as the service audits its own refusals."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                who = practitioner()
            except TokenRefused as refused:
                return _token_problem(refused)
            except NoPractitioner as nobody:
                unit = web.unit()
                unit.audit.record(tag, "refused", subject_type="client",
                                  subject_id=nobody.client_id,
                                  detail={"why": "an application's own token acts for no "
                                          "practitioner", "client_id": nobody.client_id})
                unit.commit()
                return problem(403, "children.no_practitioner",
                               "You are not allowed to do that",
                               "Child records are read only for a practitioner signed in "
                               "through the application, not with its own token.")
            if request.args:
                raise InvalidInput([FieldProblem(name[:40], "This operation takes no query "
                                                 "parameters")
                                    for name in sorted(request.args)[:5]])
            return view(who, *args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


# -- input -------------------------------------------------------------------------


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not request.is_json or not isinstance(body, dict):
        raise InvalidInput(FieldProblem("body", "Send a JSON object with the search"))
    unknown = sorted(set(body) - set(openapi.CHILD_SEARCH_FIELDS))
    if unknown:
        raise InvalidInput([FieldProblem(str(name)[:40], "There is no such field")
                            for name in unknown[:5]])
    return body


def _text(body: dict[str, Any], name: str, highest: int) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > highest or not TEXT.fullmatch(value):
        raise InvalidInput(FieldProblem(name, f"Give text of up to {highest} characters, "
                                        "without control characters"))
    return value


def _number(body: dict[str, Any], name: str, highest: int) -> int | None:
    if name not in body:
        return None
    value = body[name]
    # JSON Schema counts 5.0 as an integer, so the document does too.
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2 * highest:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= highest:
        raise InvalidInput(FieldProblem(name, f"Give a whole number from 1 to {highest}"))
    return value


def _day(body: dict[str, Any], name: str) -> date | None:
    if name not in body:
        return None
    value = body[name]
    try:
        if isinstance(value, str) and DAY.fullmatch(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise InvalidInput(FieldProblem(name, "Give a date as YYYY-MM-DD"))


def _query(body: dict[str, Any]) -> tuple[Reason, ChildQuery]:
    """The reason and the criteria, bounded as the document says. What they
    mean (a reason from the list, its detail long enough, a surname) is the
    service's to judge, so a missing reason is refused and audited there."""
    reason = Reason(_text(body, "reason", openapi.REASON_CODE_MAX),
                    _text(body, "reason_detail", openapi.REASON_DETAIL_MAX))
    sort = body.get("sort", "name")
    if sort not in openapi.CHILD_SORTS:
        raise InvalidInput(FieldProblem("sort", "Sort by name or date_of_birth"))
    surname = _text(body, "surname", openapi.NAME_MAX)
    if not SURNAME.fullmatch(surname):
        raise InvalidInput(FieldProblem("surname", "Enter a surname (current or former) with "
                                        "at least two letters"))
    query = ChildQuery(
        surname=surname,
        forename=_text(body, "forename", openapi.NAME_MAX),
        date_of_birth=_day(body, "date_of_birth"),
        postcode_district=_text(body, "postcode_district", openapi.DISTRICT_MAX),
        school_service_id=_number(body, "school_service_id", openapi.ID_MAX),
        gp_service_id=_number(body, "gp_service_id", openapi.ID_MAX),
        service_id=_number(body, "service_id", openapi.ID_MAX),
        sort=sort,
        page=_number(body, "page", openapi.PAGE_MAX) or 1,
    )
    return reason, query


def _header(name: str, field: str, highest: int) -> str:
    """A reason header: printable ASCII, as HTTP field values are. Its meaning
    (a reason on the list, detail long enough) is the service's to judge."""
    value = request.headers.get(name, "")
    if len(value) > highest or not ASCII.fullmatch(value):
        raise InvalidInput(FieldProblem(field, f"Give up to {highest} printable ASCII "
                                        f"characters in the {name} header"))
    return value


# -- output ------------------------------------------------------------------------


SUMMARY = ("public_id", "identifier", "forename", "surname", "gender", "date_of_birth")
INVOLVEMENT = ("service_name", "role", "organisation_name", "phone", "practitioner_name",
               "practitioner_email", "starts_on", "ends_on", "lead_professional",
               "assessment_held", "sensitive")


def _plain(item: object, names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields of a service result, dates as ISO 8601."""
    values = {name: getattr(item, name) for name in names}
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in values.items()}


def summary_json(child: ChildSummary) -> dict[str, Any]:
    return _plain(child, (*SUMMARY, "restricted"))


def page_json(found: ChildPage) -> dict[str, Any]:
    return {
        "items": [summary_json(c) for c in found.items],
        "page": found.page,
        "pages": found.pages,
        "per_page": found.per_page,
        "total": None if found.too_many else found.total,
        "too_many": found.too_many,
    }


def record_json(view: ChildView) -> dict[str, Any]:
    """What the record page shows this person: a restricted record carries the
    visible fields only, and no key at all for the rest."""
    body = _plain(view, (*SUMMARY, "parent_name", "shielded", "restricted"))
    if view.restricted:
        return body
    body.update(
        former_names=list(view.former_names),
        whereabouts=view.whereabouts,
        address=view.address,
        return_intention=view.return_intention,
        date_of_death=view.date_of_death.isoformat() if view.date_of_death else None,
        responsible_la=view.responsible_la,
        carers=[{"name": c.get("name", ""), "relationship": c.get("relationship", ""),
                 "phone": c.get("phone", "")} for c in view.carers],
        involvements=[_plain(i, INVOLVEMENT) for i in view.involvements],
        source_identifiers=[{"scheme": s, "value": v} for s, v in view.source_identifiers],
    )
    return body


# -- operations ----------------------------------------------------------------------


@blueprint.post("/children/search")
@child_operation("children:search")
def search_children(who: Caller) -> Response:
    reason, query = _query(_body())
    unit = web.unit()
    found = unit.children.search(who.principal, reason, query, client_id=who.client_id)
    unit.commit()
    return jsonify(page_json(found))


@blueprint.get("/children/<public_id>")
@child_operation("children:view")
def view_child(who: Caller, public_id: str) -> Response:
    reason = Reason(_header(REASON_HEADER, "reason", openapi.REASON_CODE_MAX),
                    _header(DETAIL_HEADER, "reason_detail", openapi.REASON_DETAIL_MAX))
    unit = web.unit()
    view = unit.children.view(who.principal, reason, public_id, client_id=who.client_id)
    unit.commit()
    return jsonify(record_json(view))
