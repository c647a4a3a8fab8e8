"""Federation forms: which organisation's provider to sign in or link with."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovSelect, GovSubmitInput
from wtforms import HiddenField, SelectField, SubmitField
from wtforms.validators import InputRequired


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
