"""Encryption at rest, keyed digests of random secrets, and letter codes."""

from __future__ import annotations

import math
import re
import secrets

import pytest
from cryptography.exceptions import InvalidTag

from core import crypto
from core.crypto import (
    DataCipher,
    SecretDigester,
    new_letter_code,
    new_token,
    normalise_letter_code,
)
from core.errors import ConfigurationError

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
LETTER_CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){5}$")


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


# -- DataCipher ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    ["JBSWY3DPEHPK3PXP", "", "Dear Ms Ŵelsh,\nYour code: ABCDE-12345\n", "x" * 10_000],
)
def test_cipher_round_trip(key: bytes, plaintext: str) -> None:
    cipher = DataCipher(key)
    sealed = cipher.encrypt_text(plaintext, "otp:SOFT-1")
    assert cipher.decrypt_text(sealed, "otp:SOFT-1") == plaintext


def test_ciphertext_does_not_show_the_plaintext_and_never_repeats(key: bytes) -> None:
    cipher = DataCipher(key)
    one = cipher.encrypt_text("ACTIVATION-CODE-7Q2", "letter:1")
    two = cipher.encrypt_text("ACTIVATION-CODE-7Q2", "letter:1")
    assert "ACTIVATION" not in one
    assert one != two  # a fresh nonce each time
    assert cipher.decrypt_text(one, "letter:1") == cipher.decrypt_text(two, "letter:1")


def test_ciphertext_is_bound_to_its_context(key: bytes) -> None:
    cipher = DataCipher(key)
    sealed = cipher.encrypt_text("the seed of token 1", "otp:SOFT-1")
    # Copied onto another row, it does not decrypt.
    with pytest.raises(InvalidTag):
        cipher.decrypt_text(sealed, "otp:SOFT-2")
    with pytest.raises(InvalidTag):
        cipher.decrypt_text(sealed, "")


def test_ciphertext_does_not_open_under_another_key(key: bytes) -> None:
    sealed = DataCipher(key).encrypt_text("secret", "letter:1")
    with pytest.raises(InvalidTag):
        DataCipher(secrets.token_bytes(32)).decrypt_text(sealed, "letter:1")


def test_altered_ciphertext_is_refused(key: bytes) -> None:
    import base64

    cipher = DataCipher(key)
    raw = bytearray(base64.urlsafe_b64decode(cipher.encrypt_text("secret text", "letter:1")))
    raw[20] ^= 0x01
    with pytest.raises(InvalidTag):
        cipher.decrypt_text(base64.urlsafe_b64encode(bytes(raw)).decode(), "letter:1")


def test_unknown_ciphertext_version_is_refused(key: bytes) -> None:
    import base64

    cipher = DataCipher(key)
    raw = bytearray(base64.urlsafe_b64decode(cipher.encrypt_text("secret", "c")))
    raw[0] = 0x02
    with pytest.raises(ValueError, match="version"):
        cipher.decrypt(base64.urlsafe_b64encode(bytes(raw)).decode(), "c")


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_data_key_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ConfigurationError):
        DataCipher(b"k" * length)


# -- SecretDigester ---------------------------------------------------------------------


def test_digest_matches_only_the_same_secret(key: bytes) -> None:
    digester = SecretDigester(key)
    token = new_token()
    stored = digester.digest(token)
    assert digester.matches(token, stored)
    assert not digester.matches(token + "x", stored)
    assert not digester.matches(token[:-1], stored)
    assert not digester.matches("", stored)
    assert token not in stored
    assert re.fullmatch(r"[0-9a-f]{64}", stored)


def test_digest_is_stable_for_a_key_and_differs_between_keys(key: bytes) -> None:
    token = new_token()
    assert SecretDigester(key).digest(token) == SecretDigester(key).digest(token)
    assert SecretDigester(key).digest(token) != SecretDigester(secrets.token_bytes(32)).digest(
        token
    )


def test_digest_is_not_the_encryption_key_at_work(key: bytes) -> None:
    """The digest key is derived for its own purpose, not the raw data key."""
    import hashlib
    import hmac

    token = "same-secret"
    assert (
        SecretDigester(key).digest(token)
        != hmac.new(key, token.encode(), hashlib.sha256).hexdigest()
    )


def test_matches_compares_in_constant_time(key: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = crypto.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(crypto.hmac, "compare_digest", spy)
    digester = SecretDigester(key)
    stored = digester.digest("secret")
    assert digester.matches("secret", stored)
    assert not digester.matches("guess", stored)
    assert len(calls) == 2
    assert all(b == stored for _, b in calls)


def test_tokens_are_long_and_unique() -> None:
    tokens = {new_token() for _ in range(500)}
    assert len(tokens) == 500
    # 32 random bytes in URL-safe base64: 43 characters, 256 bits.
    assert all(len(t) >= 43 and re.fullmatch(r"[A-Za-z0-9_-]+", t) for t in tokens)


# -- letter codes ---------------------------------------------------------------------


def test_letter_code_shape() -> None:
    code = new_letter_code()
    assert LETTER_CODE.fullmatch(code), code


def test_letter_codes_carry_at_least_128_bits() -> None:
    codes = [new_letter_code() for _ in range(2000)]
    assert len(set(codes)) == len(codes)
    symbols = set("".join(codes).replace("-", ""))
    # Every symbol of the alphabet turns up, and nothing outside it.
    assert symbols == CROCKFORD
    characters = len(codes[0].replace("-", ""))
    assert characters == 30
    bits = characters * math.log2(len(symbols))
    assert bits == 150
    assert bits >= 128


def test_letter_codes_avoid_easily_misread_letters() -> None:
    joined = "".join(new_letter_code() for _ in range(500))
    assert not set(joined) & set("ILOU")


def test_normalise_keeps_a_clean_code() -> None:
    code = new_letter_code()
    assert normalise_letter_code(code) == code


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("abcde-fghjk-mnpqr-stvwx-yz012-34567", "ABCDE-FGHJK-MNPQR-STVWX-YZ012-34567"),
        ("ABCDE FGHJK MNPQR STVWX YZ012 34567", "ABCDE-FGHJK-MNPQR-STVWX-YZ012-34567"),
        (" abcdefghjkmnpqrstvwxyz01234567 ", "ABCDE-FGHJK-MNPQR-STVWX-YZ012-34567"),
        ("ABCDE-FGHJK-MNPQR-STVWX-YZOl2-3456 7", "ABCDE-FGHJK-MNPQR-STVWX-YZ012-34567"),
        ("0000O-oOOOO-11111-IiLl1-22222-33333", "00000-00000-11111-11111-22222-33333"),
    ],
)
def test_normalise_accepts_what_people_type_from_paper(typed: str, expected: str) -> None:
    assert normalise_letter_code(typed) == expected


def test_a_typed_code_and_the_issued_code_digest_alike(key: bytes) -> None:
    digester = SecretDigester(key)
    code = new_letter_code()
    typed = code.lower().replace("-", " ").replace("0", "o")
    assert digester.digest(normalise_letter_code(typed)) == digester.digest(code)


def test_normalise_does_not_turn_a_wrong_code_into_a_right_one() -> None:
    code = new_letter_code()
    wrong = ("1" if code[0] != "1" else "2") + code[1:]
    assert normalise_letter_code(wrong) != code
    assert normalise_letter_code(code[:-1]) != code


def test_cipher_and_digester_pickle_as_their_subkeys_never_the_data_key(key: bytes) -> None:
    """The child loader hands them to its worker processes this way: the copy
    seals, opens and digests as the original does, and the data key itself
    is nowhere in what is sent."""
    import pickle

    cipher, digester = DataCipher(key), SecretDigester(key)
    sent = pickle.dumps((cipher, digester))
    assert key not in sent
    copy, digester_copy = pickle.loads(sent)  # noqa: S301 - what it just made
    assert copy.decrypt_text(cipher.encrypt_text("NE1 4AB", "child:x:address"),
                             "child:x:address") == "NE1 4AB"
    assert cipher.decrypt_text(copy.encrypt_text("NE1 4AB", "child:x:address"),
                               "child:x:address") == "NE1 4AB"
    assert digester_copy.digest("secret") == digester.digest("secret")
    assert digester_copy.digest("secret") != SecretDigester(secrets.token_bytes(32)).digest(
        "secret")


def test_digest_is_the_hmac_of_the_derived_key(key: bytes) -> None:
    """Digests already stored stay valid: a digest is HMAC-SHA256 under the
    subkey derived for digests, however it is computed."""
    import hashlib
    import hmac

    derived = crypto._derive(key, b"contactpoint/keyed-digest/v1")
    digester = SecretDigester(key)
    for secret in ("", "same-secret", "Zoë\x1fO'Brien", "x" * 1000):
        assert digester.digest(secret) == hmac.new(derived, secret.encode(),
                                                   hashlib.sha256).hexdigest()
