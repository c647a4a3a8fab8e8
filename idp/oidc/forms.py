"""Forms of the relying-application pages. The rules live in idp.oidc.clients;
these fields bound the input and carry its problems back to the fields they name
(a problem about redirect_uris[1] is shown on the redirect URIs box)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxesInput,
    GovRadioInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import (
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional

from idp.forms import optional_reason
from idp.oidc.views import SCOPE_TEXT

FEATURES = [
    ("dpop_required", "Require DPoP-bound tokens (RFC 9449)"),
    ("par_required", "Require pushed authorization requests (RFC 9126)"),
    ("pairwise", "Give each person a different identifier for this application (pairwise)"),
]


class ApplicationForm(FlaskForm):  # type: ignore[misc]
    organisation_id = SelectField("Organisation", coerce=int, widget=GovSelect())
    name = StringField("Name of the application", widget=GovTextInput(),
                       validators=[InputRequired("Enter the application's name"),
                                   Length(max=200)])
    redirect_uris = TextAreaField("Redirect URIs, one per line", widget=GovTextArea(),
                                  validators=[Optional(), Length(max=4000)])
    post_logout_redirect_uris = TextAreaField("Addresses to return to after signing out, one per "
                                              "line (optional)", widget=GovTextArea(),
                                              validators=[Optional(), Length(max=4000)])
    backchannel_logout_uri = StringField("Back-channel logout URI (optional)",
                                         widget=GovTextInput(),
                                         validators=[Optional(), Length(max=500)])
    auth_method = RadioField("How the application proves who it is", widget=GovRadioInput(),
                             choices=[("client_secret_basic", "A secret we give it"),
                                      ("private_key_jwt", "Its own key pair (private_key_jwt)")],
                             default="client_secret_basic",
                             validators=[InputRequired("Choose how the application proves "
                                                       "who it is")])
    jwks = TextAreaField("Its public keys as a JWK set (for its own key pair)",
                         widget=GovTextArea(), validators=[Optional(), Length(max=20000)])
    jwks_uri = StringField("Or the address of its JWK set", widget=GovTextInput(),
                           validators=[Optional(), Length(max=500)])
    scopes = SelectMultipleField("What it may ask for", widget=GovCheckboxesInput(),
                                 choices=list(SCOPE_TEXT.items()), default=["openid", "profile"],
                                 validators=[InputRequired("Choose at least one scope")])
    grant_types = SelectMultipleField(
        "How it gets tokens", widget=GovCheckboxesInput(),
        choices=[("authorization_code", "People sign in to it (authorization code)"),
                 ("refresh_token", "It stays signed in (refresh tokens)"),
                 ("client_credentials", "It acts for itself (client credentials)")],
        default=["authorization_code", "refresh_token"],
        validators=[InputRequired("Choose at least one way")])
    features = SelectMultipleField("Security features (optional)", widget=GovCheckboxesInput(),
                                   choices=FEATURES, validators=[Optional()])
    sector_identifier = StringField("Sector identifier URI (pairwise, optional)",
                                    widget=GovTextInput(),
                                    validators=[Optional(), Length(max=300)])
    id_token_alg = RadioField("ID token signature", widget=GovRadioInput(), default="ES256",
                              choices=[("ES256", "ES256 (recommended)"), ("RS256", "RS256")],
                              validators=[InputRequired("Choose a signature")])
    reason = optional_reason()
    submit = SubmitField("Register the application", widget=GovSubmitInput())


class ReasonForm(FlaskForm):  # type: ignore[misc]
    reason = StringField("Reason (recorded in the audit log)", widget=GovTextInput(),
                         validators=[InputRequired("Enter the reason"), Length(max=300)])
    submit = SubmitField("Confirm", widget=GovSubmitInput())


class WhyForm(FlaskForm):  # type: ignore[misc]
    """A confirmation whose reason the service asks of platform admins only."""

    reason = optional_reason()
    submit = SubmitField("Confirm", widget=GovSubmitInput())
