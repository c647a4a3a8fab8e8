"""Flask's signed-cookie sessions, with the signing serializer built once.

Flask builds a new itsdangerous serializer (and signer) twice a request, to
read the cookie and to write it; the sign-in steps run four requests each.
The serializer depends only on the secret keys and the fixed salt, digest and
key derivation, so it is kept while the keys stay the same. Nor is the
payload zlib-compressed before signing: the session holds a few short values,
and setting up zlib for each cookie costs more than the rest of writing it.
The signature and its checks are exactly Flask's, and a compressed cookie
(one written before this) still reads.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.url_safe import URLSafeSerializerMixin


class _UncompressedSerializer(URLSafeTimedSerializer):
    def dump_payload(self, obj: Any) -> bytes:
        # The serializer's JSON, base64 as the URL-safe mixin writes it, minus zlib.
        return base64_encode(super(URLSafeSerializerMixin, self).dump_payload(obj))


class CachedSerializerSessionInterface(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._keys: tuple[object, ...] | None = None
        self._serializer: URLSafeTimedSerializer | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if keys != self._keys:
            built = super().get_signing_serializer(app)
            self._serializer = None
            if built is not None:
                self._serializer = _UncompressedSerializer(
                    built.secret_keys,
                    salt=self.salt,
                    serializer=self.serializer,
                    signer_kwargs={
                        "key_derivation": self.key_derivation,
                        "digest_method": self.digest_method,
                    },
                )
            self._keys = keys
        return self._serializer
