"""DPoP proofs (RFC 9449): a token bound to a key the client must prove it holds.

A proof is a JWT signed by the client's key, carried in the `DPoP` header,
naming the method and URL it was made for; its `jti` is remembered in shared
state for as long as it could be accepted, so it works once on any node.
"""

from __future__ import annotations

import hashlib
import json
from base64 import urlsafe_b64encode
from dataclasses import dataclass

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from core.clock import Clock
from core.shared_state import SharedState

ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA"]


class DPoPError(Exception):
    """The proof is missing, malformed, stale or replayed: `invalid_dpop_proof`."""


@dataclass(frozen=True)
class Proof:
    jkt: str  # the JWK SHA-256 thumbprint the token is bound to (RFC 7638)


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def verify(
    header_value: str | None,
    *,
    method: str,
    url: str,
    clock: Clock,
    shared: SharedState,
    max_age_seconds: int,
    access_token: str | None = None,
) -> Proof:
    if not header_value or "," in header_value:
        raise DPoPError("send exactly one DPoP proof")
    try:
        compact = jws.extract_compact(header_value.encode("ascii"))
    except (JoseError, UnicodeEncodeError, ValueError) as exc:
        raise DPoPError("the DPoP proof is not a JWS") from exc
    header = compact.headers()
    if header.get("typ") != "dpop+jwt" or header.get("alg") not in ALGORITHMS:
        raise DPoPError("the DPoP proof must have typ dpop+jwt and an asymmetric alg")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or any(k in jwk for k in ("d", "p", "q")):
        raise DPoPError("the DPoP proof must carry a public jwk")
    try:
        kty = jwk.get("kty")
        key = (ECKey if kty == "EC" else RSAKey if kty == "RSA" else OKPKey).import_key(jwk)
        verified = jws.deserialize_compact(header_value, key, algorithms=ALGORITHMS)
        claims = json.loads(verified.payload)
    except (JoseError, ValueError, TypeError) as exc:
        raise DPoPError("the DPoP proof's signature does not verify") from exc
    if not isinstance(claims, dict):
        raise DPoPError("the DPoP proof has no claims")
    if claims.get("htm") != method:
        raise DPoPError("the DPoP proof was made for another method")
    if str(claims.get("htu", "")).split("?")[0].split("#")[0] != url.split("?")[0]:
        raise DPoPError("the DPoP proof was made for another URL")
    iat = claims.get("iat")
    now = clock.now().timestamp()
    if not isinstance(iat, int | float) or abs(now - iat) > max_age_seconds:
        raise DPoPError("the DPoP proof is too old or from the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 200:
        raise DPoPError("the DPoP proof needs a jti")
    if access_token is not None and claims.get("ath") != access_token_hash(access_token):
        raise DPoPError("the DPoP proof does not name this access token")
    thumbprint = key.thumbprint()
    if not shared.add_once(f"dpop-jti:{thumbprint}:{jti}", 2 * max_age_seconds + 5):
        raise DPoPError("the DPoP proof was used before")
    return Proof(jkt=thumbprint)
