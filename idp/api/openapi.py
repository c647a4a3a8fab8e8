"""The OpenAPI 3.1 document of /api/v1, written by hand beside the views it
describes. The views check their input with the same patterns and bounds as
stated here (and tests/idp/api/test_schemathesis.py holds the two together),
so the document is a contract, not a sketch.
"""

from __future__ import annotations

from typing import Any

from directory.accreditation import REASON_MAX
from directory.administration import PER_PAGE_MAX
from directory.children.models import InvolvementRole
from directory.children.service import ReasonCode, SortOrder
from directory.models import (
    Accreditation,
    OrganisationKind,
    PersonStatus,
    PositionRequestState,
    Role,
)
from vetting.models import ApplicationState, Decision

PAGE_MAX = 100_000
ID_MAX = 2_147_483_647
# No control characters (C0, DEL, C1); written in the syntax both ECMA-262 (the
# document's regex dialect) and Python's `re` read the same way.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
_SPACE = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# At least one character that is neither a control character nor a space.
REASON_PATTERN = (
    r"^[^\x00-\x1f\x7f-\x9f]*[^" + _SPACE + r"][^\x00-\x1f\x7f-\x9f]*$"
)

JSON = "application/json"
# Bounds of the sponsoring and mover bodies: the columns they are stored in.
NAME_MAX = 100
EMAIL_MAX = 254
PHONE_MAX = 40
USERNAME_MAX = 64
DECISIONS = [PositionRequestState.APPROVED.value, PositionRequestState.REFUSED.value]
PROBLEM = "application/problem+json"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **more}


def _object(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
    }


def _id(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": 1, "maximum": ID_MAX},
    }


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("schemas", schema)}}}


def _responses(ok: dict[str, Any], *problems: str, success: str = "200") -> dict[str, Any]:
    answers: dict[str, Any] = {success: ok}
    for status in ("400", "401", "403", *problems, "503"):
        answers[status] = _ref("responses", status)
    return dict(sorted(answers.items()))


PAGING = [_ref("parameters", "page"), _ref("parameters", "per_page")]
REASON_BODY = {
    "required": True,
    "content": {JSON: {"schema": _ref("schemas", "Reason")}},
}


def _read(summary: str, operation_id: str, ok: dict[str, Any], parameters: list[Any],
          tag: str, *problems: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation_id,
            "tags": [tag],
            "parameters": parameters,
            "responses": _responses(ok, *problems),
        }
    }


def _act(summary: str, operation_id: str, ok: dict[str, Any], parameter: dict[str, Any],
         tag: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": operation_id,
            "tags": [tag],
            "parameters": [parameter],
            "requestBody": REASON_BODY,
            "responses": _responses(ok, "404", "409", "413"),
        }
    }


def _page_of(item: str) -> dict[str, Any]:
    return _object(
        {
            "items": {"type": "array", "items": _ref("schemas", item)},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1, "maximum": PER_PAGE_MAX},
            "total": {"type": "integer", "minimum": 0},
            "pages": {"type": "integer", "minimum": 1},
            "links": _ref("schemas", "PageLinks"),
        }
    )


def _schemas() -> dict[str, Any]:
    day = _nullable("string", format="date")
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
                "errors": {
                    "type": "array",
                    "description": "For invalid input: each field and what is wrong with it.",
                    "items": _object({"field": {"type": "string"},
                                      "message": {"type": "string"}}),
                },
            },
            "required": ["type", "title", "status", "detail", "instance"],
        },
        "Reason": {
            "type": "object",
            "properties": {
                "reason": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": REASON_MAX,
                    "pattern": REASON_PATTERN,
                    "description": "Why; kept on the audit trail.",
                }
            },
            "required": ["reason"],
        },
        "Organisation": _object(
            {
                "id": {"type": "integer"},
                "code": {"type": "string"},
                "name": {"type": "string"},
                "kind": {"type": "string", "enum": [k.value for k in OrganisationKind]},
                "accreditation": {"type": "string", "enum": [a.value for a in Accreditation]},
                "accredited_on": day,
                "accreditation_changed_at": _nullable("string", format="date-time"),
                "registration_authority_id": _nullable("integer"),
            }
        ),
        "PersonSummary": _object(
            {
                "id": {"type": "integer"},
                "username": {"type": "string"},
                "given_name": {"type": "string"},
                "family_name": {"type": "string"},
                "display_name": {"type": "string"},
                "work_email": {"type": "string"},
                "status": {"type": "string", "enum": [s.value for s in PersonStatus]},
            }
        ),
        "Person": {
            "allOf": [
                _ref("schemas", "PersonSummary"),
                _object(
                    {
                        "work_phone": _nullable("string"),
                        "status_reason": {"type": "string"},
                        "status_changed_at": _nullable("string", format="date-time"),
                        "clearance_expires_on": day,
                        "training_expires_on": day,
                        "positions": {"type": "array", "items": _ref("schemas", "Position")},
                    }
                ),
            ]
        },
        "Position": _object(
            {
                "id": {"type": "integer"},
                "person_id": {"type": "integer"},
                "organisation_id": {"type": "integer"},
                "organisation_name": {"type": "string"},
                "role": {"type": "string", "enum": [r.value for r in Role]},
                "starts_on": {"type": "string", "format": "date"},
                "ends_on": day,
                "current": {"type": "boolean"},
            }
        ),
        "AuditEntry": _object(
            {
                "seq": {"type": "integer"},
                "at": {"type": "string", "format": "date-time"},
                "tag": {"type": "string"},
                "outcome": {"type": "string"},
                "actor_id": _nullable("integer"),
                "actor_label": _nullable("string"),
                "subject_type": _nullable("string"),
                "subject_id": _nullable("string"),
                "detail": {"type": "object"},
            }
        ),
        "PageLinks": _object(
            {
                "self": {"type": "string"},
                "first": {"type": "string"},
                "last": {"type": "string"},
                "next": {"type": "string"},
                "prev": {"type": "string"},
            },
            required=["self", "first", "last"],
        ),
        "OrganisationPage": _page_of("Organisation"),
        "PeoplePage": _page_of("PersonSummary"),
        "AuditPage": _page_of("AuditEntry"),
        "OrganisationSuspended": _object(
            {
                "organisation": _ref("schemas", "Organisation"),
                "people_suspended": {"type": "integer", "minimum": 0},
            }
        ),
        "OrganisationAccredited": _object(
            {
                "organisation": _ref("schemas", "Organisation"),
                "people_reinstated": {"type": "integer", "minimum": 0},
            }
        ),
        **_delegation_schemas(),
    }


# -- delegated administration: sponsoring, movers, closing, unlocking, reset letters --


def _text(most: int, description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": most, "pattern": REASON_PATTERN,
            "description": description}


def _delegation_schemas() -> dict[str, Any]:
    moment = _nullable("string", format="date-time")
    roles = {"type": "string", "enum": [r.value for r in Role]}
    return {
        "Sponsorship": {
            "type": "object",
            "properties": {
                "given_name": _text(NAME_MAX, "The applicant's first name."),
                "family_name": _text(NAME_MAX, "The applicant's last name."),
                "work_email": _text(EMAIL_MAX, "Their work email address."),
                "work_phone": {**_text(PHONE_MAX, "Their work phone, if any."),
                               "type": ["string", "null"]},
                "role": roles,
                "reason": _owed_reason(),
            },
            "required": ["given_name", "family_name", "work_email", "role"],
        },
        "Application": _object(
            {
                "id": {"type": "integer"},
                "organisation_id": {"type": "integer"},
                "role": roles,
                "given_name": {"type": "string"},
                "family_name": {"type": "string"},
                "work_email": {"type": "string"},
                "work_phone": _nullable("string"),
                "state": {"type": "string", "enum": [a.value for a in ApplicationState]},
                "sponsor_id": _nullable("integer"),
                "submitted_at": {"type": "string", "format": "date-time"},
                "decision": {"type": ["string", "null"],
                             "enum": [d.value for d in Decision] + [None]},
                "decided_at": moment,
                "person_id": _nullable("integer"),
            }
        ),
        "ApplicationPage": _page_of("Application"),
        "PositionAsked": {
            "type": "object",
            "properties": {
                "username": _text(USERNAME_MAX, "The username of the person who moves."),
                "role": roles,
                "reason": _text(REASON_MAX, "Why; kept on the audit trail."),
            },
            "required": ["username", "role", "reason"],
        },
        "PositionDecision": {
            "type": "object",
            "properties": {
                "decision": {"type": "string", "enum": DECISIONS},
                "reason": _text(REASON_MAX, "Why; kept on the audit trail."),
            },
            "required": ["decision", "reason"],
        },
        "PositionRequest": _object(
            {
                "id": {"type": "integer"},
                "person": _ref("schemas", "PersonSummary"),
                "organisation_id": {"type": "integer"},
                "role": roles,
                "reason": {"type": "string"},
                "state": {"type": "string", "enum": [s.value for s in PositionRequestState]},
                "requested_by_id": {"type": "integer"},
                "requested_at": {"type": "string", "format": "date-time"},
                "decided_by_id": _nullable("integer"),
                "decided_at": moment,
                "position_id": _nullable("integer"),
            }
        ),
        "PositionRequestPage": _page_of("PositionRequest"),
        "ResetLetter": _object(
            {
                "person_id": {"type": "integer"},
                "kind": {"type": "string", "enum": ["pin", "password"]},
                "letter_id": {"type": "integer"},
                "expires_on": {"type": "string", "format": "date"},
            }
        ),
    }


def _create(summary: str, operation_id: str, ok: dict[str, Any], parameter: dict[str, Any],
            tag: str, body: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": operation_id,
        "tags": [tag],
        "parameters": [parameter],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("schemas", body)}}},
        "responses": _responses(ok, "404", "409", "413", success="201"),
    }


def _delegation_paths(organisation_id: dict[str, Any],
                      person_id: dict[str, Any]) -> dict[str, Any]:
    request_id = _id("request_id", "A position request's id.")
    state = {
        "name": "state",
        "in": "query",
        "required": False,
        "description": "Only applications in this state.",
        "schema": {"type": "string", "enum": [a.value for a in ApplicationState]},
    }
    applications = _read(
        "The organisation's applications, newest first", "listApplications",
        _ok("A page of applications", "ApplicationPage"), [organisation_id, state, *PAGING],
        "applications", "404")
    applications["post"] = _create(
        "Sponsor a colleague: an application that then waits for vetting",
        "sponsorApplication", _ok("The application, submitted", "Application"),
        organisation_id, "applications", "Sponsorship")
    asked = _read(
        "Positions waiting for a decision in the organisation", "listPositionRequests",
        _ok("A page of position requests", "PositionRequestPage"), [organisation_id, *PAGING],
        "applications", "404")
    asked["post"] = _create(
        "Ask for a position for someone who already has an identity (a mover); "
        "another administrator decides", "requestPosition",
        _ok("The request, waiting", "PositionRequest"), organisation_id, "applications",
        "PositionAsked")
    decision = {
        "post": {
            "summary": "Approve or refuse a position request (never one's own, nor one "
                       "one asked for)",
            "operationId": "decidePosition",
            "tags": ["applications"],
            "parameters": [request_id],
            "requestBody": {"required": True, "content": {JSON: {
                "schema": _ref("schemas", "PositionDecision")}}},
            "responses": _responses(_ok("The request, decided", "PositionRequest"),
                                    "404", "409", "413"),
        }
    }
    return {
        "/organisations/{organisation_id}/applications": applications,
        "/organisations/{organisation_id}/position-requests": asked,
        "/position-requests/{request_id}/decision": decision,
        "/people/{person_id}/closure": _act(
            "Close the account for good (local authority teams and platform admins)",
            "closePerson", _ok("The person, closed", "Person"), person_id, "people"),
        "/people/{person_id}/unlock": _act(
            "Lift a sign-in lockout", "unlockPerson",
            _ok("The person, unlocked", "Person"), person_id, "people"),
        "/people/{person_id}/pin-reset": _act(
            "Send a PIN reset letter (to the outbox, for printing)", "requestPinReset",
            _ok("The letter", "ResetLetter"), person_id, "people"),
        "/people/{person_id}/password-reset": _act(
            "Send a password reset letter (to the outbox, for printing)",
            "requestPasswordReset", _ok("The letter", "ResetLetter"), person_id, "people"),
    }


def _problem(description: str, **headers: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": _ref("schemas", "Problem")}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _components() -> dict[str, Any]:
    challenge = {
        "description": "RFC 6750: `Bearer error=...` naming what is wrong with the token.",
        "schema": {"type": "string"},
    }
    return {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT (RFC 9068)",
                "description": (
                    "An access token from this service's token endpoint with scope `admin` "
                    "and this API as its audience: an administrator's own (authorization "
                    "code flow), or an approved application's (client credentials), which "
                    "acts as an organisation admin of the application's organisation. "
                    "The child-record operations take scope `children.read` instead, and "
                    "a person's token only. A DPoP-bound token (RFC 9449) is sent as "
                    "`Authorization: DPoP <token>` with a `DPoP` proof of its key."
                ),
            },
        },
        "parameters": {
            "page": {
                "name": "page",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 1},
            },
            "per_page": {
                "name": "per_page",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": PER_PAGE_MAX,
                           "default": 50},
            },
            "q": {
                "name": "q",
                "in": "query",
                "required": False,
                "description": "Each word must begin a name, the username or the email.",
                "schema": {"type": "string", "maxLength": 100, "pattern": TEXT_PATTERN},
            },
        },
        "responses": {
            "400": _problem("The input is not valid; `errors` names each field."),
            "401": _problem("No usable access token.", **{"WWW-Authenticate": {
                **challenge, "required": True}}),
            "403": _problem("Not allowed, or the token lacks the operation's scope. Refused "
                            "alike whether the thing asked about exists or not."),
            "404": _problem("No such route."),
            "409": _problem("Not possible in the current state."),
            "413": _problem("The request body is larger than the service accepts."),
            "503": _problem("A backing service is unavailable; try again.", **{"Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "string"}}}),
        },
        "schemas": {**_schemas(), **children_schemas(), **manage_schemas()},
    }


def document() -> dict[str, Any]:
    organisation_id = _id("organisation_id", "An organisation's id.")
    person_id = _id("person_id", "A person's id.")
    position_id = _id("position_id", "A position's id.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ContactPoint administration API",
            "version": "1.0.0",
            "description": (
                "The admin console's operations, under the same rules: organisation admins "
                "act inside their own organisation, platform admins anywhere, and every act "
                "carries a reason and is audited. Errors are RFC 9457 problem documents. "
                "Every response is `Cache-Control: no-store`."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "tags": [{"name": "organisations"}, {"name": "people"}, {"name": "applications"},
                 {"name": "tokens"}, {"name": "children"}, {"name": "meta"}],
        "paths": {
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "tags": ["meta"],
                    "security": [],
                    "responses": {"200": {"description": "The OpenAPI document",
                                          "content": {JSON: {"schema": {"type": "object"}}}}},
                }
            },
            "/organisations": _read(
                "The organisations whose people the caller administers", "listOrganisations",
                _ok("A page of organisations", "OrganisationPage"), PAGING, "organisations"),
            "/organisations/{organisation_id}": _read(
                "One organisation the caller administers", "getOrganisation",
                _ok("The organisation", "Organisation"), [organisation_id], "organisations",
                "404"),
            "/organisations/{organisation_id}/people": _read(
                "The people with a current position in the organisation, by name",
                "listPeople", _ok("A page of people", "PeoplePage"),
                [organisation_id, _ref("parameters", "q"), *PAGING], "people", "404"),
            "/organisations/{organisation_id}/audit-trail": _read(
                "The organisation's audit trail, newest first (reading it is audited)",
                "readAuditTrail", _ok("A page of audit entries", "AuditPage"),
                [organisation_id, *PAGING], "organisations", "404"),
            "/organisations/{organisation_id}/suspension": _act(
                "Suspend the organisation's accreditation (platform admins, local authority "
                "teams for their area)", "suspendOrganisation",
                _ok("Suspended; its people who lost access were signed out",
                    "OrganisationSuspended"), organisation_id, "organisations"),
            "/organisations/{organisation_id}/accreditation": _act(
                "Accredit the organisation, or re-accredit a suspended one",
                "accreditOrganisation",
                _ok("Accredited; people suspended with it are reinstated",
                    "OrganisationAccredited"), organisation_id, "organisations"),
            "/people/{person_id}": _read(
                "One person with a current position where the caller administers",
                "getPerson", _ok("The person", "Person"), [person_id], "people", "404"),
            "/people/{person_id}/suspension": _act(
                "Suspend the person; they are signed out everywhere at once", "suspendPerson",
                _ok("The person, suspended", "Person"), person_id, "people"),
            "/people/{person_id}/reinstatement": _act(
                "Lift a suspension an administrator made", "reinstatePerson",
                _ok("The person, active again", "Person"), person_id, "people"),
            "/positions/{position_id}/end": _act(
                "End a position from today", "endPosition",
                _ok("The position, ended", "Position"), position_id, "people"),
            **_delegation_paths(organisation_id, person_id),
            **children_paths(),
            **manage_paths(organisation_id),
        },
        "components": _components(),
    }


# -- the child-record API --------------------------------------------------------------
# Kept apart from the admin operations above: its own scope (`children.read`), its
# own inputs (a reason from a fixed list with detail, on every call) and answers.

CHILD_REASONS = [c.value for c in ReasonCode]
CHILD_SORTS = [s.value for s in SortOrder]
REASON_CODE_MAX = 40
REASON_DETAIL_MAX = 300
NAME_MAX = 100
DISTRICT_MAX = 8
CHILD_ID_MAX = 80
# The detail of a reason: at least REASON_DETAIL_MIN characters once the spaces
# Python's str.strip() removes are gone (`directory.children` counts that way).
# The service reads the minimum from settings; this is its shipped default.
REASON_DETAIL_MIN = 10
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_STRIPPED = r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
REASON_DETAIL_PATTERN = (
    f"^[^{_CONTROL}]*[^{_CONTROL}{_STRIPPED}][^{_CONTROL}]{{{REASON_DETAIL_MIN - 2},}}"
    f"[^{_CONTROL}{_STRIPPED}][^{_CONTROL}]*$"
)
# In a header: printable ASCII only (RFC 9110 field values), the same rule.
ASCII_PATTERN = r"^[\x20-\x7e]*$"
REASON_DETAIL_HEADER_PATTERN = (
    r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]{" + str(REASON_DETAIL_MIN - 2)
    + r",}[\x21-\x7e][\x20-\x7e]*$"
)
# A surname must keep two letters once accents, case and punctuation go
# (`directory.children.rules.name_key`): two letters a-z, or Latin letters
# that decompose to them.
_LETTER = (r"A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u0125\u0128-\u0137\u0139-\u0149"
           r"\u014c-\u0165\u0168-\u017f")
SURNAME_PATTERN = (
    f"^[^{_CONTROL}]*[{_LETTER}][^{_CONTROL}]*[{_LETTER}][^{_CONTROL}]*$"
)
CHILD_SEARCH_FIELDS = (
    "reason", "reason_detail", "surname", "forename", "date_of_birth", "postcode_district",
    "school_service_id", "gp_service_id", "service_id", "sort", "page",
)


def _child_text(max_length: int, description: str, **more: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "pattern": TEXT_PATTERN,
            "description": description, **more}


def children_schemas() -> dict[str, Any]:
    day = _nullable("string", format="date")
    service = {"type": "integer", "minimum": 1, "maximum": ID_MAX}
    visible = {
        "public_id": {"type": "string"},
        "identifier": {"type": "string"},
        "forename": {"type": "string"},
        "surname": {"type": "string"},
        "gender": {"type": "string"},
        "date_of_birth": {"type": "string", "format": "date"},
    }
    return {
        "ChildSearch": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "reason": {"type": "string", "maxLength": REASON_CODE_MAX,
                           "enum": CHILD_REASONS,
                           "description": "Why you search: one of the fixed list."},
                "reason_detail": {
                    "type": "string", "maxLength": REASON_DETAIL_MAX,
                    "pattern": REASON_DETAIL_PATTERN,
                    "description": f"The detail of the reason (a referral or case "
                    f"reference), {REASON_DETAIL_MIN} characters or more without the spaces "
                    "around it (the shipped minimum; a service may set more). Kept on the "
                    "audit trail."},
                "surname": {"type": "string", "maxLength": NAME_MAX,
                            "pattern": SURNAME_PATTERN,
                            "description": "Current or former surname, with at least two "
                            "letters a-z (accented Latin letters count)."},
                "forename": _child_text(NAME_MAX, "The start of the first name."),
                "date_of_birth": {"type": "string", "format": "date"},
                "postcode_district": _child_text(DISTRICT_MAX, "The first part of the postcode, "
                                           "for example NE1. Never finds a shielded record."),
                "school_service_id": {**service, "description": "An educational setting "
                                      "the child attends. Never finds a shielded record."},
                "gp_service_id": {**service, "description": "The child's GP practice. Never "
                                  "finds a shielded record."},
                "service_id": {**service, "description": "Any service working with the "
                               "child. Never finds a shielded record; a sensitive service "
                               "finds children only for the responsible team."},
                "sort": {"type": "string", "enum": CHILD_SORTS, "default": "name"},
                "page": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 1},
            },
            "required": ["reason", "reason_detail", "surname"],
        },
        "ChildSummary": _object({**visible, "restricted": {
            "type": "boolean", "description": "Shielded, and you see its visible fields only."}}),
        "ChildPage": _object({
            "items": {"type": "array", "items": _ref("schemas", "ChildSummary")},
            "page": {"type": "integer", "minimum": 1},
            "pages": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1},
            "total": {"type": ["integer", "null"], "minimum": 0,
                      "description": "Null when too many match."},
            "too_many": {"type": "boolean", "description": "More match than the service "
                         "shows (100 by default): no items; narrow the search."},
        }),
        "ChildInvolvement": _object({
            "service_name": {"type": "string"},
            "role": {"type": "string", "enum": [r.value for r in InvolvementRole]},
            "organisation_name": {"type": "string"},
            "phone": {"type": "string"},
            "practitioner_name": _nullable("string"),
            "practitioner_email": _nullable("string"),
            "starts_on": day,
            "ends_on": day,
            "lead_professional": {"type": "boolean"},
            "assessment_held": {"type": "boolean"},
            "sensitive": {"type": "boolean"},
        }),
        "ChildRecord": {
            "type": "object",
            "description": (
                "A record as the caller may see it. A shielded record seen by anyone but "
                "its responsible local authority team is `restricted`: it has the fields "
                "listed as required and no other key."
            ),
            "properties": {
                **visible,
                "parent_name": _nullable("string"),
                "shielded": {"type": "boolean"},
                "restricted": {"type": "boolean"},
                "former_names": {"type": "array", "items": {"type": "string"}},
                "whereabouts": {"type": "string"},
                "address": {"type": ["object", "null"],
                            "additionalProperties": {"type": "string"}},
                "return_intention": _nullable("string"),
                "date_of_death": day,
                "responsible_la": _nullable("string"),
                "carers": {"type": "array", "items": _object({
                    "name": {"type": "string"}, "relationship": {"type": "string"},
                    "phone": {"type": "string"}})},
                "involvements": {"type": "array",
                                 "items": _ref("schemas", "ChildInvolvement")},
                "source_identifiers": {
                    "type": "array",
                    "description": "Only the identifiers your own organisation supplied.",
                    "items": _object({"scheme": {"type": "string"},
                                      "value": {"type": "string"}}),
                },
            },
            "required": [*visible, "parent_name", "shielded", "restricted"],
        },
    }


def _reason_header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "description": description,
            "schema": schema}


def children_paths() -> dict[str, Any]:
    scope = ("A person's access token with scope `children.read`: a relying application "
             "acting for the practitioner signed in through it (an application's own token "
             "is refused). Every call, refused or not, is on the audit trail with the "
             "application's client id.")
    common = {"tags": ["children"]}
    return {
        "/children/search": {
            "post": {
                **common,
                "summary": "Search the national index of children, with a reason",
                "description": scope + " At most `per_page` (20 by default) a page; when "
                "more than 100 (by default) match, `too_many` asks to narrow the search. "
                "A search on a hidden field (postcode district, school, GP, service) never "
                "finds a shielded record, and leaves it out of the count, order and pages.",
                "operationId": "searchChildren",
                "parameters": [],
                "requestBody": {"required": True,
                                "content": {JSON: {"schema": _ref("schemas", "ChildSearch")}}},
                "responses": _responses(_ok("A page of children", "ChildPage"), "413"),
            }
        },
        "/children/{public_id}": {
            "get": {
                **common,
                "summary": "One child's record, with a reason",
                "description": scope + " A shielded record is restricted to its visible "
                "fields, except for its responsible local authority team; sensitive "
                "services show only to that team, and source identifiers only to the "
                "body that supplied them. There is no shield override here.",
                "operationId": "viewChild",
                "parameters": [
                    {"name": "public_id", "in": "path", "required": True,
                     "description": "The record's public id, from a search.",
                     "schema": {"type": "string", "minLength": 1, "maxLength": CHILD_ID_MAX}},
                    _reason_header("ContactPoint-Reason", "Why you view: one of the list.",
                                   {"type": "string", "enum": CHILD_REASONS}),
                    _reason_header("ContactPoint-Reason-Detail", "The detail of the reason, "
                                   "as for a search, in printable ASCII.",
                                   {"type": "string", "maxLength": REASON_DETAIL_MAX,
                                    "pattern": REASON_DETAIL_HEADER_PATTERN}),
                ],
                "responses": {
                    **_responses(_ok("The record as you may see it", "ChildRecord")),
                    "404": _problem("No such record, or it is archived."),
                },
            }
        },
    }


# -- an organisation's relying applications ----------------------------------------------
# Kept in functions of their own (idp/api/manage.py): the same ClientRegistry rules
# as the console's application pages.

CLIENT_ID_MAX = 64
CLIENT_NAME_MAX = 200
URI_MAX = 500
URIS_MAX = 10
SECTOR_MAX = 300
SUBJECT_TYPES = ("public", "pairwise")
URI_PATTERN = r"^[\x21-\x7e]+$"


def manage_schemas() -> dict[str, Any]:
    from idp.oidc.clients import AUTH_METHODS, GRANT_TYPES, ID_TOKEN_ALGS, SCOPES
    from idp.oidc.models import ClientKind, ClientStatus

    moment = _nullable("string", format="date-time")
    uri = {"type": "string", "minLength": 1, "maxLength": URI_MAX, "pattern": URI_PATTERN}
    uris = {"type": "array", "items": uri, "maxItems": URIS_MAX}
    scopes = {"type": "array", "items": {"type": "string", "enum": list(SCOPES)},
              "maxItems": len(SCOPES)}
    grants = {"type": "array", "items": {"type": "string", "enum": list(GRANT_TYPES)},
              "maxItems": len(GRANT_TYPES)}
    described = {
        "client_id": {"type": "string"},
        "organisation_id": {"type": "integer"},
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": [k.value for k in ClientKind]},
        "status": {"type": "string", "enum": [s.value for s in ClientStatus]},
        "auth_method": {"type": "string"},
        "jwks_uri": _nullable("string"),
        "redirect_uris": {"type": "array", "items": {"type": "string"}},
        "post_logout_redirect_uris": {"type": "array", "items": {"type": "string"}},
        "backchannel_logout_uri": _nullable("string"),
        "scopes": {"type": "array", "items": {"type": "string"}},
        "grant_types": {"type": "array", "items": {"type": "string"}},
        "dpop_required": {"type": "boolean"},
        "par_required": {"type": "boolean"},
        "subject_type": {"type": "string"},
        "sector_identifier": _nullable("string"),
        "id_token_alg": {"type": "string"},
        "first_party": {"type": "boolean"},
        "registered_at": {"type": "string", "format": "date-time"},
        "approved_at": moment,
        "secret_set_at": moment,
    }
    return {
        **_token_schemas(),
        **_provider_schemas(),
        "RelyingApplication": _object(described),
        "RelyingApplicationPage": _page_of("RelyingApplication"),
        "RelyingApplicationWithSecret": _object({
            **described,
            "secret": {"type": ["string", "null"],
                       "description": "Shown this once; null for an application that "
                                      "authenticates with its own keys."},
        }),
        "OptionalReason": _object({"reason": _owed_reason()}, required=[]),
        "RelyingApplicationRegistration": {
            "type": "object",
            "properties": {
                "reason": _owed_reason(),
                "name": _text(CLIENT_NAME_MAX, "The application's name, as people see it."),
                "redirect_uris": uris,
                "post_logout_redirect_uris": uris,
                "backchannel_logout_uri": {**uri, "type": ["string", "null"]},
                "auth_method": {"type": "string", "enum": list(AUTH_METHODS),
                                "default": "client_secret_basic"},
                "jwks": {"type": ["object", "null"],
                         "description": "Public keys, only with private_key_jwt."},
                "jwks_uri": {**uri, "type": ["string", "null"]},
                "scopes": scopes,
                "grant_types": grants,
                "dpop_required": {"type": "boolean"},
                "par_required": {"type": "boolean"},
                "subject_type": {"type": "string", "enum": list(SUBJECT_TYPES)},
                "sector_identifier": {**uri, "maxLength": SECTOR_MAX,
                                      "type": ["string", "null"]},
                "id_token_alg": {"type": "string", "enum": list(ID_TOKEN_ALGS)},
            },
            "required": ["name"],
        },
    }


def manage_paths(organisation_id: dict[str, Any]) -> dict[str, Any]:
    client_id = {
        "name": "client_id",
        "in": "path",
        "required": True,
        "description": "A relying application's client id.",
        "schema": {"type": "string", "minLength": 1, "maxLength": CLIENT_ID_MAX},
    }
    listed = _read(
        "The organisation's relying applications, by name", "listRelyingApplications",
        _ok("A page of relying applications", "RelyingApplicationPage"),
        [organisation_id, *PAGING], "applications", "404")
    listed["post"] = _create(
        "Register a relying application; it waits for a platform admin's approval. "
        "A person's token only", "registerRelyingApplication",
        _ok("The application, pending, with its secret shown this once",
            "RelyingApplicationWithSecret"), organisation_id, "applications",
        "RelyingApplicationRegistration")
    return {
        **_token_paths(organisation_id),
        **_provider_paths(organisation_id),
        "/organisations/{organisation_id}/relying-applications": listed,
        "/relying-applications/{client_id}": _read(
            "One relying application the caller looks after", "getRelyingApplication",
            _ok("The application", "RelyingApplication"), [client_id], "applications", "404"),
        "/relying-applications/{client_id}/secret": {"post": {
            "summary": "Give the application a new secret (the old one stops working). "
                       "A person's token only",
            "operationId": "rotateRelyingApplicationSecret",
            "tags": ["applications"],
            "parameters": [client_id],
            "requestBody": {"required": False, "content": {JSON: {
                "schema": _ref("schemas", "OptionalReason")}}},
            "responses": _responses(_ok("The application, with its new secret shown this once",
                                        "RelyingApplicationWithSecret"), "404", "409"),
        }},
        "/relying-applications/{client_id}/suspension": _act(
            "Suspend the application: it gets invalid_client from now on",
            "suspendRelyingApplication", _ok("The application, suspended",
                                             "RelyingApplication"), client_id, "applications"),
    }


def _owed_reason() -> dict[str, Any]:
    return {**_text(REASON_MAX, "Why; kept on the audit trail. Optional for the "
                    "organisation's own admins; a platform admin must give one."),
            "type": ["string", "null"]}


def _token_schemas() -> dict[str, Any]:
    from tokens.models import TokenState

    reason = _owed_reason()
    return {
        "Token": _object({
            "id": {"type": "integer"},
            "serial": {"type": "string"},
            "state": {"type": "string", "enum": [s.value for s in TokenState]},
            "organisation_id": _nullable("integer"),
            "person_id": _nullable("integer"),
            "created_at": {"type": "string", "format": "date-time"},
            "activated_at": _nullable("string", format="date-time"),
        }),
        "TokenPage": _page_of("Token"),
        "TokenAssignment": {
            "type": "object",
            "properties": {
                "username": _text(USERNAME_MAX, "Who gets the token: someone with a current "
                                  "position in its organisation."),
                "reason": reason,
            },
            "required": ["username"],
        },
        "TokenLoss": {
            "type": "object",
            "properties": {
                "stolen": {"type": "boolean", "default": False,
                           "description": "Stolen: revoked for good, not merely lost."},
                "reason": reason,
            },
        },
        "TokenReturn": {"type": "object", "properties": {"reason": reason}},
    }


def _token_act(summary: str, operation_id: str, token_id: dict[str, Any],
               body: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "operationId": operation_id,
        "tags": ["tokens"],
        "parameters": [token_id],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("schemas", body)}}},
        "responses": _responses(_ok("The token", "Token"), "404", "409", "413"),
    }}


def _token_paths(organisation_id: dict[str, Any]) -> dict[str, Any]:
    from tokens.models import TokenState

    token_id = _id("token_id", "A hardware token's id.")
    state = {"name": "state", "in": "query", "required": False,
             "description": "Only tokens in this state.",
             "schema": {"type": "string", "enum": [s.value for s in TokenState]}}
    return {
        "/organisations/{organisation_id}/tokens": _read(
            "The organisation's hardware tokens, by serial", "listTokens",
            _ok("A page of tokens", "TokenPage"), [organisation_id, state, *PAGING], "tokens",
            "404"),
        "/tokens/{token_id}/assignment": _token_act(
            "Give an in-stock or returned token to a person of its organisation",
            "assignToken", token_id, "TokenAssignment"),
        "/tokens/{token_id}/loss": _token_act(
            "Report a token lost (or stolen): out of use at once, its holder's sessions end",
            "reportTokenLost", token_id, "TokenLoss"),
        "/tokens/{token_id}/return": _token_act(
            "Record a token handed back: it can be assigned again", "returnToken", token_id,
            "TokenReturn"),
    }


ACR_MAX = 200
ACR_VALUES_MAX = 20
# The columns an upstream provider is stored in (idp/federation/models.py) and
# the console form's bounds on what it is sent.
UPSTREAM_CLIENT_ID_MAX = 200
CLAIM_MAX = 100
SECRET_MAX = 500
PEM_MAX = 10_000
# Printable ASCII and line breaks, with at least one character that is not a space.
PEM_PATTERN = r"^[\t\n\r\x20-\x7e]*[\x21-\x7e][\t\n\r\x20-\x7e]*$"


def _provider_schemas() -> dict[str, Any]:
    accepted = {
        "type": "array", "maxItems": ACR_VALUES_MAX,
        "items": _text(ACR_MAX, "An upstream acr value that meets level 2."),
        "description": "Empty: token and PIN are always asked."}
    return {
        "IdentityProvider": _object({
            "organisation_id": {"type": "integer"},
            "issuer": {"type": "string"},
            "client_id": {"type": "string"},
            "auth_method": {"type": "string"},
            "username_claim": {"type": "string"},
            "accepted_acr": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
            "redirect_uri": {"type": "string", "description": "This service's redirect URI, "
                             "to register at the provider."},
        }),
        "AcceptedAcr": _object({"accepted_acr": accepted, "reason": _owed_reason()},
                               required=["accepted_acr"]),
        "IdentityProviderRegistration": {
            "type": "object",
            "description": "Exactly one of `client_secret` (client_secret_basic) and "
                           "`private_key` (private_key_jwt); neither is ever sent back.",
            "properties": {
                "issuer": _text(URI_MAX, "The provider's issuer URL, as its discovery "
                                "document gives it: https (http only on a loopback address)."),
                "client_id": _text(UPSTREAM_CLIENT_ID_MAX,
                                   "This service's client id at the provider."),
                "client_secret": {**_text(SECRET_MAX, "The client secret, for "
                                          "client_secret_basic; kept encrypted."),
                                  "type": ["string", "null"]},
                "private_key": {"type": ["string", "null"], "minLength": 1,
                                "maxLength": PEM_MAX, "pattern": PEM_PATTERN,
                                "description": "An RSA or EC private key in PEM, for "
                                               "private_key_jwt; kept encrypted."},
                "username_claim": _text(CLAIM_MAX, "The ID token claim with the person's "
                                        "username or email, say preferred_username."),
                "accepted_acr": accepted,
                "reason": _owed_reason(),
            },
            "required": ["issuer", "client_id", "username_claim"],
        },
        "IdentityProviderRemoved": _object({"organisation_id": {"type": "integer"},
                                            "links_removed": {"type": "integer"}}),
    }


def _provider_paths(organisation_id: dict[str, Any]) -> dict[str, Any]:
    acr = {"post": {
        "summary": "Set which upstream acr values stand in for token and PIN. A person's "
                   "token only",
        "operationId": "setAcceptedAcr",
        "tags": ["organisations"],
        "parameters": [organisation_id],
        "requestBody": {"required": True, "content": {JSON: {
            "schema": _ref("schemas", "AcceptedAcr")}}},
        "responses": _responses(_ok("The provider", "IdentityProvider"), "404", "413"),
    }}
    shown = _read(
        "The organisation's own identity provider (never its secret or key)",
        "getIdentityProvider", _ok("The provider", "IdentityProvider"), [organisation_id],
        "organisations", "404")
    shown["post"] = _create(
        "Add the organisation's own identity provider (one per organisation: 409 when it "
        "has one). A person's token only", "addIdentityProvider",
        _ok("The provider, added (never its secret or key)", "IdentityProvider"),
        organisation_id, "organisations", "IdentityProviderRegistration")
    return {
        "/organisations/{organisation_id}/identity-provider": shown,
        "/organisations/{organisation_id}/identity-provider/accepted-acr": acr,
        "/organisations/{organisation_id}/identity-provider/removal": _act(
            "Remove the provider and every link to it", "removeIdentityProvider",
            _ok("Removed", "IdentityProviderRemoved"), organisation_id, "organisations"),
    }
