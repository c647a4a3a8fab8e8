"""Sign-in forms. Validation is minimal on purpose: a form error must not say
more than the uniform failure message would."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovPasswordInput, GovSubmitInput, GovTextInput
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import InputRequired, Length


class PasswordStepForm(FlaskForm):  # type: ignore[misc]
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
    submit = SubmitField("Continue", widget=GovSubmitInput())


class TokenStepForm(FlaskForm):  # type: ignore[misc]
    code = StringField(
        "Token code",
        description="The 6-digit code your token or authenticator app shows now",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the code your token shows"), Length(max=12)],
    )
    pin = PasswordField(
        "PIN",
        widget=GovPasswordInput(),
        validators=[InputRequired("Enter your PIN"), Length(max=12)],
    )
    submit = SubmitField("Sign in", widget=GovSubmitInput())
