"""Structured logs: one JSON object a line, with the request id in each.

Everything goes through the standard library's root logger, so the lines of
Flask, gunicorn's workers and SQLAlchemy come out in the same shape as ours.
What a request logs is chosen to be harmless: the method, the route's
template (never the path or query string, which can hold a child's name in a
search, or a code), the status and the time taken. `redact` is a second line
of defence: a value logged under a name like password, pin, code, token or
secret is replaced before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor

from core.settings import Settings

SENSITIVE = re.compile(
    r"(^|_)(password|passwd|pin|code|otp|token|secret|key|cookie|authorization|assertion|"
    r"credential|nonce|verifier|session)s?($|_)",
    re.IGNORECASE,
)
NOT_SENSITIVE = frozenset({"status_code", "error_id", "request_id", "event", "level", "logger"})
REDACTED = "[redacted]"
_OURS = "_contactpoint_handler"
_configured = False


def redact(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    for key in list(event_dict):
        if key not in NOT_SENSITIVE and SENSITIVE.search(key):
            event_dict[key] = REDACTED
    return event_dict


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        value = exc_info[1]
        return value if isinstance(value, BaseException) else None
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def safe_exc_info(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """Where the error happened, without what it says: an exception's message
    can quote anything (a value that failed to parse may be a typed PIN), so
    only the types of the chain and the stack of frames are written."""
    error = _exception_of(event_dict.pop("exc_info", None))
    if error is None:
        return event_dict
    chain = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(type(current).__qualname__)
        current = current.__cause__ or current.__context__
    event_dict["exception"] = " <- ".join(chain)
    event_dict["stack"] = [
        f"{frame.filename}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(error.__traceback__)
    ]
    return event_dict


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the moment (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]


def formatter(log_format: str = "json") -> logging.Formatter:
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            safe_exc_info,
            renderer,
        ],
    )


def configure_logging(
    level: str = "INFO", log_format: str = "json", handler: logging.Handler | None = None
) -> logging.Handler:
    """Route structlog and the standard library to one handler on the root
    logger (stderr unless given), replacing the one a previous call installed."""
    global _configured
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _OURS, False):
            root.removeHandler(existing)
    chosen = handler or _Stderr()
    chosen.setFormatter(formatter(log_format))
    setattr(chosen, _OURS, True)
    root.addHandler(chosen)
    root.setLevel(level.upper())
    _configured = True
    return chosen


def configure_once(settings: Settings) -> None:
    """At app creation: the settings' logging, unless this process has it already."""
    if not _configured:
        configure_logging(settings.observability.log_level, settings.observability.log_format)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
