"""Children's pages: search with a reason, a record (restricted when
shielded, with the override after a warning), recording a service around a
child, shielding decisions and reviews, brokered contact, the team's alerts
and audit review.

Every rule is in `directory.children`; these views only carry a reason and
query values to it and show what it returns. Searches and views are POSTs, so
that reasons and names never sit in URLs, browser history or access logs.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from core.errors import InvalidInput, NotFound
from directory.children.errors import UnknownChild
from directory.children.models import InvolvementRole, SensitiveBasis
from directory.children.service import REASON_LABELS, ChildQuery, Reason
from idp import web
from idp.children.forms import (
    CRITERIA_LABELS,
    ContactForm,
    DecideForm,
    InvolvementForm,
    SearchForm,
    ShieldForm,
    ViewForm,
)
from idp.forms import attach_problems

blueprint = Blueprint("children", __name__, url_prefix="/children")


def _reason(form: SearchForm | ViewForm) -> Reason:
    return Reason(form.reason.data or "", form.reason_detail.data or "")


def _remember(reason: Reason) -> None:
    """The reason of the last search, offered again for the records it found."""
    session["child_reason"] = [reason.code, reason.detail]


def _remembered(form: ViewForm) -> None:
    code, detail = session.get("child_reason", ["", ""])
    form.reason.data, form.reason_detail.data = code, detail


@blueprint.route("", methods=["GET", "POST"])
@web.login_required
def search() -> tuple[str, int] | str:
    unit = web.unit()
    form = SearchForm()
    found = None
    if request.method == "POST":
        if form.validate_on_submit():
            query = ChildQuery(
                surname=form.surname.data or "", forename=form.forename.data or "",
                date_of_birth=form.date_of_birth.data,
                postcode_district=form.postcode_district.data or "",
                sort=form.sort.data or "name",
                page=max(1, int(form.page.data) if (form.page.data or "").isdigit() else 1),
            )
            try:
                found = unit.children.search(web.principal(), _reason(form), query)
                _remember(_reason(form))
            except InvalidInput as error:
                attach_problems(form, error)
        if found is None:
            return render_template("children/search.html", title="Find a child", form=form,
                                   found=None), 400
    return render_template("children/search.html", title="Find a child", form=form,
                           found=found)


@blueprint.route("/<public_id>", methods=["GET", "POST"])
@web.login_required
def record(public_id: str) -> tuple[str, int] | str:
    """GET asks for the reason; POST (with it) shows the record."""
    unit = web.unit()
    form = ViewForm()
    if request.method == "GET":
        _remembered(form)
        return render_template("children/reason.html", title="Why do you need this record?",
                               form=form, public_id=public_id)
    if not form.validate_on_submit():
        return render_template("children/reason.html", title="Why do you need this record?",
                               form=form, public_id=public_id), 400
    override = form.override.data == "1"
    if override and not form.confirm.data:
        form.confirm.errors = ["Confirm that you understand the override is logged"]
        return render_template("children/override.html", title="Open a shielded record",
                               form=form, public_id=public_id), 400
    try:
        view = unit.children.view(web.principal(), _reason(form), public_id, override=override)
    except InvalidInput as error:
        attach_problems(form, error)
        return render_template("children/reason.html", title="Why do you need this record?",
                               form=form, public_id=public_id), 400
    _remember(_reason(form))
    return render_template("children/record.html", title=f"{view.forename} {view.surname}",
                           view=view, form=form, reasons=REASON_LABELS)


@blueprint.post("/<public_id>/override")
@web.login_required
def override_warning(public_id: str) -> str:
    """The warning before the override: the reason carries over to the confirm."""
    form = ViewForm()
    if not form.validate_on_submit():
        abort(400)
    form.override.data = "1"
    return render_template("children/override.html", title="Open a shielded record", form=form,
                           public_id=public_id)


@blueprint.route("/<public_id>/services", methods=["GET", "POST"])
@web.login_required
def involvement(public_id: str) -> Response | tuple[str, int] | str:
    """A practitioner of a service, or the responsible team, records that the
    service works with the child. The page shows nothing of the record: who
    may record what (and a sensitive service's grounds) is the service's rule."""
    unit = web.unit()
    form = InvolvementForm()
    if form.validate_on_submit():
        basis = form.sensitive_basis.data or None
        try:
            unit.children.record_involvement(
                web.principal(), public_id, int(form.service_id.data or "0"),
                role=InvolvementRole(form.role.data), starts_on=form.starts_on.data,
                ends_on=form.ends_on.data, lead_professional=bool(form.lead_professional.data),
                assessment_held=bool(form.assessment_held.data),
                sensitive_basis=SensitiveBasis(basis) if basis else None,
            )
            unit.commit()
            flash("The service is recorded on the child's record")
            return redirect(url_for("children.involvement", public_id=public_id))
        except InvalidInput as error:
            attach_problems(form, error)
        except NotFound as error:
            if isinstance(error, UnknownChild):
                raise
            form.service_id.errors = ["There is no service with that number"]
    status = 400 if request.method == "POST" else 200
    return render_template("children/involvement.html", title="Record a service", form=form,
                           public_id=public_id), status


@blueprint.route("/<public_id>/shield", methods=["GET", "POST"])
@web.login_required
def shield(public_id: str) -> Response | tuple[str, int] | str:
    unit = web.unit()
    actor = web.principal()
    child = unit.children.team_child(actor, public_id)
    form = ShieldForm()
    if form.validate_on_submit():
        try:
            unit.children.decide_shield(
                actor, public_id, criteria=form.criteria.data or "",
                evidence_reference=form.evidence_reference.data or "",
                shield=form.decision.data == "shield", review_on=form.review_on.data,
            )
            unit.commit()
            flash("The decision is recorded")
            return redirect(url_for("children.shield", public_id=public_id))
        except InvalidInput as error:
            attach_problems(form, error)
    status = 400 if request.method == "POST" else 200
    return render_template("children/shield.html", title="Shielding decisions", child=child,
                           form=form, decisions=unit.children.shield_decisions(actor, public_id),
                           criteria=CRITERIA_LABELS), status


@blueprint.get("/shield-reviews")
@web.login_required
def reviews() -> str:
    due = web.unit().children.shield_reviews_due(web.principal())
    return render_template("children/reviews.html", title="Shields due for review", due=due)


@blueprint.route("/<public_id>/contact", methods=["GET", "POST"])
@web.login_required
def contact(public_id: str) -> Response | tuple[str, int] | str:
    unit = web.unit()
    form = ContactForm()
    if form.validate_on_submit():
        try:
            unit.children.request_contact(web.principal(), public_id, form.message.data or "")
            unit.commit()
            flash("Your request was sent to the local authority team")
            return redirect(url_for("children.my_requests"))
        except InvalidInput as error:
            attach_problems(form, error)
    status = 400 if request.method == "POST" else 200
    return render_template("children/contact.html", title="Ask for contact", form=form,
                           public_id=public_id), status


@blueprint.get("/my-requests")
@web.login_required
def my_requests() -> str:
    mine = web.unit().children.my_contact_requests(web.principal())
    return render_template("children/my_requests.html", title="Your contact requests",
                           requests=mine)


@blueprint.get("/contact-requests")
@web.login_required
def requests_page() -> str:
    pending = web.unit().children.contact_requests(web.principal())
    return render_template("children/requests.html", title="Contact requests",
                           requests=pending, form=DecideForm(formdata=None))


@blueprint.post("/contact-requests/<int:request_id>")
@web.login_required
def decide(request_id: int) -> Response | tuple[str, int]:
    unit = web.unit()
    form = DecideForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        unit.children.decide_contact(web.principal(), request_id, accept=bool(form.accept.data),
                                     message=form.message.data or "")
    except InvalidInput as error:
        flash(error.problems[0].message)
        return redirect(url_for("children.requests_page"))
    unit.commit()
    flash("The practitioner has your answer")
    return redirect(url_for("children.requests_page"))


@blueprint.get("/alerts")
@web.login_required
def alerts() -> str:
    found = web.unit().children.alerts(web.principal())
    return render_template("children/alerts.html", title="Alerts", alerts=found)


@blueprint.post("/alerts/<int:alert_id>/close")
@web.login_required
def close_alert(alert_id: int) -> Response:
    if not FlaskForm().validate_on_submit():
        abort(400)
    web.unit().children.close_alert(web.principal(), alert_id)
    web.unit().commit()
    flash("The alert is closed")
    return redirect(url_for("children.alerts"))


@blueprint.get("/audit")
@web.login_required
def audit() -> str:
    unit = web.unit()
    entries = unit.children.audit_review(web.principal())
    unit.commit()
    return render_template("children/audit.html", title="Audit trail", entries=entries)


@blueprint.get("/conflicts")
@web.login_required
def conflicts() -> str:
    unit = web.unit()
    queue = unit.children.conflicts(web.principal())
    names = {o.id: o.name for o in unit.directory.organisations()}
    return render_template("children/conflicts.html", title="Data conflicts", conflicts=queue,
                           names=names)


@blueprint.post("/conflicts/<int:conflict_id>")
@web.login_required
def resolve(conflict_id: int) -> Response:
    unit = web.unit()
    if not FlaskForm().validate_on_submit():
        abort(400)
    accept = request.form.get("resolution") == "accept"
    unit.children.resolve_conflict(web.principal(), conflict_id, accept=accept,
                                   loader=unit.child_loader)
    unit.commit()
    flash("The record was updated" if accept else "The supplied data was set aside")
    return redirect(url_for("children.conflicts"))
