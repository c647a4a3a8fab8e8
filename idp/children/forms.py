"""Forms of the children's pages. Every rule (a reason's detail, the criteria
of a shield, the length of a case) is checked in `directory.children`; these
fields bound the input and carry the domain's problems back to their fields."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxInput,
    GovRadioInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional, Regexp

from directory.children.models import InvolvementRole, SensitiveBasis
from directory.children.service import REASON_LABELS, ShieldCriteria
from idp.forms import DateInput

REASON_CHOICES = [("", "Select a reason")] + [(c.value, label) for c, label in
                                              REASON_LABELS.items()]
CRITERIA_LABELS = {
    ShieldCriteria.DOMESTIC_ABUSE: "Domestic abuse: the family is hiding from a violent person",
    ShieldCriteria.RISK_OF_SIGNIFICANT_HARM: "Other risk of significant harm to the child or carer",
    ShieldCriteria.COURT_ORDER: "A court order restricts disclosure",
    ShieldCriteria.WITNESS_PROTECTION: "Witness protection",
}

ROLE_LABELS = {
    InvolvementRole.EDUCATIONAL_SETTING: "The child's educational setting (school, nursery, "
                                         "college)",
    InvolvementRole.GP_PRACTICE: "The child's GP practice",
    InvolvementRole.SERVICE: "Another service working with the child",
}
BASIS_LABELS = {
    SensitiveBasis.CONSENT: "The child (or, where appropriate, a parent) consents",
    SensitiveBasis.HARM_SUSPECTED: "Significant harm to the child is suspected",
}


class ReasonFields(FlaskForm):  # type: ignore[misc]
    reason = SelectField("Why do you need this?", choices=REASON_CHOICES, widget=GovSelect())
    reason_detail = StringField(
        "Detail of your reason",
        description="For example, the referral or case reference. It is kept in the audit log.",
        widget=GovTextInput(), validators=[Length(max=300)],
    )


class SearchForm(ReasonFields):
    surname = StringField("Surname", description="Current or former surname",
                          widget=GovTextInput(), validators=[Length(max=100)])
    forename = StringField("First name (optional)", widget=GovTextInput(),
                           validators=[Optional(), Length(max=100)])
    date_of_birth = DateField("Date of birth (optional)", description="For example, 27 3 2016",
                              widget=DateInput(), format="%d %m %Y", validators=[Optional()])
    postcode_district = StringField("Postcode district (optional)",
                                    description="The first part of the postcode, for example NE1",
                                    widget=GovTextInput(), validators=[Optional(), Length(max=8)])
    sort = SelectField("Sort by", choices=[("name", "Name"), ("date_of_birth", "Date of birth")],
                       widget=GovSelect(), validators=[Optional()])
    page = HiddenField(default="1")
    submit = SubmitField("Search", widget=GovSubmitInput())


class ViewForm(ReasonFields):
    override = HiddenField(default="")
    confirm = BooleanField(
        "I understand that opening a shielded record is logged, that the local authority "
        "team is told at once and that they will investigate",
        widget=GovCheckboxInput(), validators=[Optional()],
    )
    submit = SubmitField("Open the record", widget=GovSubmitInput())


class ShieldForm(FlaskForm):  # type: ignore[misc]
    decision = RadioField("Decision", choices=[("shield", "Shield the record"),
                                               ("lift", "Lift the shield")],
                          widget=GovRadioInput(),
                          validators=[InputRequired("Select a decision")])
    criteria = RadioField("Criteria the decision meets",
                          choices=[(c.value, label) for c, label in CRITERIA_LABELS.items()],
                          widget=GovRadioInput(),
                          validators=[InputRequired("Select the criteria")])
    evidence_reference = StringField("Evidence reference",
                                     description="Where the evidence is held, for example a "
                                     "case or court reference",
                                     widget=GovTextInput(), validators=[Length(max=100)])
    review_on = DateField("Review date (optional)",
                          description="Six months from today if left empty",
                          widget=DateInput(), format="%d %m %Y", validators=[Optional()])
    submit = SubmitField("Record the decision", widget=GovSubmitInput())


class ContactForm(FlaskForm):  # type: ignore[misc]
    message = TextAreaField(
        "Your case for contact",
        description="Why you need to reach the practitioners around this child, and how to "
        "reach you. The local authority team decides and replies.",
        widget=GovTextArea(), validators=[Length(max=2000)],
    )
    submit = SubmitField("Send the request", widget=GovSubmitInput())


class DecideForm(FlaskForm):  # type: ignore[misc]
    message = TextAreaField("Message to the practitioner", widget=GovTextArea(),
                            validators=[Length(max=2000)])
    accept = SubmitField("Accept and broker contact", widget=GovSubmitInput())
    decline = SubmitField("Decline", widget=GovSubmitInput())


class InvolvementForm(FlaskForm):  # type: ignore[misc]
    service_id = StringField(
        "Service number",
        description="The service's number in the service directory: the end of the address "
                    "of its page, /services/NUMBER",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the service's number"),
                    Regexp(r"^[0-9]{1,9}$", message="Enter the service's number, for example "
                           "1234")],
    )
    role = RadioField("What the service is to the child",
                      choices=[(r.value, label) for r, label in ROLE_LABELS.items()],
                      default=InvolvementRole.SERVICE.value, widget=GovRadioInput(),
                      validators=[InputRequired("Select what the service is to the child")])
    starts_on = DateField("Start date (optional)", description="Today if left empty",
                          widget=DateInput(), format="%d %m %Y", validators=[Optional()])
    ends_on = DateField("End date (optional)", widget=DateInput(), format="%d %m %Y",
                        validators=[Optional()])
    lead_professional = BooleanField("A practitioner of this service is the lead professional",
                                     widget=GovCheckboxInput(), validators=[Optional()])
    assessment_held = BooleanField("This service holds an assessment of the child",
                                   widget=GovCheckboxInput(), validators=[Optional()])
    sensitive_basis = RadioField(
        "Grounds for recording a sensitive service",
        description="Only for sexual health, mental health or substance misuse services, "
                    "which are recorded only with the child's consent or where significant "
                    "harm is suspected. Only the local authority team reads them.",
        choices=[(b.value, label) for b, label in BASIS_LABELS.items()],
        widget=GovRadioInput(), validators=[Optional()],
    )
    submit = SubmitField("Record the service", widget=GovSubmitInput())
