"""Activation forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovPasswordInput, GovSubmitInput, GovTextInput
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import InputRequired, Length


class CodeForm(FlaskForm):  # type: ignore[misc]
    username = StringField(
        "Username",
        description="It is on your letter",
        widget=GovTextInput(),
        validators=[InputRequired("Enter your username"), Length(max=64)],
    )
    code = StringField(
        "Activation code",
        description="For example, 7QK2M-9XHRT-…",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the activation code from your letter"), Length(max=64)],
    )
    submit = SubmitField("Continue", widget=GovSubmitInput())


class PasswordForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField(
        "Create a password",
        description=(
            "At least 12 characters. A few unrelated words make a strong password "
            "that is easy to remember."
        ),
        widget=GovPasswordInput(),
        validators=[InputRequired("Enter a password"), Length(max=1024)],
    )
    password_confirmation = PasswordField(
        "Confirm your password",
        widget=GovPasswordInput(),
        validators=[InputRequired("Confirm your password")],
    )
    submit = SubmitField("Continue", widget=GovSubmitInput())


class TokenForm(FlaskForm):  # type: ignore[misc]
    code = StringField(
        "Code from your authenticator app",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the code your app shows"), Length(max=12)],
    )
    submit = SubmitField("Continue", widget=GovSubmitInput())


class PinForm(FlaskForm):  # type: ignore[misc]
    pin = PasswordField(
        "Choose a 6-digit PIN",
        description="Not one digit repeated, and not a run such as 123456",
        widget=GovPasswordInput(),
        validators=[InputRequired("Enter a PIN")],
    )
    pin_confirmation = PasswordField(
        "Confirm your PIN",
        widget=GovPasswordInput(),
        validators=[InputRequired("Confirm your PIN")],
    )
    submit = SubmitField("Activate my account", widget=GovSubmitInput())
