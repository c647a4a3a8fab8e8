"""Form helpers shared by the blueprints."""

from __future__ import annotations

from flask_wtf import FlaskForm

from core.errors import InvalidInput


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
