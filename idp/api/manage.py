"""The API's operations on an organisation's relying applications, its
hardware token inventory and its own identity provider: the same
`ClientRegistry`, `InventoryService` and `FederationService` calls the
console's pages make, so who may look after which application, token or
provider, and when a reason is owed (always from a platform admin), is decided
there.

Two rules are the API's own, because only the API meets them: an application's
own token (client credentials) registers nothing and is given no secret. A
registration or a secret lets software act as an application, so a person,
audited by name, must ask for it; and approval, the second pair of eyes, stays
with platform admins in the console, where no machine can be the second person.
"""

from __future__ import annotations

import re
from typing import Any

from flask import jsonify, request
from werkzeug.wrappers import Response

from core.errors import FieldProblem, InvalidInput, NotAllowed
from core.errors import NotFound as DomainNotFound
from directory.administration import Page
from idp import web
from idp.api import openapi
from idp.api.auth import Caller
from idp.api.problems import problem
from idp.api.views import (
    ID,
    USERNAME_MAX,
    _body,
    _field,
    _moment,
    _only_query,
    _owed_reason,
    _paging,
    _reason,
    blueprint,
    operation,
    page_json,
)
from idp.federation.models import UpstreamProvider
from idp.federation.service import NewProvider
from idp.oidc.clients import AUTH_METHODS, GRANT_TYPES, ID_TOKEN_ALGS, SCOPES, Registration
from idp.oidc.models import OAuthClient
from idp.oidc.views import provider
from tokens.models import OtpToken, TokenState

CLIENT = "client_id"  # any text: an unknown one is simply not found
URI = re.compile(openapi.URI_PATTERN)
NAME = re.compile(openapi.REASON_PATTERN)
PEM = re.compile(openapi.PEM_PATTERN)


def relying_application_json(client: OAuthClient) -> dict[str, Any]:
    """Everything the console's page shows but the secret's digest."""
    return {
        "client_id": client.client_id,
        "organisation_id": client.organisation_id,
        "name": client.name,
        "kind": client.kind.value,
        "status": client.status.value,
        "auth_method": client.auth_method,
        "jwks_uri": client.jwks_uri,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "scopes": list(client.scopes),
        "grant_types": list(client.grant_types),
        "dpop_required": client.dpop_required,
        "par_required": client.par_required,
        "subject_type": client.subject_type,
        "sector_identifier": client.sector_identifier,
        "id_token_alg": client.id_token_alg,
        "first_party": client.first_party,
        "registered_at": _moment(client.registered_at),
        "approved_at": _moment(client.approved_at),
        "secret_set_at": _moment(client.secret_set_at),
    }


def _no_machine(who: Caller, act: str) -> Response | None:
    """A problem (audited) when an application's own token asks for `act`."""
    if not who.is_client:
        return None
    unit = web.unit()
    unit.audit.record("oidc:client:refused", "refused", subject_type="api",
                      subject_id=request.path[:80],
                      detail={"why": f"an application's own token may not {act}",
                              "client_id": who.client_id})
    unit.commit()
    return problem(403, "not_allowed", "You are not allowed to do that",
                   f"An application's own token may not {act}: a person must.")


# -- reading the body -------------------------------------------------------------------


def _string(body: dict[str, Any], name: str, most: int, pattern: re.Pattern[str]) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= most or not pattern.fullmatch(value):
        raise InvalidInput(FieldProblem(name, f"Give up to {most} characters, or leave it out"))
    return value


def _strings(body: dict[str, Any], name: str, choices: tuple[str, ...] | None = None,
             ) -> list[str] | None:
    value = body.get(name)
    if value is None and name not in body:
        return None
    most = len(choices) if choices else openapi.URIS_MAX
    if not isinstance(value, list) or len(value) > most:
        raise InvalidInput(FieldProblem(name, f"Give a list of up to {most}"))
    for index, item in enumerate(value):
        ok = (item in choices if choices else
              isinstance(item, str) and len(item) <= openapi.URI_MAX and URI.fullmatch(item))
        if not isinstance(item, str) or not ok:
            hint = f"one of {', '.join(choices)}" if choices else "a URL without spaces"
            raise InvalidInput(FieldProblem(f"{name}[{index}]", f"Give {hint}"))
    return list(value)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(FieldProblem(name, "Give true or false"))
    return value


def _one_of(body: dict[str, Any], name: str, choices: tuple[str, ...], default: str) -> str:
    value = body.get(name, default)
    if value not in choices:
        raise InvalidInput(FieldProblem(name, f"Choose one of: {', '.join(choices)}"))
    return str(value)


def _registration(organisation_id: int, body: dict[str, Any]) -> Registration:
    """The body as a `Registration`, each field checked as the document states;
    what no schema can state (https, a code flow's redirect, a JWK set's keys)
    is the registry's `validate`."""
    name = _string(body, "name", openapi.CLIENT_NAME_MAX, NAME)
    if name is None:
        raise InvalidInput(FieldProblem("name", "Give the application's name"))
    auth_method = _one_of(body, "auth_method", AUTH_METHODS, "client_secret_basic")
    jwks = body.get("jwks")
    if jwks is not None and (not isinstance(jwks, dict) or auth_method != "private_key_jwt"):
        raise InvalidInput(FieldProblem("jwks", "A JWK set object, and only with private_key_jwt"))
    defaults = Registration(organisation_id=organisation_id, name=name)
    uris = openapi.URI_MAX
    return Registration(
        organisation_id=organisation_id,
        name=name,
        redirect_uris=_strings(body, "redirect_uris") or [],
        post_logout_redirect_uris=_strings(body, "post_logout_redirect_uris") or [],
        backchannel_logout_uri=_string(body, "backchannel_logout_uri", uris, URI),
        auth_method=auth_method,
        jwks=jwks,
        jwks_uri=_string(body, "jwks_uri", uris, URI),
        scopes=_strings(body, "scopes", SCOPES) or defaults.scopes,
        grant_types=_strings(body, "grant_types", GRANT_TYPES) or defaults.grant_types,
        dpop_required=_flag(body, "dpop_required"),
        par_required=_flag(body, "par_required"),
        subject_type=_one_of(body, "subject_type", openapi.SUBJECT_TYPES, "public"),
        sector_identifier=_string(body, "sector_identifier", openapi.SECTOR_MAX, URI),
        id_token_alg=_one_of(body, "id_token_alg", ID_TOKEN_ALGS, "ES256"),
    )


# -- the operations ---------------------------------------------------------------------


@blueprint.route(f"/organisations/<{ID}:organisation_id>/relying-applications",
                 methods=["GET", "POST"])
@operation("page", "per_page")
def relying_applications(who: Caller, organisation_id: int) -> Response | tuple[Response, int]:
    """One rule for both methods, as `views.applications`."""
    unit = web.unit()
    if request.method == "GET":
        number, per_page = _paging()
        page = unit.clients.of_organisation(who.principal, organisation_id, page=number,
                                            per_page=per_page)
        return jsonify(page_json(page, [relying_application_json(c) for c in page.items]))
    _only_query()
    refused = _no_machine(who, "register applications")
    if refused is not None:
        return refused
    body = _body()
    reg = _registration(organisation_id, body)
    client, secret = unit.clients.register(who.principal, reg, _owed_reason(body))
    answer = {**relying_application_json(client), "secret": secret}
    unit.commit()
    return jsonify(answer), 201


@blueprint.get(f"/relying-applications/<{CLIENT}>")
@operation()
def relying_application(who: Caller, client_id: str) -> Response:
    client = web.unit().clients.managed(who.principal, client_id)
    return jsonify(relying_application_json(client))


@blueprint.post(f"/relying-applications/<{CLIENT}>/secret")
@operation()
def rotate_relying_application_secret(who: Caller, client_id: str) -> Response:
    """The new secret, shown this once; the old one stops working at once."""
    refused = _no_machine(who, "be given an application's secret")
    if refused is not None:
        return refused
    unit = web.unit()
    client = unit.clients.managed(who.principal, client_id)
    # The body is optional: a reason, owed by platform admins only.
    payload = request.get_json(silent=True) if request.is_json else None
    reason = _owed_reason(payload) if isinstance(payload, dict) else None
    secret = unit.clients.rotate_secret(who.principal, client_id, reason)
    answer = {**relying_application_json(client), "secret": secret}
    unit.commit()
    provider().clients.forget(client_id)
    return jsonify(answer)


@blueprint.post(f"/relying-applications/<{CLIENT}>/suspension")
@operation()
def suspend_relying_application(who: Caller, client_id: str) -> Response:
    """From now on the application gets `invalid_client`; only a platform admin
    approves it again (in the console)."""
    unit = web.unit()
    unit.clients.managed(who.principal, client_id)
    client = unit.clients.suspend(who.principal, client_id, _reason())
    answer = relying_application_json(client)
    unit.commit()
    provider().clients.forget(client_id)
    return jsonify(answer)


# -- the hardware token inventory ----------------------------------------------------------


def token_json(token: OtpToken) -> dict[str, Any]:
    """What the console's inventory shows; never the seed."""
    return {
        "id": token.id,
        "serial": token.serial,
        "state": token.state.value,
        "organisation_id": token.organisation_id,
        "person_id": token.person_id,
        "created_at": _moment(token.created_at),
        "activated_at": _moment(token.activated_at),
    }


def _changed(token: OtpToken) -> Response:
    answer = token_json(token)
    web.unit().commit()
    return jsonify(answer)


@blueprint.get(f"/organisations/<{ID}:organisation_id>/tokens")
@operation("state", "page", "per_page")
def otp_tokens(who: Caller, organisation_id: int) -> Response:
    number, per_page = _paging()
    raw = request.args.get("state")
    if raw is not None and raw not in {s.value for s in TokenState}:
        raise InvalidInput(FieldProblem("state", "Choose one of: " + ", ".join(
            s.value for s in TokenState)))
    found = web.unit().inventory.list_tokens(
        who.principal, organisation_id, state=TokenState(raw) if raw else None, page=number,
        per_page=per_page)
    page = Page(found.items, found.total, found.page, found.per_page)
    return jsonify(page_json(page, [token_json(t) for t in found.items], state=raw or ""))


@blueprint.post(f"/tokens/<{ID}:token_id>/assignment")
@operation()
def assign_token(who: Caller, token_id: int) -> Response:
    """Give an in-stock or returned token to a person of its organisation."""
    unit = web.unit()
    token = unit.inventory.token(who.principal, token_id)
    if not unit.directory.administers(who.principal, token.organisation_id):
        raise NotAllowed()  # its holder sees it, but only an admin hands it out
    body = _body()
    username = _field(body, "username", USERNAME_MAX) or ""
    reason = _owed_reason(body)
    person = unit.directory.person_by_username(username)
    try:
        if person is None:
            raise NotAllowed()
        unit.inventory.assign(who.principal, token.serial, person, reason)
    except NotAllowed:
        # One answer for unknown people and people of other organisations, as the page.
        raise InvalidInput(FieldProblem(
            "username", "There is no one with that username in the token's organisation "
            "whom you can give a token to")) from None
    return _changed(token)


@blueprint.post(f"/tokens/<{ID}:token_id>/loss")
@operation()
def report_token_lost(who: Caller, token_id: int) -> Response:
    """Out of use at once, and its holder's sessions end; `stolen` revokes it."""
    unit = web.unit()
    unit.inventory.token(who.principal, token_id)
    body = _body()
    stolen = body.get("stolen", False)
    if not isinstance(stolen, bool):
        raise InvalidInput(FieldProblem("stolen", "Give true or false"))
    return _changed(unit.inventory.report_lost(who.principal, token_id, stolen=stolen,
                                               reason=_owed_reason(body)))


@blueprint.post(f"/tokens/<{ID}:token_id>/return")
@operation()
def return_token(who: Caller, token_id: int) -> Response:
    """Handed back: no longer signs its holder in, and can be assigned again."""
    unit = web.unit()
    unit.inventory.token(who.principal, token_id)
    return _changed(unit.inventory.mark_returned(who.principal, token_id,
                                                 _owed_reason(_body())))


# -- the organisation's own identity provider ----------------------------------------------


def identity_provider_json(upstream: UpstreamProvider) -> dict[str, Any]:
    """Never the secret or key, not even encrypted; the redirect URI to register
    at the provider, as the console's page shows it."""
    return {
        "organisation_id": upstream.organisation_id,
        "issuer": upstream.issuer,
        "client_id": upstream.client_id,
        "auth_method": upstream.auth_method,
        "username_claim": upstream.username_claim,
        "accepted_acr": list(upstream.accepted_acr),
        "created_at": _moment(upstream.created_at),
        "redirect_uri": web.unit().federation.redirect_uri,
    }


def _acr_values(body: dict[str, Any], default: list[str] | None = None) -> list[str]:
    values = body.get("accepted_acr", default)
    if (not isinstance(values, list) or len(values) > openapi.ACR_VALUES_MAX
            or not all(isinstance(v, str) and 1 <= len(v) <= openapi.ACR_MAX
                       and NAME.fullmatch(v) for v in values)):
        raise InvalidInput(FieldProblem(
            "accepted_acr", f"Give a list of up to {openapi.ACR_VALUES_MAX} values, each up "
            f"to {openapi.ACR_MAX} characters"))
    return values


def _required(body: dict[str, Any], name: str, most: int) -> str:
    return _field(body, name, most) or ""


def _pem(body: dict[str, Any]) -> str | None:
    """A PEM private key spans lines, so it alone may hold line breaks."""
    pem = _string(body, "private_key", openapi.PEM_MAX, PEM)
    return pem.strip() if pem is not None else None


@blueprint.route(f"/organisations/<{ID}:organisation_id>/identity-provider",
                 methods=["GET", "POST"])
@operation()
def identity_provider(who: Caller, organisation_id: int) -> Response | tuple[Response, int]:
    """One rule for both methods, as `views.applications`: show the provider, or add one."""
    unit = web.unit()
    upstream = unit.federation.provider_for(who.principal, organisation_id)
    if request.method == "POST":
        return add_identity_provider(who, organisation_id)
    if upstream is None:
        raise DomainNotFound("This organisation has no identity provider")
    return jsonify(identity_provider_json(upstream))


def add_identity_provider(who: Caller, organisation_id: int) -> Response | tuple[Response, int]:
    """Register the organisation's own provider, as the console's page does:
    the service checks and audits it, keeps the secret or key encrypted, and
    refuses a second provider (409). Whatever was sent as a credential never
    comes back, in the answer or in a problem. A person decides, since it
    changes how the organisation's people sign in."""
    refused = _no_machine(who, "change how people sign in")
    if refused is not None:
        return refused
    body = _body()
    new = NewProvider(
        organisation_id=organisation_id,
        issuer=_required(body, "issuer", openapi.URI_MAX),
        client_id=_required(body, "client_id", openapi.UPSTREAM_CLIENT_ID_MAX),
        username_claim=_required(body, "username_claim", openapi.CLAIM_MAX),
        accepted_acr=tuple(_acr_values(body, [])),
        client_secret=_string(body, "client_secret", openapi.SECRET_MAX, NAME),
        private_key_pem=_pem(body),
    )
    unit = web.unit()
    upstream = unit.federation.add(who.principal, new, _owed_reason(body))
    answer = identity_provider_json(upstream)
    unit.commit()
    return jsonify(answer), 201


@blueprint.post(f"/organisations/<{ID}:organisation_id>/identity-provider/accepted-acr")
@operation()
def set_accepted_acr(who: Caller, organisation_id: int) -> Response:
    """Which upstream `acr` values stand in for token and PIN: a person decides,
    since accepting one weakens how the organisation's people sign in."""
    refused = _no_machine(who, "change how people sign in")
    if refused is not None:
        return refused
    body = _body()
    values = _acr_values(body)
    unit = web.unit()
    upstream = unit.federation.set_accepted_acr(who.principal, organisation_id, values,
                                                _owed_reason(body))
    answer = identity_provider_json(upstream)
    unit.commit()
    return jsonify(answer)


@blueprint.post(f"/organisations/<{ID}:organisation_id>/identity-provider/removal")
@operation()
def remove_identity_provider(who: Caller, organisation_id: int) -> Response:
    """Removed with every person's link to it; its people sign in with token and PIN."""
    unit = web.unit()
    unit.federation.provider_for(who.principal, organisation_id)
    links = unit.federation.remove(who.principal, organisation_id, _reason())
    unit.commit()
    return jsonify({"organisation_id": organisation_id, "links_removed": links})
