"""The append-only, hash-chained audit log.

Each entry carries the hash of the one before it, so an edit, an insertion or a
deletion anywhere breaks the chain from that point on; `verify_chain` names the
first entry that does not fit. Appends are serialised through the single
`audit_head` row, which every writer locks by updating it first: on PostgreSQL
that row lock orders concurrent writers across nodes, on SQLite the write lock
does. Entries are written in the same transaction as the change they record, so
a change that is rolled back leaves no entry, and an entry means it happened.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, insert, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.clock import Clock
from core.db import Base, UTCDateTime
from core.errors import FieldProblem, InvalidInput

GENESIS = "0" * 64


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditEntry(Base):
    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    tag: Mapped[str] = mapped_column(String(80), nullable=False, index=True)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    actor_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor_label: Mapped[str | None] = mapped_column(String(200))
    subject_type: Mapped[str | None] = mapped_column(String(40))
    subject_id: Mapped[str | None] = mapped_column(String(80))
    organisation_id: Mapped[int | None] = mapped_column(Integer, index=True)
    client_address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


@dataclass(frozen=True)
class AuditContext:
    """Who is acting and from where: filled by the web layer or the CLI."""

    actor_id: int | None = None
    actor_label: str | None = None
    client_address: str | None = None
    request_id: str | None = None

    def as_actor(self, actor_id: int | None, actor_label: str | None) -> AuditContext:
        return AuditContext(actor_id, actor_label, self.client_address, self.request_id)


def _canonical(entry: AuditEntry) -> bytes:
    body = {
        "seq": entry.seq,
        "at": entry.at.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        "tag": entry.tag,
        "outcome": entry.outcome,
        "actor_id": entry.actor_id,
        "actor_label": entry.actor_label,
        "subject_type": entry.subject_type,
        "subject_id": entry.subject_id,
        "organisation_id": entry.organisation_id,
        "client_address": entry.client_address,
        "request_id": entry.request_id,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def entry_hash(entry: AuditEntry) -> str:
    return hashlib.sha256(_canonical(entry)).hexdigest()


# Built once: an append runs on every sign-in step, and building, caching and
# flushing ORM statements cost several times what the three statements do.
_ADVANCE_HEAD = text("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, last_hash")
_SET_HEAD_HASH = text("UPDATE audit_head SET last_hash = :h WHERE id = 1")
_INSERT_ENTRY = insert(AuditEntry)


PENDING_TAGS = "contactpoint.audit_tags"


@dataclass
class Auditor:
    session: Session
    clock: Clock
    context: AuditContext = field(default_factory=AuditContext)

    def record(
        self,
        tag: str,
        outcome: str = "success",
        *,
        subject_type: str | None = None,
        subject_id: object = None,
        organisation_id: int | None = None,
        detail: dict[str, Any] | None = None,
        actor_id: int | None = None,
        actor_label: str | None = None,
    ) -> AuditEntry:
        """Append one entry in the caller's transaction; the caller commits.

        The entry is written with Core statements on the session's connection
        (the returned object is not in the session). Pending changes are
        flushed first, as an ORM statement would, so locks are taken in the
        same order as before: the caller's rows, then the audit head."""
        self.session.flush()
        connection = self.session.connection()
        head = connection.execute(_ADVANCE_HEAD).one_or_none()
        if head is None:
            raise RuntimeError("audit_head is missing: run `contactpoint db upgrade`")
        seq, prev = int(head[0]), str(head[1])
        values: dict[str, Any] = {
            "seq": seq,
            "at": self.clock.now(),
            "tag": tag,
            "outcome": outcome,
            "actor_id": actor_id if actor_id is not None else self.context.actor_id,
            "actor_label": actor_label if actor_label is not None else self.context.actor_label,
            "subject_type": subject_type,
            "subject_id": None if subject_id is None else str(subject_id),
            "organisation_id": organisation_id,
            "client_address": self.context.client_address,
            "request_id": self.context.request_id,
            "detail": _json_safe(detail or {}),
            "prev_hash": prev,
        }
        entry = AuditEntry(**values)
        entry.hash = values["hash"] = entry_hash(entry)
        connection.execute(_INSERT_ENTRY, values)
        connection.execute(_SET_HEAD_HASH, {"h": entry.hash})
        # Tags of this transaction, for whoever counts committed events (the
        # service's metrics read them after the commit and drop them on rollback).
        self.session.info.setdefault(PENDING_TAGS, []).append(tag)
        return entry


def _json_safe(detail: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so the hashed form equals the stored form."""
    loaded: dict[str, Any] = json.loads(json.dumps(detail, sort_keys=True, default=str))
    return loaded


@dataclass(frozen=True)
class ChainReport:
    checked: int
    first_bad_seq: int | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None and self.problem is None


def _entries(session: Session) -> Iterator[AuditEntry]:
    stmt = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=2000)
    yield from session.scalars(stmt)


def verify_chain(session: Session, checkpoints: Iterable[Checkpoint] = ()) -> ChainReport:
    """Walk the chain in order and name the first entry that does not fit.

    The chain alone cannot show a rewrite by someone who recomputes every hash
    from the edit onwards, or who cuts the tail and moves `audit_head` back:
    checkpoints written down outside the database can, so each one given must
    still be in the log with the hash it had."""
    expected = {c.seq: c.hash for c in checkpoints}
    expected_prev = GENESIS
    expected_seq = 1
    checked = 0
    for entry in _entries(session):
        if entry.seq != expected_seq:
            return ChainReport(checked, expected_seq, f"entry {expected_seq} is missing")
        if entry.prev_hash != expected_prev:
            return ChainReport(
                checked, entry.seq, f"entry {entry.seq} does not follow entry {entry.seq - 1}"
            )
        if entry_hash(entry) != entry.hash:
            return ChainReport(checked, entry.seq, f"entry {entry.seq} was altered")
        if expected.get(entry.seq, entry.hash) != entry.hash:
            return ChainReport(
                checked, entry.seq,
                f"entry {entry.seq} differs from its checkpoint: the log was rewritten "
                f"at or before entry {entry.seq}",
            )
        expected_prev = entry.hash
        expected_seq += 1
        checked += 1
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != checked or head.last_hash != expected_prev):
        return ChainReport(
            checked, checked + 1, f"entries after {checked} were removed (head is at {head.seq})"
        )
    beyond = [seq for seq in expected if seq > checked]
    if beyond:
        return ChainReport(
            checked, checked + 1,
            f"entries after {checked} were removed (a checkpoint names entry {max(beyond)})",
        )
    return ChainReport(checked, None, None)


# -- checkpoints: the chain's head written down where the database cannot reach ------

_CHECKPOINT_LINE = re.compile(r"audit-checkpoint (\d{1,18}) ([0-9a-f]{64})(?: \S+)?")


@dataclass(frozen=True)
class Checkpoint:
    """The log's head at one moment (`audit-checkpoint SEQ HASH [TIME]`).

    Kept outside the database (an append-only file on another system, the log
    shipper, a printed report), so that someone with database rights who cuts
    the tail or recomputes the chain cannot also rewrite what was written down."""

    seq: int
    hash: str

    def line(self, at: datetime | None = None) -> str:
        text_ = f"audit-checkpoint {self.seq} {self.hash}"
        return f"{text_} {at.isoformat(timespec='seconds')}" if at else text_


def current_checkpoint(session: Session) -> Checkpoint:
    head = session.get(AuditHead, 1)
    if head is None:
        raise RuntimeError("audit_head is missing: run `contactpoint db upgrade`")
    return Checkpoint(int(head.seq), head.last_hash)


def parse_checkpoints(lines: Iterable[str], source: str) -> list[Checkpoint]:
    """Checkpoint lines as `current_checkpoint` writes them; blank lines and `#`
    comments are skipped. Every bad line is named, and one entry with two
    different hashes is refused: a checkpoint file must not contradict itself."""
    problems: list[FieldProblem] = []
    found: dict[int, tuple[str, int]] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _CHECKPOINT_LINE.fullmatch(line)
        if match is None:
            problems.append(FieldProblem(
                "checkpoint", "expected 'audit-checkpoint SEQ HASH [TIME]'",
                row=number, source=source))
            continue
        seq, hash_ = int(match.group(1)), match.group(2)
        earlier = found.get(seq)
        if earlier is not None and earlier[0] != hash_:
            problems.append(FieldProblem(
                "checkpoint", f"entry {seq} has another hash on line {earlier[1]}",
                row=number, source=source))
            continue
        found.setdefault(seq, (hash_, number))
    if problems:
        raise InvalidInput(problems)
    return [Checkpoint(seq, hash_) for seq, (hash_, _line) in sorted(found.items())]
