"""Clients acting for themselves, bound tokens, pushed requests, introspection,
revocation, logout and key rotation, over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

import httpx
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import event, select

from directory.models import PersonStatus
from idp.container import Container
from idp.oidc.models import ClientKind, Grant
from tests.idp.oidc.conftest import CALLBACK, Cast, Person, free_port, query_of
from tests.idp.oidc.helpers import (
    DPoPKey,
    client_assertion,
    decode_access_token,
    jwks,
    relying_party,
    start,
    tokens_for,
    verify_id_token,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _cc(live: str, client_id: str, secret: str, **data: str) -> httpx.Response:
    return httpx.post(f"{live}/oauth2/token", auth=(client_id, secret),
                      data={"grant_type": "client_credentials", **data})


def test_client_credentials_issue_a_short_jwt_for_the_client_itself(
    live: str, cast: Cast
) -> None:
    app = cast.register(grant_types=["client_credentials"], redirect_uris=[],
                        scopes=["admin", "children.read"])
    answer = _cc(live, app.client_id, app.secret or "", scope="admin")
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer" and "refresh_token" not in body
    header, claims = decode_access_token(live, body["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["sub"] == app.client_id and claims["scope"] == "admin"
    # A scope it was not registered for, or a person's scope, is refused.
    for scope in ("positions", "openid"):
        refused = _cc(live, app.client_id, app.secret or "", scope=scope)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    # Grant types it was not registered for are refused too.
    code_app = cast.register()
    refused = _cc(live, code_app.client_id, code_app.secret or "")
    assert refused.json()["error"] == "unauthorized_client"


def test_a_warm_client_credentials_grant_opens_no_database_transaction(
    live: str, cast: Cast, container: Container
) -> None:
    """The busiest grant, once its client and the keys are cached, needs no
    database: opening a session only to commit nothing cost about a tenth of
    its CPU (bench/oidc.py). A refusal still writes its audit entry."""
    app = cast.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["admin"])
    assert _cc(live, app.client_id, app.secret or "", scope="admin").status_code == 200
    opened: list[object] = []

    def count(_session: object, transaction: object) -> None:
        opened.append(transaction)

    event.listen(container.session_factory, "after_transaction_create", count)
    try:
        answer = _cc(live, app.client_id, app.secret or "", scope="admin")
        quiet = len(opened)
        wrong = _cc(live, app.client_id, "not the secret", scope="admin")
    finally:
        event.remove(container.session_factory, "after_transaction_create", count)
    assert answer.status_code == 200
    assert decode_access_token(live, answer.json()["access_token"])[1]["sub"] == app.client_id
    assert quiet == 0
    assert wrong.status_code == 401 and len(opened) > 0


def test_resource_indicators_name_only_registered_resources(live: str, cast: Cast) -> None:
    cast.register(kind=ClientKind.RESOURCE_SERVER, grant_types=[], redirect_uris=[],
                  scopes=[], resource_uri="https://records.example.org/api")
    app = cast.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["admin"])
    good = _cc(live, app.client_id, app.secret or "", resource="https://records.example.org/api")
    assert decode_access_token(live, good.json()["access_token"])[1]["aud"] == \
        "https://records.example.org/api"
    bad = _cc(live, app.client_id, app.secret or "", resource="https://elsewhere.example.org")
    assert bad.json()["error"] == "invalid_target"


def test_introspection_answers_only_the_token_s_client_and_its_resource_server(
    live: str, cast: Cast
) -> None:
    server = cast.register(kind=ClientKind.RESOURCE_SERVER, grant_types=[], redirect_uris=[],
                           scopes=[], resource_uri="https://records.example.org/api")
    owner = cast.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["admin"])
    stranger = cast.register(grant_types=["client_credentials"], redirect_uris=[],
                             scopes=["admin"])
    token = _cc(live, owner.client_id, owner.secret or "", scope="admin",
                resource="https://records.example.org/api").json()["access_token"]

    def introspect(who: object) -> dict[str, object]:
        return dict(httpx.post(f"{live}/oauth2/introspect",
                               auth=(who.client_id, who.secret),  # type: ignore[attr-defined]
                               data={"token": token}).json())

    assert introspect(owner)["active"] is True
    assert introspect(owner)["client_id"] == owner.client_id
    assert introspect(server)["active"] is True
    assert introspect(stranger) == {"active": False}
    unauthenticated = httpx.post(f"{live}/oauth2/introspect", data={"token": token})
    assert unauthenticated.status_code == 401


def test_revocation_ends_a_client_token_and_a_refresh_token_s_family(
    live: str, cast: Cast, person: Person
) -> None:
    machine = cast.register(grant_types=["client_credentials"], redirect_uris=[],
                            scopes=["admin"])
    token = _cc(live, machine.client_id, machine.secret or "", scope="admin").json()
    revoked = httpx.post(f"{live}/oauth2/revoke", auth=(machine.client_id, machine.secret or ""),
                         data={"token": token["access_token"]})
    assert revoked.status_code == 200
    assert httpx.post(f"{live}/oauth2/introspect", auth=(machine.client_id, machine.secret or ""),
                      data={"token": token["access_token"]}).json() == {"active": False}
    app = cast.register(first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    issued, _nonce = tokens_for(rp, live, person)
    # Another client cannot revoke it (RFC 7009: silently ignored)...
    httpx.post(f"{live}/oauth2/revoke", auth=(machine.client_id, machine.secret or ""),
               data={"token": issued["refresh_token"]})
    assert "access_token" in rp.refresh_token(f"{live}/oauth2/token",
                                              refresh_token=issued["refresh_token"])
    current = rp.token["refresh_token"]
    # ...its own client can, and the whole family ends.
    httpx.post(f"{live}/oauth2/revoke", auth=(app.client_id, app.secret or ""),
               data={"token": current})
    with pytest.raises(OAuthError):
        rp.refresh_token(f"{live}/oauth2/token", refresh_token=current)
    assert httpx.get(f"{live}/oauth2/userinfo", headers={
        "Authorization": f"Bearer {rp.token['access_token']}"}).status_code == 401


@pytest.fixture
def client_key() -> ECKey:
    return ECKey.generate_key("P-256")


def test_private_key_jwt_authenticates_and_an_assertion_works_once(
    live: str, cast: Cast, client_key: ECKey
) -> None:
    public = client_key.as_dict(private=False)
    public["kid"] = "k1"
    app = cast.register(auth_method="private_key_jwt", jwks={"keys": [public]},
                        grant_types=["client_credentials"], redirect_uris=[], scopes=["admin"])
    assert app.secret is None
    assertion = client_assertion(client_key, app.client_id, f"{live}/oauth2/token", kid="k1")
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion}
    first = httpx.post(f"{live}/oauth2/token", data=data)
    assert first.status_code == 200, first.text
    replayed = httpx.post(f"{live}/oauth2/token", data=data)
    assert replayed.status_code in (400, 401)
    assert replayed.json()["error"] == "invalid_client"
    # A key the client did not register is refused.
    other = ECKey.generate_key("P-256")
    forged = httpx.post(f"{live}/oauth2/token", data={
        **data, "client_assertion": client_assertion(other, app.client_id,
                                                     f"{live}/oauth2/token")})
    assert forged.json()["error"] == "invalid_client"
    # And so is a secret: this client has none.
    assert _cc(live, app.client_id, "guess").status_code == 401


class JwksHost:
    """A relying application's jwks_uri, served on loopback."""

    def __init__(self, jwks: dict[str, object]) -> None:
        body = json.dumps(jwks).encode()
        self.hits = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.port = free_port()
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_private_key_jwt_with_keys_from_the_client_s_jwks_uri(
    live: str, cast: Cast, client_key: ECKey
) -> None:
    host = JwksHost({"keys": [client_key.as_dict(private=False)]})
    try:
        app = cast.register(auth_method="private_key_jwt",
                            jwks_uri=f"http://127.0.0.1:{host.port}/jwks.json",
                            grant_types=["client_credentials"], redirect_uris=[],
                            scopes=["admin"])
        for _ in range(2):
            answer = httpx.post(f"{live}/oauth2/token", data={
                "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion(client_key, app.client_id,
                                                     f"{live}/oauth2/token")})
            assert answer.status_code == 200, answer.text
        assert host.hits == 1  # fetched once, then cached
    finally:
        host.server.shutdown()


def test_private_key_jwt_works_with_authlib_s_own_client_method(
    live: str, cast: Cast, client_key: ECKey, person: Person
) -> None:
    from authlib.oauth2.rfc7523 import PrivateKeyJWT

    public = client_key.as_dict(private=False)
    app = cast.register(auth_method="private_key_jwt", jwks={"keys": [public]},
                        first_party=True)
    rp = OAuth2Client(app.client_id, client_key, scope="openid profile", redirect_uri=CALLBACK,
                      code_challenge_method="S256", token_endpoint_auth_method="private_key_jwt")
    rp.register_client_auth_method(PrivateKeyJWT(f"{live}/oauth2/token", alg="ES256"))
    token, nonce = tokens_for(rp, live, person)
    verify_id_token(live, token["id_token"], app.client_id, nonce)


def test_dpop_binds_tokens_to_the_client_s_key(live: str, cast: Cast, person: Person) -> None:
    app = cast.register(dpop_required=True, first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    url, verifier, _nonce = start(rp, live)
    code = query_of(person.visit(url))["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
            "code_verifier": verifier}
    token_url = f"{live}/oauth2/token"
    # Required for this client: without a proof, refused (and the code is not used up).
    missing = httpx.post(token_url, auth=(app.client_id, app.secret or ""), data=data)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_dpop_proof"
    key = DPoPKey()
    answer = httpx.post(token_url, auth=(app.client_id, app.secret or ""), data=data,
                        headers={"DPoP": key.proof("POST", token_url)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "DPoP"
    assert decode_access_token(live, body["access_token"])[1]["cnf"] == {"jkt": key.jkt}
    userinfo = f"{live}/oauth2/userinfo"
    access = body["access_token"]
    # As a bearer token it is worth nothing.
    assert httpx.get(userinfo, headers={"Authorization": f"Bearer {access}"}).status_code == 401
    proof = key.proof("GET", userinfo, access_token=access)
    good = httpx.get(userinfo, headers={"Authorization": f"DPoP {access}", "DPoP": proof})
    assert good.status_code == 200, good.text
    # A proof works once.
    again = httpx.get(userinfo, headers={"Authorization": f"DPoP {access}", "DPoP": proof})
    assert again.status_code == 401
    # Another key's proof does not fit the token.
    thief = DPoPKey()
    stolen = httpx.get(userinfo, headers={"Authorization": f"DPoP {access}",
                                          "DPoP": thief.proof("GET", userinfo, access)})
    assert stolen.status_code == 401
    # The refresh token is bound too: only the same key refreshes it.
    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    wrong = httpx.post(token_url, auth=(app.client_id, app.secret or ""), data=refresh,
                       headers={"DPoP": thief.proof("POST", token_url)})
    assert wrong.json()["error"] == "invalid_dpop_proof"
    right = httpx.post(token_url, auth=(app.client_id, app.secret or ""), data=refresh,
                       headers={"DPoP": key.proof("POST", token_url)})
    assert right.status_code == 200


def test_pushed_authorization_requests(live: str, cast: Cast, person: Person) -> None:
    app = cast.register(par_required=True, first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    url, verifier, nonce = start(rp, live)
    # Required for this client: a plain request gets an error page, no redirect.
    person.sign_in()
    plain = person.http.get(url)
    assert plain.status_code == 400 and "Location" not in plain.headers
    params = query_of(url)
    pushed = httpx.post(f"{live}/oauth2/par", auth=(app.client_id, app.secret or ""),
                        data=params)
    assert pushed.status_code == 201, pushed.text
    request_uri = pushed.json()["request_uri"]
    assert pushed.json()["expires_in"] == 60
    go = f"{live}/oauth2/authorize?client_id={app.client_id}&request_uri={request_uri}"
    callback = person.visit(go)
    token = rp.fetch_token(f"{live}/oauth2/token", authorization_response=callback,
                           code_verifier=verifier)
    verify_id_token(live, token["id_token"], app.client_id, nonce)
    # A request_uri works once.
    assert person.http.get(go).status_code == 400
    # Pushing needs the client's own credentials, and a valid request.
    assert httpx.post(f"{live}/oauth2/par", data=params).status_code == 401
    bad = httpx.post(f"{live}/oauth2/par", auth=(app.client_id, app.secret or ""),
                     data={**params, "redirect_uri": "https://evil.example.net/cb"})
    assert bad.status_code == 400


class Receiver:
    """A relying application's back-channel logout endpoint."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        received = self.tokens

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                received.append(form["logout_token"][0])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.port = free_port()
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/backchannel"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.server.shutdown()


def _signed_in_app(live: str, cast: Cast, person: Person, receiver: Receiver) -> tuple[
        object, dict[str, object]]:
    app = cast.register(first_party=True, backchannel_logout_uri=receiver.uri,
                        post_logout_redirect_uris=["https://rp.example.org/bye"])
    rp = relying_party(live, app.client_id, app.secret)
    token, nonce = tokens_for(rp, live, person)
    claims = verify_id_token(live, token["id_token"], app.client_id, nonce)
    return app, {"id_token": token["id_token"], "sid": claims["sid"], "sub": claims["sub"],
                 "refresh_token": token["refresh_token"]}


def _check_logout_token(live: str, value: str, client_id: str, sid: object) -> None:
    decoded = jwt.decode(value, jwks(live))
    assert decoded.header["typ"] == "logout+jwt"
    claims = decoded.claims
    assert claims["iss"] == live and claims["aud"] == client_id and claims["sid"] == sid
    assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"]
    assert "nonce" not in claims


def test_rp_initiated_logout_signs_out_and_tells_every_application(
    live: str, cast: Cast, person: Person, receiver: Receiver
) -> None:
    app, signed = _signed_in_app(live, cast, person, receiver)
    params = {"id_token_hint": signed["id_token"], "state": "bye1",
              "post_logout_redirect_uri": "https://rp.example.org/bye"}
    page = person.http.get(f"{live}/oauth2/logout", params=params)
    assert page.status_code == 200 and "Sign out of ContactPoint?" in page.text
    import re
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
    assert csrf
    done = person.http.post(f"{live}/oauth2/logout", data={**params,
                                                           "csrf_token": csrf.group(1)})
    assert done.status_code == 302
    assert done.headers["Location"] == "https://rp.example.org/bye?state=bye1"
    assert len(receiver.tokens) == 1
    _check_logout_token(live, receiver.tokens[0], app.client_id, signed["sid"])  # type: ignore[attr-defined]
    refresh = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret),  # type: ignore[attr-defined]
                         data={"grant_type": "refresh_token",
                               "refresh_token": signed["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"
    assert person.http.get("/").status_code in (200, 302)


def test_logout_refuses_an_unregistered_post_logout_redirect(
    live: str, cast: Cast, person: Person, receiver: Receiver
) -> None:
    _app, signed = _signed_in_app(live, cast, person, receiver)
    refused = person.http.get(f"{live}/oauth2/logout", params={
        "id_token_hint": signed["id_token"],
        "post_logout_redirect_uri": "https://evil.example.net/"})
    assert refused.status_code == 400 and "Location" not in refused.headers
    forged = person.http.get(f"{live}/oauth2/logout", params={"id_token_hint": "a.b.c"})
    assert forged.status_code == 400
    assert receiver.tokens == []


def test_suspension_sends_a_back_channel_logout(
    live: str, cast: Cast, person: Person, receiver: Receiver, container: Container
) -> None:
    app, signed = _signed_in_app(live, cast, person, receiver)
    with container.unit() as unit:
        someone = unit.directory.person(cast.person.person.id)
        unit.directory.set_status(someone, PersonStatus.SUSPENDED, "investigation",
                                  tag="person:suspended")
        unit.commit()
    assert len(receiver.tokens) == 1
    _check_logout_token(live, receiver.tokens[0], app.client_id, signed["sid"])  # type: ignore[attr-defined]
    with container.unit() as unit:
        grant = unit.session.scalars(select(Grant)).one()
        assert grant.revoked_reason == "session ended"


def test_key_rotation_signs_with_the_key_published_ahead_and_keeps_the_old_one(
    live: str, cast: Cast, person: Person, container: Container
) -> None:
    before = {k["kid"]: k for k in httpx.get(f"{live}/.well-known/jwks.json").json()["keys"]}
    with container.unit() as unit:
        unit.key_rotation.ensure()
        states = {k.kid: k.state for k in unit.key_rotation.all_keys()}
        promoted = unit.key_rotation.rotate()
        unit.commit()
    container.oidc_keys.invalidate()
    next_es256 = [kid for kid, state in states.items()
                  if state == "next" and before[kid]["alg"] == "ES256"]
    assert next_es256 and next_es256[0] in promoted
    after = {k["kid"] for k in httpx.get(f"{live}/.well-known/jwks.json").json()["keys"]}
    assert set(before) <= after  # the old keys stay published
    assert len(after) == len(before) + 2  # and a new next key for each algorithm
    app = cast.register(first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    token, nonce = tokens_for(rp, live, person)
    from joserfc import jws
    assert jws.extract_compact(token["id_token"].encode()).headers()["kid"] == next_es256[0]
    verify_id_token(live, token["id_token"], app.client_id, nonce)


def test_signing_keys_are_encrypted_at_rest(container: Container, live: str) -> None:
    httpx.get(f"{live}/.well-known/jwks.json")
    with container.unit() as unit:
        for key in unit.key_rotation.all_keys():
            assert "PRIVATE KEY" not in key.private_key
            assert "d" not in key.public_jwk
    assert json.dumps(httpx.get(f"{live}/.well-known/jwks.json").json()).count('"d"') == 0


def test_the_token_endpoint_answers_503_not_a_stack_trace_when_the_database_is_down(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from core.settings import InstanceSecrets
    from idp.app import create_app
    from tests.conftest import make_settings

    folder = Path(str(tmp_path))
    settings = make_settings(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
                             folder / "instance")
    container = Container(settings, secrets=InstanceSecrets(b"k" * 32, b"d" * 32))
    try:
        client = create_app(container=container).test_client()
        answer = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                             headers={"Authorization": "Basic eDp5"})
        assert answer.status_code == 503
        assert answer.get_json()["error"] == "temporarily_unavailable"
        assert answer.headers["Retry-After"] == "1"
        assert "Traceback" not in answer.get_data(as_text=True)
        assert "psycopg" not in answer.get_data(as_text=True)
    finally:
        container.dispose()
