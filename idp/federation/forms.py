"""Federation forms: which organisation's provider to sign in or link with, and
the console's forms for an organisation's own provider."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovPasswordInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import (
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length

from idp.forms import optional_reason


class OrganisationChoiceForm(FlaskForm):  # type: ignore[misc]
    organisation = SelectField(
        "Your organisation",
        description="Only organisations that let their staff sign in with their own account",
        coerce=int,
        widget=GovSelect(),
        validators=[InputRequired("Choose your organisation")],
    )
    submit = SubmitField("Continue to your organisation", widget=GovSubmitInput())


class StartLinkForm(FlaskForm):  # type: ignore[misc]
    organisation = HiddenField(validators=[InputRequired()])


class RemoveLinkForm(FlaskForm):  # type: ignore[misc]
    """A button; the link's id is in the path."""


def _accepted_acr(label: str) -> TextAreaField:
    return TextAreaField(
        label,
        description="Upstream acr values that meet level 2: people who sign in with one "
        "are not asked for their token and PIN. Leave empty to always ask.",
        widget=GovTextArea(),
        validators=[Length(max=2_000)],
    )


class ProviderForm(FlaskForm):  # type: ignore[misc]
    """An organisation's provider. The secret and the key are never put back
    into the page: a password input does not echo, and the view empties the key
    box before showing the form again."""

    issuer = StringField(
        "Issuer",
        description="The provider's issuer URL, as its discovery document gives it (https)",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the provider's issuer URL"), Length(max=500)],
    )
    client_id = StringField(
        "Client ID",
        description="This service's client ID at the provider",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the client ID"), Length(max=200)],
    )
    client_secret = PasswordField(
        "Client secret",
        description="For client_secret_basic. Leave empty if you give a private key instead.",
        widget=GovPasswordInput(),
        validators=[Length(max=500)],
    )
    private_key = TextAreaField(
        "Private key (PEM)",
        description="For private_key_jwt: an RSA or EC private key. Leave empty if you "
        "give a client secret.",
        widget=GovTextArea(),
        validators=[Length(max=10_000)],
    )
    username_claim = StringField(
        "Username claim",
        description="The ID token claim holding the person's username or email, "
        "for example preferred_username",
        default="preferred_username",
        widget=GovTextInput(),
        validators=[InputRequired("Enter the username claim"), Length(max=100)],
    )
    accepted_acr = _accepted_acr("Accepted acr values, one per line (optional)")
    reason = optional_reason()
    submit = SubmitField("Add the identity provider", widget=GovSubmitInput())


class AcceptedAcrForm(FlaskForm):  # type: ignore[misc]
    accepted_acr = _accepted_acr("Accepted acr values, one per line")
    reason = optional_reason()
    submit = SubmitField("Save", widget=GovSubmitInput())


class TestConnectionForm(FlaskForm):  # type: ignore[misc]
    """A button: the organisation is in the path."""

    submit = SubmitField("Test the connection", widget=GovSubmitInput())
