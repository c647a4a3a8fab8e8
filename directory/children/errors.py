"""Errors of the child-record module; see core.errors for the families.

Refusals say nothing about whether a child exists or is shielded: an unknown
record, an archived one and one the actor may not open all read the same.
"""

from __future__ import annotations

from core.errors import Conflict, NotAllowed, NotFound


class UnknownChild(NotFound):
    error_id = "children.unknown"
    title = "No such record"


class NoChildAccess(NotAllowed):
    error_id = "children.not_allowed"
    title = "You are not allowed to use the children's directory"


class UnknownRequest(NotFound):
    error_id = "children.unknown_request"
    title = "No such request"


class AlreadyDecided(Conflict):
    error_id = "children.already_decided"
    title = "That has already been decided"
