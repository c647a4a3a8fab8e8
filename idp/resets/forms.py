"""Reset forms. Validation of the proof steps is minimal on purpose: a form error
must not say more than the uniform failure message would."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovPasswordInput,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import PasswordField, StringField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional


def _username() -> StringField:
    return StringField(
        "Username",
        description="It is on your letter",
        widget=GovTextInput(),
        validators=[InputRequired("Enter your username"), Length(max=64)],
    )


def _token_code() -> StringField:
    return StringField(
        "Token code",
        description="The 6-digit code your token or authenticator app shows now",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the code your token shows"), Length(max=12)],
    )


def _letter_code() -> StringField:
    return StringField(
        "Reset code",
        description="From the reset letter you were sent, for example 7QK2M-9XHRT-…",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the reset code from your letter"), Length(max=64)],
    )


class PinResetPasswordForm(FlaskForm):  # type: ignore[misc]
    username = _username()
    password = PasswordField(
        "Password",
        widget=GovPasswordInput(),
        validators=[InputRequired("Enter your password"), Length(max=1024)],
    )
    submit = SubmitField("Continue", widget=GovSubmitInput())


class PinResetCodeForm(FlaskForm):  # type: ignore[misc]
    code = _token_code()
    letter_code = _letter_code()
    submit = SubmitField("Continue", widget=GovSubmitInput())


class PasswordResetProofForm(FlaskForm):  # type: ignore[misc]
    username = _username()
    code = _token_code()
    pin = PasswordField(
        "PIN",
        widget=GovPasswordInput(),
        validators=[InputRequired("Enter your PIN"), Length(max=12)],
    )
    letter_code = _letter_code()
    submit = SubmitField("Continue", widget=GovSubmitInput())


class NewPinForm(FlaskForm):  # type: ignore[misc]
    pin = PasswordField(
        "Choose a new 6-digit PIN",
        description="Not one digit repeated, and not a run such as 123456",
        widget=GovPasswordInput(),
        validators=[InputRequired("Enter a PIN"), Length(max=12)],
    )
    pin_confirmation = PasswordField(
        "Confirm your new PIN",
        widget=GovPasswordInput(),
        validators=[InputRequired("Confirm your PIN"), Length(max=12)],
    )
    submit = SubmitField("Set my new PIN", widget=GovSubmitInput())


class NewPasswordForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField(
        "Create a new password",
        description=(
            "At least 12 characters. A few unrelated words make a strong password "
            "that is easy to remember."
        ),
        widget=GovPasswordInput(),
        validators=[InputRequired("Enter a password"), Length(max=1024)],
    )
    password_confirmation = PasswordField(
        "Confirm your new password",
        widget=GovPasswordInput(),
        validators=[InputRequired("Confirm your password"), Length(max=1024)],
    )
    submit = SubmitField("Set my new password", widget=GovSubmitInput())


class ResetRequestForm(FlaskForm):  # type: ignore[misc]
    """An administrator's request for a reset letter. The reason is optional for
    organisation admins and required of platform admins, which the service
    decides (`directory.accreditation.reason_from`), so the page and the API agree."""

    reason = TextAreaField(
        "Why?",
        description="It goes on the audit trail. Platform admins must say why.",
        widget=GovTextArea(),
        validators=[Optional(), Length(max=300)],
    )
