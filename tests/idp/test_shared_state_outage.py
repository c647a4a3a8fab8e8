"""Redis down: each kind of shared state does what the settings say. Redis is
"down" by pointing at a loopback port nothing listens on (the machine's own
Redis keeps running for everyone else)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.clock import FrozenClock
from core.shared_state import GuardedSharedState, RedisSharedState, SharedStateUnavailable
from idp.container import Container
from tests.factories import World
from tests.idp.conftest import Browser, audit_tags, sibling_app, text_of
from tests.idp.test_ops import sample


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _down_state(**open_: bool) -> GuardedSharedState:
    client = redis.Redis(host="127.0.0.1", port=unused_port(), socket_connect_timeout=1,
                         socket_timeout=1, retry=Retry(NoBackoff(), 1))
    return GuardedSharedState(
        RedisSharedState(client, FrozenClock()),
        throttling_open=open_.get("throttling", False),
        replay_open=open_.get("replay", False),
        unreachable=(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
    )


def test_closed_refuses_every_operation_and_open_carries_on_per_kind() -> None:
    closed = _down_state()
    for operation in (lambda s: s.hit("k", 60), lambda s: s.count("k", 60)):
        with pytest.raises(SharedStateUnavailable) as refused:
            operation(closed)
        assert refused.value.kind == "throttling"
    with pytest.raises(SharedStateUnavailable) as refused:
        closed.add_once("jti-1", 60)
    assert refused.value.kind == "replay_cache"

    throttling_open = _down_state(throttling=True)
    assert throttling_open.hit("k", 60) == 0 and throttling_open.count("k", 60) == 0
    with pytest.raises(SharedStateUnavailable):
        throttling_open.add_once("jti-1", 60)  # the replay cache stays closed

    replay_open = _down_state(replay=True)
    assert replay_open.add_once("jti-1", 60) is True
    with pytest.raises(SharedStateUnavailable):
        replay_open.hit("k", 60)


def test_a_bug_is_not_taken_for_an_outage() -> None:
    class Broken(RedisSharedState):
        def hit(self, key: str, window_seconds: int) -> int:
            raise ValueError("a bug")

    guarded = GuardedSharedState(
        Broken(redis.Redis(host="127.0.0.1", port=unused_port()), FrozenClock()),
        throttling_open=True, replay_open=True,
        unreachable=(redis.exceptions.ConnectionError,),
    )
    with pytest.raises(ValueError, match="a bug"):
        guarded.hit("k", 60)


@pytest.fixture
def redis_down(
    container: Container, database_url: str, tmp_path: Path
) -> Iterator[tuple[Flask, Container]]:
    app, built = sibling_app(
        container, database_url, tmp_path / "down",
        shared_state={"backend": "redis", "redis_url": f"redis://127.0.0.1:{unused_port()}/0"},
    )
    yield app, built
    built.dispose()


def test_by_default_sign_in_is_refused_with_503_while_redis_is_down(
    container: Container, world: World, redis_down: tuple[Flask, Container],
) -> None:
    app, _built = redis_down
    member = world.member(world.organisation())
    browser = Browser(app.test_client())
    refused_before = sample("contactpoint_shared_state_unavailable_total",
                            kind="throttling", decision="refused")
    started = time.monotonic()
    page = browser.submit("/sign-in", {"username": member.username, "password": member.password})
    assert page.status_code == 503
    assert time.monotonic() - started < 1.5  # refused at once, not after retries
    assert page.headers["Retry-After"] == "5"
    assert page.headers["Content-Type"].startswith("text/html")
    assert 'data-error-id="shared_state.unavailable"' in text_of(page)
    assert "Traceback" not in text_of(page) and "redis" not in text_of(page).lower()

    token = browser.token("/sign-in")
    problem = browser.client.post(
        "/sign-in", data={"csrf_token": token, "username": member.username,
                          "password": member.password},
        headers={"Accept": "application/json"},
    )
    assert problem.status_code == 503
    assert problem.headers["Content-Type"] == "application/problem+json"
    body = json.loads(text_of(problem))
    assert body["status"] == 503 and body["error_id"] == "shared_state.unavailable"
    assert sample("contactpoint_shared_state_unavailable_total",
                  kind="throttling", decision="refused") == refused_before + 2
    # Nothing happened: no session, no sign-in in the audit log.
    assert browser.client.get("/").status_code == 302
    assert not [t for t in audit_tags(container) if t.startswith("signin:")]


def test_throttling_open_signs_in_without_it_and_still_locks_the_account(
    container: Container, world: World, database_url: str, tmp_path: Path, clock: FrozenClock,
) -> None:
    app, built = sibling_app(
        container, database_url, tmp_path / "open",
        shared_state={"backend": "redis", "redis_url": f"redis://127.0.0.1:{unused_port()}/0",
                      "throttling_when_unavailable": "open"},
    )
    try:
        member = world.member(world.organisation())
        browser = Browser(app.test_client())
        assert browser.sign_in(member, container).status_code == 302
        browser.sign_out()
        other = world.member(world.organisation(), given_name="Lou")
        for _ in range(5):
            wrong = browser.submit("/sign-in", {"username": other.username,
                                                "password": "not my password 7"})
            assert wrong.status_code == 401
        clock.advance(seconds=30)
        assert browser.sign_in(other, container).status_code == 401  # locked in the database
        assert "signin:lockout" in audit_tags(container)
    finally:
        built.dispose()
