"""State that every IdP node must see alike: throttling counters, replay caches.

One small interface with two implementations, chosen in settings: the
database (the embedded default, and enough for a few nodes) and Redis (for
many nodes). A node keeps none of this in its own memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import BigInteger, String, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.clock import Clock
from core.db import Base, UTCDateTime
from core.errors import ServiceUnavailable


class SharedState(Protocol):
    def hit(self, key: str, window_seconds: int) -> int:
        """Count one event in the current fixed window; return the window's count."""

    def count(self, key: str, window_seconds: int) -> int:
        """The current window's count, without counting."""

    def retry_after(self, key: str, window_seconds: int) -> int:
        """Seconds until the current window ends."""

    def add_once(self, key: str, ttl_seconds: int) -> bool:
        """Remember `key` for `ttl_seconds`; False if it was already remembered."""


class SharedCounter(Base):
    __tablename__ = "shared_counter"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


# Built once: sign-in reads the address's count at every step.
_COUNT = select(SharedCounter.value).where(SharedCounter.key == bindparam("key"))


class DatabaseSharedState:
    """Counters as rows, upserted atomically, in the caller's transaction.

    Sharing the caller's transaction keeps SQLite to one writer per request
    (a second connection would wait on the first's write lock); callers that
    count a failure commit it before they report the failure. On PostgreSQL a
    concurrent `add_once` of the same key waits on the uncommitted row and
    then sees it, so a replay is refused across nodes too.
    """

    def __init__(self, session: Session, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    def _window(self, key: str, window_seconds: int) -> tuple[str, datetime]:
        now = self.clock.now().timestamp()
        index = math.floor(now / window_seconds)
        ends = datetime.fromtimestamp((index + 1) * window_seconds, tz=self.clock.now().tzinfo)
        return f"{key}@{index}", ends

    def _upsert(self, key: str, expires_at: datetime, increment: bool) -> int:
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(SharedCounter).values(key=key, value=1, expires_at=expires_at)
        if increment:
            stmt = stmt.on_conflict_do_update(
                index_elements=[SharedCounter.key],
                set_={"value": SharedCounter.value + 1},
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=[SharedCounter.key])
        result = self.session.execute(stmt.returning(SharedCounter.value))
        row = result.one_or_none()
        return 0 if row is None else int(row[0])

    def hit(self, key: str, window_seconds: int) -> int:
        window_key, ends = self._window(key, window_seconds)
        return self._upsert(window_key, ends, increment=True)

    def count(self, key: str, window_seconds: int) -> int:
        window_key, _ = self._window(key, window_seconds)
        value = self.session.connection().execute(_COUNT, {"key": window_key}).scalar()
        return int(value or 0)

    def retry_after(self, key: str, window_seconds: int) -> int:
        _, ends = self._window(key, window_seconds)
        return max(1, math.ceil((ends - self.clock.now()).total_seconds()))

    def add_once(self, key: str, ttl_seconds: int) -> bool:
        now = self.clock.now()
        self.session.execute(
            delete(SharedCounter).where(SharedCounter.key == key, SharedCounter.expires_at <= now)
        )
        return self._upsert(key, now + timedelta(seconds=ttl_seconds), increment=False) == 1

    def purge_expired(self) -> int:
        result = self.session.execute(
            delete(SharedCounter).where(SharedCounter.expires_at <= self.clock.now())
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class RedisSharedState:
    """The same contract on Redis: INCR with an expiry, SET NX with an expiry."""

    def __init__(self, client: object, clock: Clock, prefix: str = "cp:") -> None:
        self.client = client
        self.clock = clock
        self.prefix = prefix

    def _window_key(self, key: str, window_seconds: int) -> tuple[str, int]:
        now = self.clock.now().timestamp()
        index = math.floor(now / window_seconds)
        remaining = max(1, math.ceil((index + 1) * window_seconds - now))
        return f"{self.prefix}{key}@{index}", remaining

    def hit(self, key: str, window_seconds: int) -> int:
        redis_key, remaining = self._window_key(key, window_seconds)
        pipe = self.client.pipeline()  # type: ignore[attr-defined]
        pipe.incr(redis_key)
        pipe.expire(redis_key, remaining + 1)
        value, _ = pipe.execute()
        return int(value)

    def count(self, key: str, window_seconds: int) -> int:
        redis_key, _ = self._window_key(key, window_seconds)
        value = self.client.get(redis_key)  # type: ignore[attr-defined]
        return int(value or 0)

    def retry_after(self, key: str, window_seconds: int) -> int:
        return self._window_key(key, window_seconds)[1]

    def add_once(self, key: str, ttl_seconds: int) -> bool:
        created = self.client.set(  # type: ignore[attr-defined]
            f"{self.prefix}{key}", b"1", nx=True, ex=max(1, ttl_seconds)
        )
        return bool(created)


class SharedStateUnavailable(ServiceUnavailable):
    """The backend of shared state could not be reached and the settings say
    to refuse rather than go on without it."""

    error_id = "shared_state.unavailable"
    title = "Sorry, the service is unavailable"

    def __init__(self, kind: str) -> None:
        super().__init__(
            "The service cannot check this request safely at the moment. Try again in a few "
            "minutes."
        )
        self.kind = kind


THROTTLING = "throttling"
REPLAY_CACHE = "replay_cache"


class GuardedSharedState:
    """Any `SharedState` with an explicit answer for when its backend is down.

    Counters (`hit`, `count`, `retry_after`) serve throttling; `add_once`
    serves replay caches. For each kind, `closed` raises
    `SharedStateUnavailable` (the request is refused with 503) and `open`
    carries on as if nothing had been counted or seen, which switches that
    protection off for the outage. `unreachable` names the exceptions that
    mean "backend down" (connection refused, timeouts), so that a bug is
    never mistaken for an outage. `observe(kind, decision)` lets the caller
    count what happened without this package knowing about metrics.
    """

    def __init__(
        self,
        inner: SharedState,
        *,
        throttling_open: bool,
        replay_open: bool,
        unreachable: tuple[type[BaseException], ...],
        observe: Callable[[str, str], None] | None = None,
    ) -> None:
        self.inner = inner
        self.open = {THROTTLING: throttling_open, REPLAY_CACHE: replay_open}
        self.unreachable = unreachable
        self.observe = observe

    def _down(self, kind: str, error: BaseException) -> None:
        allowed = self.open[kind]
        if self.observe is not None:
            self.observe(kind, "allowed" if allowed else "refused")
        if not allowed:
            raise SharedStateUnavailable(kind) from error

    def hit(self, key: str, window_seconds: int) -> int:
        try:
            return self.inner.hit(key, window_seconds)
        except self.unreachable as error:
            self._down(THROTTLING, error)
            return 0

    def count(self, key: str, window_seconds: int) -> int:
        try:
            return self.inner.count(key, window_seconds)
        except self.unreachable as error:
            self._down(THROTTLING, error)
            return 0

    def retry_after(self, key: str, window_seconds: int) -> int:
        try:
            return self.inner.retry_after(key, window_seconds)
        except self.unreachable as error:
            self._down(THROTTLING, error)
            return window_seconds

    def add_once(self, key: str, ttl_seconds: int) -> bool:
        try:
            return self.inner.add_once(key, ttl_seconds)
        except self.unreachable as error:
            self._down(REPLAY_CACHE, error)
            return True
