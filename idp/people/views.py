"""An organisation admin's view of their own people, and unlocking accounts."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from core.errors import InvalidInput
from idp import web

blueprint = Blueprint("people", __name__, url_prefix="/people")


@blueprint.get("")
@web.login_required
def index() -> str:
    actor = web.principal()
    unit = web.unit()
    people = unit.directory.people_administered_by(actor, unit.clock.today())
    locks = unit.signin.lock_states([p.id for p in people])
    return render_template(
        "people/index.html",
        title="People",
        people=people,
        locks=locks,
        form=FlaskForm(),
        me=actor.person_id,
        # A platform admin says why they unlock: on the console's page, which asks.
        asks_reason=actor.is_platform_admin,
    )


@blueprint.post("/<int:person_id>/unlock")
@web.login_required
def unlock(person_id: int) -> Response:
    form = FlaskForm()
    if not form.validate_on_submit():
        return redirect(url_for("people.index"))
    unit = web.unit()
    person = unit.directory.person(person_id)
    try:
        unit.signin.unlock(web.principal(), person)
    except InvalidInput:
        # A platform admin's unlock needs a reason: the console's page asks for one.
        return redirect(url_for("admin.unlock", person_id=person.id))
    unit.commit()
    flash(f"{person.display_name} can sign in again")
    return redirect(url_for("people.index"))
