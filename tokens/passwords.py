"""Passwords and PINs: the rules a person's choice must meet, and argon2id.

The password rules follow NIST SP 800-63B section 3.1.1.2: length of 12 to 128
characters, any characters, no composition rules, refused when found in a
list of common or breached passwords (zxcvbn's frequency lists, which ship
with that pinned package) or when built from the person's own details.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from itertools import pairwise

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from core.errors import FieldProblem
from core.settings import Argon2Settings, PasswordSettings
from tokens.errors import WeakSecret

CONTEXT_WORDS = ("contactpoint", "contact point", "password", "children")


class SecretHasher:
    """argon2id with parameters from settings; says when a stored hash is stale."""

    def __init__(self, params: Argon2Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Checked against when the account does not exist, so the time a
        # failure takes does not reveal whether the username is real.
        self._decoy = self._hasher.hash("decoy-secret-never-issued")

    def hash(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def verify(self, stored: str | None, presented: str) -> bool:
        try:
            return self._hasher.verify(stored or self._decoy, presented) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    words: set[str] = set()
    for name in ("passwords", "english_wikipedia", "us_tv_and_film"):
        words.update(FREQUENCY_LISTS.get(name, []))
    return frozenset(words)


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _is_repetitive(password: str) -> bool:
    if len(set(password)) <= 2:
        return True
    for size in range(1, len(password) // 2 + 1):
        unit = password[:size]
        if unit * (len(password) // size) + unit[: len(password) % size] == password:
            return True
    return False


def _is_sequence(password: str) -> bool:
    codes = [ord(c) for c in password.lower()]
    steps = {b - a for a, b in pairwise(codes)}
    return steps in ({1}, {-1})


def password_problems(
    password: str, settings: PasswordSettings, personal: tuple[str, ...] = ()
) -> list[str]:
    """Why this password is refused, in words a person can act on; empty if fine."""
    password = _normalise(password)
    if len(password) < settings.min_length:
        return [f"Your password must be at least {settings.min_length} characters long"]
    if len(password) > settings.max_length:
        return [f"Your password must be {settings.max_length} characters or fewer"]
    lowered = password.lower()
    if _is_repetitive(password) or _is_sequence(password):
        return ["Your password must not be a repeated or sequential pattern of characters"]
    stripped = lowered.strip("0123456789!@#$%^&*()_-+=.,?")
    common = _common_passwords()
    if lowered in common or stripped in common or lowered.replace(" ", "") in common:
        return ["Your password is too common: it appears in lists of passwords that criminals try"]
    for word in (*CONTEXT_WORDS, *(p.lower() for p in personal if p and len(p) >= 3)):
        if word and word in lowered and len(lowered) - len(word) < 8:
            return [
                "Your password must not be built from your name, username or this service's name"
            ]
    return []


def check_password(
    password: str, settings: PasswordSettings, personal: tuple[str, ...] = ()
) -> None:
    problems = password_problems(password, settings, personal)
    if problems:
        raise WeakSecret(FieldProblem("password", problems[0]))


def pin_problems(pin: str) -> list[str]:
    if len(pin) != 6 or not pin.isascii() or not pin.isdigit():
        return ["Your PIN must be exactly 6 digits"]
    if len(set(pin)) == 1:
        return ["Your PIN must not be one digit repeated"]
    if _is_sequence(pin):
        return ["Your PIN must not be a run of digits such as 123456 or 654321"]
    return []


def check_pin(pin: str) -> None:
    problems = pin_problems(pin)
    if problems:
        raise WeakSecret(FieldProblem("pin", problems[0]))
