"""Form helpers shared by the blueprints."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovDateInput, GovTextInput
from wtforms import StringField
from wtforms.validators import Length, Optional

from core.errors import InvalidInput


def optional_reason() -> StringField:
    """A reason the form leaves optional: the service asks it of platform admins
    (`directory.accreditation.reason_from`) and checks what anyone gives, so the
    page, the API and the CLI refuse alike."""
    return StringField("Reason (recorded in the audit log; platform admins must give one)",
                       widget=GovTextInput(), validators=[Optional(), Length(max=300)])


def attach_problems(form: FlaskForm, error: InvalidInput) -> bool:
    """Put a domain validation error on the form fields it names.

    Returns False when a problem names no field of this form, so the caller
    can show it as a page-level error instead of losing it."""
    placed = True
    for problem in error.problems:
        field = getattr(form, problem.field, None)
        if field is None or not hasattr(field, "errors"):
            placed = False
            continue
        errors = list(field.errors) if field.errors else []
        errors.append(problem.message)
        field.errors = errors
    return placed


class DateInput(GovDateInput):  # type: ignore[misc]
    """GOV.UK's day/month/year inputs, safe to re-render after any post.

    The library unpacks the posted values into exactly three, so a post with
    the date missing or with too few or too many parts (never sent by the page,
    easily sent by hand) failed with a 500 instead of the field's own error."""

    def map_gov_params(self, field: Any, **kwargs: Any) -> Any:
        if field.raw_data is not None and len(field.raw_data) != 3:
            field.raw_data = [*field.raw_data, "", "", ""][:3]
        return super().map_gov_params(field, **kwargs)
