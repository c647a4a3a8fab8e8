"""Fixtures for the web layer: the real app factory on the test database."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.settings import InstanceSecrets, Settings
from idp.app import create_app
from idp.container import Container
from tests.conftest import make_settings
from tests.factories import Member
from tests.runlog import remember_cookies, remember_form

CSRF = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)
TOTP_SECRET = re.compile(r'id="totp-secret">\s*([^<]+?)\s*<')
MAIN = re.compile(r"<main\b.*?</main>", re.S)
ERROR_SUMMARY = re.compile(r'<div class="govuk-error-summary".*?</ul>', re.S)


@pytest.fixture
def app(container: Container) -> Iterator[Flask]:
    built = create_app(container=container)
    built.config["TESTING"] = True
    yield built


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_from(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


def text_of(response: Any) -> str:
    return str(response.get_data(as_text=True))


def main_of(response: Any) -> str:
    """The page's <main>, without the per-session CSRF tokens, for comparing pages."""
    match = MAIN.search(text_of(response))
    assert match, "no <main> on the page"
    return re.sub(r'value="[^"]*"', 'value=""', match.group(0))


def error_summary(response: Any) -> str:
    match = ERROR_SUMMARY.search(text_of(response))
    assert match, "no error summary on the page"
    return match.group(0)


def totp_secret_on(response: Any) -> str:
    """The key an activation page shows under #totp-secret, without its spaces."""
    match = TOTP_SECRET.search(text_of(response))
    assert match, "no #totp-secret on the page"
    return html.unescape(match.group(1)).replace(" ", "")


def gov_date(day: date) -> list[str]:
    """A GOV.UK date input posts three values (day, month, year) under one name."""
    return [str(day.day), str(day.month), str(day.year)]


def audit_count(container: Container) -> int:
    with container.unit() as unit:
        return int(unit.session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def audit_tags(container: Container) -> list[str]:
    with container.unit() as unit:
        return list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))


def sibling_app(
    container: Container, database_url: str, instance_dir: Path, **sections: dict[str, object]
) -> tuple[Flask, Container]:
    """An app on the same database, keys and clock as `container`, with other settings."""
    settings: Settings = make_settings(database_url, instance_dir, **sections)
    keys = InstanceSecrets(container.secrets.session_key, container.secrets.data_key)
    clock = container.clock
    assert isinstance(clock, FrozenClock)
    built = Container(settings, secrets=keys, clock=clock)
    flask_app = create_app(container=built)
    flask_app.config["TESTING"] = True
    return flask_app, built


class Browser:
    """Fills forms the way a person does: load the page, then post it with its token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def token(self, page: str) -> str:
        return csrf_from(text_of(self.client.get(page)))

    def submit(self, path: str, data: Mapping[str, Any], *, page: str | None = None,
               prefix: str | None = None):  # type: ignore[no-untyped-def]
        """Post a form as its page would. `prefix` names a prefixed form's own
        token field (`identity-csrf_token`); values may be lists (date inputs)."""
        token = self.token(page or path)
        fields: dict[str, Any] = {"csrf_token": token}
        if prefix:
            fields[f"{prefix}-csrf_token"] = token
        remember_form({**fields, **data})
        response = self.client.post(path, data={**fields, **data})
        remember_cookies((c.key, c.value) for c in self.client._cookies.values())
        return response

    def sign_in(self, member: Member, container: Container, *, code: str | None = None,
                pin: str | None = None):  # type: ignore[no-untyped-def]
        first = self.submit("/sign-in", {"username": member.username, "password": member.password})
        if first.status_code != 302:
            return first
        return self.submit(
            "/sign-in/token",
            {"code": code or member.totp(container), "pin": pin or member.pin},
        )

    def sign_out(self):  # type: ignore[no-untyped-def]
        return self.submit("/sign-out", {}, page="/")


@pytest.fixture
def browser(client: FlaskClient) -> Browser:
    return Browser(client)


@pytest.fixture
def another_browser(app: Flask) -> Browser:
    """A second person's browser, with its own cookies."""
    return Browser(app.test_client())
