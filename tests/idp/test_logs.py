"""What the logs hold: one JSON object a line with the request id, and never a
secret. The flows people run (activation, sign-in with mistakes, a PIN reset
by letter) run with every logger at DEBUG, SQLAlchemy's statements included;
then every secret the test typed or was given is looked for in the output."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from core.clock import FrozenClock
from directory.models import Role
from idp import logs
from idp.app import create_app
from idp.container import Container
from tests.factories import World
from tests.idp.conftest import Browser, csrf_from, text_of, totp_secret_on
from tests.idp.test_reset_pages import pin_steps, printed_code, send_letter

NEW_PASSWORD = "marble quarry lantern 2718"
NEW_PIN = "602915"
RESET_PIN = "731048"
WRONG_PASSWORD = "not the password at all 99"
WRONG_PIN = "159260"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure_logging("DEBUG", "json", stream)
    engine_logger = logging.getLogger("sqlalchemy.engine")
    previous = engine_logger.level
    engine_logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        engine_logger.setLevel(previous)
        logs.unconfigure()


def _session_secrets(client: FlaskClient) -> list[str]:
    """The session token and any flow tokens the signed cookie carries, and
    the cookies themselves."""
    found = [c.value for c in client._cookies.values()]
    with client.session_transaction() as session:
        found += [str(v) for v in session.values() if isinstance(v, str) and len(v) >= 16]
    return found


def _totp(secret: str, container: Container) -> str:
    import pyotp

    period = container.settings.totp.period_seconds
    return pyotp.TOTP(secret, interval=period).at(int(container.clock.now().timestamp()))


def test_full_flows_leave_no_secret_in_the_logs(
    captured: io.StringIO, app: Flask, container: Container, world: World, clock: FrozenClock,
    browser: Browser,
) -> None:
    secrets: list[str] = []
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Olivia")
    member = world.member(org, given_name="Priya")
    newcomer = world.newcomer(org)
    code = world.unit.activation.issue_code(newcomer)
    world.unit.commit()
    secrets += [admin.password, admin.pin, admin.totp_secret, member.password, member.pin,
                member.totp_secret, code]

    # Activation through the pages.
    fresh = Browser(app.test_client())
    assert fresh.submit("/activate", {"username": newcomer.username, "code": code}
                        ).status_code == 302
    assert fresh.submit("/activate/password", {"password": NEW_PASSWORD,
                                               "password_confirmation": NEW_PASSWORD}
                        ).status_code == 302
    secret = totp_secret_on(fresh.client.get("/activate/token"))
    first_code = _totp(secret, container)
    assert fresh.submit("/activate/token", {"code": first_code}).status_code == 302
    assert fresh.submit("/activate/pin", {"pin": NEW_PIN, "pin_confirmation": NEW_PIN}
                        ).status_code == 302
    secrets += [NEW_PASSWORD, NEW_PIN, secret, first_code, *_session_secrets(fresh.client)]

    # Sign-in: a wrong password, a wrong PIN, then right.
    clock.advance(seconds=30)
    assert fresh.submit("/sign-in", {"username": newcomer.username,
                                     "password": WRONG_PASSWORD}).status_code == 401
    assert fresh.submit("/sign-in", {"username": newcomer.username,
                                     "password": NEW_PASSWORD}).status_code == 302
    secrets += _session_secrets(fresh.client)
    wrong_pin_code = _totp(secret, container)
    assert fresh.submit("/sign-in/token", {"code": wrong_pin_code, "pin": WRONG_PIN}
                        ).status_code == 401
    clock.advance(seconds=30)
    assert fresh.submit("/sign-in", {"username": newcomer.username,
                                     "password": NEW_PASSWORD}).status_code == 302
    good_code = _totp(secret, container)
    assert fresh.submit("/sign-in/token", {"code": good_code, "pin": NEW_PIN}
                        ).status_code == 302
    secrets += [WRONG_PASSWORD, WRONG_PIN, wrong_pin_code, good_code,
                *_session_secrets(fresh.client), csrf_from(text_of(fresh.client.get("/")))]

    # A PIN reset by letter: the admin sends it, the person uses it.
    clock.advance(seconds=30)
    admin_code = admin.totp(container)
    assert browser.sign_in(admin, container, code=admin_code).status_code == 302
    secrets += [admin_code, *_session_secrets(browser.client)]
    letter = printed_code(container, send_letter(browser, member, "pin"))
    clock.advance(seconds=30)
    other = Browser(app.test_client())
    reset_code = member.totp(container)
    assert pin_steps(other, container, member, letter).status_code == 302
    assert other.submit("/reset-pin/new", {"pin": RESET_PIN, "pin_confirmation": RESET_PIN}
                        ).status_code == 302
    secrets += [letter, reset_code, RESET_PIN, *_session_secrets(other.client)]

    # An unexpected error whose message quotes a secret.
    def boom() -> str:
        raise ValueError(f"could not parse {RESET_PIN!r}")

    broken = create_app(container=container)
    broken.add_url_rule("/healthz/boom", "boom", boom)
    assert broken.test_client().get("/healthz/boom").status_code == 500

    output = captured.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert len(lines) > 40
    requests = [line for line in lines if line["event"] == "request"]
    assert {r["status"] for r in requests} >= {200, 302, 401, 500}
    assert all(re.fullmatch(r"[0-9a-f]{32}", r["request_id"]) for r in requests)
    assert any(line["logger"] == "sqlalchemy.engine.Engine" for line in lines)
    failure = next(line for line in lines if line.get("exception"))
    assert failure["exception"] == "ValueError" and failure["request_id"]

    # Timestamps and our own request ids are random digits, not secrets: set aside.
    searchable = re.sub(r'"(timestamp|request_id)": "[^"]*"', "", output)
    secrets = sorted({s for s in secrets if s and len(s) >= 6})
    assert len(secrets) >= 25
    leaked = [s for s in secrets if s in searchable]
    assert leaked == []
    # Nor the person's name in a request line: routes, not paths.
    assert member.person.display_name not in searchable


def test_values_under_secret_names_are_redacted(captured: io.StringIO) -> None:
    log = logs.get_logger("contactpoint.test")
    log.info("probe", password="hunter2 hunter2", pin="123987", totp_code="445566",
             session_token="abcdefabcdef", status_code=401, username="priya.p")
    line = json.loads(captured.getvalue().splitlines()[-1])
    assert line["password"] == line["pin"] == line["totp_code"] == "[redacted]"
    assert line["session_token"] == "[redacted]"
    assert line["status_code"] == 401 and line["username"] == "priya.p"
    # Each name's verdict is remembered after its first line: the second
    # line is redacted alike.
    log.info("again", password="correct horse 77", username="priya.p")
    again = json.loads(captured.getvalue().splitlines()[-1])
    assert again["password"] == "[redacted]" and again["username"] == "priya.p"


def test_authlib_does_not_write_the_tokens_it_issues_even_at_debug(
    captured: io.StringIO,
) -> None:
    """Authlib logs only at DEBUG, and quotes each token it issues."""
    issued = {"access_token": "eyJhbGciOiJFUzI1NiJ9.issued.token", "token_type": "Bearer"}
    logging.getLogger("authlib.oauth2.rfc6749.grants.authorization_code").debug(
        "Issue token %r to %r", issued, "client")
    logs.get_logger("contactpoint.test").debug("probe")
    assert "probe" in captured.getvalue()
    assert issued["access_token"] not in captured.getvalue()


def test_a_logger_made_before_a_reconfiguration_follows_it() -> None:
    """Loggers are module globals, made at import; each binds once per
    configuration, and must still write in the format the latest one says."""
    log = logs.get_logger("contactpoint.test")
    first, second = io.StringIO(), io.StringIO()
    try:
        logs.configure_logging("INFO", "console", first)
        log.info("as text", n=1)
        logs.configure_logging("INFO", "json", second)
        log.info("as json", n=2)
    finally:
        logs.unconfigure()
    assert "as text" in first.getvalue() and not first.getvalue().startswith("{")
    line = json.loads(second.getvalue().splitlines()[-1])
    assert line["event"] == "as json" and line["n"] == 2
    assert line["logger"] == "contactpoint.test"


class _Custom:
    def __structlog__(self) -> str:
        return "custom form"


def test_lines_render_as_structlog_s_own_json_renderer_would() -> None:
    """The renderer keeps one encoder for every line; what it writes must not
    change for it, whatever the values."""
    from datetime import UTC, datetime

    import structlog

    event = {"event": "probe", "when": datetime(2026, 12, 2, tzinfo=UTC), "odd": {1, 2},
             "custom": _Custom(), "nested": {"a": [1, 2.5, None, True]}, "name": "Zoë",
             "level": "info"}
    ours = logs._renderer("json")(None, "info", dict(event))
    stock = structlog.processors.JSONRenderer()(None, "info", dict(event))
    assert ours == stock
    assert json.loads(ours)["custom"] == "custom form"


def test_the_timestamp_is_now_in_utc_to_the_microsecond() -> None:
    from datetime import UTC, datetime, timedelta

    before = datetime.now(UTC) - timedelta(microseconds=1)  # either may round its last digit
    stamped = logs.utc_timestamp(None, "info", {})["timestamp"]
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamped)
    when = datetime.fromisoformat(stamped.replace("Z", "+00:00"))
    assert before <= when <= after
