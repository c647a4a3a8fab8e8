"""Token pages: an organisation admin's inventory, a token's detail and history,
assignment, resynchronisation, reporting a token lost or stolen, a person's own
tokens, and the activation of a replacement by someone who cannot sign in.

Every rule (who may see or change which token) lives in the inventory service;
these views only turn its answers and errors into pages.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import logout_user
from werkzeug.wrappers import Response

from core.errors import InvalidInput, NotAllowed
from idp import web
from idp.forms import attach_problems
from idp.tokens.forms import (
    AssignForm,
    CodeForm,
    LostForm,
    PolicyForm,
    ReplacementForm,
    ResyncForm,
    ReturnedForm,
)
from tokens.errors import SignInFailed
from tokens.models import OtpToken, TokenState
from tokens.policy import Factor

blueprint = Blueprint("tokens", __name__)

STATE_LABELS = {
    TokenState.IN_STOCK: "In stock",
    TokenState.ASSIGNED: "Assigned",
    TokenState.ACTIVE: "Active",
    TokenState.LOST: "Lost",
    TokenState.REVOKED: "Revoked",
    TokenState.RETURNED: "Returned",
}


def _context(token: OtpToken) -> dict[str, object]:
    """What every page about one token shows."""
    unit = web.unit()
    actor = web.principal()
    holder = unit.directory.person(token.person_id) if token.person_id else None
    return {
        "token": token,
        "holder": holder,
        "labels": STATE_LABELS,
        "is_holder": token.person_id == actor.person_id,
        "is_admin": unit.directory.administers(actor, token.organisation_id),
    }


@blueprint.get("/tokens")
@web.login_required
def inventory() -> str:
    actor = web.principal()
    unit = web.unit()
    administered = [o.id for o in unit.directory.administered_organisations(actor)]
    chosen = request.args.get("organisation", type=int)
    if chosen is None and administered:
        chosen = administered[0]
    if chosen is None:
        if not actor.is_platform_admin:
            raise NotAllowed()
        return render_template(
            "tokens/organisations.html",
            title="Token inventory",
            organisations=unit.directory.organisations(),
        )
    state_arg = request.args.get("state", "")
    state = TokenState(state_arg) if state_arg in {s.value for s in TokenState} else None
    page = unit.inventory.list_tokens(
        actor, chosen, state=state, page=request.args.get("page", 1, type=int)
    )
    return render_template(
        "tokens/inventory.html",
        title="Token inventory",
        organisation=unit.directory.organisation(chosen),
        page=page,
        holders=unit.inventory.holders(page.items),
        state=state,
        labels=STATE_LABELS,
    )


@blueprint.route("/tokens/policy/<int:organisation_id>", methods=["GET", "POST"])
@web.login_required
def policy(organisation_id: int) -> Response | str:
    """Which authenticators the organisation's people may use. The service
    decides who may change it (its own admins, platform admins) and audits it."""
    unit = web.unit()
    actor = web.principal()
    if not unit.directory.administers(actor, organisation_id):
        raise NotAllowed()
    organisation = unit.directory.organisation(organisation_id)
    current = unit.policies.get(organisation_id)
    form = PolicyForm()
    if form.validate_on_submit():
        try:
            unit.policies.set(
                actor,
                organisation_id,
                allowed=frozenset(Factor(value) for value in form.allowed.data or []),
                attestation=form.attestation.data or "",
                user_verification=form.user_verification.data or "",
                reason=form.reason.data,
            )
            unit.commit()
            flash(f"The authenticator policy of {organisation.name} is saved; it applies "
                  "from each person's next sign-in.")
            return redirect(url_for("tokens.policy", organisation_id=organisation_id))
        except InvalidInput as error:
            attach_problems(form, error)
    elif not form.is_submitted():
        form.allowed.data = sorted(f.value for f in current.allowed)
        form.attestation.data = current.attestation
        form.user_verification.data = current.user_verification
    return render_template(
        "tokens/policy.html", title="Authenticator policy", form=form, organisation=organisation
    )


@blueprint.get("/tokens/mine")
@web.login_required
def mine() -> str:
    tokens = web.unit().inventory.own_tokens(web.principal())
    return render_template("tokens/mine.html", title="Your tokens", tokens=tokens,
                           labels=STATE_LABELS)


@blueprint.get("/tokens/<int:token_id>")
@web.login_required
def detail(token_id: int) -> str:
    unit = web.unit()
    actor = web.principal()
    token = unit.inventory.token(actor, token_id)
    return render_template(
        "tokens/detail.html",
        title=f"Token {token.serial}",
        history=unit.inventory.history(actor, token),
        assign_form=AssignForm(formdata=None),
        **_context(token),
    )


@blueprint.post("/tokens/<int:token_id>/assign")
@web.login_required
def assign(token_id: int) -> Response | tuple[str, int]:
    unit = web.unit()
    actor = web.principal()
    token = unit.inventory.token(actor, token_id)
    form = AssignForm()
    if form.validate_on_submit():
        person = unit.directory.person_by_username(form.username.data or "")
        try:
            if person is None:
                raise NotAllowed()
            unit.inventory.assign(actor, token.serial, person, form.reason.data)
            unit.commit()
            flash(f"Token {token.serial} is assigned to {person.display_name}. They activate "
                  "it by entering a code it shows.")
            return redirect(url_for("tokens.detail", token_id=token.id))
        except InvalidInput as error:
            attach_problems(form, error)
        except NotAllowed:
            # One answer for unknown people and people of other organisations.
            form.username.errors = [
                "There is no one with that username in the token's organisation whom you "
                "can give a token to"
            ]
    return render_template(
        "tokens/detail.html",
        title=f"Token {token.serial}",
        history=unit.inventory.history(actor, token),
        assign_form=form,
        errored=form,
        **_context(token),
    ), 400


@blueprint.route("/tokens/<int:token_id>/activate", methods=["GET", "POST"])
@web.login_required
def activate(token_id: int) -> Response | str:
    unit = web.unit()
    actor = web.principal()
    token = unit.inventory.token(actor, token_id)
    form = CodeForm()
    if form.validate_on_submit():
        try:
            unit.inventory.activate(actor, token.id, form.code.data or "")
            unit.commit()
            flash(f"Token {token.serial} is active. Use it when you sign in.")
            return redirect(url_for("tokens.mine"))
        except InvalidInput as error:
            attach_problems(form, error)
    return render_template("tokens/activate.html", title="Activate your token", form=form,
                           **_context(token))


@blueprint.route("/tokens/<int:token_id>/resync", methods=["GET", "POST"])
@web.login_required
def resync(token_id: int) -> Response | str:
    unit = web.unit()
    actor = web.principal()
    token = unit.inventory.token(actor, token_id)
    form = ResyncForm()
    if form.validate_on_submit():
        try:
            unit.inventory.resync(
                actor, token.id, form.first_code.data or "", form.second_code.data or "",
                form.reason.data,
            )
            unit.commit()
            flash(f"Token {token.serial} is back in step.")
            target = "tokens.mine" if token.person_id == actor.person_id else "tokens.detail"
            return redirect(url_for(target, token_id=token.id))
        except InvalidInput as error:
            attach_problems(form, error)
    return render_template("tokens/resync.html", title="Resynchronise a token", form=form,
                           **_context(token))


@blueprint.route("/tokens/<int:token_id>/lost", methods=["GET", "POST"])
@web.login_required
def lost(token_id: int) -> Response | str | tuple[str, int]:
    """A confirmation step first: reporting stops the token and ends the holder's
    sessions at once, which cannot be undone from this page."""
    unit = web.unit()
    actor = web.principal()
    token = unit.inventory.token(actor, token_id)
    form = LostForm()
    if form.validate_on_submit():
        stolen = form.what.data == "stolen"
        try:
            unit.inventory.report_lost(actor, token.id, stolen=stolen, reason=form.reason.data)
        except InvalidInput as error:
            attach_problems(form, error)
            return render_template("tokens/lost.html", title="Report a token lost or stolen",
                                   form=form, **_context(token)), 400
        unit.commit()
        if token.person_id == actor.person_id:
            # The person's own sessions, this one included, have just ended.
            logout_user()
            session.clear()
            return redirect(url_for("signin.signed_out"))
        flash(f"Token {token.serial} is {'revoked' if stolen else 'reported lost'}; its "
              "holder's sessions have ended. Assign them a replacement.")
        return redirect(url_for("tokens.detail", token_id=token.id))
    return render_template("tokens/lost.html", title="Report a token lost or stolen", form=form,
                           **_context(token))


@blueprint.route("/tokens/<int:token_id>/returned", methods=["GET", "POST"])
@web.login_required
def returned(token_id: int) -> Response | str | tuple[str, int]:
    """Confirm first: a returned token stops signing its holder in at once."""
    unit = web.unit()
    actor = web.principal()
    token = unit.inventory.token(actor, token_id)
    form = ReturnedForm()
    if form.validate_on_submit():
        try:
            unit.inventory.mark_returned(actor, token.id, form.reason.data)
        except InvalidInput as error:
            attach_problems(form, error)
            return render_template("tokens/returned.html", title="Record a returned token",
                                   form=form, **_context(token)), 400
        unit.commit()
        flash(f"Token {token.serial} is back in the inventory and can be assigned again.")
        return redirect(url_for("tokens.detail", token_id=token.id))
    return render_template("tokens/returned.html", title="Record a returned token", form=form,
                           **_context(token))


@blueprint.route("/activate/replacement", methods=["GET", "POST"])
def replacement() -> Response | tuple[str, int]:
    """For someone whose token was replaced: they cannot sign in without it, so
    they prove password, PIN and the new token's code in one step."""
    if web.current_user_or_none() is not None and request.method == "GET":
        return redirect(url_for("tokens.mine"))
    form = ReplacementForm()
    failure = None
    if form.validate_on_submit():
        try:
            web.unit().inventory.activate_replacement(
                form.username.data or "",
                form.password.data or "",
                form.pin.data or "",
                form.code.data or "",
                web.client(),
            )
            flash("Your new token is active. Sign in with it.")
            return redirect(url_for("signin.start"))
        except SignInFailed as error:
            failure = error.message
            form = ReplacementForm(formdata=None)
    return render_template(
        "tokens/replacement.html", title="Activate a replacement token", form=form,
        failure=failure,
    ), (401 if failure else 200)
