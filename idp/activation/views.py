"""Activation pages: letter code, password, soft token, PIN."""

from __future__ import annotations

import segno
from flask import Blueprint, redirect, render_template, session, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from core.errors import InvalidInput
from idp import web
from idp.activation.forms import CodeForm, PasswordForm, PinForm, TokenForm
from idp.forms import attach_problems
from tokens.errors import ActivationFailed, FlowExpired

blueprint = Blueprint("activation", __name__, url_prefix="/activate")

FLOW_KEY = "activation_flow"
STAGE_PAGES = {
    "password": "activation.password",
    "token": "activation.token",
    "pin": "activation.pin",
}


def _flow_for(stage: str) -> str | Response:
    """The flow token if the journey is at this stage; otherwise where to go."""
    flow = session.get(FLOW_KEY)
    current = web.unit().activation.stage_of(flow) if flow else None
    if current is None:
        session.pop(FLOW_KEY, None)
        return redirect(url_for("activation.start"))
    if current != stage:
        return redirect(url_for(STAGE_PAGES[current]))
    return str(flow)


@blueprint.route("", methods=["GET", "POST"])
def start() -> Response | str | tuple[str, int]:
    form = CodeForm()
    failure = None
    if form.validate_on_submit():
        try:
            session[FLOW_KEY] = web.unit().activation.start(
                form.username.data or "", form.code.data or "", web.client().address
            )
            return redirect(url_for("activation.password"))
        except ActivationFailed as error:
            failure = error.message
    return render_template(
        "activation/code.html", form=form, failure=failure, title="Activate your account"
    ), (401 if failure else 200)


@blueprint.route("/password", methods=["GET", "POST"])
def password() -> Response | str:
    flow = _flow_for("password")
    if isinstance(flow, Response):
        return flow
    form = PasswordForm()
    if form.validate_on_submit():
        try:
            web.unit().activation.set_password(
                flow, form.password.data or "", form.password_confirmation.data or ""
            )
            return redirect(url_for("activation.token"))
        except InvalidInput as error:
            attach_problems(form, error)
    return render_template("activation/password.html", form=form, title="Create a password")


@blueprint.route("/token", methods=["GET", "POST"])
def token() -> Response | str:
    flow = _flow_for("token")
    if isinstance(flow, Response):
        return flow
    form = TokenForm()
    if form.validate_on_submit():
        try:
            web.unit().activation.confirm_token(flow, form.code.data or "")
            return redirect(url_for("activation.pin"))
        except InvalidInput as error:
            attach_problems(form, error)
    hardware = web.unit().activation.assigned_hardware(flow)
    if hardware is not None:
        return render_template(
            "activation/token.html", form=form, title="Set up your token", hardware=hardware
        )
    pending = web.unit().activation.pending_token(flow)
    svg = segno.make(pending.uri, error="m").svg_inline(scale=5, title="QR code to add your token")
    qr = Markup(svg)  # noqa: S704 - segno's own markup; the URI in it is escaped by segno
    grouped = " ".join(pending.secret[i : i + 4] for i in range(0, len(pending.secret), 4))
    return render_template(
        "activation/token.html",
        form=form,
        title="Set up your token",
        qr=qr,
        secret=grouped,
        hardware=None,
    )


@blueprint.route("/pin", methods=["GET", "POST"])
def pin() -> Response | str:
    flow = _flow_for("pin")
    if isinstance(flow, Response):
        return flow
    form = PinForm()
    if form.validate_on_submit():
        try:
            person = web.unit().activation.set_pin(
                flow, form.pin.data or "", form.pin_confirmation.data or ""
            )
            session.pop(FLOW_KEY, None)
            session["activated_username"] = person.username
            return redirect(url_for("activation.done"))
        except InvalidInput as error:
            attach_problems(form, error)
        except FlowExpired:
            return redirect(url_for("activation.start"))
    return render_template("activation/pin.html", form=form, title="Choose a PIN")


@blueprint.get("/done")
def done() -> str:
    return render_template(
        "activation/done.html",
        title="Your account is active",
        username=session.pop("activated_username", None),
    )
