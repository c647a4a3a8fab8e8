"""The audit trail: append-only in the database, and tamper-evident beyond it.

Tampering is simulated as an attacker with database admin rights would do it:
drop the append-only triggers, then edit or delete rows directly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from core.audit import (
    GENESIS,
    AuditContext,
    AuditEntry,
    AuditHead,
    Checkpoint,
    current_checkpoint,
    entry_hash,
    parse_checkpoints,
    verify_chain,
)
from core.clock import FrozenClock
from core.errors import InvalidInput
from idp.container import Container

ENTRIES = 40


def record_many(container: Container, clock: FrozenClock, count: int = ENTRIES) -> None:
    """Entries from several transactions, actors and days, with varied detail."""
    for batch in range(4):
        with container.unit(
            AuditContext(
                actor_id=batch,
                actor_label=f"user{batch}",
                client_address="192.0.2.1",
                request_id=f"r{batch}",
            )
        ) as u:
            for i in range(count // 4):
                u.audit.record(
                    f"test:event:{i % 3}",
                    "success" if i % 2 else "failure",
                    subject_type="person",
                    subject_id=i,
                    organisation_id=batch,
                    detail={"n": i, "names": ["Zoë", "Ōtani"], "nested": {"b": 2, "a": 1}},
                )
                clock.advance(seconds=1, microseconds=123)
            u.commit()
        clock.advance(days=1)


def chain(container: Container):  # type: ignore[no-untyped-def]
    with container.unit() as u:
        return verify_chain(u.session)


def run_sql(engine: Engine, sql: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


@pytest.fixture
def without_triggers(container: Container) -> Iterator[Engine]:
    """Drop the append-only protection; put it back afterwards, because the
    PostgreSQL test database outlives this test."""
    engine = container.engine
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        run_sql(engine, "DROP TRIGGER audit_entry_append_only ON audit_entry")
    else:
        run_sql(engine, "DROP TRIGGER audit_entry_no_update")
        run_sql(engine, "DROP TRIGGER audit_entry_no_delete")
    yield engine
    if postgres:
        run_sql(
            engine,
            "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry "
            "FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only()",
        )
    else:
        for op in ("update", "delete"):
            run_sql(
                engine,
                f"CREATE TRIGGER audit_entry_no_{op} BEFORE {op.upper()} ON audit_entry "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
            )


# -- an untouched chain -------------------------------------------------------------


def test_empty_chain_verifies(container: Container) -> None:
    report = chain(container)
    assert report.ok
    assert report.checked == 0


def test_chain_verifies_after_many_records(container: Container, clock: FrozenClock) -> None:
    record_many(container, clock)
    report = chain(container)
    assert report.ok, report.problem
    assert report.checked == ENTRIES
    assert report.first_bad_seq is None


def test_entries_link_to_the_one_before(container: Container, clock: FrozenClock) -> None:
    record_many(container, clock, 8)
    with container.unit() as u:
        entries = list(u.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        head = u.session.get(AuditHead, 1)
        assert [e.seq for e in entries] == list(range(1, 9))
        assert entries[0].prev_hash == GENESIS
        for before, after in itertools.pairwise(entries):
            assert after.prev_hash == before.hash
        assert all(entry_hash(e) == e.hash for e in entries)
        assert head is not None
        assert (head.seq, head.last_hash) == (8, entries[-1].hash)


def test_entry_records_who_acted_and_from_where(container: Container) -> None:
    context = AuditContext(
        actor_id=7, actor_label="jo.bloggs", client_address="198.51.100.4", request_id="req-1"
    )
    with container.unit(context) as u:
        u.audit.record(
            "person:suspended",
            subject_type="person",
            subject_id=42,
            organisation_id=3,
            detail={"reason": "investigation"},
        )
        u.commit()
    with container.unit() as u:
        entry = u.session.scalars(select(AuditEntry)).one()
        assert (entry.tag, entry.outcome, entry.actor_id, entry.actor_label) == (
            "person:suspended",
            "success",
            7,
            "jo.bloggs",
        )
        assert (entry.client_address, entry.request_id) == ("198.51.100.4", "req-1")
        assert (entry.subject_type, entry.subject_id, entry.organisation_id) == ("person", "42", 3)
        assert entry.detail == {"reason": "investigation"}


def test_rolled_back_change_leaves_no_entry(container: Container, clock: FrozenClock) -> None:
    record_many(container, clock, 4)
    with container.unit() as u:
        u.audit.record("never:happened")
        u.session.rollback()
    with container.unit() as u:
        u.audit.record("did:happen")
        u.commit()
    report = chain(container)
    assert report.ok
    assert report.checked == 5
    with container.unit() as u:
        tags = list(u.session.scalars(select(AuditEntry.tag)))
    assert "never:happened" not in tags


# -- the database refuses to rewrite history ------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_entry SET tag = 'nothing:to:see' WHERE seq = 3",
        "UPDATE audit_entry SET detail = '{}'",
        "DELETE FROM audit_entry WHERE seq = 3",
        "DELETE FROM audit_entry",
    ],
)
def test_database_refuses_update_and_delete(
    container: Container, clock: FrozenClock, sql: str
) -> None:
    record_many(container, clock, 8)
    with pytest.raises(DBAPIError, match="append-only"):
        run_sql(container.engine, sql)
    report = chain(container)
    assert report.ok
    assert report.checked == 8


# -- tampering by someone who can drop the triggers -----------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("tag", "'signin:success'"),
        ("outcome", "'success'"),
        ("actor_id", "999"),
        ("actor_label", "'someone.else'"),
        ("subject_id", "'1'"),
        ("client_address", "'10.0.0.1'"),
        ("detail", "'{\"n\": 0}'"),
    ],
)
def test_edited_entry_is_named(
    container: Container, clock: FrozenClock, without_triggers: Engine, column: str, value: str
) -> None:
    record_many(container, clock)
    run_sql(without_triggers, f"UPDATE audit_entry SET {column} = {value} WHERE seq = 17")  # noqa: S608
    report = chain(container)
    assert not report.ok
    assert report.first_bad_seq == 17
    assert report.checked == 16
    assert report.problem is not None and "17" in report.problem


def test_edited_timestamp_is_named(
    container: Container, clock: FrozenClock, without_triggers: Engine
) -> None:
    record_many(container, clock)
    with container.unit() as u:
        entry = u.session.get(AuditEntry, 9)
        assert entry is not None
        moved = entry.at.replace(hour=(entry.at.hour + 1) % 24)
    with container.engine.begin() as conn:
        conn.execute(AuditEntry.__table__.update().where(AuditEntry.seq == 9).values(at=moved))
    report = chain(container)
    assert report.first_bad_seq == 9


def test_edit_with_a_recomputed_hash_breaks_the_next_link(
    container: Container, clock: FrozenClock, without_triggers: Engine
) -> None:
    """An attacker who also recomputes the edited entry's own hash is caught by
    the entry after it, which still carries the old hash."""
    record_many(container, clock)
    with container.unit() as u:
        entry = u.session.get(AuditEntry, 12)
        assert entry is not None
        entry.tag = "harmless:event"
        entry.hash = entry_hash(entry)
        u.session.flush()
        u.commit()
    report = chain(container)
    assert report.first_bad_seq == 13
    assert report.problem is not None and "does not follow" in report.problem


def test_deleted_middle_entry_is_named(
    container: Container, clock: FrozenClock, without_triggers: Engine
) -> None:
    record_many(container, clock)
    run_sql(without_triggers, "DELETE FROM audit_entry WHERE seq = 21")
    report = chain(container)
    assert report.first_bad_seq == 21
    assert report.problem is not None and "missing" in report.problem


def test_deleted_middle_entry_with_renumbering_is_named(
    container: Container, clock: FrozenClock, without_triggers: Engine
) -> None:
    """Closing the gap by renumbering still leaves a broken link."""
    record_many(container, clock)
    run_sql(without_triggers, "DELETE FROM audit_entry WHERE seq = 21")
    for seq in range(22, ENTRIES + 1):
        run_sql(
            without_triggers,
            "UPDATE audit_entry SET seq = :new WHERE seq = :old",
            new=seq - 1,
            old=seq,
        )
    run_sql(without_triggers, "UPDATE audit_head SET seq = :s", s=ENTRIES - 1)
    report = chain(container)
    assert report.first_bad_seq == 21
    assert not report.ok


def test_deleted_last_entry_is_named(
    container: Container, clock: FrozenClock, without_triggers: Engine
) -> None:
    record_many(container, clock)
    run_sql(without_triggers, "DELETE FROM audit_entry WHERE seq = :s", s=ENTRIES)
    report = chain(container)
    assert not report.ok
    assert report.first_bad_seq == ENTRIES
    assert report.checked == ENTRIES - 1
    assert report.problem is not None and "removed" in report.problem


def test_deleted_tail_is_named(
    container: Container, clock: FrozenClock, without_triggers: Engine
) -> None:
    record_many(container, clock)
    run_sql(without_triggers, "DELETE FROM audit_entry WHERE seq > 30")
    report = chain(container)
    assert report.first_bad_seq == 31


def test_deleting_everything_is_detected(
    container: Container, clock: FrozenClock, without_triggers: Engine
) -> None:
    record_many(container, clock)
    run_sql(without_triggers, "DELETE FROM audit_entry")
    report = chain(container)
    assert not report.ok
    assert report.first_bad_seq == 1


def test_new_entries_after_tampering_do_not_heal_the_chain(
    container: Container, clock: FrozenClock, without_triggers: Engine
) -> None:
    record_many(container, clock)
    run_sql(without_triggers, "UPDATE audit_entry SET outcome = 'success' WHERE seq = 5")
    record_many(container, clock, 8)
    report = chain(container)
    assert report.first_bad_seq == 5


def test_entries_are_counted_once_across_concurrent_units(container: Container) -> None:
    """Two units appending in turn share one sequence through audit_head."""
    with container.unit() as one, container.unit() as two:
        one.audit.record("one:first")
        one.commit()
        two.audit.record("two:first")
        two.commit()
        one.audit.record("one:second")
        one.commit()
    report = chain(container)
    assert report.ok
    with container.unit() as u:
        assert u.session.scalar(select(func.count()).select_from(AuditEntry)) == 3


# -- checkpoints kept outside the database -------------------------------------------


def take_checkpoint(container: Container) -> Checkpoint:
    with container.unit() as u:
        return current_checkpoint(u.session)


def checkpoint_of(container: Container, seq: int) -> Checkpoint:
    """The checkpoint that was taken when entry `seq` was the head."""
    with container.unit() as u:
        entry = u.session.get(AuditEntry, seq)
        assert entry is not None
        return Checkpoint(seq, entry.hash)


def verify_chain_with(container: Container, points: list[Checkpoint]):  # type: ignore[no-untyped-def]
    with container.unit() as u:
        return verify_chain(u.session, points)


def recompute_chain_from(engine: Engine, container: Container, seq: int) -> None:
    """What an attacker with the database and this source code can do: edit an
    entry, then recompute every hash after it and move the head along."""
    with container.unit() as u:
        entries = list(u.session.scalars(
            select(AuditEntry).where(AuditEntry.seq >= seq).order_by(AuditEntry.seq)))
        before = u.session.get(AuditEntry, seq - 1)
        prev = before.hash if before is not None else GENESIS
        entries[0].outcome = "success" if entries[0].outcome == "failure" else "failure"
        for entry in entries:
            entry.prev_hash = prev
            entry.hash = prev = entry_hash(entry)
        u.session.flush()
        u.session.execute(text("UPDATE audit_head SET last_hash = :h"), {"h": prev})
        u.commit()


def cut_tail_and_move_head(engine: Engine, container: Container, keep: int) -> None:
    with container.unit() as u:
        last = u.session.get(AuditEntry, keep)
        assert last is not None
        last_hash = last.hash
    run_sql(engine, "DELETE FROM audit_entry WHERE seq > :k", k=keep)
    run_sql(engine, "UPDATE audit_head SET seq = :k, last_hash = :h", k=keep, h=last_hash)


def test_a_checkpoint_of_an_intact_log_matches(container: Container, clock: FrozenClock) -> None:
    record_many(container, clock, 8)
    early = take_checkpoint(container)
    assert early.seq == 8
    record_many(container, clock, 8)
    report = verify_chain_with(container, [early, take_checkpoint(container)])
    assert report.ok, report.problem
    assert report.checked == 16


def test_a_cut_tail_with_the_head_moved_back_passes_alone_but_not_a_checkpoint(
    container: Container, clock: FrozenClock, without_triggers: Engine
) -> None:
    record_many(container, clock)
    point = take_checkpoint(container)
    cut_tail_and_move_head(without_triggers, container, 30)
    assert chain(container).ok  # the blind spot the checkpoint closes
    report = verify_chain_with(container, [point])
    assert not report.ok
    assert report.checked == 30
    assert report.first_bad_seq == 31
    assert report.problem is not None and f"entry {ENTRIES}" in report.problem


def test_a_recomputed_chain_passes_alone_but_not_a_checkpoint(
    container: Container, clock: FrozenClock, without_triggers: Engine
) -> None:
    record_many(container, clock)
    point = checkpoint_of(container, 25)
    before_edit = checkpoint_of(container, 11)
    recompute_chain_from(without_triggers, container, 12)
    assert chain(container).ok
    report = verify_chain_with(container, [point])
    assert report.first_bad_seq == 25
    assert report.problem is not None and "at or before entry 25" in report.problem
    # A checkpoint taken before the edited entry still matches: it cannot see it.
    assert verify_chain_with(container, [before_edit]).ok


def test_checkpoint_lines_round_trip_and_bad_lines_are_named(
    container: Container, clock: FrozenClock
) -> None:
    record_many(container, clock, 4)
    point = take_checkpoint(container)
    line = point.line(clock.now())
    other = "f" * 64
    assert parse_checkpoints(["# hourly", "", line, line], "cp.txt") == [point]
    with pytest.raises(InvalidInput) as raised:
        parse_checkpoints([line, "audit-checkpoint x y", f"audit-checkpoint {point.seq} {other}"],
                          "cp.txt")
    described = [p.describe() for p in raised.value.problems]
    assert described == [
        "cp.txt, row 2, checkpoint: expected 'audit-checkpoint SEQ HASH [TIME]'",
        f"cp.txt, row 3, checkpoint: entry {point.seq} has another hash on line 1",
    ]
