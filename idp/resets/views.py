"""Reset pages: forgotten PIN, forgotten password, and the admin's request for
a reset letter (with a confirmation step).

The person's pages are public: who needs them cannot sign in. Any failed
proof, at any step, ends the journey on its first page with one message and
one status (401), as at sign-in; the flow token lives in the Flask session and
the flow itself on the server.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, session, url_for
from werkzeug.wrappers import Response

from core.errors import InvalidInput
from idp import web
from idp.forms import attach_problems
from idp.resets.forms import (
    NewPasswordForm,
    NewPinForm,
    PasswordResetProofForm,
    PinResetCodeForm,
    PinResetPasswordForm,
    ResetRequestForm,
)
from tokens.errors import FlowExpired
from tokens.resets import (
    NEW_PASSWORD,
    NEW_PIN,
    PASSWORD_STAGE,
    RESET_CODE_DAYS,
    ResetFailed,
    ResetKind,
)

blueprint = Blueprint("resets", __name__)

PIN_FLOW = "reset_pin_flow"
PASSWORD_FLOW = "reset_password_flow"  # noqa: S105 - a session key
DONE = "reset_done_username"

PIN_TITLE = "Reset your PIN"
PASSWORD_TITLE = "Reset your password"  # noqa: S105 - a page title


def _pin_failed(message: str) -> tuple[str, int]:
    session.pop(PIN_FLOW, None)
    form = PinResetPasswordForm(formdata=None)
    return render_template(
        "resets/pin_start.html", form=form, title=PIN_TITLE, failure=message
    ), 401


def _pending(key: str, kind: ResetKind, stage: str) -> str | None:
    flow = session.get(key)
    if not flow or web.unit().resets.pending(flow, kind, stage) is None:
        session.pop(key, None)
        return None
    return str(flow)


# -- forgotten PIN ----------------------------------------------------------------


@blueprint.route("/reset-pin", methods=["GET", "POST"])
def pin_start() -> Response | str | tuple[str, int]:
    form = PinResetPasswordForm()
    if form.validate_on_submit():
        try:
            session[PIN_FLOW] = web.unit().resets.begin_pin_reset(
                form.username.data or "", form.password.data or "", web.client()
            )
        except ResetFailed as failure:
            return _pin_failed(failure.message)
        return redirect(url_for("resets.pin_code"))
    return render_template("resets/pin_start.html", form=form, title=PIN_TITLE, failure=None)


@blueprint.route("/reset-pin/code", methods=["GET", "POST"])
def pin_code() -> Response | str | tuple[str, int]:
    flow = _pending(PIN_FLOW, ResetKind.PIN, PASSWORD_STAGE)
    if flow is None:
        return redirect(url_for("resets.pin_start"))
    form = PinResetCodeForm()
    if form.validate_on_submit():
        try:
            session[PIN_FLOW] = web.unit().resets.prove_pin_reset(
                flow, form.code.data or "", form.letter_code.data or "", web.client()
            )
        except ResetFailed as failure:
            return _pin_failed(failure.message)
        except FlowExpired as expired:
            return _pin_failed(expired.message)
        return redirect(url_for("resets.pin_new"))
    return render_template("resets/pin_code.html", form=form, title=PIN_TITLE)


@blueprint.route("/reset-pin/new", methods=["GET", "POST"])
def pin_new() -> Response | str:
    flow = _pending(PIN_FLOW, ResetKind.PIN, NEW_PIN)
    if flow is None:
        return redirect(url_for("resets.pin_start"))
    form = NewPinForm()
    if form.validate_on_submit():
        try:
            person = web.unit().resets.set_new_pin(
                flow, form.pin.data or "", form.pin_confirmation.data or ""
            )
        except InvalidInput as error:
            attach_problems(form, error)
        except FlowExpired:
            session.pop(PIN_FLOW, None)
            return redirect(url_for("resets.pin_start"))
        else:
            session.pop(PIN_FLOW, None)
            session[DONE] = person.username
            return redirect(url_for("resets.pin_done"))
    return render_template("resets/new_pin.html", form=form, title="Choose a new PIN")


@blueprint.get("/reset-pin/done")
def pin_done() -> str:
    return render_template(
        "resets/done.html", title="Your PIN has been reset", what="PIN",
        username=session.pop(DONE, None),
    )


# -- forgotten password -----------------------------------------------------------


@blueprint.route("/reset-password", methods=["GET", "POST"])
def password_start() -> Response | str | tuple[str, int]:
    form = PasswordResetProofForm()
    failure = None
    if form.validate_on_submit():
        try:
            session[PASSWORD_FLOW] = web.unit().resets.prove_password_reset(
                form.username.data or "",
                form.code.data or "",
                form.pin.data or "",
                form.letter_code.data or "",
                web.client(),
            )
        except ResetFailed as error:
            session.pop(PASSWORD_FLOW, None)
            failure = error.message
            form = PasswordResetProofForm(formdata=None)
        else:
            return redirect(url_for("resets.password_new"))
    return render_template(
        "resets/password_start.html", form=form, title=PASSWORD_TITLE, failure=failure
    ), (401 if failure else 200)


@blueprint.route("/reset-password/new", methods=["GET", "POST"])
def password_new() -> Response | str:
    flow = _pending(PASSWORD_FLOW, ResetKind.PASSWORD, NEW_PASSWORD)
    if flow is None:
        return redirect(url_for("resets.password_start"))
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            person = web.unit().resets.set_new_password(
                flow, form.password.data or "", form.password_confirmation.data or ""
            )
        except InvalidInput as error:
            attach_problems(form, error)
        except FlowExpired:
            session.pop(PASSWORD_FLOW, None)
            return redirect(url_for("resets.password_start"))
        else:
            session.pop(PASSWORD_FLOW, None)
            session[DONE] = person.username
            return redirect(url_for("resets.password_done"))
    return render_template("resets/new_password.html", form=form, title="Choose a new password")


@blueprint.get("/reset-password/done")
def password_done() -> str:
    return render_template(
        "resets/done.html", title="Your password has been reset", what="password",
        username=session.pop(DONE, None),
    )


# -- an administrator asks for a reset letter ----------------------------------------

NOUNS = {ResetKind.PIN: "PIN", ResetKind.PASSWORD: "password"}


def _request(person_id: int, kind: ResetKind) -> Response | str | tuple[str, int]:
    unit = web.unit()
    form = ResetRequestForm()
    status = 200
    if form.validate_on_submit():
        try:
            sent = unit.resets.request(web.principal(), person_id, kind, form.reason.data)
        except InvalidInput as error:
            attach_problems(form, error)
            status = 400
        else:
            flash(
                f"A {NOUNS[kind]} reset letter for {sent.person.display_name} is in the outbox "
                f"(letter {sent.letter_id}). Its code works until {sent.expires_on:%-d %B %Y}."
            )
            return redirect(url_for("people.index"))
    elif form.errors:
        status = 400
    person = unit.resets.target(web.principal(), person_id)
    page = render_template(
        "resets/confirm.html",
        title=f"Send a {NOUNS[kind]} reset letter",
        person=person,
        noun=NOUNS[kind],
        kind=kind.value,
        days=RESET_CODE_DAYS,
        form=form,
    )
    return (page, status) if status != 200 else page


@blueprint.route("/people/<int:person_id>/reset-pin", methods=["GET", "POST"])
@web.login_required
def request_pin_reset(person_id: int) -> Response | str | tuple[str, int]:
    return _request(person_id, ResetKind.PIN)


@blueprint.route("/people/<int:person_id>/reset-password", methods=["GET", "POST"])
@web.login_required
def request_password_reset(person_id: int) -> Response | str | tuple[str, int]:
    return _request(person_id, ResetKind.PASSWORD)
