"""The logs of a whole test run, and the secrets the run used.

Issue 8 asks for proof that no password, PIN, code, token, secret or child's
details reach a log line. One test can only prove it for the flows it runs, so
the run keeps every line our code writes (`idp.logs.tee` into one file, and
the log files of the server processes the tests start), the test helpers
remember each secret they make or type (`remember`), and a test that runs
last looks for every one of them in every line (`find_leaks`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from idp.logs import SENSITIVE

# Shorter values (a 4-digit year, "Ada") turn up in log lines by chance, in a
# port, a duration or a word, so finding one proves nothing; every code and PIN
# the service issues is 6 characters or more.
MIN_LENGTH = 6
# Values that are words our log lines use for themselves (events, routes,
# error names) or that the child factories use as labels: a line holding one
# is no leak of it, and looking for it would fail the run for nothing.
COMMON_WORDS = frozenset({
    "active", "allow", "archived", "closed", "consented", "current", "female", "father",
    "invalid", "mother", "nearly", "other", "password", "request", "school", "secret",
    "session", "unknown", "unavailable",
})
# Random digits of our own (and the clock's) in a line, not a test's secrets.
NOISE = re.compile(r'"(timestamp|request_id)": "[^"]*"')
CHILD_FIELDS = (
    "source_id", "forename", "surname", "former_names", "date_of_birth", "address_line1",
    "address_line2", "postcode", "carer1_name", "carer1_phone", "carer2_name", "carer2_phone",
)


@dataclass
class Secrets:
    """Every secret value the run used, with the kind it was first seen as."""

    kinds: dict[str, str] = field(default_factory=dict)
    set_aside: int = 0

    def remember(self, kind: str, *values: object) -> None:
        for value in values:
            if not isinstance(value, str):
                continue
            # grep's patterns are lines; a multi-line secret is found by its lines.
            for line in value.splitlines():
                text = line.strip()
                if not text:
                    continue
                if len(text) < MIN_LENGTH or text.lower() in COMMON_WORDS:
                    self.set_aside += 1
                else:
                    self.kinds.setdefault(text, kind)


SECRETS = Secrets()
remember = SECRETS.remember


def remember_form(fields: Mapping[str, Any]) -> None:
    """What a form typed under a secret's name (password, pin, code, csrf_token...):
    the same names that `idp.logs.redact` hides."""
    for name, value in fields.items():
        if SENSITIVE.search(name.rsplit("-", 1)[-1]):
            remember(f"{name!r} value", value)


def remember_cookies(pairs: Iterable[tuple[str, str | None]]) -> None:
    """The cookies a browser holds (name, value): the session's, and any a flow set."""
    for name, value in pairs:
        remember(f"cookie {name}", value)


def remember_child(values: Mapping[str, Any]) -> None:
    for name in CHILD_FIELDS:
        remember(f"child's {name}", values.get(name))


class RunLog:
    """Where the run's lines are kept: our own process's in one file, and
    the log files of the servers the tests start, named as they start."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "run.log"
        self.stream: TextIO = self.path.open("w", encoding="utf-8")
        self.others: list[Path] = []

    def keep(self, path: Path) -> None:
        self.others.append(path)

    def keep_output(self, name: str, text: str) -> None:
        """What a command the tests ran wrote to stderr (its log lines)."""
        if text:
            path = self.directory / f"{len(self.others):04d}-{name}.log"
            path.write_text(text, encoding="utf-8")
            self.others.append(path)

    def sources(self) -> list[Path]:
        self.stream.flush()
        return [self.path, *(p for p in self.others if p.exists())]

    def close(self) -> None:
        self.stream.close()


RUN: list[RunLog] = []  # the session's run log, once conftest has started it


def keep_server_log(path: Path) -> None:
    for run in RUN:
        run.keep(path)


def keep_command_output(name: str, stderr: str) -> None:
    for run in RUN:
        run.keep_output(name, stderr)


@dataclass(frozen=True)
class Leak:
    kind: str
    secret: str = field(repr=False)  # reports print the leak; they must not print it whole
    source: Path
    line_number: int
    where: str

    def __str__(self) -> str:
        # Enough to find it, never the whole secret (this message is printed).
        hint = f"{self.secret[:2]}... ({len(self.secret)} characters)"
        return f"{self.kind} {hint} in {self.source.name}:{self.line_number}, {self.where}"


def _where(line: str, secret: str) -> str:
    """The line's logger and the start of its event, the secret masked."""
    try:
        found = json.loads(line)
    except ValueError:
        return "a line that is not JSON"
    if not isinstance(found, dict):
        return "a line that is not a JSON object"
    event = str(found.get("event", "?")).replace(secret, "[the secret]")[:60]
    return f"logger {found.get('logger', '?')!r}, event {event!r}"


def _grep(patterns: list[str], files: list[Path], *options: str) -> list[tuple[int, int, str]]:
    """(file index, line number, matched text) of every match: grep -F finds
    thousands of fixed strings in one pass over megabytes."""
    if not patterns or not files:
        return []
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as listed:
        listed.write("\n".join(patterns) + "\n")
        listed.flush()
        done = subprocess.run(
            ["grep", "-F", "-H", "-n", "-o", *options, "-f", listed.name, *map(str, files)],
            capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}, check=False,
        )
    assert done.returncode in (0, 1), done.stderr
    index = {str(f): n for n, f in enumerate(files)}
    found = []
    for line in done.stdout.splitlines():
        name, number, text = line.split(":", 2)
        found.append((index[name], int(number), text))
    return found


def find_leaks(secrets: Mapping[str, str], sources: Iterable[Path]) -> list[Leak]:
    """Every line of `sources` that holds one of `secrets` (value -> kind),
    timestamps and request ids set aside. A secret of digits only counts where
    it stands alone, not inside a longer number."""
    originals = list(sources)
    with tempfile.TemporaryDirectory() as scratch:
        cleaned = []
        for n, source in enumerate(originals):
            text = source.read_text(encoding="utf-8", errors="replace")
            path = Path(scratch) / f"{n}.log"
            path.write_text(NOISE.sub("", text), encoding="utf-8")
            cleaned.append(path)
        digits = [s for s in secrets if s.isdigit()]
        others = [s for s in secrets if not s.isdigit()]
        matches = _grep(others, cleaned) + _grep(digits, cleaned, "-w")
        lines: dict[int, list[str]] = {}
        leaks = []
        for file, number, text in matches:
            if file not in lines:
                lines[file] = originals[file].read_text(encoding="utf-8",
                                                        errors="replace").splitlines()
            where = _where(lines[file][number - 1], text)
            leaks.append(Leak(secrets.get(text, "secret"), text, originals[file], number, where))
    return leaks
