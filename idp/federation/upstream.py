"""The relying-party side of federation: an upstream provider's discovery
document and keys, the authorization request and the ID token's checks.

Discovery and the JWKS are public metadata, so each process keeps its own
copy (nothing another node needs): refreshed after `ttl_seconds`, and at once
when an ID token names a key the copy lacks (a provider's rotation), but no
more often than every `refresh_seconds`, so forged tokens with made-up key ids
cannot make this service hammer the provider.
"""

from __future__ import annotations

import hmac
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from joserfc.jws import extract_compact

from core.errors import DomainError

with warnings.catch_warnings():
    # Authlib 1.9 announces a move to an `httpx2` package; httpx 0.28 is what it
    # supports today, and the notice would greet everyone who starts the service.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import OAuth2Client

# Asymmetric only: `none` and the HS* family (keyed with the client secret, which
# the provider's other clients may know) are refused for ID tokens.
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                       "ES256", "ES384", "ES512", "EdDSA"]
LEEWAY_SECONDS = 60
SCOPE = "openid profile email"


class UpstreamUnavailable(DomainError):
    """The upstream provider could not be used; the message names the step."""

    error_id = "federation.upstream_unavailable"
    title = "The organisation's identity provider could not be used"

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step


class UpstreamRefused(Exception):
    """A callback that proves nothing; `reason` is for the audit log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@cache
def tls() -> ssl.SSLContext:
    """One TLS context for every request to providers: httpx builds a new one
    (loading the CA bundle, about 0.1 s of CPU) for each client otherwise, and
    each callback makes one. The same CA bundle and settings httpx would use."""
    return httpx.create_ssl_context()


@dataclass(frozen=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def is_acceptable_url(url: str) -> bool:
    """https, or http on a loopback address (tests and development)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


@dataclass
class _Entry:
    value: Any
    fetched: float


class MetadataCache:
    """Discovery documents and key sets by issuer, for this process."""

    def __init__(
        self,
        *,
        ttl_seconds: float = 3600,
        refresh_seconds: float = 30,
        timeout_seconds: float = 5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl_seconds
        self.refresh = refresh_seconds
        self.timeout = timeout_seconds
        self._now = monotonic
        self._lock = threading.Lock()
        self._discovery: dict[str, _Entry] = {}
        self._keys: dict[str, _Entry] = {}
        self.fetches = 0  # how many documents were fetched (for tests and metrics)

    def _get_json(self, step: str, url: str) -> dict[str, Any]:
        if not is_acceptable_url(url):
            raise UpstreamUnavailable(step, f"{url} is not https")
        self.fetches += 1
        try:
            response = httpx.get(url, timeout=self.timeout, follow_redirects=False, verify=tls())
        except httpx.HTTPError as error:
            raise UpstreamUnavailable(step, f"cannot fetch {url}: {error}") from None
        if response.status_code != 200:
            raise UpstreamUnavailable(step, f"{url} answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise UpstreamUnavailable(step, f"{url} did not answer JSON") from None
        if not isinstance(body, dict):
            raise UpstreamUnavailable(step, f"{url} did not answer a JSON object")
        return body

    def discovery(self, issuer: str) -> Discovery:
        with self._lock:
            entry = self._discovery.get(issuer)
            if entry is not None and self._now() - entry.fetched < self.ttl:
                return entry.value  # type: ignore[no-any-return]
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        body = self._get_json("discovery", url)
        if body.get("issuer") != issuer:
            # OpenID Connect Discovery 1.0 section 4.3: they must be identical.
            raise UpstreamUnavailable(
                "discovery", f"the document names issuer {body.get('issuer')!r}, not {issuer!r}"
            )
        missing = [
            name for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")
            if not isinstance(body.get(name), str)
        ]
        if missing:
            raise UpstreamUnavailable("discovery", f"the document lacks {', '.join(missing)}")
        found = Discovery(
            issuer, body["authorization_endpoint"], body["token_endpoint"], body["jwks_uri"]
        )
        with self._lock:
            self._discovery[issuer] = _Entry(found, self._now())
        return found

    def keys(self, discovery: Discovery, kid: str | None = None) -> KeySet:
        """The provider's keys; fetched again if `kid` is unknown and the last
        fetch is older than the refresh interval."""
        with self._lock:
            entry = self._keys.get(discovery.issuer)
        now = self._now()
        if entry is not None:
            fresh = now - entry.fetched < self.ttl
            known = kid is None or any(k.kid == kid for k in entry.value.keys)
            if fresh and (known or now - entry.fetched < self.refresh):
                return entry.value  # type: ignore[no-any-return]
        body = self._get_json("jwks", discovery.jwks_uri)
        try:
            public = [k for k in body.get("keys", []) if isinstance(k, dict) and "d" not in k]
            key_set = KeySet.import_key_set({"keys": public})
        except (JoseError, ValueError, TypeError) as error:
            raise UpstreamUnavailable("jwks", f"unusable key set: {error}") from None
        if not key_set.keys:
            raise UpstreamUnavailable("jwks", "the key set has no public keys")
        with self._lock:
            self._keys[discovery.issuer] = _Entry(key_set, self._now())
        return key_set


@dataclass(frozen=True)
class ClientCredential:
    """How this service authenticates to the provider's token endpoint."""

    client_id: str
    auth_method: str  # client_secret_basic or private_key_jwt
    secret: str  # the client secret, or the private key's PEM


def private_key_of(pem: str) -> RSAKey | ECKey:
    try:
        return RSAKey.import_key(pem)
    except (JoseError, ValueError, TypeError):
        return ECKey.import_key(pem)


def _oauth_client(credential: ClientCredential, discovery: Discovery,
                  redirect_uri: str, timeout: float) -> OAuth2Client:
    if credential.auth_method == "private_key_jwt":
        key = private_key_of(credential.secret)
        alg = "ES256" if isinstance(key, ECKey) else "RS256"
        client = OAuth2Client(credential.client_id, key, scope=SCOPE, redirect_uri=redirect_uri,
                              code_challenge_method="S256",
                              token_endpoint_auth_method="private_key_jwt",  # noqa: S106 - a method name
                              timeout=timeout, verify=tls())
        client.register_client_auth_method(PrivateKeyJWT(discovery.token_endpoint, alg=alg))
        return client
    return OAuth2Client(credential.client_id, credential.secret, scope=SCOPE,
                        redirect_uri=redirect_uri, code_challenge_method="S256",
                        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
                        timeout=timeout, verify=tls())


def authorization_url(credential: ClientCredential, discovery: Discovery, redirect_uri: str,
                      *, state: str, nonce: str, verifier: str) -> str:
    """Authorization code with PKCE S256, `state` and `nonce` (Authlib's client)."""
    with _oauth_client(credential, discovery, redirect_uri, 5) as client:
        url, _ = client.create_authorization_url(
            discovery.authorization_endpoint, state=state, nonce=nonce, code_verifier=verifier
        )
    return str(url)


def exchange_code(credential: ClientCredential, discovery: Discovery, redirect_uri: str,
                  code: str, verifier: str, timeout: float) -> str:
    """The ID token the provider's token endpoint gives for `code`."""
    with _oauth_client(credential, discovery, redirect_uri, timeout) as client:
        try:
            token = client.fetch_token(discovery.token_endpoint, code=code,
                                       code_verifier=verifier, redirect_uri=redirect_uri)
        except Exception as error:
            raise UpstreamRefused(f"token exchange failed: {type(error).__name__}: "
                                  f"{str(error)[:200]}") from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise UpstreamRefused("token response has no id_token")
    return id_token


def validate_id_token(id_token: str, discovery: Discovery, cache: MetadataCache,
                      client_id: str, nonce: str, now: float) -> dict[str, Any]:
    """OpenID Connect Core 3.1.3.7: signature by a published asymmetric key,
    then iss, aud (and azp), exp, iat, and the nonce this request sent."""
    try:
        header = extract_compact(id_token.encode("ascii")).protected
    except (JoseError, ValueError, UnicodeError):
        raise UpstreamRefused("malformed id_token") from None
    alg = header.get("alg")
    if alg not in ID_TOKEN_ALGORITHMS:
        raise UpstreamRefused(f"id_token algorithm {alg!r} refused")
    kid = header.get("kid")
    keys = cache.keys(discovery, kid if isinstance(kid, str) else None)
    try:
        decoded = jwt.decode(id_token, keys, algorithms=[alg])
    except JoseError as error:
        raise UpstreamRefused(f"bad signature: {error.error}") from None
    claims = dict(decoded.claims)
    registry = jwt.JWTClaimsRegistry(
        now=int(now), leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": discovery.issuer},
        exp={"essential": True}, iat={"essential": True}, sub={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as error:
        raise UpstreamRefused(f"id_token claims: {error.description or error.error}") from None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        raise UpstreamRefused("id_token aud does not name this client")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise UpstreamRefused("id_token azp does not name this client")
    if claims["iat"] > now + LEEWAY_SECONDS:
        raise UpstreamRefused("id_token issued in the future")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise UpstreamRefused("wrong nonce")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise UpstreamRefused("id_token has no subject")
    return claims
