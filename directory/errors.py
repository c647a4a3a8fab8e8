"""Errors of the directory; see core.errors for the families."""

from __future__ import annotations

from core.errors import Conflict, NotFound


class UnknownOrganisation(NotFound):
    error_id = "directory.unknown_organisation"
    title = "No such organisation"


class UnknownPerson(NotFound):
    error_id = "directory.unknown_person"
    title = "No such person"


class UsernameTaken(Conflict):
    error_id = "directory.username_taken"
    title = "That username is taken"


class UnknownPositionRequest(NotFound):
    error_id = "directory.unknown_position_request"
    title = "No such position request"


class AccreditationUnchanged(Conflict):
    error_id = "directory.accreditation_unchanged"
    title = "The organisation is already in that state"


class CannotReinstate(Conflict):
    error_id = "directory.cannot_reinstate"
    title = "This account cannot be reinstated"


class NeedsVetting(Conflict):
    error_id = "directory.needs_vetting"
    title = "This person must be vetted again"
