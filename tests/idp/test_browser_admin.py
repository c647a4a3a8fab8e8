"""The whole of delegated enrolment in a real browser against a real server: an
organisation admin sponsors a colleague from the admin console, one vetting
officer records the four checks, another clears them, and the colleague
activates and signs in with all four factors."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from typing import Any

import pyotp
import pytest

from idp.demo import DEMO_PEOPLE
from tests.conftest import need
from tests.idp.test_browser import (  # `server` is the fixture, shared
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Server,
    _demo_secrets,
    server,  # noqa: F401
)

pytestmark = pytest.mark.browser


def _sign_in(page: Any, base: str, username: str, password: str, code: str, pin: str) -> None:
    page.goto(f"{base}/sign-in")
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{base}/sign-in/token")
    page.fill("#code", code)
    page.fill("#pin", pin)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def _date(page: Any, field: str, day: date) -> None:
    page.fill(f"#{field}-day", str(day.day))
    page.fill(f"#{field}-month", str(day.month))
    page.fill(f"#{field}-year", str(day.year))


def _banner(page: Any) -> str:
    page.wait_for_selector(".govuk-notification-banner")
    return str(page.inner_text(".govuk-notification-banner"))


def test_an_admin_sponsors_officers_vet_and_the_colleague_activates_and_signs_in(
    server: Server,  # noqa: F811 - the imported fixture
) -> None:
    try:
        from playwright import sync_api as playwright_api
    except ImportError:  # pragma: no cover - installed with the test extras
        need(False, "the playwright package is not installed")
    secrets = _demo_secrets(server.command("demo", "load"))
    server.start()
    base = server.base_url
    people = {p.username: p for p in DEMO_PEOPLE}
    problems: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)

    def watched(context: Any) -> Any:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on(
            "response",
            lambda r: (
                problems.append(f"{r.status} {r.url}")
                if r.status >= 400 and "/assets/" not in r.url  # styling: npm's, not ours
                else None
            ),
        )
        return page

    def sign_in_as(page: Any, username: str, steps_ahead: int = 0) -> None:
        """`steps_ahead`: a code once used is spent; an app a step ahead is in the window."""
        demo = people[username]
        code = pyotp.TOTP(secrets[username]).at(time.time() + 30 * steps_ahead)
        _sign_in(page, base, username, demo.password, code, demo.pin)

    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # The organisation admin sponsors a colleague from the admin console.
            context = chromium.new_context()
            page = watched(context)
            sign_in_as(page, "olivia.admin")
            page.get_by_role("link", name="Admin console").click()
            page.wait_for_url(f"{base}/admin")
            page.get_by_role("link", name="Northshire County Council").click()
            page.wait_for_url(re.compile(r".*/admin/organisations/\d+$"))
            assert "Olivia" in page.inner_text("main")  # her people are listed
            page.get_by_role("link", name="Sponsor an application").click()
            page.fill("#given_name", "Cora")
            page.fill("#family_name", "Colleague")
            page.fill("#work_email", "cora.colleague@northshire.example")
            page.get_by_label("Practitioner").check()
            page.get_by_role("button", name="Submit application").click()
            page.wait_for_url(re.compile(r".*/applications/\d+$"))
            assert "submitted for Cora Colleague" in _banner(page)
            application_url = page.url
            page.screenshot(path=str(ARTIFACTS / "admin-sponsored.png"), full_page=True)
            context.close()

            # One vetting officer records the four checks.
            context = chromium.new_context()
            page = watched(context)
            sign_in_as(page, "victor.officer")
            page.goto(application_url)
            today = date.today()
            page.select_option("#identity-confidence", "high")
            page.select_option("#identity-method", "face_to_face")
            _date(page, "identity-checked_on", today)
            page.fill("#identity-evidence_reference", "REG-2026-0042")
            page.get_by_role("button", name="Record identity check").click()
            _banner(page)
            page.fill("#certificate-certificate_number", "001122334455")
            _date(page, "certificate-issued_on", today - timedelta(days=10))
            page.select_option("#certificate-outcome", "nothing_recorded")
            page.get_by_role("button", name="Record criminal-record check").click()
            _banner(page)
            _date(page, "training-completed_on", today)
            page.get_by_role("button", name="Record training").click()
            _banner(page)
            _date(page, "agreement-signed_on", today)
            page.get_by_role("button", name="Record agreement").click()
            _banner(page)
            # Having recorded checks, Victor may not decide: the second pair of eyes is Vera's.
            assert page.get_by_role("button", name="Record decision").count() == 0
            context.close()

            # Another officer clears the application.
            context = chromium.new_context()
            page = watched(context)
            sign_in_as(page, "vera.officer")
            page.goto(application_url)
            page.get_by_label("Cleared").check()
            page.get_by_label("Reason").fill("All four checks recorded and satisfactory")
            page.get_by_role("button", name="Record decision").click()
            assert "Cora Colleague is enrolled" in _banner(page)
            context.close()

            letter_id = next(
                re.search(r"\d+", line).group(0)  # type: ignore[union-attr]
                for line in server.command("outbox", "list").splitlines()
                if "Cora Colleague" in line
            )
            letter = server.command("outbox", "print", letter_id)
            username = re.search(r"Username: (\S+)", letter)
            code = re.search(r"Activation code: (\S+)", letter)
            assert username and code, letter

            # The colleague activates and signs in.
            context = chromium.new_context()
            page = watched(context)
            page.goto(f"{base}/activate")
            page.fill("#username", username.group(1))
            page.fill("#code", code.group(1))
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(f"{base}/activate/password")
            password = "copper meadow lantern 73"
            page.fill("#password", password)
            page.fill("#password_confirmation", password)
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(f"{base}/activate/token")
            totp = pyotp.TOTP(page.inner_text("#totp-secret").replace(" ", "").strip())
            page.fill("#code", totp.now())
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(f"{base}/activate/pin")
            page.fill("#pin", "603917")
            page.fill("#pin_confirmation", "603917")
            page.get_by_role("button", name="Activate my account").click()
            page.wait_for_url(f"{base}/activate/done")
            _sign_in(
                page,
                base,
                username.group(1),
                password,
                totp.at(time.time() + totp.interval),
                "603917",
            )
            assert "Cora Colleague" in page.inner_text("h1")
            page.screenshot(path=str(ARTIFACTS / "admin-colleague-home.png"), full_page=True)
            context.close()

            # The admin now finds her in the console's search.
            context = chromium.new_context()
            page = watched(context)
            sign_in_as(page, "olivia.admin", steps_ahead=1)
            page.goto(f"{base}/admin")
            page.get_by_role("link", name="Northshire County Council").click()
            page.fill("#q", "cora col")
            page.get_by_role("button", name="Search").click()
            assert "1 person found" in page.inner_text("#result-count")
            assert "active" in page.inner_text("main table")
            context.close()
        finally:
            chromium.close()
    assert problems == []
