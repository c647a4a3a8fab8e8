"""Service directory pages: search, a service with its contacts and
practitioners, and the organisation admins' create, edit and close pages.

Who may search and who may change which service is decided in
`directory.services`; these views turn its answers and errors into pages.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from core.errors import FieldProblem, InvalidInput, NotAllowed
from directory.services import SearchQuery, as_details
from directory.services_models import ServiceKind
from idp import web
from idp.forms import attach_problems
from idp.services.forms import KIND_LABELS, PlaceForm, ServiceForm

blueprint = Blueprint("services", __name__, url_prefix="/services")


def _query() -> SearchQuery:
    """The search as the GET form sent it; unknown values are ignored, not errors."""
    kind_arg = request.args.get("kind", "")
    kinds = {k.value for k in ServiceKind}
    return SearchQuery(
        name=request.args.get("q", "")[:200],
        prefix=request.args.get("match") == "prefix",
        kind=ServiceKind(kind_arg) if kind_arg in kinds else None,
        organisation_id=request.args.get("organisation", type=int),
        postcode_district=request.args.get("district", "")[:8],
        include_closed=request.args.get("closed") == "1",
        page=max(1, request.args.get("page", 1, type=int) or 1),
    )


@blueprint.get("")
@web.login_required
def search() -> str:
    unit = web.unit()
    actor = web.principal()
    query = _query()
    found = unit.services.search(actor, query)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template(
        "services/search.html",
        title="Find a service",
        query=query,
        page=found,
        args=args,
        kinds=KIND_LABELS,
        organisations=unit.directory.organisations(),
        can_create=bool(unit.services.maintainable_organisations(actor)),
    )


def _detail(service_id: int, place_form: PlaceForm | None = None) -> str:
    unit = web.unit()
    actor = web.principal()
    entry = unit.services.entry(actor, service_id)
    return render_template(
        "services/detail.html",
        title=entry.service.name,
        entry=entry,
        kinds=KIND_LABELS,
        can_maintain=unit.services.may_maintain(actor, entry.service.organisation_id),
        place_form=place_form or PlaceForm(formdata=None),
        form=place_form,
    )


@blueprint.get("/<int:service_id>")
@web.login_required
def detail(service_id: int) -> str:
    return _detail(service_id)


@blueprint.post("/<int:service_id>/practitioners")
@web.login_required
def place(service_id: int) -> Response | tuple[str, int]:
    """An admin adds a practitioner of the running organisation to the service."""
    unit = web.unit()
    actor = web.principal()
    service = unit.services.service_for_maintenance(actor, service_id)
    form = PlaceForm()
    if form.validate_on_submit():
        person = unit.directory.person_by_username(form.username.data or "")
        try:
            if person is None:
                raise InvalidInput(FieldProblem(
                    "username", "there is no one with that username working in the "
                    "organisation that runs this service"))
            unit.services.place_person(actor, service.id, person.id)
            unit.commit()
            flash(f"{person.display_name} is now listed in {service.name}")
            return redirect(url_for("services.detail", service_id=service.id))
        except InvalidInput as error:
            attach_problems(form, error)
    return _detail(service_id, form), 400


@blueprint.post("/<int:service_id>/practitioners/<int:position_id>/remove")
@web.login_required
def unplace(service_id: int, position_id: int) -> Response:
    unit = web.unit()
    actor = web.principal()
    form = FlaskForm()
    if not form.validate_on_submit():
        abort(400)
    unit.services.remove_position(actor, service_id, position_id)
    unit.commit()
    flash("The practitioner is no longer listed in this service")
    return redirect(url_for("services.detail", service_id=service_id))


@blueprint.route("/new", methods=["GET", "POST"])
@web.login_required
def new() -> Response | tuple[str, int] | str:
    unit = web.unit()
    actor = web.principal()
    own = unit.services.maintainable_organisations(actor)
    if not own:
        raise NotAllowed()
    form = ServiceForm()
    form.organisation_id.choices = [(o.id, o.name) for o in own]
    if form.validate_on_submit():
        try:
            service = unit.services.create(actor, form.organisation_id.data, form.details())
            unit.commit()
            flash(f"{service.name} was added to the directory")
            return redirect(url_for("services.detail", service_id=service.id))
        except InvalidInput as error:
            attach_problems(form, error)
    status = 400 if request.method == "POST" else 200
    return render_template("services/form.html", title="Add a service", form=form,
                           service=None), status


@blueprint.route("/<int:service_id>/edit", methods=["GET", "POST"])
@web.login_required
def edit(service_id: int) -> Response | tuple[str, int] | str:
    unit = web.unit()
    actor = web.principal()
    service = unit.services.service_for_maintenance(actor, service_id)
    form = ServiceForm(data=as_details(service) if request.method == "GET" else None)
    del form.organisation_id
    if form.validate_on_submit():
        try:
            unit.services.update(actor, service.id, form.details())
            unit.commit()
            flash(f"{service.name} was updated")
            return redirect(url_for("services.detail", service_id=service.id))
        except InvalidInput as error:
            attach_problems(form, error)
    status = 400 if request.method == "POST" else 200
    return render_template("services/form.html", title=f"Change {service.name}", form=form,
                           service=service), status


@blueprint.route("/<int:service_id>/close", methods=["GET", "POST"])
@web.login_required
def close(service_id: int) -> Response | str:
    """A confirmation page first: closing takes the service out of search at once."""
    unit = web.unit()
    actor = web.principal()
    service = unit.services.service_for_maintenance(actor, service_id)
    if service.ends_on is not None and service.ends_on < unit.clock.today():
        abort(409)
    form = FlaskForm()
    if form.validate_on_submit():
        unit.services.close(actor, service.id)
        unit.commit()
        flash(f"{service.name} is closed. It stays in the directory's history.")
        return redirect(url_for("services.detail", service_id=service.id))
    return render_template("services/close.html", title=f"Close {service.name}",
                           service=service)
