"""Access tokens for API tests, from the real token endpoint, in-process.

Applications are registered by an organisation admin and approved by a
platform admin, as in production; a person's token comes from the real
authorization code flow (sign-in pages, PKCE), a client's from client
credentials with HTTP Basic.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Flask

from core.clock import FrozenClock
from directory.models import Organisation, Role
from idp.container import Container
from idp.oidc.clients import Registration
from tests.factories import Member, World
from tests.idp.conftest import Browser
from tests.idp.oidc.helpers import DPoPKey
from tests.runlog import remember, remember_form

CALLBACK = "https://rp.example.org/callback"


@dataclass
class App:
    client_id: str
    secret: str


def register(world: World, organisation: Organisation, by: Member, approver: Member, *,
             approve: bool = True, **values: object) -> App:
    values.setdefault("redirect_uris", [CALLBACK])
    values.setdefault("scopes", ["openid", "admin"])
    values.setdefault("grant_types", ["authorization_code"])
    reg = Registration(organisation_id=organisation.id, name=str(values.pop("name", "Admin tool")),
                       **values)  # type: ignore[arg-type]
    unit = world.unit
    client, secret = unit.clients.register(world.principal(by), reg, "for the tests")
    if approve:
        unit.clients.approve(world.principal(approver), client.client_id, "checked")
        unit.clients.set_first_party(world.principal(approver), client.client_id, True,
                                     "checked")
    unit.commit()
    assert secret is not None
    remember("client secret", secret)
    return App(client.client_id, secret)


def basic(app: App) -> dict[str, str]:
    pair = f"{app.client_id}:{app.secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def client_token(flask_app: Flask, app: App, scope: str = "admin", **extra: str) -> str:
    answer = flask_app.test_client().post(
        "/oauth2/token", headers=basic(app),
        data={"grant_type": "client_credentials", "scope": scope, **extra})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    remember("access token", answer.get_json()["access_token"])
    return str(answer.get_json()["access_token"])


def person_token(flask_app: Flask, container: Container, clock: FrozenClock, member: Member,
                 app: App, scope: str = "openid admin", browser: Browser | None = None,
                 dpop: DPoPKey | None = None) -> str:
    """Sign in (unless `browser` already is), authorize with PKCE, exchange the
    code (with a proof of `dpop`'s key, for a DPoP-bound token)."""
    if browser is None:
        browser = Browser(flask_app.test_client())
        clock.advance(seconds=container.settings.totp.period_seconds)  # a fresh TOTP step
        assert browser.sign_in(member, container).status_code == 302
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({
        "response_type": "code", "client_id": app.client_id, "redirect_uri": CALLBACK,
        "scope": scope, "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge, "code_challenge_method": "S256",
    })
    answer = browser.client.get(f"/oauth2/authorize?{query}")
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK), location
    code = parse_qs(urlsplit(location).query)["code"][0]
    remember_form({"code": code, "code_verifier": verifier})
    headers = basic(app)
    if dpop is not None:
        issuer = flask_app.extensions["contactpoint_oidc"].issuer
        headers["DPoP"] = dpop.proof("POST", f"{issuer}/oauth2/token",
                                     iat=clock.now().timestamp())
    token = flask_app.test_client().post(
        "/oauth2/token", headers=headers,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
              "code_verifier": verifier})
    assert token.status_code == 200, token.get_data(as_text=True)
    remember("access token", token.get_json()["access_token"])
    return str(token.get_json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin_tool(world: World) -> tuple[App, Member]:
    """A first-party application that asks for the admin scope, registered by one
    platform admin and approved by another (nobody approves their own); and the
    approver, to approve more."""
    platform_org = world.organisation("ContactPoint Platform")
    registrant = world.member(platform_org, Role.PLATFORM_ADMIN, given_name="Pat",
                              family_name="Platform")
    approver = world.member(platform_org, Role.PLATFORM_ADMIN, given_name="Quinn")
    tool = register(world, platform_org, registrant, registrant, approve=False,
                    name="Admin tool")
    unit = world.unit
    unit.clients.approve(world.principal(approver), tool.client_id, "checked")
    unit.clients.set_first_party(world.principal(approver), tool.client_id, True, "checked")
    unit.commit()
    return tool, approver
