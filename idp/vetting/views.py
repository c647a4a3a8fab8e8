"""Applications: sponsors submit, officers record checks, a second officer decides."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from core.errors import InvalidInput
from directory.models import Role
from idp import web
from idp.forms import attach_problems
from idp.vetting.forms import (
    AgreementForm,
    CertificateForm,
    ConfirmProposalForm,
    DecisionForm,
    IdentityForm,
    RenewalForm,
    SponsorForm,
    TrainingForm,
)
from vetting.models import (
    ApplicationState,
    CertificateOutcome,
    Confidence,
    Decision,
    IdentityMethod,
)

blueprint = Blueprint("vetting", __name__, url_prefix="/applications")


@blueprint.get("")
@web.login_required
def applications() -> str:
    actor = web.principal()
    listed = web.unit().vetting.visible_applications(actor)
    return render_template(
        "vetting/list.html",
        title="Applications",
        applications=listed,
        can_sponsor=bool(
            actor.organisations_with(Role.ORGANISATION_ADMIN)
            | actor.organisations_with(Role.LOCAL_AUTHORITY_TEAM)
        ),
    )


@blueprint.route("/new", methods=["GET", "POST"])
@web.login_required
def new() -> Response | str:
    actor = web.principal()
    unit = web.unit()
    own = unit.vetting.sponsoring_organisations(actor)
    form = SponsorForm()
    form.organisation_id.choices = [(o.id, o.name) for o in own]
    if form.validate_on_submit():
        try:
            app = unit.vetting.sponsor(
                actor,
                organisation_id=form.organisation_id.data,
                given_name=form.given_name.data or "",
                family_name=form.family_name.data or "",
                work_email=form.work_email.data or "",
                work_phone=form.work_phone.data,
                role=Role(form.role.data),
                reason=form.reason.data,
            )
            unit.commit()
            flash(f"Application {app.id} submitted for {app.applicant_name}")
            return redirect(url_for("vetting.detail", application_id=app.id))
        except InvalidInput as error:
            attach_problems(form, error)
    return render_template(
        "vetting/new.html", title="Sponsor an application", form=form, has_organisation=bool(own)
    )


def _forms(**bound: Any) -> dict[str, Any]:
    forms = {
        "identity_form": IdentityForm(prefix="identity", formdata=None),
        "certificate_form": CertificateForm(prefix="certificate", formdata=None),
        "training_form": TrainingForm(prefix="training", formdata=None),
        "agreement_form": AgreementForm(prefix="agreement", formdata=None),
        "decision_form": DecisionForm(prefix="decision", formdata=None),
        "confirm_form": ConfirmProposalForm(formdata=None),
    }
    forms.update(bound)
    return forms


def _detail(application_id: int, status: int = 200, **bound: Any) -> tuple[str, int]:
    actor = web.principal()
    vetting = web.unit().vetting
    app = vetting.application_for(actor, application_id)
    errored = next((form for form in bound.values() if form.errors), None)
    return render_template(
        "vetting/detail.html",
        title=f"Application {app.id}",
        application=app,
        is_officer=vetting.is_officer_for(actor, app),
        recorded_checks=actor.person_id in app.recorders(),
        sponsored=actor.person_id == app.sponsor_id,
        may_confirm=app.state is ApplicationState.PROPOSED
        and actor.has_role(Role.ORGANISATION_ADMIN, app.organisation_id),
        checks_complete=all(
            (app.identity_check, app.certificate, app.training, app.agreement)
        ),
        errored=errored,
        **_forms(**bound),
    ), status


@blueprint.route("/renewals", methods=["GET", "POST"])
@web.login_required
def renewal() -> Response | str:
    """A vetting officer records a new certificate, which renews clearance."""
    actor = web.principal()
    form = RenewalForm()
    if form.validate_on_submit():
        vetting = web.unit().vetting
        try:
            person = vetting.person_to_renew(actor, form.username.data or "")
            vetting.renew_certificate(
                actor,
                person.id,
                certificate_number=form.certificate_number.data or "",
                issued_on=form.issued_on.data,
                outcome=CertificateOutcome(form.outcome.data),
            )
            web.unit().commit()
            until = person.clearance_expires_on
            flash(
                f"Certificate recorded for {person.display_name}; clearance now runs to "
                f"{until:%d %B %Y} and their account is {person.status.value.replace('_', ' ')}"
            )
            return redirect(url_for("vetting.renewal"))
        except InvalidInput as error:
            attach_problems(form, error)
    return render_template(
        "vetting/renewal.html",
        title="Record a renewed certificate",
        form=form,
        is_officer=bool(actor.organisations_with(Role.VETTING_OFFICER)),
    )


@blueprint.get("/<int:application_id>")
@web.login_required
def detail(application_id: int) -> tuple[str, int]:
    return _detail(application_id)


def _record(application_id: int, name: str, form: Any, action: Any) -> Response | tuple[str, int]:
    web.unit().vetting.application_for(web.principal(), application_id)
    if form.validate_on_submit():
        try:
            message = action(form)
            web.unit().commit()
            flash(message)
            return redirect(url_for("vetting.detail", application_id=application_id))
        except InvalidInput as error:
            attach_problems(form, error)
    return _detail(application_id, 400, **{name: form})


@blueprint.post("/<int:application_id>/confirm")
@web.login_required
def confirm(application_id: int) -> Response | tuple[str, int]:
    """The sponsor vouches for a colleague found in the organisation's own
    directory: the proposal becomes an application, with them as sponsor. A
    blank reason from a platform admin is named on the page, and nothing changes."""
    def act(form: ConfirmProposalForm) -> str:
        app = web.unit().staff_import.confirm(web.principal(), application_id,
                                              form.reason.data)
        return f"Application {app.id} for {app.applicant_name} is submitted for vetting"

    return _record(application_id, "confirm_form", ConfirmProposalForm(), act)


@blueprint.post("/<int:application_id>/identity")
@web.login_required
def identity(application_id: int) -> Response | tuple[str, int]:
    def act(form: IdentityForm) -> str:
        web.unit().vetting.record_identity_check(
            web.principal(),
            application_id,
            confidence=Confidence(form.confidence.data),
            method=IdentityMethod(form.method.data),
            checked_on=form.checked_on.data,
            evidence_reference=form.evidence_reference.data or "",
            home_postcode=form.home_postcode.data or "",
        )
        return "Identity check recorded"

    return _record(application_id, "identity_form", IdentityForm(prefix="identity"), act)


@blueprint.post("/<int:application_id>/certificate")
@web.login_required
def certificate(application_id: int) -> Response | tuple[str, int]:
    def act(form: CertificateForm) -> str:
        web.unit().vetting.record_certificate(
            web.principal(),
            application_id,
            certificate_number=form.certificate_number.data or "",
            issued_on=form.issued_on.data,
            outcome=CertificateOutcome(form.outcome.data),
        )
        return "Criminal-record check recorded"

    return _record(application_id, "certificate_form", CertificateForm(prefix="certificate"), act)


@blueprint.post("/<int:application_id>/training")
@web.login_required
def training(application_id: int) -> Response | tuple[str, int]:
    def act(form: TrainingForm) -> str:
        web.unit().vetting.record_training(
            web.principal(), application_id, completed_on=form.completed_on.data
        )
        return "Training recorded"

    return _record(application_id, "training_form", TrainingForm(prefix="training"), act)


@blueprint.post("/<int:application_id>/agreement")
@web.login_required
def agreement(application_id: int) -> Response | tuple[str, int]:
    def act(form: AgreementForm) -> str:
        web.unit().vetting.record_agreement(
            web.principal(), application_id, signed_on=form.signed_on.data
        )
        return "User agreement recorded"

    return _record(application_id, "agreement_form", AgreementForm(prefix="agreement"), act)


@blueprint.post("/<int:application_id>/decision")
@web.login_required
def decision(application_id: int) -> Response | tuple[str, int]:
    def act(form: DecisionForm) -> str:
        enrolled = web.unit().vetting.decide(
            web.principal(),
            application_id,
            decision=Decision(form.decision.data),
            reason=form.reason.data or "",
        )
        if enrolled is None:
            return "Application refused"
        return (
            f"Cleared. {enrolled.person.display_name} is enrolled as {enrolled.person.username}; "
            f"their activation letter (number {enrolled.letter_id}) is in the outbox"
        )

    return _record(application_id, "decision_form", DecisionForm(prefix="decision"), act)
