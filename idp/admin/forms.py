"""Forms of the admin console: every act asks for the reason, which is audited."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovRadioInput,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import RadioField, StringField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length

from directory.models import PositionRequestState, Role

REASON_HINT = "It goes on the audit trail, where your organisation and the platform can read it."


def _reason() -> TextAreaField:
    return TextAreaField(
        "Why?",
        description=REASON_HINT,
        widget=GovTextArea(),
        validators=[InputRequired("Enter the reason"), Length(max=300)],
    )


class ReasonForm(FlaskForm):  # type: ignore[misc]
    reason = _reason()
    submit = SubmitField("Confirm", widget=GovSubmitInput())


class PositionRequestForm(FlaskForm):  # type: ignore[misc]
    username = StringField(
        "Their username",
        description="They keep the identity they have: no new account, no new vetting.",
        widget=GovTextInput(),
        validators=[InputRequired("Enter their username"), Length(max=64)],
    )
    role = RadioField(
        "What do they need to do here?",
        choices=[(r.value, r.value.replace("_", " ").capitalize()) for r in Role],
        widget=GovRadioInput(),
        validators=[InputRequired("Choose a role")],
    )
    reason = _reason()
    submit = SubmitField("Ask for the position", widget=GovSubmitInput())


class DecisionForm(FlaskForm):  # type: ignore[misc]
    decision = RadioField(
        "Your decision",
        choices=[
            (PositionRequestState.APPROVED.value, "Approve"),
            (PositionRequestState.REFUSED.value, "Refuse"),
        ],
        widget=GovRadioInput(),
        validators=[InputRequired("Choose approve or refuse")],
    )
    reason = _reason()
    submit = SubmitField("Record the decision", widget=GovSubmitInput())
