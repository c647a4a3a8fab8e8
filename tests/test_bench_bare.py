"""bench/oidc_bare.py and bench/signin_bare.py, whose figures bench/oidc.py and
bench/signin.py print as the floor under the service on the same server: each
must do the least work its answer needs, no less, or the figure lies."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pyotp
import pytest
from argon2 import PasswordHasher
from joserfc import jwt
from joserfc.jwk import ECKey
from werkzeug.test import Client

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("BARE_CLIENT_ID", "bare-client")
    monkeypatch.setenv("BARE_CLIENT_SECRET", "the right secret")
    monkeypatch.setenv("BARE_ISSUER", "http://127.0.0.1:9")
    return _load("oidc_bare", monkeypatch)


def _post(
    bare: ModuleType, form: dict[str, str], secret: str = "the right secret"
) -> tuple[int, dict[str, str]]:
    basic = base64.b64encode(f"bare-client:{secret}".encode()).decode()
    response = Client(bare.app).post("/oauth2/token", data=form,
                                     headers={"Authorization": f"Basic {basic}"})
    return response.status_code, json.loads(response.get_data(as_text=True))


def test_the_access_token_is_an_es256_jwt_its_key_verifies(bare: ModuleType) -> None:
    status, body = _post(bare, {"grant_type": "client_credentials", "scope": "admin"})
    assert status == 200 and body["token_type"] == "Bearer"
    public = ECKey.import_key(bare._KEY.public_key())
    token = jwt.decode(body["access_token"], public, algorithms=["ES256"])
    assert token.header["typ"] == "at+jwt"
    assert token.claims["aud"] == "http://127.0.0.1:9/api/v1"
    assert token.claims["exp"] - token.claims["iat"] == 300
    assert "refresh_token" not in body


def test_a_refresh_answer_hands_out_a_new_refresh_token(bare: ModuleType) -> None:
    status, body = _post(bare, {"grant_type": "refresh_token", "refresh_token": "old"})
    assert status == 200
    assert body["refresh_token"] != "old" and len(body["refresh_token"]) >= 43


@pytest.mark.parametrize("secret", ["the wrong secret", "", "the right secret "])
def test_a_wrong_client_secret_is_refused(bare: ModuleType, secret: str) -> None:
    status, body = _post(bare, {"grant_type": "client_credentials"}, secret=secret)
    assert (status, body) == (401, {"error": "invalid_client"})


@pytest.mark.parametrize("form", [
    {"grant_type": "password"},
    {"grant_type": "refresh_token"},
    {},
])
def test_other_grants_and_a_refresh_without_its_token_are_refused(
    bare: ModuleType, form: dict[str, str]
) -> None:
    assert _post(bare, form)[0] == 400


# -- bench/signin_bare.py --------------------------------------------------------------------

PASSWORD, PIN, SECRET = "a bench password 17", "246813", pyotp.random_base32()


@pytest.fixture
def signin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    people = tmp_path / "people.json"
    people.write_text(json.dumps({"bench.user": [cheap.hash(PASSWORD), cheap.hash(PIN), SECRET]}))
    monkeypatch.setenv("BARE_PEOPLE", str(people))
    return _load("signin_bare", monkeypatch)


def _csrf(page: str) -> str:
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def _not_a_current_code() -> str:
    totp, now = pyotp.TOTP(SECRET), time.time()
    current = {totp.at(now + drift) for drift in (-30, 0, 30)}
    return next(c for c in (f"{n:06d}" for n in range(10)) if c not in current)


def _first_step(client: Any, password: str) -> Any:
    token = _csrf(client.get("/sign-in").get_data(as_text=True))
    return client.post("/sign-in", data={"csrf_token": token, "username": "bench.user",
                                         "password": password})


def test_the_bare_sign_in_takes_both_steps_and_their_checks(signin: ModuleType) -> None:
    client = signin.app.test_client()
    first = _first_step(client, PASSWORD)
    assert (first.status_code, first.headers["Location"]) == (302, "/sign-in/token")
    token = _csrf(client.get("/sign-in/token").get_data(as_text=True))
    done = client.post("/sign-in/token", data={"csrf_token": token, "pin": PIN,
                                               "code": pyotp.TOTP(SECRET).now()})
    assert (done.status_code, done.headers["Location"]) == (302, "/")
    assert client.get("/").get_data(as_text=True) == "signed in"


@pytest.mark.parametrize("wrong", ["pin", "code", "password", "csrf"])
def test_the_bare_sign_in_refuses_each_wrong_part(signin: ModuleType, wrong: str) -> None:
    client = signin.app.test_client()
    first = _first_step(client, "not the password" if wrong == "password" else PASSWORD)
    if wrong == "password":
        assert first.status_code == 200 and signin.REFUSED in first.get_data(as_text=True)
        return
    token = _csrf(client.get("/sign-in/token").get_data(as_text=True))
    form = {"csrf_token": "forged" if wrong == "csrf" else token,
            "pin": "135791" if wrong == "pin" else PIN,
            "code": _not_a_current_code() if wrong == "code" else pyotp.TOTP(SECRET).now()}
    refused = client.post("/sign-in/token", data=form)
    assert refused.status_code in (200, 400) and "Location" not in refused.headers
    assert client.get("/").status_code == 302  # still not signed in
