"""Sign-in through an organisation's own provider, its callback, and the page
where a person links (and unlinks) their organisation's account.

The organisation is chosen from a list, never found from a username, so the
page says nothing about which usernames exist; every failed callback ends on
the sign-in page with the one uniform message.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from core.errors import NotAllowed, NotFound
from idp import web
from idp.federation.forms import OrganisationChoiceForm, RemoveLinkForm, StartLinkForm
from idp.federation.service import LINK, LinkRefused
from idp.federation.upstream import UpstreamUnavailable
from idp.signin.views import FLOW_KEY, _failed, _signed_in
from tokens.errors import SignInFailed
from tokens.signin import SignedIn

blueprint = Blueprint("federation", __name__)

STATE_KEY = "federation_state"


def _choices() -> list[tuple[int, str]]:
    return [(org.id, org.name) for _p, org in web.unit().federation.providers()]


@blueprint.route("/sign-in/organisation", methods=["GET", "POST"])
def choose() -> Response | str | tuple[str, int]:
    form = OrganisationChoiceForm()
    form.organisation.choices = _choices()
    unavailable = None
    if form.validate_on_submit():
        try:
            url, state = web.unit().federation.start(form.organisation.data, "signin")
        except UpstreamUnavailable:
            unavailable = (
                "Your organisation's sign-in service cannot be reached. Try again later, "
                "or sign in with your username and password."
            )
        else:
            session[STATE_KEY] = state
            return redirect(url)
    status = 503 if unavailable else 200
    return render_template(
        "federation/choose.html", form=form, unavailable=unavailable,
        title="Sign in with your organisation's account",
    ), status


@blueprint.get("/sign-in/organisation/callback")
def callback() -> Response | str | tuple[str, int]:
    """Where the provider sends the browser back, for a sign-in or a link."""
    federation = web.unit().federation
    try:
        upstream = federation.callback(
            state=request.args.get("state", ""),
            expected_state=session.pop(STATE_KEY, None),
            code=request.args.get("code"),
            error=request.args.get("error"),
            client=web.client(),
        )
        if upstream.request.purpose == LINK:
            signed_in = web.current_user_or_none()
            person_id = signed_in.person.id if signed_in else -1
            federation.link(upstream, person_id, web.client())
            flash("Your organisation's account is linked.")
            return redirect(url_for("federation.link"))
        outcome = federation.sign_in(upstream, web.client())
    except LinkRefused as refused:
        flash(refused.message)
        return redirect(url_for("federation.link"))
    except SignInFailed:
        return _failed(SignInFailed().message)
    if isinstance(outcome, SignedIn):
        return _signed_in(outcome)
    session[FLOW_KEY] = outcome
    return redirect(url_for("signin.second_step"))


@blueprint.route("/account/organisation-account", methods=["GET", "POST"])
@web.login_required
def link() -> Response | str:
    signed_in = web.user()
    federation = web.unit().federation
    form = StartLinkForm()
    if form.validate_on_submit():
        try:
            organisation_id = int(form.organisation.data or "0")
        except ValueError:
            abort(400)
        try:
            url, state = federation.start_link(
                signed_in.person, list(signed_in.record.amr or []), organisation_id
            )
        except (NotAllowed, NotFound, UpstreamUnavailable) as refused:
            flash(str(refused))
            return redirect(url_for("federation.link"))
        session[STATE_KEY] = state
        return redirect(url)
    return render_template(
        "federation/link.html",
        links=federation.links_of(signed_in.person.id),
        linkable=federation.linkable(signed_in.person),
        remove_form=RemoveLinkForm(),
        title="Your organisation's account",
    )


@blueprint.post("/account/organisation-account/<int:link_id>/remove")
@web.login_required
def unlink(link_id: int) -> Response:
    """The person's own link, or (for an organisation admin) one of their people's."""
    form = RemoveLinkForm()
    if not form.validate_on_submit():
        abort(400)
    unit = web.unit()
    unit.federation.unlink(web.principal(), link_id)
    unit.commit()
    flash("The link was removed.")
    target = request.form.get("next")
    return redirect(web.safe_next(target, url_for("federation.link")))
