"""The state every node must see alike: fixed-window counters and a replay cache.

One contract, run against each implementation: the database (on SQLite and
PostgreSQL) and Redis.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from sqlalchemy import select

from core.clock import FrozenClock
from core.shared_state import DatabaseSharedState, RedisSharedState, SharedCounter, SharedState
from idp.container import Container, Unit
from tests.conftest import need

WINDOW = 60


@pytest.fixture
def window_start(clock: FrozenClock) -> FrozenClock:
    """Put the clock at the start of a window, so 'the rest of this window' is exact."""
    clock.set(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    assert clock.now().timestamp() % WINDOW == 0
    return clock


class SharedStateContract:
    """What throttling and replay protection rely on, whatever the backend."""

    def test_hit_counts_within_a_window(
        self, state: SharedState, window_start: FrozenClock
    ) -> None:
        assert [state.hit("k", WINDOW) for _ in range(3)] == [1, 2, 3]
        assert state.count("k", WINDOW) == 3
        # Counting does not count.
        assert state.count("k", WINDOW) == 3

    def test_keys_are_counted_apart(self, state: SharedState, window_start: FrozenClock) -> None:
        state.hit("address:192.0.2.1", WINDOW)
        state.hit("address:192.0.2.1", WINDOW)
        state.hit("address:192.0.2.2", WINDOW)
        assert state.count("address:192.0.2.1", WINDOW) == 2
        assert state.count("address:192.0.2.2", WINDOW) == 1
        assert state.count("address:192.0.2.3", WINDOW) == 0

    def test_window_rolls_over_when_the_clock_moves(
        self, state: SharedState, window_start: FrozenClock
    ) -> None:
        for _ in range(5):
            state.hit("k", WINDOW)
        window_start.advance(seconds=WINDOW - 1)
        assert state.count("k", WINDOW) == 5
        assert state.hit("k", WINDOW) == 6
        window_start.advance(seconds=1)
        assert state.count("k", WINDOW) == 0
        assert state.hit("k", WINDOW) == 1
        window_start.advance(seconds=WINDOW * 10)
        assert state.count("k", WINDOW) == 0

    def test_windows_of_different_lengths_are_separate(
        self, state: SharedState, window_start: FrozenClock
    ) -> None:
        state.hit("k", WINDOW)
        state.hit("k", 900)
        state.hit("k", 900)
        assert state.count("k", WINDOW) == 1
        assert state.count("k", 900) == 2

    def test_retry_after_is_the_rest_of_the_window(
        self, state: SharedState, window_start: FrozenClock
    ) -> None:
        assert state.retry_after("k", WINDOW) == WINDOW
        window_start.advance(seconds=45)
        assert state.retry_after("k", WINDOW) == 15
        window_start.advance(seconds=14, milliseconds=500)
        assert state.retry_after("k", WINDOW) == 1

    def test_add_once_refuses_a_second_add(
        self, state: SharedState, window_start: FrozenClock
    ) -> None:
        assert state.add_once("code:123456", 90) is True
        assert state.add_once("code:123456", 90) is False
        assert state.add_once("code:123456", 90) is False
        assert state.add_once("code:654321", 90) is True


@pytest.fixture
def db_unit(container: Container) -> Iterator[Unit]:
    with container.unit() as unit:
        yield unit


class TestDatabaseSharedState(SharedStateContract):
    @pytest.fixture
    def state(self, db_unit: Unit, clock: FrozenClock) -> DatabaseSharedState:
        return DatabaseSharedState(db_unit.session, clock)

    def test_add_once_accepts_again_after_ttl(
        self, state: DatabaseSharedState, window_start: FrozenClock
    ) -> None:
        assert state.add_once("code", 90)
        window_start.advance(seconds=89)
        assert not state.add_once("code", 90)
        window_start.advance(seconds=1)
        assert state.add_once("code", 90)
        assert not state.add_once("code", 90)

    def test_state_is_shared_between_units(
        self, container: Container, window_start: FrozenClock
    ) -> None:
        """What one node commits, another node sees."""
        with container.unit() as one:
            first = DatabaseSharedState(one.session, window_start)
            first.hit("address:x", WINDOW)
            first.hit("address:x", WINDOW)
            assert first.add_once("replay:abc", 90)
            one.commit()
        with container.unit() as two:
            second = DatabaseSharedState(two.session, window_start)
            assert second.count("address:x", WINDOW) == 2
            assert second.hit("address:x", WINDOW) == 3
            assert not second.add_once("replay:abc", 90)

    def test_uncommitted_counts_are_lost_with_their_transaction(
        self, container: Container, window_start: FrozenClock
    ) -> None:
        with container.unit() as one:
            DatabaseSharedState(one.session, window_start).hit("k", WINDOW)
            one.session.rollback()
        with container.unit() as two:
            assert DatabaseSharedState(two.session, window_start).count("k", WINDOW) == 0

    def test_purge_removes_only_expired_rows(
        self, state: DatabaseSharedState, db_unit: Unit, window_start: FrozenClock
    ) -> None:
        state.hit("old", WINDOW)
        state.add_once("long-lived", 3600)
        window_start.advance(seconds=WINDOW)
        assert state.purge_expired() == 1
        keys = list(db_unit.session.scalars(select(SharedCounter.key)))
        assert keys == ["long-lived"]
        assert not state.add_once("long-lived", 3600)


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(
        "redis://127.0.0.1:6379/15", socket_timeout=2, socket_connect_timeout=2
    )
    try:
        client.ping()
        available = True
    except redis.RedisError:
        available = False
    if not available:
        need(False, "Redis is not reachable at 127.0.0.1:6379")
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"cp-test:{uuid.uuid4().hex}:"
    yield prefix
    for key in redis_client.scan_iter(match=f"{prefix}*"):
        redis_client.delete(key)


class TestRedisSharedState(SharedStateContract):
    @pytest.fixture
    def state(self, redis_client: redis.Redis, redis_prefix: str) -> RedisSharedState:
        return RedisSharedState(redis_client, FrozenClock(), prefix=redis_prefix)

    @pytest.fixture
    def window_start(self, state: RedisSharedState) -> FrozenClock:  # type: ignore[override]
        clock = state.clock
        assert isinstance(clock, FrozenClock)
        clock.set(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
        return clock

    def test_keys_carry_the_prefix_and_expire(
        self,
        state: RedisSharedState,
        redis_client: redis.Redis,
        redis_prefix: str,
        window_start: FrozenClock,
    ) -> None:
        state.hit("k", WINDOW)
        state.add_once("once", 90)
        keys = sorted(k.decode() for k in redis_client.scan_iter(match=f"{redis_prefix}*"))
        assert len(keys) == 2
        assert all(k.startswith(redis_prefix) for k in keys)
        # Nothing is kept for ever: every key has an expiry no longer than needed.
        ttls = {k: redis_client.ttl(k) for k in keys}
        assert 0 < ttls[f"{redis_prefix}once"] <= 90
        window_key = next(k for k in keys if not k.endswith("once"))
        assert 0 < ttls[window_key] <= WINDOW + 1

    def test_prefixes_keep_deployments_apart(
        self, redis_client: redis.Redis, redis_prefix: str, window_start: FrozenClock
    ) -> None:
        one = RedisSharedState(redis_client, window_start, prefix=redis_prefix + "a:")
        two = RedisSharedState(redis_client, window_start, prefix=redis_prefix + "b:")
        one.hit("k", WINDOW)
        assert two.count("k", WINDOW) == 0
        assert one.add_once("code", 90)
        assert two.add_once("code", 90)

    def test_add_once_accepts_again_after_ttl(self, state: RedisSharedState) -> None:
        # Redis expires keys on its own clock, so this waits for real.
        assert state.add_once("code", 1)
        assert not state.add_once("code", 1)
        time.sleep(1.1)
        assert state.add_once("code", 1)
