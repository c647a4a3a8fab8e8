"""The provider's endpoints: discovery, authorize, PAR, token, userinfo,
introspection, revocation and RP-initiated logout.

Protocol endpoints answer JSON and are exempt from CSRF (clients authenticate
themselves); the consent and logout pages are forms and carry CSRF tokens.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc6749 import OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import scope_to_list
from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as cookie_session
from flask_login import logout_user
from joserfc.errors import JoseError
from sqlalchemy import select
from werkzeug.wrappers import Response

from core.crypto import new_token
from directory.models import Person
from idp import web
from idp.oidc import dpop
from idp.oidc.models import Consent, Grant, PushedRequest, RevokedAccessToken
from idp.oidc.provider import (
    ClientView,
    PendingAuthorization,
    Provider,
    digest,
    person_claims,
    person_may_continue,
    subject_for,
)
from idp.oidc.token_endpoint import audit_client_failure
from tokens.assurance import level_of

blueprint = Blueprint("oidc", __name__)

SCOPES_SUPPORTED = ["openid", "profile", "email", "phone", "positions", "clearance",
                    "offline_access", "children.read", "admin"]
CLAIMS_SUPPORTED = ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid",
                    "name", "given_name", "family_name", "preferred_username", "email",
                    "email_verified", "phone_number", "positions", "clearance_valid_until"]
SCOPE_TEXT = {
    "openid": "Confirm who you are",
    "profile": "Your name and username",
    "email": "Your work email address",
    "phone": "Your work phone number",
    "positions": "Your organisations and roles",
    "clearance": "When your clearance ends",
    "offline_access": "Stay connected while you are away",
    "children.read": "Search and view child records for you, with the reasons you give",
    "admin": "Administer your organisation for you",
}


def provider() -> Provider:
    built: Provider = current_app.extensions["contactpoint_oidc"]
    return built


def _json(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


# -- discovery ---------------------------------------------------------------

@blueprint.get("/.well-known/openid-configuration")
def discovery() -> Response:
    p = provider()
    names = web.container().settings.assurance
    body = {
        "issuer": p.issuer,
        "authorization_endpoint": p.url("/oauth2/authorize"),
        "pushed_authorization_request_endpoint": p.url("/oauth2/par"),
        "token_endpoint": p.url("/oauth2/token"),
        "userinfo_endpoint": p.url("/oauth2/userinfo"),
        "jwks_uri": p.url("/.well-known/jwks.json"),
        "introspection_endpoint": p.url("/oauth2/introspect"),
        "revocation_endpoint": p.url("/oauth2/revoke"),
        "end_session_endpoint": p.url("/oauth2/logout"),
        "scopes_supported": SCOPES_SUPPORTED,
        "claims_supported": CLAIMS_SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "userinfo_signing_alg_values_supported": ["none"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "PS256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic",
                                                           "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "code_challenge_methods_supported": ["S256"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_pushed_authorization_requests": False,
        "authorization_response_iss_parameter_supported": True,
        "acr_values_supported": [names.level2, names.level3],
        "prompt_values_supported": ["none", "login", "consent"],
        "dpop_signing_alg_values_supported": dpop.ALGORITHMS,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }
    response = _json(body)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@blueprint.get("/.well-known/jwks.json")
def jwks() -> Response:
    unit = web.unit()
    response = _json(provider().keys.jwks(unit.session, unit.clock))
    # Short, so a key published ahead of rotation reaches every cache in time.
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# -- authorization -----------------------------------------------------------

class _AuthorizeRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(self, params: dict[str, str], uri: str) -> None:
        super().__init__("GET", uri, headers=request.headers)
        self.payload = BasicOAuth2Payload(params)
        self._params = params

    @property
    def args(self) -> dict[str, str]:
        return self._params

    @property
    def form(self) -> dict[str, str]:
        return self._params


def _error_page(message: str, status: int = 400) -> tuple[str, int]:
    return render_template(
        "error.html", title="This sign-in request cannot be used", message=message,
        error_id="oidc.invalid_request",
    ), status


def _with_params(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _redirect_error(redirect_uri: str, error: str, description: str, state: str | None) -> Response:
    params = {"error": error, "error_description": description, "iss": provider().issuer}
    if state:
        params["state"] = state
    return redirect(_with_params(redirect_uri, params))


def _parameters() -> tuple[dict[str, str], PushedRequest | None] | tuple[str, None]:
    """The request's parameters, from the query or from a pushed request."""
    source = request.args if request.method == "GET" else request.form
    for name in source:
        if len(source.getlist(name)) > 1:
            return f"The parameter {name} appears more than once.", None
    params = {k: v for k, v in source.items() if k not in ("csrf_token", "decision")}
    uri = params.get("request_uri")
    if not uri:
        return params, None
    unit = web.unit()
    row = unit.session.scalar(
        select(PushedRequest).where(PushedRequest.digest == digest(unit, uri)))
    if (row is None or row.client_id != params.get("client_id") or row.used_at is not None
            or row.expires_at <= unit.clock.now()):
        return ("The request_uri is unknown, used or expired. "
                "Start again from the application."), None
    return dict(row.parameters), row


def _authorize() -> Response | tuple[str, int] | str:
    p = provider()
    found, pushed = _parameters()
    if isinstance(found, str):
        return _error_page(found)
    params = found
    client = p.query_client(params.get("client_id", ""))
    if client is None:
        return _error_page("The application is not registered or not approved (invalid_client).")
    if client.par_required and pushed is None:
        return _error_page("This application must push its request first (RFC 9126).")
    oauth_request = _AuthorizeRequest(params, request.url)
    try:
        grant = p.server.get_authorization_grant(oauth_request)
        redirect_uri = grant.validate_authorization_request()
    except OAuth2Error as error:
        if error.redirect_uri:
            return _redirect_error(error.redirect_uri, error.error, error.description or "",
                                   params.get("state"))
        return _error_page(
            "The application sent a request this service cannot accept: "
            f"{error.description or error.error}.")
    state = params.get("state")
    prompts = set((params.get("prompt") or "").split())
    if "none" in prompts and len(prompts) > 1:
        return _redirect_error(redirect_uri, "invalid_request", "prompt=none stands alone", state)
    signed_in = web.current_user_or_none()
    unit = web.unit()
    now = unit.clock.now()
    fresh_needed = False
    if signed_in is not None:
        if "login" in prompts:
            fresh_needed = True
        max_age = params.get("max_age")
        if max_age is not None:
            if not max_age.isdigit():
                return _redirect_error(redirect_uri, "invalid_request", "max_age must be seconds",
                                       state)
            if signed_in.record.created_at + timedelta(seconds=int(max_age)) < now:
                fresh_needed = True
    if signed_in is None or fresh_needed:
        if "none" in prompts:
            return _redirect_error(redirect_uri, "login_required", "the person must sign in",
                                   state)
        if signed_in is not None:
            unit.signin.sign_out(signed_in.token)
            logout_user()
            cookie_session.clear()
        again = dict(params) if pushed is None else {
            "client_id": client.client_id, "request_uri": request.values["request_uri"]}
        if "prompt" in again:
            kept = " ".join(sorted(prompts - {"login"}))
            if kept:
                again["prompt"] = kept
            else:
                again.pop("prompt")
        target = url_for("oidc.authorize") + "?" + urlencode(again)
        hint = params.get("login_hint")
        extra: dict[str, Any] = {"login_hint": hint} if hint else {}
        return redirect(url_for("signin.start", next=target, **extra))
    assurance = web.container().settings.assurance
    wanted = [level_of(a, assurance) for a in (params.get("acr_values") or "").split()]
    wanted = [w for w in wanted if w]
    if wanted and level_of(signed_in.record.acr, assurance) < min(wanted):
        if "none" in prompts:
            return _redirect_error(redirect_uri, "interaction_required",
                                   "a security key is needed", state)
        return redirect(url_for("keys.step_up", next=request.full_path))
    scopes = scope_to_list(oauth_request.scope or "") or []
    consent = _consent_for(signed_in.person.id, client.client_id)
    needs_consent = not client.first_party and (
        "consent" in prompts or consent is None or not set(scopes) <= set(consent.scopes))
    decision = request.form.get("decision") if request.method == "POST" else None
    if needs_consent and decision is None:
        if "none" in prompts:
            return _redirect_error(redirect_uri, "consent_required", "the person must agree",
                                   state)
        return render_template(
            "oidc/consent.html", client=client, params=params,
            scopes=[(s, SCOPE_TEXT.get(s, s)) for s in scopes],
            title=f"Allow {client.name} to use your ContactPoint account?",
        )
    if decision == "deny":
        unit.audit.record("oidc:consent:denied", subject_type="person",
                          subject_id=signed_in.person.id, detail={"client_id": client.client_id})
        unit.commit()
        return _redirect_error(redirect_uri, "access_denied", "the person said no", state)
    if needs_consent and decision == "allow":
        _remember_consent(signed_in.person.id, client.client_id, scopes, consent)
    pending = PendingAuthorization(
        person=signed_in.person,
        auth_session_id=signed_in.record.id,
        acr=signed_in.record.acr,
        amr=list(signed_in.record.amr),
        auth_time=signed_in.record.created_at,
        sid=digest(unit, f"sid|{signed_in.record.digest}")[:32],
        dpop_jkt=params.get("dpop_jkt"),
    )
    try:
        status, _body, headers = grant.create_authorization_response(redirect_uri, pending)
    except OAuth2Error as error:
        return _redirect_error(redirect_uri, error.error, error.description or "", state)
    if pushed is not None:
        pushed.used_at = now
    location = dict(headers)["Location"]
    return redirect(_with_params(location, {"iss": p.issuer}), code=status)


def _consent_for(person_id: int, client_id: str) -> Consent | None:
    unit = web.unit()
    return unit.session.scalar(
        select(Consent).where(Consent.person_id == person_id, Consent.client_id == client_id,
                              Consent.revoked_at.is_(None)))


def _remember_consent(person_id: int, client_id: str, scopes: list[str],
                      existing: Consent | None) -> None:
    unit = web.unit()
    if existing is not None:
        existing.revoked_at = unit.clock.now()
        scopes = sorted(set(scopes) | set(existing.scopes))
    unit.session.add(Consent(person_id=person_id, client_id=client_id, scopes=sorted(scopes),
                             granted_at=unit.clock.now()))
    unit.audit.record("oidc:consent:granted", subject_type="person", subject_id=person_id,
                      detail={"client_id": client_id, "scopes": sorted(scopes)})


@blueprint.route("/oauth2/authorize", methods=["GET", "POST"])
def authorize() -> Response | tuple[str, int] | str:
    if request.method == "POST" and web.current_user_or_none() is None:
        return redirect(url_for("signin.start"))
    return _authorize()


# -- pushed authorization requests (RFC 9126) --------------------------------

@blueprint.post("/oauth2/par")
def par() -> Response:
    p = provider()
    oauth_request = p.server.create_oauth2_request(None)
    try:
        client = p.server.authenticate_client(
            oauth_request, ["client_secret_basic", "private_key_jwt"], "par")
    except OAuth2Error as error:
        _audit_client_failure(error)
        refused: Response = p.server.handle_error_response(oauth_request, error)
        return refused
    params = {k: v for k, v in request.form.items()
              if k not in ("client_assertion", "client_assertion_type", "client_secret")}
    if "request_uri" in params:
        return _json({"error": "invalid_request",
                      "error_description": "request_uri cannot be pushed"}, 400)
    params["client_id"] = client.client_id
    probe = _AuthorizeRequest(params, p.url("/oauth2/authorize"))
    try:
        grant = p.server.get_authorization_grant(probe)
        grant.validate_authorization_request()
    except OAuth2Error as error:
        return _json({"error": error.error, "error_description": error.description or ""}, 400)
    unit = web.unit()
    value = "urn:ietf:params:oauth:request_uri:" + new_token(24)
    lifetime = web.container().settings.oidc.par_seconds
    unit.session.add(PushedRequest(
        digest=digest(unit, value), client_id=client.client_id, parameters=params,
        expires_at=unit.clock.now() + timedelta(seconds=lifetime)))
    return _json({"request_uri": value, "expires_in": lifetime}, 201)


# -- token: served by idp.oidc.token_endpoint, in front of Flask -------------

def _audit_client_failure(error: OAuth2Error) -> None:
    audit_client_failure(web.unit(), request, error)


# -- resource side: userinfo, introspection, revocation -----------------------

class TokenRefused(Exception):
    def __init__(self, error: str, description: str, status: int = 401) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def verified_access_token(required_scope: str | None = None) -> tuple[dict[str, Any],
                                                                      Person | None]:
    """The claims of the request's access token, and its person, if it is still
    good: signed here, unexpired, not revoked, its grant and person still valid,
    and DPoP-bound tokens presented with a proof of the same key."""
    p = provider()
    unit = web.unit()
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() not in ("bearer", "dpop") or not value:
        raise TokenRefused("invalid_request", "send an access token")
    try:
        claims = dict(p.keys.verify(unit.session, unit.clock, value.strip()).claims)
    except (JoseError, ValueError) as exc:
        raise TokenRefused("invalid_token", "the access token is not valid") from exc
    if claims.get("iss") != p.issuer or int(claims.get("exp", 0)) <= unit.clock.now().timestamp():
        raise TokenRefused("invalid_token", "the access token has expired")
    jkt = (claims.get("cnf") or {}).get("jkt")
    if jkt:
        if scheme.lower() != "dpop":
            raise TokenRefused("invalid_token", "this token is DPoP-bound")
        try:
            proof = dpop.verify(request.headers.get("DPoP"), method=request.method,
                                url=p.url(request.path), clock=unit.clock, shared=unit.shared,
                                max_age_seconds=web.container().settings.oidc.dpop_max_age_seconds,
                                access_token=value.strip())
        except dpop.DPoPError as exc:
            raise TokenRefused("invalid_dpop_proof", str(exc)) from exc
        if proof.jkt != jkt:
            raise TokenRefused("invalid_dpop_proof", "the proof's key is not the token's")
    elif scheme.lower() == "dpop":
        raise TokenRefused("invalid_token", "this token is not DPoP-bound")
    if required_scope and required_scope not in scope_to_list(claims.get("scope", "")):
        raise TokenRefused("insufficient_scope", f"the token lacks scope {required_scope}", 403)
    person = _token_person(claims)
    if person is False or person is True:
        raise TokenRefused("invalid_token", "the access token was revoked")
    return claims, person


def _token_person(claims: dict[str, Any]) -> Person | bool | None:
    """None for a client's own token; False when the token no longer counts."""
    unit = web.unit()
    gid = claims.get("gid")
    if gid is None:
        return False if provider().is_access_token_revoked(str(claims.get("jti"))) else None
    grant = unit.session.get(Grant, int(gid))
    if grant is None:
        return False
    person = unit.session.get(Person, grant.person_id)
    if person is None or not person_may_continue(unit, person, grant):
        return False
    return person


def _refused(error: TokenRefused) -> Response:
    scheme = "DPoP" if error.error == "invalid_dpop_proof" else "Bearer"
    return _json({"error": error.error, "error_description": error.description}, error.status,
                 WWW_Authenticate=f'{scheme} error="{error.error}", '
                                  f'error_description="{error.description}"')


@blueprint.route("/oauth2/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    try:
        claims, person = verified_access_token("openid")
    except TokenRefused as refused:
        return _refused(refused)
    if person is None:
        return _refused(TokenRefused("invalid_token", "userinfo needs a person's token"))
    unit = web.unit()
    client = provider().query_client(claims["client_id"])
    if client is None:
        return _refused(TokenRefused("invalid_token", "the application is no longer approved"))
    body = {"sub": subject_for(person, client, unit)}
    body.update(person_claims(person, scope_to_list(claims.get("scope", "")), unit.clock.today()))
    return _json(body)


def _authenticated_client() -> ClientView | Response:
    p = provider()
    oauth_request = p.server.create_oauth2_request(None)
    try:
        client: ClientView = p.server.authenticate_client(
            oauth_request, ["client_secret_basic", "private_key_jwt"], request.path)
    except OAuth2Error as error:
        _audit_client_failure(error)
        return p.server.handle_error_response(oauth_request, error)  # type: ignore[no-any-return]
    return client


@blueprint.post("/oauth2/introspect")
def introspect() -> Response:
    caller = _authenticated_client()
    if isinstance(caller, Response):
        return caller
    value = request.form.get("token", "")
    p = provider()
    unit = web.unit()
    inactive = _json({"active": False})
    if value.count(".") == 2:
        try:
            claims = dict(p.keys.verify(unit.session, unit.clock, value).claims)
        except (JoseError, ValueError):
            return inactive
        if int(claims.get("exp", 0)) <= unit.clock.now().timestamp():
            return inactive
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
        if not (caller.client_id == claims.get("client_id")
                or (caller.resource_uri and caller.resource_uri in audiences)):
            return inactive
        if _token_person(claims) is False:
            return inactive
        body = {"active": True, "token_type": "DPoP" if "cnf" in claims else "Bearer"}
        body.update({k: claims[k] for k in ("scope", "client_id", "sub", "aud", "iss", "exp",
                                            "iat", "jti", "cnf", "acr", "auth_time")
                     if k in claims})
        return _json(body)
    found = p.refresh_grant(value)
    if found is None or not found[1]:
        return inactive
    grant = found[0]
    if grant.client_id != caller.client_id:
        return inactive
    person = unit.session.get(Person, grant.person_id)
    if person is None or not person_may_continue(unit, person, grant):
        return inactive
    client = p.query_client(grant.client_id)
    return _json({"active": True, "token_type": "refresh_token", "client_id": grant.client_id,
                  "scope": grant.scope, "exp": int(grant.expires_at.timestamp()),
                  "sub": subject_for(person, client, unit) if client else None})


@blueprint.post("/oauth2/revoke")
def revoke() -> Response:
    caller = _authenticated_client()
    if isinstance(caller, Response):
        return caller
    value = request.form.get("token", "")
    p = provider()
    unit = web.unit()
    ok = Response("", status=200)
    if value.count(".") == 2:
        try:
            claims = dict(p.keys.verify(unit.session, unit.clock, value).claims)
        except (JoseError, ValueError):
            return ok
        if claims.get("client_id") != caller.client_id:
            return ok
        gid = claims.get("gid")
        if gid is not None:
            grant = unit.session.get(Grant, int(gid))
            if grant is not None:
                p.revoke_grant(grant, "revoked by the application")
        elif unit.session.get(RevokedAccessToken, str(claims["jti"])) is None:
            unit.session.add(RevokedAccessToken(
                jti=str(claims["jti"]),
                expires_at=unit.clock.now() + timedelta(
                    seconds=max(0, int(claims["exp"]) - int(unit.clock.now().timestamp())))))
    else:
        found = p.refresh_grant(value)
        if found is not None and found[0].client_id == caller.client_id:
            p.revoke_grant(found[0], "revoked by the application")
    unit.audit.record("oidc:token:revoked", subject_type="oauth_client",
                      subject_id=caller.client_id)
    return ok


# -- RP-initiated logout -----------------------------------------------------

@blueprint.route("/oauth2/logout", methods=["GET", "POST"])
def end_session() -> Response | tuple[str, int] | str:
    p = provider()
    unit = web.unit()
    values = request.values
    client_id = values.get("client_id")
    hint = values.get("id_token_hint")
    if hint:
        try:
            claims = dict(p.keys.verify(unit.session, unit.clock, hint).claims)
        except (JoseError, ValueError):
            return _error_page("The id_token_hint was not issued by this service.")
        audience = claims.get("aud")
        hinted = str(audience[0] if isinstance(audience, list) and audience else audience)
        if client_id and client_id != hinted:
            return _error_page("The id_token_hint belongs to another application.")
        client_id = hinted
    target = values.get("post_logout_redirect_uri")
    if target:
        client = p.query_client(client_id or "")
        if client is None or target not in client.post_logout_redirect_uris:
            return _error_page("That address is not registered for signing out.")
    signed_in = web.current_user_or_none()
    if signed_in is not None and request.method == "GET":
        return render_template("oidc/logout.html", params=dict(values.items()),
                               title="Sign out of ContactPoint?")
    if signed_in is not None:
        unit.signin.sign_out(signed_in.token)
        logout_user()
        cookie_session.clear()
    if target:
        state = values.get("state")
        return redirect(_with_params(target, {"state": state} if state else {}))
    return redirect(url_for("signin.signed_out"))


# -- the person's own view of their applications -----------------------------

@blueprint.get("/account/applications")
@web.login_required
def applications() -> str:
    unit = web.unit()
    person = web.user().person
    consents = list(unit.session.scalars(
        select(Consent).where(Consent.person_id == person.id, Consent.revoked_at.is_(None))
        .order_by(Consent.granted_at)))
    named = []
    for consent in consents:
        client = provider().query_client(consent.client_id)
        named.append((consent, client.name if client else consent.client_id))
    return render_template("oidc/applications.html", consents=named,
                           title="Applications you allowed")


@blueprint.post("/account/applications/<int:consent_id>/revoke")
@web.login_required
def revoke_consent(consent_id: int) -> Response:
    unit = web.unit()
    person = web.user().person
    consent = unit.session.get(Consent, consent_id)
    if consent is None or consent.person_id != person.id:
        abort(404)
    consent.revoked_at = unit.clock.now()
    for grant in unit.session.scalars(select(Grant).where(
            Grant.person_id == person.id, Grant.client_id == consent.client_id,
            Grant.revoked_at.is_(None))):
        provider().revoke_grant(grant, "consent withdrawn")
    unit.audit.record("oidc:consent:revoked", subject_type="person", subject_id=person.id,
                      detail={"client_id": consent.client_id})
    return redirect(url_for("oidc.applications"))
