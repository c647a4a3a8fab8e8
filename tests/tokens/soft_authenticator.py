"""A software FIDO2 authenticator and browser client, for tests only.

It does what a security key and the browser do together: it makes an EC P-256
key pair per credential, builds clientDataJSON and authenticatorData (rp id
hash, UP/UV/AT flags, signature counter, attested credential data with a COSE
key), wraps them in a "none" or "packed" (self-)attestation, and signs
assertions with ES256. Each part can be made wrong on purpose (origin, rp id,
counter, challenge) so the tests can check every refusal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_AT = 0x40
ES256 = -7
AAGUID = bytes.fromhex("00112233445566778899aabbccddeeff")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftCredential:
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        return bytes(
            cbor2.dumps(
                {
                    1: 2,  # kty: EC2
                    3: ES256,  # alg
                    -1: 1,  # crv: P-256
                    -2: numbers.x.to_bytes(32, "big"),
                    -3: numbers.y.to_bytes(32, "big"),
                }
            )
        )


@dataclass
class SoftAuthenticator:
    """One security key. `origin` is where the "browser" says the page was."""

    origin: str = "http://localhost:5000"
    user_verification: bool = True
    counts: bool = True  # a key that keeps no counter always reports 0
    credentials: dict[bytes, SoftCredential] = field(default_factory=dict)

    # -- pieces ------------------------------------------------------------------

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            },
            separators=(",", ":"),
        ).encode()

    def _flags(self, attested: bool) -> int:
        flags = FLAG_UP | (FLAG_UV if self.user_verification else 0)
        return flags | (FLAG_AT if attested else 0)

    # -- navigator.credentials.create() ----------------------------------------------

    def create(
        self,
        options_json: str,
        *,
        attestation: str = "none",
        origin: str | None = None,
        rp_id: str | None = None,
    ) -> str:
        """The JSON a browser posts after navigator.credentials.create()."""
        options = json.loads(options_json)
        rp = rp_id or options["rp"]["id"]
        credential_id = os.urandom(32)
        credential = SoftCredential(
            credential_id, ec.generate_private_key(ec.SECP256R1()), options["rp"]["id"]
        )
        self.credentials[credential_id] = credential
        attested = (
            AAGUID + struct.pack(">H", len(credential_id)) + credential_id
            + credential.cose_public_key()
        )
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags(attested=True)])
            + struct.pack(">I", credential.sign_count)
            + attested
        )
        client_data = self._client_data(
            "webauthn.create", options["challenge"], origin
        )
        statement: dict[str, Any] = {}
        if attestation == "packed":
            signature = credential.private_key.sign(
                auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
            )
            statement = {"alg": ES256, "sig": signature}
        attestation_object = cbor2.dumps(
            {"fmt": attestation, "attStmt": statement, "authData": auth_data}
        )
        return json.dumps(
            {
                "id": b64url(credential_id),
                "rawId": b64url(credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation_object),
                    "transports": ["usb"],
                },
                "clientExtensionResults": {},
            }
        )

    # -- navigator.credentials.get() ----------------------------------------------

    def get(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        sign_count: int | None = None,
        credential_id: bytes | None = None,
        challenge: str | None = None,
    ) -> str:
        """The JSON a browser posts after navigator.credentials.get(). By default
        the first of this key's credentials for the rp that the options allow."""
        options = json.loads(options_json)
        allowed = [unb64url(c["id"]) for c in options.get("allowCredentials", [])]
        if credential_id is None:
            usable = [c for c in self.credentials if not allowed or c in allowed]
            assert usable, "this authenticator holds none of the allowed credentials"
            credential_id = usable[0]
        credential = self.credentials[credential_id]
        if sign_count is None:
            if self.counts:
                credential.sign_count += 1
            sign_count = credential.sign_count
        auth_data = (
            hashlib.sha256((rp_id or options["rpId"]).encode()).digest()
            + bytes([self._flags(attested=False)])
            + struct.pack(">I", sign_count)
        )
        client_data = self._client_data("webauthn.get", challenge or options["challenge"], origin)
        signature = credential.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": b64url(credential_id),
                "rawId": b64url(credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": None,
                },
                "clientExtensionResults": {},
            }
        )
