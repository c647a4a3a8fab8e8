"""What a relying party does: Authlib's client, PKCE, and ID token checks."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.request
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from tests.idp.oidc.conftest import CALLBACK
from tests.runlog import remember


class RelyingParty(OAuth2Client):  # type: ignore[misc]
    """Authlib's client, remembering the tokens it is given (tests/runlog.py)."""

    def fetch_token(self, *args: Any, **kwargs: Any) -> Any:
        return _remembered(super().fetch_token(*args, **kwargs))

    def refresh_token(self, *args: Any, **kwargs: Any) -> Any:
        return _remembered(super().refresh_token(*args, **kwargs))


def _remembered(token: Any) -> Any:
    remember("access token", token.get("access_token"))
    remember("refresh token", token.get("refresh_token"))
    remember("ID token", token.get("id_token"))
    return token


def relying_party(base: str, client_id: str, secret: str | None, scope: str = "openid profile",
                  **extra: Any) -> OAuth2Client:
    return RelyingParty(client_id, secret, scope=scope, redirect_uri=CALLBACK,
                        code_challenge_method="S256",
                        token_endpoint_auth_method="client_secret_basic", **extra)


def start(rp: OAuth2Client, base: str, **params: Any) -> tuple[str, str, str]:
    """An authorization URL with PKCE and a nonce; (url, verifier, nonce)."""
    verifier = generate_token(48)
    nonce = generate_token(16)
    remember("PKCE verifier", verifier)
    remember("nonce", nonce)
    url, _state = rp.create_authorization_url(f"{base}/oauth2/authorize",
                                              code_verifier=verifier, nonce=nonce, **params)
    return url, verifier, nonce


def jwks(base: str) -> KeySet:
    with urllib.request.urlopen(f"{base}/.well-known/jwks.json") as response:  # noqa: S310
        return KeySet.import_key_set(json.loads(response.read()))


def verify_id_token(base: str, token: str, client_id: str, nonce: str | None) -> dict[str, Any]:
    """As a certified relying party would: signature by a published key, then
    iss, aud, exp, iat and nonce."""
    decoded = jwt.decode(token, jwks(base), algorithms=["ES256", "RS256"])
    claims = dict(decoded.claims)
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": base}, aud={"essential": True, "value": client_id},
        exp={"essential": True}, iat={"essential": True}, sub={"essential": True})
    registry.validate(claims)
    if nonce is not None:
        assert claims["nonce"] == nonce
    return claims


def decode_access_token(base: str, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    decoded = jwt.decode(token, jwks(base), algorithms=["ES256"])
    return dict(decoded.header), dict(decoded.claims)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DPoPKey:
    """A client's DPoP key, making proofs as RFC 9449 describes."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256")
        self.public = self.key.as_dict(private=False)

    @property
    def jkt(self) -> str:
        return self.key.thumbprint()

    def proof(self, method: str, url: str, access_token: str | None = None,
              iat: float | None = None, jti: str | None = None) -> str:
        claims: dict[str, Any] = {"htm": method, "htu": url, "iat": int(iat or time.time()),
                                  "jti": jti or secrets.token_urlsafe(12)}
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public}
        return jwt.encode(header, claims, self.key, algorithms=["ES256"])


def client_assertion(key: ECKey, client_id: str, audience: str, jti: str | None = None,
                     kid: str | None = None) -> str:
    now = int(time.time())
    header = {"alg": "ES256", **({"kid": kid} if kid else {})}
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60,
              "jti": jti or secrets.token_urlsafe(12)}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


def tokens_for(rp: OAuth2Client, base: str, person: Any, **params: Any) -> tuple[Any, str]:
    """The whole dance: authorization URL, the person's browser, the code exchanged.
    Returns the token response and the nonce that was sent."""
    url, verifier, nonce = start(rp, base, **params)
    token = rp.fetch_token(f"{base}/oauth2/token", authorization_response=person.visit(url),
                           code_verifier=verifier)
    return token, nonce
