"""One journey in a real browser against a real server: an officer clears the
waiting application, and the newcomer activates and signs in with all four
factors. Screenshots go to test-artifacts/ for a person to look at."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from idp.demo import DEMO_PEOPLE
from tests.conftest import need
from tests.runlog import keep_command_output, keep_server_log, remember

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CONTACTPOINT = Path(sys.executable).parent / "contactpoint"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
GOVUK_BRAND_BLUE = "rgb(29, 112, 184)"

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, tmp_path: Path) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "server.log"
        ambient = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTPOINT_")}
        self.env = {
            **ambient,
            "CONTACTPOINT_SERVICE__INSTANCE_DIR": str(tmp_path / "instance"),
            "CONTACTPOINT_SERVICE__BASE_URL": self.base_url,
            "CONTACTPOINT_DATABASE__URL": f"sqlite:///{tmp_path / 'contactpoint.db'}",
            "CONTACTPOINT_ARGON2__MEMORY_KIB": "4096",
            "CONTACTPOINT_ARGON2__TIME_COST": "1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> str:
        done = subprocess.run(
            [str(CONTACTPOINT), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        keep_command_output(args[0], done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self) -> None:
        keep_server_log(self.log)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(CONTACTPOINT), "run", "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                health = f"{self.base_url}/healthz"  # always http://127.0.0.1
                with urllib.request.urlopen(health, timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"the server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    need(CHROMIUM.exists(), f"Debian's chromium is not installed at {CHROMIUM}")
    running = Server(tmp_path)
    running.command("db", "upgrade")
    yield running
    running.stop()


def _demo_secrets(output: str) -> dict[str, str]:
    """username -> TOTP secret, from the table `contactpoint demo load` prints."""
    wanted = {p.username for p in DEMO_PEOPLE}
    found = {}
    for line in output.splitlines():
        words = line.split()
        if words and words[0] in wanted:
            found[words[0]] = words[-1]
    assert found.keys() == wanted, output
    for person in DEMO_PEOPLE:
        remember("password", person.password)
        remember("PIN", person.pin)
    remember("TOTP secret", *found.values())
    return found


def _looks_like_govuk(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """The stylesheet and the GDS Transport font were served from /assets and used."""
    page.evaluate("document.fonts.ready")
    header = page.eval_on_selector(".govuk-header", "e => getComputedStyle(e).backgroundColor")
    assert header == GOVUK_BRAND_BLUE, f"{name}: header is {header}; is the CSS served?"
    family = page.eval_on_selector("main h1", "e => getComputedStyle(e).fontFamily")
    assert "GDS Transport" in family, f"{name}: heading font is {family}"
    loaded = page.evaluate(
        "[...document.fonts].filter(f => f.family.includes('GDS Transport')"
        " && f.status === 'loaded').length"
    )
    assert loaded > 0, f"{name}: the GDS Transport font did not load"
    assert page.evaluate("document.body.classList.contains('govuk-frontend-supported')"), (
        f"{name}: GOV.UK Frontend's script did not run (CSP nonce?)"
    )


def test_an_officer_clears_an_application_and_the_newcomer_activates_and_signs_in(
    server: Server,
) -> None:
    try:
        from playwright import sync_api as playwright_api
    except ImportError:  # pragma: no cover - installed with the test extras
        need(False, "the playwright package is not installed")
    secrets = _demo_secrets(server.command("demo", "load"))
    server.start()
    base = server.base_url
    vera = next(p for p in DEMO_PEOPLE if p.username == "vera.officer")
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []

    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            officer_context = chromium.new_context()
            page = officer_context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )

            page.goto(f"{base}/sign-in")
            _looks_like_govuk(page, "sign-in")
            page.screenshot(path=str(ARTIFACTS / "sign-in.png"), full_page=True)
            page.fill("#username", vera.username)
            page.fill("#password", vera.password)
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(f"{base}/sign-in/token")
            page.fill("#code", pyotp.TOTP(secrets[vera.username]).now())
            page.fill("#pin", vera.pin)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")
            assert "Vera Officer" in page.inner_text("main")

            page.goto(f"{base}/applications")
            page.get_by_role("link", name="Sam Newstarter").click()
            page.wait_for_url(re.compile(r".*/applications/\d+$"))
            page.get_by_label("Cleared").check()
            page.get_by_label("Reason").fill("Every check recorded and satisfactory")
            page.get_by_role("button", name="Record decision").click()
            page.wait_for_selector(".govuk-notification-banner")
            banner = page.inner_text(".govuk-notification-banner")
            assert "Sam Newstarter is enrolled" in banner, banner
            officer_context.close()

            listed = server.command("outbox", "list")
            row = next(line for line in listed.splitlines() if "Sam Newstarter" in line)
            letter_id = re.search(r"\d+", row)
            assert letter_id, row
            letter = server.command("outbox", "print", letter_id.group(0))
            username = re.search(r"Username: (\S+)", letter)
            code = re.search(r"Activation code: (\S+)", letter)
            assert username and code, letter
            remember("activation code", code.group(1))

            newcomer_context = chromium.new_context()
            page = newcomer_context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(f"{base}/activate")
            page.fill("#username", username.group(1))
            page.fill("#code", code.group(1))
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(f"{base}/activate/password")
            password = "granite lemon parachute 58"
            page.fill("#password", password)
            page.fill("#password_confirmation", password)
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(f"{base}/activate/token")
            secret = page.inner_text("#totp-secret").replace(" ", "").strip()
            totp = pyotp.TOTP(secret)
            page.fill("#code", totp.now())
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(f"{base}/activate/pin")
            page.fill("#pin", "602851")
            page.fill("#pin_confirmation", "602851")
            page.get_by_role("button", name="Activate my account").click()
            page.wait_for_url(f"{base}/activate/done")
            assert "Your account is active" in page.inner_text("main")

            page.goto(f"{base}/sign-in")
            page.fill("#username", username.group(1))
            page.fill("#password", password)
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(f"{base}/sign-in/token")
            # The code activation used is spent; an app a step ahead is within the drift window.
            page.fill("#code", totp.at(time.time() + totp.interval))
            page.fill("#pin", "602851")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")
            assert "Sam Newstarter" in page.inner_text("h1")
            _looks_like_govuk(page, "home")
            page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)
            newcomer_context.close()
        finally:
            chromium.close()
    assert problems == []
