"""A person's own security keys: list, register, remove (at level 3), and the
step-up page that raises a session to level 3 with a key and the PIN.

The challenge of each ceremony is kept server-side by the services; the
browser's cookie holds only the flow's random token.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from idp import web
from idp.keys.forms import AddKeyForm, KeyStepForm, RemoveKeyForm
from tokens.assurance import meets
from tokens.errors import FlowExpired, SignInFailed
from tokens.policy import Factor
from tokens.webauthn import KeyRegistrationFailed

blueprint = Blueprint("keys", __name__)

REGISTRATION_FLOW = "key_registration_flow"
STEP_UP_FLOW = "step_up_flow"
STEP_UP_LEVEL = 3


@blueprint.get("/keys")
@web.login_required
def index() -> str:
    signed_in = web.user()
    service = web.unit().keys
    return render_template(
        "keys/index.html",
        title="Your security keys",
        keys=service.keys_of(signed_in.person.id),
        allowed=service.policy(signed_in.person).allows(Factor.SECURITY_KEY),
        level3=meets(signed_in.record.acr, 3, web.container().settings.assurance),
    )


@blueprint.route("/keys/add", methods=["GET", "POST"])
@web.login_required
def add() -> Response | str | tuple[str, int]:
    person = web.user().person
    service = web.unit().keys
    form = AddKeyForm()
    failure = None
    if form.validate_on_submit():
        try:
            key = service.finish_registration(
                person,
                session.pop(REGISTRATION_FLOW, ""),
                form.credential.data or "",
                form.name.data or "",
            )
        except KeyRegistrationFailed as refused:
            failure = refused.message
        else:
            flash(f"Security key '{key.name}' registered")
            return redirect(url_for("keys.index"))
    pending = service.begin_registration(person)  # KeyNotAllowed: the 403 page
    session[REGISTRATION_FLOW] = pending.flow_token
    page = render_template(
        "keys/add.html",
        title="Register a security key",
        form=form,
        options=pending.options_json,
        failure=failure,
    )
    return (page, 400) if failure else page


@blueprint.route("/keys/<int:key_id>/remove", methods=["GET", "POST"])
@web.requires_level(STEP_UP_LEVEL)
def remove(key_id: int) -> Response | str:
    person = web.user().person
    service = web.unit().keys
    key = service.key_of(person, key_id)  # KeyNotFound: the 404 page
    form = RemoveKeyForm()
    if form.validate_on_submit():
        service.remove(person, key_id)
        flash(f"Security key '{key.name}' removed")
        return redirect(url_for("keys.index"))
    return render_template("keys/remove.html", title="Remove a security key", key=key, form=form)


@blueprint.route("/keys/step-up", methods=["GET", "POST"])
@web.login_required
def step_up() -> Response | str | tuple[str, int]:
    """Raise this session to level 3, then go on to the page that asked for it."""
    target = web.safe_next(request.args.get("next"))
    signed_in = web.user()
    if meets(signed_in.record.acr, STEP_UP_LEVEL, web.container().settings.assurance):
        return redirect(target)
    unit = web.unit()
    form = KeyStepForm()
    failure = None
    if form.validate_on_submit():
        try:
            unit.signin.step_up(
                session.pop(STEP_UP_FLOW, ""),
                signed_in.record,
                form.credential.data or "",
                form.pin.data or "",
                web.client(),
            )
        except (SignInFailed, FlowExpired) as refused:
            failure = refused.message
        else:
            return redirect(target)
    person = signed_in.person
    if not unit.keys.policy(person).allows(Factor.SECURITY_KEY):
        unavailable = "not_allowed"
    elif not unit.keys.keys_of(person.id):
        unavailable = "no_keys"
    else:
        unavailable = None
    options = None
    if unavailable is None:
        flow, options = unit.signin.begin_step_up(signed_in.record)
        session[STEP_UP_FLOW] = flow
    page = render_template(
        "keys/step_up.html",
        title="Confirm it is you with your security key",
        form=form,
        options=options,
        unavailable=unavailable,
        failure=failure,
        target=target,
    )
    return (page, 401) if failure else page
