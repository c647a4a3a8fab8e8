"""Forms of the vetting journey: sponsoring, recording checks, deciding."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovRadioInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import DateField, RadioField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from directory.models import Role
from idp.forms import DateInput, optional_reason
from vetting.models import CertificateOutcome, Confidence, Decision, IdentityMethod

ROLE_CHOICES = [(r.value, r.value.replace("_", " ").capitalize()) for r in Role]


def _date(label: str, message: str) -> DateField:
    return DateField(
        label, widget=DateInput(), format="%d %m %Y", validators=[InputRequired(message)]
    )


class SponsorForm(FlaskForm):  # type: ignore[misc]
    organisation_id = SelectField("Organisation", coerce=int, widget=GovSelect())
    given_name = StringField(
        "First name",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the first name"), Length(max=100)],
    )
    family_name = StringField(
        "Last name",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the last name"), Length(max=100)],
    )
    work_email = StringField(
        "Work email address",
        widget=GovTextInput(),
        validators=[InputRequired("Enter a work email address"), Length(max=254)],
    )
    work_phone = StringField(
        "Work phone number (optional)",
        widget=GovTextInput(),
        validators=[Optional(), Length(max=40)],
    )
    role = RadioField(
        "What do they need to do?",
        choices=ROLE_CHOICES,
        widget=GovRadioInput(),
        validators=[InputRequired("Choose a role")],
    )
    reason = optional_reason()
    submit = SubmitField("Submit application", widget=GovSubmitInput())


class ConfirmProposalForm(FlaskForm):  # type: ignore[misc]
    """A sponsor's word for a colleague found in the organisation's own directory.
    Not prefixed: it is the detail page's only form with a reason."""

    reason = optional_reason()
    submit = SubmitField("Confirm and send for vetting", widget=GovSubmitInput())


class IdentityForm(FlaskForm):  # type: ignore[misc]
    confidence = SelectField(
        "GPG45 level of confidence reached",
        widget=GovSelect(),
        choices=[(c.value, c.value.replace("_", " ")) for c in Confidence],
    )
    method = SelectField(
        "How the identity was checked",
        widget=GovSelect(),
        choices=[(m.value, m.value.replace("_", " ")) for m in IdentityMethod],
    )
    checked_on = _date("Date of the check", "Enter the date of the check")
    evidence_reference = StringField(
        "Evidence reference",
        description="Your register's reference; never scan or copy documents",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the evidence reference"), Length(max=100)],
    )
    home_postcode = StringField(
        "Home postcode (optional)",
        description="As shown on the evidence of address. Kept only as a digest, to warn "
                    "the local authority team if this person opens a child's record at "
                    "their own address",
        widget=GovTextInput(),
        validators=[Length(max=10)],
    )
    submit = SubmitField("Record identity check", widget=GovSubmitInput())


class CertificateForm(FlaskForm):  # type: ignore[misc]
    certificate_number = StringField(
        "DBS certificate number",
        description="12 digits",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the certificate number"), Length(max=20)],
    )
    issued_on = _date("Issue date", "Enter the issue date")
    outcome = SelectField(
        "Outcome",
        widget=GovSelect(),
        choices=[(o.value, o.value.replace("_", " ")) for o in CertificateOutcome],
    )
    submit = SubmitField("Record criminal-record check", widget=GovSubmitInput())


class TrainingForm(FlaskForm):  # type: ignore[misc]
    completed_on = _date("Training completed on", "Enter the date the training was completed")
    submit = SubmitField("Record training", widget=GovSubmitInput())


class AgreementForm(FlaskForm):  # type: ignore[misc]
    signed_on = _date("User agreement signed on", "Enter the date the agreement was signed")
    submit = SubmitField("Record agreement", widget=GovSubmitInput())


class RenewalForm(FlaskForm):  # type: ignore[misc]
    username = StringField(
        "Username", widget=GovTextInput(), validators=[InputRequired("Enter the username")]
    )
    certificate_number = StringField(
        "New DBS certificate number",
        description="12 digits",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the certificate number"), Length(max=20)],
    )
    issued_on = _date("Issue date", "Enter the issue date")
    outcome = SelectField(
        "Outcome",
        widget=GovSelect(),
        choices=[(o.value, o.value.replace("_", " ")) for o in CertificateOutcome],
    )
    submit = SubmitField("Record certificate", widget=GovSubmitInput())


class DecisionForm(FlaskForm):  # type: ignore[misc]
    decision = RadioField(
        "Decision",
        choices=[(d.value, d.value.capitalize()) for d in Decision],
        widget=GovRadioInput(),
        validators=[InputRequired("Choose a decision")],
    )
    reason = TextAreaField(
        "Reason",
        widget=GovTextArea(),
        validators=[InputRequired("Give the reason for the decision"), Length(max=500)],
    )
    submit = SubmitField("Record decision", widget=GovSubmitInput())
