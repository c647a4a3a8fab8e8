"""The provider's signing keys: made, published ahead, rotated, retired.

Each algorithm (ES256 for everyone, RS256 for clients that ask) has one
`current` key that signs and one `next` key that is only published. Rotation
promotes `next`, so every relying application that refreshed the JWKS since
the last rotation already knows the key that signs from now on; the old key
stays published until every token it signed has expired.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.crypto import DataCipher
from idp.oidc.models import SigningKey

# The keys are read from the database once a minute or so; in between a
# request that signs need not open a session at all. A client-credentials
# answer touches no table once its client is cached, and the session it
# would open, commit and close only for the keys cost about a tenth of it.
SessionSource = Session | Callable[[], Session]

ALGORITHMS = ("ES256", "RS256")
_CONTEXT = "oidc-signing-key"
_REFRESH_SECONDS = 5.0

PrivateKey = ECKey | RSAKey


def _generate(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ECKey.generate_key("P-256")
    return RSAKey.generate_key(2048)


def _load(alg: str, pem: bytes) -> PrivateKey:
    return ECKey.import_key(pem) if alg == "ES256" else RSAKey.import_key(pem)


# Stateless parameter objects of `cryptography`, made once rather than per signature.
_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)
_PKCS1V15 = padding.PKCS1v15()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class LoadedKey:
    """A signing key ready to sign compact JWS directly with `cryptography`:
    the token endpoint signs one per request, and a general JOSE library's
    bookkeeping cost more than the signature itself. The protected header of
    each `typ` is encoded once: it never changes for a key."""

    kid: str
    alg: str
    key: PrivateKey
    _header_segments: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # cryptography's own key object, taken out of joserfc's wrapper once.
    _raw: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        raw = self.key.private_key
        wanted = ec.EllipticCurvePrivateKey if self.alg == "ES256" else rsa.RSAPrivateKey
        if not isinstance(raw, wanted):
            raise ValueError(f"key {self.kid} is not an {self.alg} private key")
        object.__setattr__(self, "_raw", raw)

    def header_segment(self, typ: str) -> str:
        segment = self._header_segments.get(typ)
        if segment is None:
            header = {"alg": self.alg, "kid": self.kid, "typ": typ}
            segment = _b64url(json.dumps(header, separators=(",", ":")).encode())
            self._header_segments[typ] = segment
        return segment

    def sign(self, typ: str, claims: dict[str, Any]) -> str:
        signing_input = (self.header_segment(typ) + "."
                         + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        if self.alg == "ES256":
            r, s = decode_dss_signature(self._raw.sign(signing_input.encode(), _ECDSA_SHA256))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = self._raw.sign(signing_input.encode(), _PKCS1V15, _SHA256)
        return signing_input + "." + _b64url(signature)


class KeyStore:
    """Per-process view of the keys, re-read every few seconds so that a
    rotation on one node reaches the others without a restart. Decrypted
    private keys are held in memory only."""

    def __init__(self, cipher: DataCipher, bootstrap: Callable[[], None] | None = None) -> None:
        self.cipher = cipher
        # Makes the first keys (in a transaction of its own) on a new database.
        self.bootstrap = bootstrap
        self._signing: dict[str, LoadedKey] = {}
        self._published: list[dict[str, Any]] = []
        self._public_by_kid: dict[str, PrivateKey] = {}
        self._loaded_at = -1e9

    def invalidate(self) -> None:
        self._loaded_at = -1e9

    def _refresh(self, source: SessionSource, clock: Clock) -> None:
        if time.monotonic() - self._loaded_at < _REFRESH_SECONDS:
            return
        session = source() if callable(source) else source
        rows = session.scalars(select(SigningKey).order_by(SigningKey.id)).all()
        now = clock.now()
        if not any(row.state == "current" for row in rows) and self.bootstrap is not None:
            self.bootstrap()
            rows = session.scalars(select(SigningKey).order_by(SigningKey.id)).all()
        if not any(row.state == "current" for row in rows):
            raise RuntimeError("no signing key: run `contactpoint keys rotate` once")
        signing: dict[str, LoadedKey] = {}
        published: list[dict[str, Any]] = []
        public_by_kid: dict[str, PrivateKey] = {}
        for row in rows:
            live = row.state in ("current", "next") or (
                row.retain_until is not None and row.retain_until > now
            )
            if not live:
                continue
            jwk = dict(row.public_jwk)
            published.append(jwk)
            loaded = self._signing.get(row.alg)
            if row.state == "current":
                if loaded is None or loaded.kid != row.kid:
                    pem = self.cipher.decrypt(row.private_key, _CONTEXT)
                    loaded = LoadedKey(row.kid, row.alg, _load(row.alg, pem))
                signing[row.alg] = loaded
            public_by_kid[row.kid] = (
                ECKey.import_key(jwk) if row.alg == "ES256"  # type: ignore[arg-type]
                else RSAKey.import_key(jwk)  # type: ignore[arg-type]
            )
        self._signing = signing
        self._published = published
        self._public_by_kid = public_by_kid
        self._loaded_at = time.monotonic()

    def prepare(self, session: SessionSource, clock: Clock) -> None:
        """Load (or on a new database, make) the keys before the request writes
        anything: on SQLite, making them later would wait on our own lock."""
        self._refresh(session, clock)

    def jwks(self, session: SessionSource, clock: Clock) -> dict[str, Any]:
        self._refresh(session, clock)
        return {"keys": list(self._published)}

    def sign(
        self, session: SessionSource, clock: Clock, claims: dict[str, Any], *, alg: str, typ: str
    ) -> str:
        self._refresh(session, clock)
        return self._signing[alg].sign(typ, claims)

    def verify(self, session: SessionSource, clock: Clock, token: str) -> jwt.Token:
        """Decode a token this provider signed (raises joserfc errors otherwise)."""
        self._refresh(session, clock)

        def key_for(obj: Any) -> PrivateKey:
            kid = obj.headers().get("kid")
            if kid not in self._public_by_kid:
                raise ValueError("unknown signing key")
            return self._public_by_kid[kid]

        return jwt.decode(token, key_for, algorithms=list(ALGORITHMS))


class KeyRotation:
    """`contactpoint keys rotate|list`: the writes, audited."""

    def __init__(self, session: Session, cipher: DataCipher, clock: Clock, audit: Auditor,
                 longest_token_seconds: int) -> None:
        self.session = session
        self.cipher = cipher
        self.clock = clock
        self.audit = audit
        self.longest_token_seconds = longest_token_seconds

    def _new(self, alg: str, state: str, now: datetime) -> SigningKey:
        key = _generate(alg)
        public = key.as_dict(private=False)
        kid = key.thumbprint()
        public.update({"kid": kid, "alg": alg, "use": "sig"})
        row = SigningKey(
            kid=kid,
            alg=alg,
            state=state,
            private_key=self.cipher.encrypt(key.as_pem(private=True), _CONTEXT),
            public_jwk=public,
            created_at=now,
            activated_at=now if state == "current" else None,
        )
        self.session.add(row)
        return row

    def all_keys(self) -> list[SigningKey]:
        return list(self.session.scalars(select(SigningKey).order_by(SigningKey.id)))

    def ensure(self) -> bool:
        """Make the first keys if there are none; True when it made any."""
        made = False
        for alg in ALGORITHMS:
            rows = [k for k in self.all_keys() if k.alg == alg]
            if not any(k.state == "current" for k in rows):
                self._new(alg, "current", self.clock.now())
                made = True
            if not any(k.state == "next" for k in rows):
                self._new(alg, "next", self.clock.now())
                made = True
        if made:
            self.session.flush()
            self.audit.record("oidc:keys:created", subject_type="signing_key")
        return made

    def rotate(self) -> list[str]:
        """Promote each `next` key, retire the `current` one, publish a new `next`."""
        now = self.clock.now()
        if self.ensure():
            pass
        retain = now + timedelta(seconds=self.longest_token_seconds + 60)
        promoted: list[str] = []
        for alg in ALGORITHMS:
            rows = [k for k in self.all_keys() if k.alg == alg]
            for row in rows:
                if row.state == "current":
                    row.state = "retired"
                    row.retired_at = now
                    row.retain_until = retain
            for row in rows:
                if row.state == "next":
                    row.state = "current"
                    row.activated_at = now
                    promoted.append(row.kid)
            self._new(alg, "next", now)
        self.session.flush()
        self.audit.record(
            "oidc:keys:rotated", subject_type="signing_key", detail={"now_signing": promoted}
        )
        return promoted
