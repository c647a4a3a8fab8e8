"""Typed errors with stable ids.

Pages, the API and tests match on `error_id`, never on wording, so wording can
change without breaking callers. `idp` maps each family to one HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass


class ConfigurationError(Exception):
    """Settings or keys that cannot be used; raised before anything is served."""


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one input, located precisely enough to fix it."""

    field: str
    message: str
    row: int | None = None
    source: str | None = None

    def describe(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.row is not None:
            where.append(f"row {self.row}")
        where.append(self.field)
        return f"{', '.join(where)}: {self.message}"


class DomainError(Exception):
    """Base of every rule a domain service refuses to break."""

    error_id = "error"
    title = "Something could not be done"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title


class NotFound(DomainError):
    error_id = "not_found"
    title = "Not found"


class NotAllowed(DomainError):
    """The actor lacks the right; says nothing of whether the target exists."""

    error_id = "not_allowed"
    title = "You are not allowed to do that"


class Conflict(DomainError):
    error_id = "conflict"
    title = "That cannot be done in the current state"


class InvalidInput(DomainError):
    error_id = "invalid_input"
    title = "There is a problem with what was entered"

    def __init__(self, problems: list[FieldProblem] | FieldProblem) -> None:
        self.problems = [problems] if isinstance(problems, FieldProblem) else list(problems)
        super().__init__("; ".join(p.describe() for p in self.problems))


class ServiceUnavailable(DomainError):
    """A backing service (database, Redis) is unreachable; retrying may work."""

    error_id = "unavailable"
    title = "The service is unavailable"
