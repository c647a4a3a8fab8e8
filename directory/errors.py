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
