"""Errors of vetting."""

from __future__ import annotations

from core.errors import Conflict, NotFound


class UnknownApplication(NotFound):
    error_id = "vetting.unknown_application"
    title = "No such application"


class ChecksIncomplete(Conflict):
    error_id = "vetting.checks_incomplete"
    title = "Every check must be recorded before a decision"


class AlreadyDecided(Conflict):
    error_id = "vetting.already_decided"
    title = "This application has already been decided"


class CannotClear(Conflict):
    error_id = "vetting.cannot_clear"
    title = "This application cannot be cleared"
