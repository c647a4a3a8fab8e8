"""The least a Python token endpoint can do, for bench/oidc.py's ceiling figure.

A bare WSGI application, served by the same server and workers as
`contactpoint serve`: it reads the form, checks the client's Basic credentials
with a keyed hash, signs an ES256 access token (RFC 9068 claims) and, for the
refresh grant, hands out a new random refresh token. No framework, no
database, no grant checks, no log line, no metrics: whatever this answers per
CPU-second is more than any Python application on that server can, so if it is
under oidc-provider's figure, parity is out of reach on that server whatever
the service does.

Settings come from the environment the benchmark sets: BARE_CLIENT_ID,
BARE_CLIENT_SECRET, BARE_ISSUER.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from core.crypto import SecretDigester

_KEY = ec.generate_private_key(ec.SECP256R1())
# The service's own keyed digest of client secrets (idp.oidc.provider).
_DIGESTER = SecretDigester(secrets.token_bytes(32))
_CLIENT_ID = os.environ.get("BARE_CLIENT_ID", "bare")
_ISSUER = os.environ.get("BARE_ISSUER", "http://127.0.0.1")
_SECRET_DIGEST = _DIGESTER.digest(os.environ.get("BARE_CLIENT_SECRET", ""))
_HEADER = base64.urlsafe_b64encode(
    json.dumps({"alg": "ES256", "kid": "bare", "typ": "at+jwt"}).encode()).rstrip(b"=")
_JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _es256(claims: dict[str, Any]) -> str:
    signing_input = _HEADER + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
    r, s = decode_dss_signature(_KEY.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return (signing_input + b"." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).decode()


def _client_ok(authorization: str) -> bool:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return False
    return client_id == _CLIENT_ID and _DIGESTER.matches(secret, _SECRET_DIGEST)


def _answer(start_response: Callable[..., Any], status: str, body: dict[str, Any]
            ) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [*_JSON, ("Content-Length", str(len(data)))])
    return [data]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("REQUEST_METHOD") != "POST":
        return _answer(start_response, "200 OK", {"bare": True})  # the readiness probe
    length = int(environ.get("CONTENT_LENGTH") or 0)
    form = parse_qs(environ["wsgi.input"].read(length).decode())
    if not _client_ok(environ.get("HTTP_AUTHORIZATION", "")):
        return _answer(start_response, "401 Unauthorized", {"error": "invalid_client"})
    grant = form.get("grant_type", [""])[0]
    if grant not in ("client_credentials", "refresh_token") or (
            grant == "refresh_token" and not form.get("refresh_token")):
        return _answer(start_response, "400 Bad Request", {"error": "invalid_grant"})
    now = int(time.time())
    claims = {"iss": _ISSUER, "sub": _CLIENT_ID, "aud": f"{_ISSUER}/api/v1",
              "client_id": _CLIENT_ID, "scope": form.get("scope", ["admin"])[0],
              "iat": now, "exp": now + 300, "jti": secrets.token_urlsafe(16)}
    body: dict[str, Any] = {"access_token": _es256(claims), "token_type": "Bearer",
                            "expires_in": 300}
    if grant == "refresh_token":
        body["refresh_token"] = secrets.token_urlsafe(32)
    return _answer(start_response, "200 OK", body)
