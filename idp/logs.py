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

import functools
import json
import logging
import re
import sys
import threading
import time
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
_COPY = "_contactpoint_copy"
# The standard library's loggers of our own code (a `tee` takes them at its level).
OWN_PACKAGES = ("core", "directory", "tokens", "vetting", "idp")
_configured = False
# The root logger's level before `configure_logging` set it, for `unconfigure`.
_root_level: int | None = None


# Which names are sensitive, decided once each: the names logged come from
# the code, a few dozen, and the pattern is matched on every line otherwise.
_SENSITIVE_NAMES: dict[str, bool] = {}
_REMEMBERED_NAMES = 4096


def _is_sensitive(key: str) -> bool:
    known = _SENSITIVE_NAMES.get(key)
    if known is None:
        known = key not in NOT_SENSITIVE and SENSITIVE.search(key) is not None
        if len(_SENSITIVE_NAMES) < _REMEMBERED_NAMES:
            _SENSITIVE_NAMES[key] = known
    return known


def redact(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    for key in list(event_dict):
        if _is_sensitive(key):
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
    that loggers made before a reconfiguration follow it.

    A copy (see `tee`) takes our own lines from its own level up, while the
    output keeps the configured level: a test run can keep its DEBUG lines
    without changing what the tests themselves see."""

    def __init__(self) -> None:
        self.stream: TextIO | None = None
        self.level = logging.INFO
        self.copy: TextIO | None = None
        self.copy_level = logging.DEBUG
        self.lock = threading.RLock()

    def write(self, text: str) -> int:
        return (self.stream or sys.stderr).write(text)

    def flush(self) -> None:
        (self.stream or sys.stderr).flush()

    def line(self, level: int, message: str) -> None:
        text = message + "\n"
        copy = self.copy
        if copy is not None and level >= self.copy_level:
            with self.lock:  # the live servers of the tests log from their own threads
                copy.write(text)
        if level >= self.level:
            self.write(text)
            self.flush()

    def lowest_level(self) -> int:
        return min(self.level, self.copy_level) if self.copy is not None else self.level


_OUTPUT = _Output()


class _LineLogger:
    """What structlog hands a rendered line to: it calls the method named for
    the event's level, so the level decides where the line goes."""

    def __init__(self, output: _Output) -> None:
        self.debug = functools.partial(output.line, logging.DEBUG)
        self.info = functools.partial(output.line, logging.INFO)
        self.warning = functools.partial(output.line, logging.WARNING)
        self.error = functools.partial(output.line, logging.ERROR)
        self.critical = functools.partial(output.line, logging.CRITICAL)


_LINES = _LineLogger(_OUTPUT)


def _line_logger(*_args: Any) -> _LineLogger:
    return _LINES


# The text of the current second, made once a second: every request writes a
# line, and formatting a datetime for each cost more than the rest of the line.
_second: tuple[int, str] = (-1, "")


def utc_timestamp(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """`timestamp` as structlog's TimeStamper(fmt="iso", utc=True) writes it
    (2026-12-02T05:47:47.434878Z), at a fraction of its cost."""
    global _second
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    event_dict["timestamp"] = f"{cached[1]}.{nanoseconds // 1000:06d}Z"
    return event_dict


def _fallback(value: Any) -> Any:
    """What structlog's JSONRenderer writes for a value JSON has no form for."""
    custom = getattr(value, "__structlog__", None)
    return custom() if callable(custom) else repr(value)


# One encoder for every line: json.dumps with a `default` builds a new one each call.
_ENCODER = json.JSONEncoder(default=_fallback)


def _serialize(event_dict: EventDict, **_options: Any) -> str:
    return _ENCODER.encode(event_dict)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        utc_timestamp,
        redact,
    ]


def _renderer(log_format: str) -> Processor:
    if log_format == "json":
        return structlog.processors.JSONRenderer(serializer=_serialize)
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
    global _configured, _root_level
    _OUTPUT.stream = stream
    number = logging.getLevelName(level.upper())
    _OUTPUT.level = number
    _configure_structlog(
        processors=[_logger_name, *_shared_processors(), safe_exc_info, _renderer(log_format)],
        wrapper_class=structlog.make_filtering_bound_logger(_OUTPUT.lowest_level()),
        logger_factory=_line_logger,
        cache_logger_on_first_use=False,
    )
    _remove_root_handler()
    if root:
        handler = logging.StreamHandler(_OUTPUT)
        handler.setLevel(number)  # a `tee` may let lower records through our loggers
        handler.setFormatter(formatter(log_format))
        setattr(handler, _OURS, True)
        if _root_level is None:
            _root_level = logging.getLogger().level
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(number)
    # The development server's own request lines carry query strings; ours do not.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Authlib logs only at DEBUG, and quotes what it issues ("Issue token {'access_token':
    # ...}"): a DEBUG level for our own lines must not write out every token.
    logging.getLogger("authlib").setLevel(logging.INFO)
    _configured = True


def _remove_root_handler() -> None:
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _OURS, False):
            root.removeHandler(existing)


def unconfigure() -> None:
    """Back to no configuration of ours (tests that configured it on purpose),
    the root logger's level included: otherwise every library's DEBUG records
    would go on reaching the handlers left on it. A copy (`tee`) stays."""
    global _configured, _root_level
    _remove_root_handler()
    if _root_level is not None:
        logging.getLogger().setLevel(_root_level)
        _root_level = None
    _OUTPUT.stream = None
    _OUTPUT.level = logging.INFO
    _configured = False


def tee(stream: TextIO | None, level: str = "DEBUG") -> None:
    """Write every line also to `stream`, from `level` up, until called with
    None: our own structlog events, and the standard library's records (ours
    from `level` up, others' from the root logger's level up), whatever
    `configure_logging` and `unconfigure` do meanwhile. The tests keep the
    lines of a whole run this way, to look for the secrets they used."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _COPY, False):
            root.removeHandler(existing)
    number = logging.getLevelName(level.upper())
    _OUTPUT.copy, _OUTPUT.copy_level = stream, number
    for package in OWN_PACKAGES:
        logging.getLogger(package).setLevel(number if stream is not None else logging.NOTSET)
    if stream is not None:
        handler = _LockedStreamHandler(stream, _OUTPUT.lock)
        handler.setLevel(number)
        handler.setFormatter(formatter("json"))
        setattr(handler, _COPY, True)
        root.addHandler(handler)
    if _configured:
        _configure_structlog(
            wrapper_class=structlog.make_filtering_bound_logger(_OUTPUT.lowest_level()))


class _LockedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that shares the copy's lock with structlog's lines, so a line
    from each never interleave in the one file."""

    def __init__(self, stream: TextIO, lock: threading.RLock) -> None:
        super().__init__(stream)
        self.shared = lock

    def emit(self, record: logging.LogRecord) -> None:
        with self.shared:
            super().emit(record)


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


_generation = 0  # how many times this module has configured structlog


def _configure_structlog(**settings: Any) -> None:
    """Every structlog configuration goes through here, so that `_Logger`s
    know when to bind afresh."""
    global _generation
    structlog.configure(**settings)
    _generation += 1


class _Logger:
    """A named logger bound once per configuration. structlog's lazy proxy
    binds a new logger at every call (a sixth of a token request's logging);
    its cache_logger_on_first_use would keep the first one for good, and miss
    the level changes `tee` and the tests make."""

    __slots__ = ("_bound", "_bound_in", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._bound: Any = None
        self._bound_in = -1

    def __getattr__(self, attribute: str) -> Any:
        if self._bound_in != _generation:
            # `logger` is the factory's own argument name, so the name travels
            # under another key and is renamed when the line is written.
            self._bound = structlog.get_logger(logger_name=self._name).bind()
            self._bound_in = _generation
        return getattr(self._bound, attribute)


def get_logger(name: str) -> Any:
    return _Logger(name)


def _logger_name(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    if "logger_name" in event_dict:
        event_dict["logger"] = event_dict.pop("logger_name")
    return event_dict
