"""Security keys in a real browser: Chromium's virtual authenticator (the
DevTools WebAuthn domain) stands in for a key, so idp/static/webauthn.js runs
navigator.credentials.create() and .get() for real under the page's CSP.

The server's address is http://localhost:PORT here: browsers refuse an IP
address as a WebAuthn relying-party id, and localhost is a secure context."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from idp.demo import DEMO_PEOPLE
from tests.conftest import need
from tests.idp.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Server, _demo_secrets

pytestmark = pytest.mark.browser


@pytest.fixture
def localhost_server(tmp_path: Path) -> Iterator[Server]:
    need(CHROMIUM.exists(), f"Debian's chromium is not installed at {CHROMIUM}")
    running = Server(tmp_path)
    running.base_url = f"http://localhost:{running.port}"
    running.env["CONTACTPOINT_SERVICE__BASE_URL"] = running.base_url
    running.command("db", "upgrade")
    yield running
    running.stop()


def test_a_key_is_registered_used_to_sign_in_and_to_step_up_then_removed(
    localhost_server: Server,
) -> None:
    try:
        from playwright import sync_api as playwright_api
    except ImportError:  # pragma: no cover - installed with the test extras
        need(False, "the playwright package is not installed")
    server = localhost_server
    secrets = _demo_secrets(server.command("demo", "load"))
    server.start()
    base = server.base_url
    vera = next(p for p in DEMO_PEOPLE if p.username == "vera.officer")
    totp = pyotp.TOTP(secrets[vera.username])
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []

    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context()
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            devtools = context.new_cdp_session(page)
            devtools.send("WebAuthn.enable")
            devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
                "protocol": "ctap2", "transport": "usb", "hasResidentKey": False,
                "hasUserVerification": True, "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }})

            def password_step() -> None:
                page.goto(f"{base}/sign-in")
                page.fill("#username", vera.username)
                page.fill("#password", vera.password)
                page.get_by_role("button", name="Continue").click()
                page.wait_for_url(f"{base}/sign-in/token")

            def token_step(code: str) -> None:
                page.fill("#code", code)
                page.fill("#pin", vera.pin)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{base}/")

            def sign_out() -> None:
                page.get_by_role("button", name="Sign out").click()
                page.wait_for_url(f"{base}/signed-out")

            # Level 2 with the token; register a key.
            password_step()
            token_step(totp.now())
            page.goto(f"{base}/keys/add")
            page.fill("#name", "Virtual key")
            page.get_by_role("button", name="Register security key").click()
            page.wait_for_url(f"{base}/keys")
            assert "Virtual key" in page.inner_text("main")
            page.screenshot(path=str(ARTIFACTS / "keys.png"), full_page=True)
            sign_out()

            # Sign in with the key and the PIN: level 3.
            password_step()
            page.get_by_role("link", name="Use a security key instead").click()
            page.wait_for_url(f"{base}/sign-in/key")
            page.fill("#pin", vera.pin)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")
            assert "AAL3 (pwd, hwk, pin)" in page.inner_text("main")
            sign_out()

            # Level 2 again; removing the key steps up with the key first.
            password_step()
            token_step(totp.at(time.time() + totp.interval))
            page.goto(f"{base}/keys")
            page.get_by_role("link", name="Remove Virtual key").click()
            page.wait_for_url(re.compile(r".*/keys/step-up\?next=/keys/\d+/remove$"))
            page.screenshot(path=str(ARTIFACTS / "step-up.png"), full_page=True)
            page.fill("#pin", vera.pin)
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(re.compile(r".*/keys/\d+/remove$"))
            page.get_by_role("button", name="Remove this key").click()
            page.wait_for_url(f"{base}/keys")
            assert "You have no security keys registered" in page.inner_text("main")
            context.close()
        finally:
            chromium.close()
    assert problems == []
