"""bench/oidc_bare.py, whose figure bench/oidc.py prints as the server's ceiling:
it must do the least work a token answer needs, no less, or the ceiling lies."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from werkzeug.test import Client

BARE = Path(__file__).resolve().parent.parent / "bench" / "oidc_bare.py"


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("BARE_CLIENT_ID", "bare-client")
    monkeypatch.setenv("BARE_CLIENT_SECRET", "the right secret")
    monkeypatch.setenv("BARE_ISSUER", "http://127.0.0.1:9")
    spec = importlib.util.spec_from_file_location("oidc_bare_under_test", BARE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


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
