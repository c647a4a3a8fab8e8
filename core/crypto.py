"""Encryption of data at rest and keyed digests of random secrets.

Random secrets (activation codes, session tokens, client secrets) have enough
entropy that a slow hash buys nothing; a keyed HMAC lets us look them up by
digest and compare in constant time. Secrets a person chooses (passwords,
PINs) are hashed with argon2id in `tokens`, never here.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import ConfigurationError

_VERSION = b"\x01"
# Crockford's base32 alphabet: no I, L, O or U, so codes typed from a letter
# are not misread.
_LETTER_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


class DataCipher:
    """AES-256-GCM under a key derived from the instance data key.

    The associated data binds a ciphertext to what it belongs to (for example
    the token serial), so a ciphertext copied onto another row does not decrypt.
    """

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise ConfigurationError("the data key must be 32 bytes")
        self._subkey = _derive(data_key, b"contactpoint/encryption/v1")
        self._aead = AESGCM(self._subkey)

    @classmethod
    def _from_subkey(cls, subkey: bytes) -> DataCipher:
        cipher = cls.__new__(cls)
        cipher._subkey = subkey
        cipher._aead = AESGCM(subkey)
        return cipher

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        """Pickled as the derived encryption subkey, never the data key, so
        that a worker process the loader starts (directory.children.preparing)
        seals exactly as this one does. Such pickles go down a pipe to our own
        child process; nothing stores them."""
        return (DataCipher._from_subkey, (self._subkey,))

    def encrypt(self, plaintext: bytes, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, context.encode())
        return base64.urlsafe_b64encode(_VERSION + nonce + sealed).decode("ascii")

    def decrypt(self, token: str, context: str) -> bytes:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        if raw[:1] != _VERSION:
            raise ValueError("unknown ciphertext version")
        return self._aead.decrypt(raw[1:13], raw[13:], context.encode())

    def encrypt_text(self, plaintext: str, context: str) -> str:
        return self.encrypt(plaintext.encode("utf-8"), context)

    def decrypt_text(self, token: str, context: str) -> str:
        return self.decrypt(token, context).decode("utf-8")


class SecretDigester:
    """HMAC-SHA256 of high-entropy secrets, keyed from the data key."""

    def __init__(self, data_key: bytes) -> None:
        self._key = _derive(data_key, b"contactpoint/keyed-digest/v1")
        # Keyed once: each digest copies this state instead of keying afresh
        # (the child loader makes three a record, millions in a load).
        self._keyed = hmac.new(self._key, digestmod="sha256")

    @classmethod
    def _from_subkey(cls, subkey: bytes) -> SecretDigester:
        digester = cls.__new__(cls)
        digester._key = subkey
        digester._keyed = hmac.new(subkey, digestmod="sha256")
        return digester

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        """Pickled as the derived digest subkey, never the data key (see
        DataCipher.__reduce__)."""
        return (SecretDigester._from_subkey, (self._key,))

    def digest(self, secret: str) -> str:
        mac = self._keyed.copy()
        mac.update(secret.encode("utf-8"))
        return mac.hexdigest()

    def matches(self, secret: str, expected_digest: str) -> bool:
        return hmac.compare_digest(self.digest(secret), expected_digest)


def new_token(nbytes: int = 32) -> str:
    """A bearer secret for cookies and links."""
    return secrets.token_urlsafe(nbytes)


def new_letter_code(groups: int = 6) -> str:
    """A code printed on a letter: 6 groups of 5 Crockford characters, 150 bits."""
    chars = [secrets.choice(_LETTER_ALPHABET) for _ in range(groups * 5)]
    return "-".join("".join(chars[i : i + 5]) for i in range(0, len(chars), 5))


def normalise_letter_code(typed: str) -> str:
    """Accept what people type from paper: any case, spaces, O for 0, I/L for 1."""
    cleaned = "".join(ch for ch in typed.upper() if ch.isalnum())
    cleaned = cleaned.replace("O", "0").replace("I", "1").replace("L", "1")
    return "-".join(cleaned[i : i + 5] for i in range(0, len(cleaned), 5))
