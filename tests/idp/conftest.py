"""Fixtures for the web layer: the real app factory on the test database."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.app import create_app
from idp.container import Container
from tests.factories import Member

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


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


class Browser:
    """Fills forms the way a person does: load the page, then post it with its token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def submit(self, path: str, data: dict[str, str], *, page: str | None = None):  # type: ignore[no-untyped-def]
        form_page = self.client.get(page or path)
        token = csrf_from(form_page.get_data(as_text=True))
        return self.client.post(path, data={"csrf_token": token, **data})

    def sign_in(self, member: Member, container: Container, *, code: str | None = None,
                pin: str | None = None):  # type: ignore[no-untyped-def]
        first = self.submit("/sign-in", {"username": member.username, "password": member.password})
        if first.status_code != 302:
            return first
        return self.submit(
            "/sign-in/token",
            {"code": code or member.totp(container), "pin": pin or member.pin},
        )


@pytest.fixture
def browser(client: FlaskClient) -> Browser:
    return Browser(client)
