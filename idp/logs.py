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


class _Output:
    """Where every line goes: stderr as it is at the moment of writing (test
    runners swap it), or a stream given to `configure_logging`. One object, so
    that loggers made before a reconfiguration follow it."""

    def __init__(self) -> None:
        self.stream: TextIO | None = None

    def write(self, text: str) -> int:
        return (self.stream or sys.stderr).write(text)

    def flush(self) -> None:
        (self.stream or sys.stderr).flush()


_OUTPUT = _Output()


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]


def _renderer(log_format: str) -> Processor:
    if log_format == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=False)


def formatter(log_format: str = "json") -> logging.Formatter:
    """For the standard library's records (Flask, gunicorn, SQLAlchemy)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            safe_exc_info,
            _renderer(log_format),
        ],
    )


def configure_logging(
    level: str = "INFO",
    log_format: str = "json",
    stream: TextIO | None = None,
    *,
    root: bool = True,
) -> None:
    """Our own events go straight from structlog to the output (a few
    microseconds a line); the standard library's records go through one
    handler on the root logger to the same output, in the same shape (unless
    `root` is false: the host process has its own logging set up)."""
    global _configured
    _OUTPUT.stream = stream
    number = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[_logger_name, *_shared_processors(), safe_exc_info, _renderer(log_format)],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.WriteLoggerFactory(file=_OUTPUT),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    _remove_root_handler()
    if root:
        handler = logging.StreamHandler(_OUTPUT)
        handler.setFormatter(formatter(log_format))
        setattr(handler, _OURS, True)
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(number)
    # The development server's own request lines carry query strings; ours do not.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    _configured = True


def _remove_root_handler() -> None:
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _OURS, False):
            root.removeHandler(existing)


def unconfigure() -> None:
    """Back to no configuration of ours (tests that configured it on purpose)."""
    global _configured
    _remove_root_handler()
    _OUTPUT.stream = None
    _configured = False


def configure_once(settings: Settings) -> None:
    """At app creation: the settings' logging, unless this process has it already."""
    if not _configured:
        # As logging.basicConfig does: a process whose root logger has handlers
        # already (a test runner, an embedding server) keeps them.
        configure_logging(
            settings.observability.log_level,
            settings.observability.log_format,
            root=not logging.getLogger().handlers,
        )


def get_logger(name: str) -> Any:
    # `logger` is the factory's own argument name, so the name travels under
    # another key and is renamed when the line is written.
    return structlog.get_logger(logger_name=name)


def _logger_name(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    if "logger_name" in event_dict:
        event_dict["logger"] = event_dict.pop("logger_name")
    return event_dict
