"""Forms of the token pages. Codes are checked by the inventory service; these
only bound the input, so a form error says no more than the service would."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxesInput,
    GovPasswordInput,
    GovRadioInput,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import (
    PasswordField,
    RadioField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional


def _reason() -> TextAreaField:
    """Optional here; a platform admin must give one, which the service decides."""
    return TextAreaField(
        "Why?",
        description="It goes on the audit trail. Platform admins must say why.",
        widget=GovTextArea(),
        validators=[Optional(), Length(max=300)],
    )


class AssignForm(FlaskForm):  # type: ignore[misc]
    username = StringField(
        "Username of the person",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the username of the person"), Length(max=64)],
    )
    reason = _reason()
    submit = SubmitField("Assign token", widget=GovSubmitInput())


class CodeForm(FlaskForm):  # type: ignore[misc]
    code = StringField(
        "Token code",
        description="The code the token shows now",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the code the token shows"), Length(max=12)],
    )
    submit = SubmitField("Activate token", widget=GovSubmitInput())


class ResyncForm(FlaskForm):  # type: ignore[misc]
    first_code = StringField(
        "First code",
        description="Press the button (or wait for a new code) and enter what the token shows",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the first code"), Length(max=12)],
    )
    second_code = StringField(
        "Next code",
        description="Then the very next code it shows",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the next code"), Length(max=12)],
    )
    reason = _reason()
    submit = SubmitField("Resynchronise", widget=GovSubmitInput())


class LostForm(FlaskForm):  # type: ignore[misc]
    what = RadioField(
        "What happened to the token?",
        choices=[
            ("lost", "It is lost"),
            ("stolen", "It was stolen, or someone else may have it"),
        ],
        widget=GovRadioInput(),
        validators=[InputRequired("Select whether the token was lost or stolen")],
    )
    reason = _reason()
    submit = SubmitField("Report and stop the token now", widget=GovSubmitInput())


class ReturnedForm(FlaskForm):  # type: ignore[misc]
    reason = _reason()


class ReplacementForm(FlaskForm):  # type: ignore[misc]
    username = StringField(
        "Username",
        widget=GovTextInput(),
        validators=[InputRequired("Enter your username"), Length(max=64)],
    )
    password = PasswordField(
        "Password",
        widget=GovPasswordInput(),
        validators=[InputRequired("Enter your password"), Length(max=1024)],
    )
    pin = PasswordField(
        "PIN",
        widget=GovPasswordInput(),
        validators=[InputRequired("Enter your PIN"), Length(max=12)],
    )
    code = StringField(
        "Code from your new token",
        description="Press the button on the new token and enter the code it shows",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the code your new token shows"), Length(max=12)],
    )
    submit = SubmitField("Activate new token", widget=GovSubmitInput())


class PolicyForm(FlaskForm):  # type: ignore[misc]
    allowed = SelectMultipleField(
        "Which authenticators may your people sign in with?",
        choices=[
            ("soft_token", "Authenticator app (soft token)"),
            ("hardware_token", "Hardware token"),
            ("security_key", "Security key (phishing-resistant, level 3)"),
        ],
        widget=GovCheckboxesInput(),
        validators=[InputRequired("Choose at least one authenticator")],
    )
    attestation = RadioField(
        "Security keys",
        choices=[
            ("none", "Accept any security key"),
            ("direct", "Only keys that prove their make and model (attestation)"),
        ],
        widget=GovRadioInput(),
        validators=[InputRequired("Choose which security keys to accept")],
    )
    user_verification = RadioField(
        "Should a security key check who is using it (its own PIN or fingerprint)?",
        choices=[
            ("required", "Required"),
            ("preferred", "Preferred"),
            ("discouraged", "Not asked for"),
        ],
        widget=GovRadioInput(),
        validators=[InputRequired("Choose whether keys must verify their user")],
    )
    reason = _reason()
    submit = SubmitField("Save the policy", widget=GovSubmitInput())
