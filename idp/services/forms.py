"""The form of the service pages. The service's rules (postcode format, phone,
email, dates) are checked by `directory.services`; these fields only bound the
input and carry the domain's problems back to the fields they name."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import DateField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from directory.services_models import ServiceKind
from idp.forms import DateInput

KIND_LABELS = {
    ServiceKind.GP_PRACTICE: "GP practice",
    ServiceKind.SCHOOL: "School",
    ServiceKind.EARLY_YEARS_SETTING: "Early years setting",
    ServiceKind.FURTHER_EDUCATION: "Further education",
    ServiceKind.HEALTH_VISITING_TEAM: "Health-visiting team",
    ServiceKind.SCHOOL_NURSING_TEAM: "School-nursing team",
    ServiceKind.CHILDRENS_SOCIAL_CARE: "Children's social care team",
    ServiceKind.YOUTH_OFFENDING_TEAM: "Youth offending team",
    ServiceKind.EDUCATION_WELFARE: "Education welfare",
    ServiceKind.CONNEXIONS: "Connexions",
    ServiceKind.SEXUAL_HEALTH: "Sexual health service",
    ServiceKind.MENTAL_HEALTH: "Mental health service",
    ServiceKind.SUBSTANCE_MISUSE: "Substance misuse service",
    ServiceKind.OTHER: "Other",
}
KIND_CHOICES = [(k.value, label) for k, label in KIND_LABELS.items()]
# The fields the domain validates, by the names it reports problems under.
DETAIL_FIELDS = ("name", "kind", "address_line1", "address_line2", "town", "postcode", "phone",
                 "secure_email", "opening_hours", "starts_on", "ends_on")


class ServiceForm(FlaskForm):  # type: ignore[misc]
    organisation_id = SelectField("Organisation that runs it", coerce=int, widget=GovSelect())
    name = StringField("Name", widget=GovTextInput(),
                       validators=[InputRequired("Enter the name of the service"),
                                   Length(max=200)])
    kind = SelectField("Kind of service", choices=KIND_CHOICES, widget=GovSelect(),
                       validators=[InputRequired("Select the kind of service")])
    address_line1 = StringField("Address line 1", widget=GovTextInput(),
                                validators=[InputRequired("Enter the first line of the address"),
                                            Length(max=200)])
    address_line2 = StringField("Address line 2 (optional)", widget=GovTextInput(),
                                validators=[Optional(), Length(max=200)])
    town = StringField("Town or city", widget=GovTextInput(),
                       validators=[InputRequired("Enter the town or city"), Length(max=100)])
    postcode = StringField("Postcode", widget=GovTextInput(),
                           validators=[InputRequired("Enter a postcode"), Length(max=10)])
    phone = StringField("Phone", widget=GovTextInput(),
                        validators=[InputRequired("Enter a phone number"), Length(max=40)])
    secure_email = StringField("Secure email (optional)", widget=GovTextInput(),
                               validators=[Optional(), Length(max=254)])
    opening_hours = TextAreaField("Opening hours (optional)", widget=GovTextArea(),
                                  validators=[Optional(), Length(max=500)])
    starts_on = DateField("Start date", description="For example, 27 3 2024",
                          widget=DateInput(), format="%d %m %Y",
                          validators=[InputRequired("Enter the start date")])
    ends_on = DateField("End date (optional)", widget=DateInput(), format="%d %m %Y",
                        validators=[Optional()])
    submit = SubmitField("Save service", widget=GovSubmitInput())

    def details(self) -> dict[str, object]:
        return {name: getattr(self, name).data for name in DETAIL_FIELDS}



class PlaceForm(FlaskForm):  # type: ignore[misc]
    username = StringField("Username of the practitioner", widget=GovTextInput(),
                           validators=[InputRequired("Enter the username of the practitioner"),
                                       Length(max=64)])
    submit = SubmitField("Add to this service", widget=GovSubmitInput())
