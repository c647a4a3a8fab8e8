"""The signed-in person's start page."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from werkzeug.wrappers import Response

from directory.models import Role
from idp import web

blueprint = Blueprint("home", __name__)


@blueprint.get("/")
def index() -> Response | str:
    signed_in = web.current_user_or_none()
    if signed_in is None:
        return redirect(url_for("signin.start"))
    today = web.container().clock.today()
    actor = signed_in.principal
    return render_template(
        "home/index.html",
        title="Your account",
        person=signed_in.person,
        session_record=signed_in.record,
        positions=[p for p in signed_in.person.positions if p.current_on(today)],
        # Whoever administers people: organisation admins, local authority teams.
        is_admin=actor.is_platform_admin
        or bool(actor.organisations_with(Role.ORGANISATION_ADMIN)
                | actor.organisations_with(Role.LOCAL_AUTHORITY_TEAM)),
        is_officer=bool(actor.organisations_with(Role.VETTING_OFFICER)),
    )


@blueprint.get("/healthz")
def healthz() -> tuple[str, int, dict[str, str]]:
    return "ok", 200, {"Content-Type": "text/plain"}
