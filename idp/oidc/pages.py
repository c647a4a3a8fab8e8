"""Relying applications in the console: whoever administers an organisation (its
admins, its area's local authority team) registers and looks after its
applications; platform admins approve them and mark first-party ones."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from core.errors import FieldProblem, InvalidInput, NotAllowed
from directory.models import Organisation
from idp import web
from idp.forms import attach_problems
from idp.oidc.clients import Registration
from idp.oidc.forms import ApplicationForm, ReasonForm, WhyForm
from idp.oidc.models import ClientStatus, OAuthClient
from idp.oidc.views import provider

blueprint = Blueprint("applications", __name__, url_prefix="/relying-applications")


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _registration(form: ApplicationForm) -> Registration:
    jwks = None
    if form.jwks.data and form.jwks.data.strip():
        try:
            jwks = json.loads(form.jwks.data)
        except json.JSONDecodeError as exc:
            raise InvalidInput(FieldProblem("jwks", f"is not JSON ({exc.msg})")) from None
        if not isinstance(jwks, dict):
            raise InvalidInput(FieldProblem("jwks", "must be a JWK set: {\"keys\": [...]}"))
    features = set(form.features.data or [])
    return Registration(
        organisation_id=form.organisation_id.data,
        name=form.name.data or "",
        redirect_uris=_lines(form.redirect_uris.data),
        post_logout_redirect_uris=_lines(form.post_logout_redirect_uris.data),
        backchannel_logout_uri=(form.backchannel_logout_uri.data or "").strip() or None,
        auth_method=form.auth_method.data or "",
        jwks=jwks,
        jwks_uri=(form.jwks_uri.data or "").strip() or None,
        scopes=list(form.scopes.data or []),
        grant_types=list(form.grant_types.data or []),
        dpop_required="dpop_required" in features,
        par_required="par_required" in features,
        subject_type="pairwise" if "pairwise" in features else "public",
        sector_identifier=(form.sector_identifier.data or "").strip() or None,
        id_token_alg=form.id_token_alg.data or "",
    )


def _managed(client_id: str) -> OAuthClient:
    return web.unit().clients.managed(web.principal(), client_id)


def _organisations() -> list[Organisation]:
    """The organisations to offer: every one for a platform admin, else those the
    person administers."""
    unit = web.unit()
    actor = web.principal()
    if actor.is_platform_admin:
        return list(unit.directory.organisations())
    return unit.directory.administered_organisations(actor)


@blueprint.get("")
@web.login_required
def index() -> str:
    actor = web.principal()
    if not (actor.is_platform_admin or _organisations()):
        raise NotAllowed()
    unit = web.unit()
    clients = unit.clients.visible_to(actor)
    names = {o.id: o.name for o in unit.directory.organisations()}
    return render_template("oidc/applications_index.html", clients=clients, names=names,
                           title="Relying applications")


@blueprint.route("/new", methods=["GET", "POST"])
@web.login_required
def new() -> Response | str | tuple[str, int]:
    unit = web.unit()
    actor = web.principal()
    organisations = _organisations()
    if not organisations:
        raise NotAllowed()
    form = ApplicationForm()
    form.organisation_id.choices = [(o.id, o.name) for o in organisations]
    if form.validate_on_submit():
        try:
            client, secret = unit.clients.register(actor, _registration(form),
                                                   form.reason.data)
            unit.commit()
            # Shown in this response only: never stored in a cookie or flashed.
            return render_template("oidc/application_secret.html", client=client,
                                   secret=secret, title="Application registered")
        except InvalidInput as error:
            unit.session.rollback()
            attach_problems(form, _on_form(error))
    status = 400 if request.method == "POST" else 200
    return render_template("oidc/application_form.html", form=form,
                           title="Register a relying application"), status


def _on_form(error: InvalidInput) -> InvalidInput:
    """The registry names list items (redirect_uris[1]); the form has one box per
    list, so say which line of the box is wrong."""
    problems = []
    for problem in error.problems:
        match = re.fullmatch(r"(\w+)\[(\d+)\]", problem.field)
        if match:
            problems.append(FieldProblem(match.group(1),
                                         f"line {int(match.group(2)) + 1} {problem.message}"))
        elif problem.field == "subject_type":
            problems.append(FieldProblem("features", problem.message))
        else:
            problems.append(problem)
    return InvalidInput(problems)


@blueprint.get("/<client_id>")
@web.login_required
def detail(client_id: str) -> str:
    return _detail(_managed(client_id))


def _detail(client: OAuthClient, **extra: object) -> str:
    unit = web.unit()
    return render_template("oidc/application_detail.html", client=client, **extra,
                           organisation=unit.directory.organisation(client.organisation_id),
                           can_approve=web.principal().is_platform_admin
                           and client.status is ClientStatus.PENDING,
                           issuer=provider().issuer, title=client.name)


def _status(form: ReasonForm | WhyForm) -> int:
    return 400 if form.errors else 200


def _reasoned(client: OAuthClient, action: str, title: str, act: Callable[[str], object],
              done: str) -> Response | tuple[str, int]:
    """A confirmation that always carries a reason: the registry checks it, and
    what it says is wrong goes on the form, with nothing changed."""
    form = ReasonForm()
    if form.validate_on_submit():
        try:
            act(form.reason.data or "")
        except InvalidInput as error:
            attach_problems(form, error)
        else:
            web.unit().commit()
            provider().clients.forget(client.client_id)
            flash(done)
            return redirect(url_for("applications.detail", client_id=client.client_id))
    return render_template("oidc/application_confirm.html", form=form, client=client,
                           action=action, title=title), _status(form)


@blueprint.route("/<client_id>/approve", methods=["GET", "POST"])
@web.login_required
def approve(client_id: str) -> Response | tuple[str, int]:
    client = _managed(client_id)
    if not web.principal().is_platform_admin:
        raise NotAllowed("Only a platform administrator approves applications")
    return _reasoned(client, "approve", f"Approve {client.name}",
                     lambda why: web.unit().clients.approve(web.principal(), client_id, why),
                     f"{client.name} is approved: it can sign people in now")


@blueprint.route("/<client_id>/suspend", methods=["GET", "POST"])
@web.login_required
def suspend(client_id: str) -> Response | tuple[str, int]:
    client = _managed(client_id)
    return _reasoned(client, "suspend", f"Suspend {client.name}",
                     lambda why: web.unit().clients.suspend(web.principal(), client_id, why),
                     f"{client.name} is suspended: it gets invalid_client from now on")


@blueprint.route("/<client_id>/secret", methods=["GET", "POST"])
@web.login_required
def rotate_secret(client_id: str) -> Response | str | tuple[str, int]:
    client = _managed(client_id)
    form = WhyForm()
    if form.validate_on_submit():
        try:
            secret = web.unit().clients.rotate_secret(web.principal(), client_id,
                                                      form.reason.data)
            web.unit().commit()
            provider().clients.forget(client_id)
            return render_template("oidc/application_secret.html", client=client,
                                   secret=secret, title="New secret")
        except InvalidInput as error:
            attach_problems(form, error)
    return render_template("oidc/application_confirm.html", form=form, client=client,
                           action="rotate", title=f"Give {client.name} a new secret"), _status(form)


@blueprint.route("/<client_id>/first-party", methods=["POST"])
@web.login_required
def first_party(client_id: str) -> Response | tuple[str, int]:
    client = _managed(client_id)
    form = WhyForm()
    if not form.validate_on_submit():
        return redirect(url_for("applications.detail", client_id=client_id))
    try:
        web.unit().clients.set_first_party(web.principal(), client_id, not client.first_party,
                                           form.reason.data)
    except InvalidInput as error:
        attach_problems(form, error)
        return _detail(client, form=form), 400
    web.unit().commit()
    provider().clients.forget(client_id)
    flash("Saved")
    return redirect(url_for("applications.detail", client_id=client_id))
