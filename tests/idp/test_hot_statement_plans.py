"""The statements every sign-in, every refresh and every child search run
reach their rows through indexes.

At 390,000 people a statement that reads a whole table costs each sign-in
milliseconds and grows with the directory; the plan shows it long before the
clock does. (The account read once joined `person LEFT JOIN (position JOIN
organisation)`, which SQLite answered by reading every position.)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import event

from core import shared_state
from directory.children import service as children
from idp.container import Container
from idp.oidc import provider
from tokens import otp, policy, signin

HOT_STATEMENTS = {
    "account by username": (signin._ACCOUNT_BY_USERNAME, {"folded": "someone"}),
    "account by id": (signin._ACCOUNT_BY_ID, {"person_id": 1}),
    "flow by digest": (signin._FLOW_BY_DIGEST, {"digest": "0" * 64}),
    "active tokens": (signin._ACTIVE_TOKENS, {"person_id": 1}),
    "flow used up": (signin._FINISH_FLOW, {"flow_id": 1, "now": None}),
    "TOTP step claimed": (otp._CLAIM_TOTP, {"token_id": 1, "mark": 5}),
    "HOTP counter claimed": (otp._CLAIM_HOTP, {"token_id": 1, "step": 4, "mark": 5}),
    "authenticator policies": (policy._POLICIES, {"ids": [1, 2]}),
    "throttling counter": (shared_state._COUNT, {"key": "signin:203.0.113.9"}),
    "refresh grant read": (provider._REFRESH_READ, {"grant_id": 1, "today": date(2026, 12, 1)}),
    "child search's actor": (children._ACTOR_READ, {"person_id": 1}),
    "child search's actor rights": (children._ACTOR_RIGHTS, {"person_id": 1}),
    "anomaly rules: recent alert": (children._RECENT_ALERT, {
        "person_id": 1, "rule": "volume", "since": datetime(2026, 12, 1, tzinfo=UTC)}),
    "anomaly rules: recent use": (children._RECENT_USE, {
        "person_id": 1, "since": datetime(2026, 12, 1, tzinfo=UTC), "cap": 61}),
    "anomaly rules: area": (children._AREA_OF, {"organisation_ids": [1, 2]}),
    "refresh rotation": (provider._ROTATE, {"grant_id": 1, "was": 0, "now": 1, "jkt": None}),
}


def _sent(container: Container, statement: Any, params: dict[str, object]) -> tuple[str, Any]:
    """The SQL and parameters the driver receives for the statement (run in a
    transaction that is rolled back), so the plan is that of what production sends."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_args: Any) -> None:
        sent.append((sql, parameters))

    with container.engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", capture)
        try:
            connection.execute(statement, params)
        finally:
            event.remove(connection, "before_cursor_execute", capture)
            connection.rollback()
    return sent[-1]


def _plan(container: Container, statement: Any, params: dict[str, object]) -> str:
    sql, parameters = _sent(container, statement, params)
    with container.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)
            return "\n".join(str(row[-1]) for row in rows)
        # With sequential scans priced out, one left in the plan means no
        # index can serve the statement (PostgreSQL would otherwise scan the
        # tiny tables of a test database whatever the indexes).
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {sql}", parameters)
        return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize("name", sorted(HOT_STATEMENTS))
def test_each_sign_in_statement_uses_indexes_only(container: Container, name: str) -> None:
    statement, params = HOT_STATEMENTS[name]
    plan = _plan(container, statement, params)
    if container.engine.dialect.name == "sqlite":
        # A scan of a subquery's few rows (anon_N) is no table's; the
        # subquery's own reads are lines of the plan too, checked alike.
        scans = [line for line in plan.splitlines()
                 if line.startswith(("SCAN", "MATERIALIZE")) and not line.startswith("SCAN anon_")]
    else:
        scans = [line for line in plan.splitlines() if "Seq Scan" in line]
    assert not scans, f"{name} reads a whole table:\n{plan}"
