"""Security-key forms. The credential is the JSON the browser's WebAuthn call
returned, posted by idp/static/webauthn.js in a hidden field."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovPasswordInput, GovSubmitInput, GovTextInput
from wtforms import HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import AnyOf, InputRequired, Length

from tokens.webauthn import MAX_CREDENTIAL_JSON, MAX_KEY_NAME

USE_YOUR_KEY = "Use your security key: insert or touch it when your browser asks"


class AddKeyForm(FlaskForm):  # type: ignore[misc]
    name = StringField(
        "Name for this key",
        description="So you can tell your keys apart, for example 'Blue key on my lanyard'",
        widget=GovTextInput(),
        validators=[InputRequired("Enter a name for this key"), Length(max=MAX_KEY_NAME)],
    )
    credential = HiddenField(
        validators=[InputRequired(USE_YOUR_KEY), Length(max=MAX_CREDENTIAL_JSON)]
    )
    submit = SubmitField("Register security key", widget=GovSubmitInput())


class KeyStepForm(FlaskForm):  # type: ignore[misc]
    """A security key's assertion and the PIN: the sign-in step and the step-up."""

    credential = HiddenField(
        validators=[InputRequired(USE_YOUR_KEY), Length(max=MAX_CREDENTIAL_JSON)]
    )
    pin = PasswordField(
        "PIN",
        widget=GovPasswordInput(),
        validators=[InputRequired("Enter your PIN"), Length(max=12)],
    )
    submit = SubmitField("Continue", widget=GovSubmitInput())


class RemoveKeyForm(FlaskForm):  # type: ignore[misc]
    """Posted only from the confirmation page, which sets `confirm`."""

    confirm = HiddenField(validators=[InputRequired(), AnyOf(["yes"])])
    submit = SubmitField("Remove this key", widget=GovSubmitInput())
