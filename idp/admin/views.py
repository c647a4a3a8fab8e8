"""The admin console: organisations, their people, positions and audit trail.

Views only turn requests into calls of `directory.administration` and
`directory.accreditation`, which hold every rule (the JSON API will call the
same). Pages that exist already are linked, not copied: sponsoring and deciding
applications (vetting), reset letters (resets), the token inventory (tokens).
Every destructive act has a confirmation page that asks for the reason.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from core.errors import Conflict, InvalidInput, NotAllowed
from directory.administration import Act, may
from directory.models import Accreditation, Person, PositionRequestState, Role
from directory.service import require_admin_over
from idp import web
from idp.admin.forms import DecisionForm, PositionRequestForm, ReasonForm
from idp.forms import attach_problems

blueprint = Blueprint("admin", __name__, url_prefix="/admin")

PER_PAGE = 25


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 1


def _is_console_user() -> bool:
    actor = web.principal()
    return actor.is_platform_admin or bool(
        actor.organisations_with(Role.ORGANISATION_ADMIN)
        | actor.organisations_with(Role.LOCAL_AUTHORITY_TEAM)
    )


@blueprint.get("")
@web.login_required
def index() -> str:
    if not _is_console_user():
        raise NotAllowed()
    actor = web.principal()
    unit = web.unit()
    accrediting = actor.is_platform_admin or bool(
        actor.organisations_with(Role.LOCAL_AUTHORITY_TEAM)
    )
    return render_template(
        "admin/index.html",
        title="Admin console",
        organisations=unit.administration.organisations(actor),
        accrediting=accrediting,
    )


@blueprint.get("/organisations/<int:organisation_id>")
@web.login_required
def organisation(organisation_id: int) -> str:
    actor = web.principal()
    unit = web.unit()
    org = unit.administration.organisation_for(actor, Act.LIST_PEOPLE, organisation_id)
    query = request.args.get("q", "")[:100]
    page = unit.administration.people(
        actor, org.id, query=query, page=_page_number(), per_page=PER_PAGE
    )
    return render_template(
        "admin/organisation.html",
        title=org.name,
        org=org,
        page=page,
        query=query,
        locks=unit.signin.lock_states([p.id for p in page.items]),
    )


@blueprint.get("/people/<int:person_id>")
@web.login_required
def person(person_id: int) -> str:
    actor = web.principal()
    unit = web.unit()
    target = unit.administration.person_for(actor, Act.LIST_PEOPLE, person_id)
    today = unit.clock.today()
    # Upstream accounts linked to this person, for whoever manages the provider's
    # organisation (FederationService.may_manage); never their own, here.
    links = [
        (link, org)
        for link, org in unit.federation.links_of(target.id)
        if unit.federation.may_manage(actor, org.id)
    ]
    return render_template(
        "admin/person.html",
        title=target.display_name,
        person=target,
        today=today,
        lock=unit.signin.lock_states([target.id]).get(target.id),
        may_end={p.id for p in target.positions if may(actor, Act.END_POSITION, p.organisation)},
        may_close=unit.administration.may_act_on(actor, Act.CLOSE, target),
        links=links if actor.person_id != target.id else [],
    )


def _confirm(
    *,
    title: str,
    act: Callable[[str], str],
    back: str,
    warning: str,
    button: str,
    rows: list[tuple[str, str]],
    destructive: bool = True,
) -> Response | str | tuple[str, int]:
    """A confirmation page with the reason; the act runs only on its post."""
    form = ReasonForm()
    status = 200
    problem = None
    if form.validate_on_submit():
        try:
            message = act(form.reason.data or "")
            web.unit().commit()
            flash(message)
            return redirect(back)
        except InvalidInput as error:
            if not attach_problems(form, error):
                problem = error.message
            status = 400
        except Conflict as error:
            problem = error.message
            status = 409
    elif form.errors:
        status = 400
    page = render_template(
        "admin/confirm.html",
        title=title,
        form=form,
        warning=warning,
        button=button,
        rows=rows,
        back=back,
        destructive=destructive,
        problem=problem,
    )
    return (page, status) if status != 200 else page


def _person_rows(target: Person) -> list[tuple[str, str]]:
    return [
        ("Name", target.display_name),
        ("Username", target.username),
        ("Status", target.status.value.replace("_", " ")),
    ]


@blueprint.route("/people/<int:person_id>/suspend", methods=["GET", "POST"])
@web.login_required
def suspend(person_id: int) -> Response | str | tuple[str, int]:
    actor = web.principal()
    unit = web.unit()
    target = unit.administration.person_for(actor, Act.SUSPEND, person_id)

    def act(reason: str) -> str:
        unit.administration.suspend(actor, target.id, reason)
        return f"{target.display_name} is suspended and signed out everywhere"

    return _confirm(
        title=f"Suspend {target.display_name}",
        act=act,
        back=url_for("admin.person", person_id=target.id),
        warning="They are signed out at once, everywhere, and cannot sign in until reinstated.",
        button="Suspend",
        rows=_person_rows(target),
    )


@blueprint.route("/people/<int:person_id>/reinstate", methods=["GET", "POST"])
@web.login_required
def reinstate(person_id: int) -> Response | str | tuple[str, int]:
    actor = web.principal()
    unit = web.unit()
    target = unit.administration.person_for(actor, Act.REINSTATE, person_id)

    def act(reason: str) -> str:
        unit.administration.reinstate(actor, target.id, reason)
        return f"{target.display_name} can sign in again"

    return _confirm(
        title=f"Reinstate {target.display_name}",
        act=act,
        back=url_for("admin.person", person_id=target.id),
        warning="Only a suspension an administrator made can be lifted here.",
        button="Reinstate",
        rows=[*_person_rows(target), ("Suspended because", target.status_reason)],
        destructive=False,
    )


@blueprint.route("/people/<int:person_id>/close", methods=["GET", "POST"])
@web.login_required
def close(person_id: int) -> Response | str | tuple[str, int]:
    actor = web.principal()
    unit = web.unit()
    target = unit.administration.person_for(actor, Act.CLOSE, person_id)

    def act(reason: str) -> str:
        unit.administration.close(actor, target.id, reason)
        return f"{target.display_name}'s account is closed"

    return _confirm(
        title=f"Close {target.display_name}'s account",
        act=act,
        back=url_for("admin.person", person_id=target.id),
        warning="Closing is for good: they would need a new application to come back.",
        button="Close the account",
        rows=_person_rows(target),
    )


@blueprint.route("/people/<int:person_id>/unlock", methods=["GET", "POST"])
@web.login_required
def unlock(person_id: int) -> Response | str | tuple[str, int]:
    actor = web.principal()
    unit = web.unit()
    target = unit.administration.person_for(actor, Act.SUSPEND, person_id)
    require_admin_over(actor, target, unit.clock.today())

    def act(reason: str) -> str:
        unit.signin.unlock(actor, target, reason)
        return f"{target.display_name} can sign in again"

    return _confirm(
        title=f"Unlock {target.display_name}",
        act=act,
        back=url_for("admin.person", person_id=target.id),
        warning="Only unlock someone you have spoken to: failed sign-ins may be someone else.",
        button="Unlock",
        rows=_person_rows(target),
        destructive=False,
    )


@blueprint.route("/positions/<int:position_id>/end", methods=["GET", "POST"])
@web.login_required
def end_position(position_id: int) -> Response | str | tuple[str, int]:
    actor = web.principal()
    unit = web.unit()
    position = unit.administration.position_for(actor, position_id)
    target = position.person

    def act(reason: str) -> str:
        unit.administration.end_position(actor, position.id, reason)
        return f"{target.display_name}'s position at {position.organisation.name} has ended"

    return _confirm(
        title=f"End {target.display_name}'s position",
        act=act,
        back=url_for("admin.person", person_id=target.id),
        warning=(
            "It ends today. If it is their last position, they are signed out at once "
            "and cannot sign in; their identity and clearance stay, for a new position."
        ),
        button="End the position",
        rows=[
            *_person_rows(target),
            ("Organisation", position.organisation.name),
            ("Role", position.role.value.replace("_", " ")),
        ],
    )


@blueprint.route("/organisations/<int:organisation_id>/positions/new", methods=["GET", "POST"])
@web.login_required
def new_position(organisation_id: int) -> Response | str | tuple[str, int]:
    actor = web.principal()
    unit = web.unit()
    org = unit.administration.organisation_for(actor, Act.REQUEST_POSITION, organisation_id)
    form = PositionRequestForm()
    status = 200
    problem = None
    if form.validate_on_submit():
        try:
            asked = unit.administration.request_position(
                actor,
                org.id,
                username=form.username.data or "",
                role=Role(form.role.data),
                reason=form.reason.data or "",
            )
            unit.commit()
            flash(
                f"Asked for a position for {asked.person.display_name}: another administrator "
                "must approve it"
            )
            return redirect(url_for("admin.position_requests", organisation_id=org.id))
        except InvalidInput as error:
            if not attach_problems(form, error):
                problem = error.message
            status = 400
        except Conflict as error:
            problem = error.message
            status = 409
    elif form.errors:
        status = 400
    page = render_template(
        "admin/new_position.html", title="Ask for a position", form=form, org=org, problem=problem
    )
    return (page, status) if status != 200 else page


@blueprint.get("/organisations/<int:organisation_id>/position-requests")
@web.login_required
def position_requests(organisation_id: int) -> str:
    actor = web.principal()
    unit = web.unit()
    org = unit.administration.organisation_for(actor, Act.DECIDE_POSITION, organisation_id)
    return render_template(
        "admin/position_requests.html",
        title="Positions waiting for approval",
        org=org,
        requests=unit.administration.position_requests(actor, org.id),
        me=actor.person_id,
    )


@blueprint.route("/position-requests/<int:request_id>", methods=["GET", "POST"])
@web.login_required
def decide_position(request_id: int) -> Response | str | tuple[str, int]:
    actor = web.principal()
    unit = web.unit()
    asked = unit.administration.position_request_for(actor, request_id)
    form = DecisionForm()
    status = 200
    problem = None
    if form.validate_on_submit():
        approve = form.decision.data == PositionRequestState.APPROVED.value
        try:
            unit.administration.decide_position(
                actor, asked.id, approve=approve, reason=form.reason.data or ""
            )
            unit.commit()
            flash(
                f"{asked.person.display_name} now holds the position"
                if approve
                else f"The position for {asked.person.display_name} is refused"
            )
            return redirect(
                url_for("admin.position_requests", organisation_id=asked.organisation_id)
            )
        except InvalidInput as error:
            if not attach_problems(form, error):
                problem = error.message
            status = 400
        except Conflict as error:
            problem = error.message
            status = 409
    elif form.errors:
        status = 400
    page = render_template(
        "admin/decide_position.html",
        title="Decide a position",
        form=form,
        asked=asked,
        problem=problem,
        own=actor.person_id in (asked.requested_by_id, asked.person_id),
    )
    return (page, status) if status != 200 else page


@blueprint.get("/organisations/<int:organisation_id>/audit")
@web.login_required
def audit(organisation_id: int) -> str:
    actor = web.principal()
    unit = web.unit()
    org = unit.administration.organisation_for(actor, Act.READ_AUDIT, organisation_id)
    page = unit.administration.audit_trail(actor, org.id, page=_page_number(), per_page=PER_PAGE)
    return render_template("admin/audit.html", title=f"Audit trail: {org.name}", org=org, page=page)


# -- accreditation ------------------------------------------------------------------------


@blueprint.get("/accreditation")
@web.login_required
def accreditation() -> str:
    actor = web.principal()
    unit = web.unit()
    return render_template(
        "admin/accreditation.html",
        title="Accreditation",
        organisations=unit.accreditation.organisations_for(actor),
        Accreditation=Accreditation,
    )


@blueprint.route("/accreditation/<int:organisation_id>/suspend", methods=["GET", "POST"])
@web.login_required
def suspend_organisation(organisation_id: int) -> Response | str | tuple[str, int]:
    actor = web.principal()
    unit = web.unit()
    org = unit.accreditation.organisation_for(actor, organisation_id)

    def act(reason: str) -> str:
        change = unit.accreditation.suspend(actor, org.id, reason)
        return f"{org.name} is suspended; {change.people} people lost access and were signed out"

    return _confirm(
        title=f"Suspend {org.name}",
        act=act,
        back=url_for("admin.accreditation"),
        warning=(
            "Everyone whose only position is here is suspended and signed out at once. "
            "Accrediting again reinstates them without new vetting while their clearance lasts."
        ),
        button="Suspend the organisation",
        rows=[("Organisation", org.name), ("Code", org.code)],
    )


@blueprint.route("/accreditation/<int:organisation_id>/accredit", methods=["GET", "POST"])
@web.login_required
def accredit_organisation(organisation_id: int) -> Response | str | tuple[str, int]:
    actor = web.principal()
    unit = web.unit()
    org = unit.accreditation.organisation_for(actor, organisation_id)

    def act(reason: str) -> str:
        change = unit.accreditation.accredit(actor, org.id, reason)
        return f"{org.name} is accredited; {change.people} people can sign in again"

    return _confirm(
        title=f"Accredit {org.name}",
        act=act,
        back=url_for("admin.accreditation"),
        warning="Its people can use the service while their own clearance and training last.",
        button="Accredit the organisation",
        rows=[
            ("Organisation", org.name),
            ("Code", org.code),
            ("Now", org.accreditation.value),
        ],
        destructive=False,
    )

