"""Password and PIN rules, and argon2id hashing with parameters that can be raised."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.low_level import Type
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.settings import Argon2Settings, PasswordSettings, load_settings
from idp.container import Container
from tests.conftest import FAST_ARGON2, make_settings
from tests.factories import World
from tokens.attempts import Client
from tokens.errors import SignInFailed, WeakSecret
from tokens.models import PasswordCredential, PinCredential
from tokens.passwords import (
    SecretHasher,
    _common_passwords,
    check_password,
    check_pin,
    password_problems,
    pin_problems,
)

RULES = PasswordSettings(min_length=12, max_length=128)
CLIENT = Client("203.0.113.20", "pytest")
ARGON2_PARAMS = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")


def params_of(stored: str) -> tuple[int, int, int]:
    match = ARGON2_PARAMS.match(stored)
    assert match, stored
    m, t, p = (int(g) for g in match.groups())
    return m, t, p


# -- password policy ---------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple 42",
        "Tg7#pL2@vQ9!",  # 12, exactly the minimum
        "Ünïcödé pässwörd ☃ 2024",
        "日本語のパスワードです十二",  # 13 characters, no ASCII at all
        "four words with spaces",
        "   leading and trailing   ",
        "zq" * 32 + "x" + "k9" * 31 + "w",  # 128 characters, the maximum
    ],
)
def test_acceptable_passwords(password: str) -> None:
    assert password_problems(password, RULES) == []
    check_password(password, RULES)


def test_any_printable_ascii_is_accepted() -> None:
    everything = "".join(chr(c) for c in range(33, 127))
    assert password_problems(everything, RULES) == []


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("", "at least 12"),
        ("Tg7#pL2@vQ9", "at least 12"),  # 11
        ("ÜnïcödéPäs", "at least 12"),  # 10 characters, more bytes
        ("zq" * 64 + "x", "128 characters or fewer"),  # 129
    ],
)
def test_length_limits(password: str, why: str) -> None:
    problems = password_problems(password, RULES)
    assert problems and why in problems[0]


def test_length_limits_follow_settings() -> None:
    strict = PasswordSettings(min_length=16, max_length=20)
    assert password_problems("Tg7#pL2@vQ9!xyz", strict)  # 15
    assert password_problems("Tg7#pL2@vQ9!xyzW", strict) == []  # 16
    assert password_problems("Tg7#pL2@vQ9!xyzWabcde", strict)  # 21


@pytest.mark.parametrize(
    ("password", "listed"),
    [
        ("password1234", "password1234"),
        ("qwertyuiop123", "qwertyuiop123"),
        ("Password1234", "password1234"),
        ("1q2w3e4r5t6y", "1q2w3e4r5t6y"),
        ("iloveyou1234", "iloveyou"),  # a listed word with digits added
        ("football2024!", "football"),
        ("letmein!!!!!", "letmein"),
    ],
)
def test_common_passwords_are_refused(password: str, listed: str) -> None:
    assert listed in _common_passwords(), f"{listed!r} is no longer in the zxcvbn list"
    problems = password_problems(password, RULES)
    assert problems and "too common" in problems[0]
    with pytest.raises(WeakSecret) as error:
        check_password(password, RULES)
    assert error.value.problems[0].field == "password"


def test_common_list_is_the_real_one() -> None:
    common = _common_passwords()
    assert len(common) > 10_000
    assert {"password", "qwerty", "123456", "monkey"} <= common


@pytest.mark.parametrize(
    "password",
    [
        "contactpoint2024",
        "ContactPoint!!1",
        "contact point 99",
        "password-xyz9",
        "children4ever!",
    ],
)
def test_words_of_this_service_are_refused(password: str) -> None:
    assert password.lower() not in _common_passwords()
    problems = password_problems(password, RULES)
    assert problems and "name, username or this service" in problems[0]


PERSONAL = ("tamsin.fairweather", "Tamsin", "Fairweather", "t.fairweather")


@pytest.mark.parametrize(
    "password",
    [
        "tamsin.fairweather",
        "Tamsin.Fairweather1",
        "Fairweather2024!",
        "tamsin!!2024",
        "T.Fairweather#1",
    ],
)
def test_the_persons_own_details_are_refused(password: str) -> None:
    problems = password_problems(password, RULES, PERSONAL)
    assert problems and "name, username" in problems[0]


def test_the_same_password_is_fine_for_someone_else() -> None:
    assert password_problems("Fairweather2024!", RULES, PERSONAL)
    assert password_problems("Fairweather2024!", RULES, ("sam.jones", "Sam", "Jones")) == []


def test_short_personal_details_do_not_refuse_everything() -> None:
    # A two-letter name would otherwise refuse most passwords containing it.
    assert password_problems("the blue otter swims 4", RULES, ("Bo", "Li")) == []


@pytest.mark.parametrize(
    "password",
    [
        "aaaaaaaaaaaa",
        "ababababababab",
        "abcabcabcabc",
        "1212121212121",
        "passwordpassword",
        "abcdefghijklm",
        "ABCDEFGHIJKLMN",
        "zyxwvutsrqpo",
    ],
)
def test_repeated_or_sequential_patterns_are_refused(password: str) -> None:
    problems = password_problems(password, RULES)
    assert problems and "repeated or sequential" in problems[0]


def test_mostly_sequential_is_not_a_pattern() -> None:
    assert "repeated or sequential" not in " ".join(password_problems("abcdefghijkz9", RULES))


# -- PIN policy --------------------------------------------------------------------


@pytest.mark.parametrize("pin", ["480271", "000001", "135790", "112358", "901234", "999998"])
def test_acceptable_pins(pin: str) -> None:
    assert pin_problems(pin) == []
    check_pin(pin)


@pytest.mark.parametrize(
    ("pin", "why"),
    [
        ("", "exactly 6 digits"),
        ("48027", "exactly 6 digits"),
        ("4802711", "exactly 6 digits"),
        ("48027a", "exactly 6 digits"),
        ("48 271", "exactly 6 digits"),
        ("-48027", "exactly 6 digits"),
        ("".join(chr(0xFF10 + int(d)) for d in "480271"), "exactly 6 digits"),  # full-width digits
        ("٤٨٠٢٧١", "exactly 6 digits"),  # Arabic-Indic digits
        ("000000", "one digit repeated"),
        ("777777", "one digit repeated"),
        ("123456", "run of digits"),
        ("654321", "run of digits"),
        ("234567", "run of digits"),
        ("987654", "run of digits"),
    ],
)
def test_refused_pins(pin: str, why: str) -> None:
    problems = pin_problems(pin)
    assert problems and why in problems[0]
    with pytest.raises(WeakSecret) as error:
        check_pin(pin)
    assert error.value.problems[0].field == "pin"


# -- argon2id ------------------------------------------------------------------------


def test_default_parameters_are_owasps() -> None:
    settings = load_settings(environ={})
    assert dataclasses.asdict(settings.argon2) == {
        "memory_kib": 19456,
        "time_cost": 2,
        "parallelism": 1,
    }
    stored = SecretHasher(settings.argon2).hash("correct horse battery staple 42")
    assert stored.startswith("$argon2id$")
    assert params_of(stored) == (19456, 2, 1)


def test_hasher_uses_the_configured_parameters() -> None:
    hasher = SecretHasher(Argon2Settings(memory_kib=2048, time_cost=3, parallelism=2))
    stored = hasher.hash("secret")
    assert params_of(stored) == (2048, 3, 2)
    assert "secret" not in stored


def test_verify_accepts_only_the_secret() -> None:
    hasher = SecretHasher(Argon2Settings(**FAST_ARGON2))
    stored = hasher.hash("correct horse battery staple 42")
    assert hasher.verify(stored, "correct horse battery staple 42")
    assert not hasher.verify(stored, "correct horse battery staple 43")
    assert not hasher.verify(stored, "")
    assert not hasher.verify("not a hash", "correct horse battery staple 42")


def test_verify_with_nothing_stored_fails_even_for_the_decoy() -> None:
    hasher = SecretHasher(Argon2Settings(**FAST_ARGON2))
    assert not hasher.verify(None, "decoy-secret-never-issued")
    assert not hasher.verify(None, "anything")


def test_same_secret_hashes_differently_each_time() -> None:
    hasher = SecretHasher(Argon2Settings(**FAST_ARGON2))
    assert hasher.hash("480271") != hasher.hash("480271")


def test_other_argon2_variants_need_rehash() -> None:
    hasher = SecretHasher(Argon2Settings(**FAST_ARGON2))
    argon2i = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.I)
    stored = argon2i.hash("secret")
    assert hasher.verify(stored, "secret")
    assert hasher.needs_rehash(stored)


@pytest.mark.parametrize(
    "changed",
    [{"memory_kib": 2048}, {"time_cost": 2}, {"parallelism": 2}],
)
def test_needs_rehash_when_parameters_change(changed: dict[str, int]) -> None:
    old = SecretHasher(Argon2Settings(**FAST_ARGON2))
    new = SecretHasher(Argon2Settings(**{**FAST_ARGON2, **changed}))
    stored = old.hash("secret")
    assert not old.needs_rehash(stored)
    assert new.needs_rehash(stored)
    assert new.verify(stored, "secret")  # old hashes keep working meanwhile
    assert not new.needs_rehash(new.hash("secret"))


STRONGER = {"memory_kib": 2048, "time_cost": 2, "parallelism": 1}


@pytest.fixture
def stronger_container(
    container: Container, database_url: str, tmp_path: Path, clock: FrozenClock
) -> Iterator[Container]:
    """Another node of the same deployment, after an operator raised the parameters."""
    settings = make_settings(database_url, tmp_path / "instance", argon2=STRONGER)
    built = Container(settings, secrets=container.secrets, clock=clock)
    yield built
    built.dispose()


def stored_hashes(container: Container, person_id: int) -> tuple[str, str]:
    with container.unit() as unit:
        password = unit.session.get(PasswordCredential, person_id)
        pin = unit.session.get(PinCredential, person_id)
        assert password is not None and pin is not None
        return password.hash, pin.hash


def test_sign_in_rehashes_password_and_pin_with_new_parameters(
    container: Container, world: World, stronger_container: Container
) -> None:
    member = world.member(world.organisation())
    before_password, before_pin = stored_hashes(container, member.person.id)
    assert params_of(before_password) == params_of(before_pin) == (1024, 1, 1)

    with stronger_container.unit() as unit:
        flow = unit.signin.begin(member.username, member.password, CLIENT)
        unit.signin.complete(flow, member.totp(stronger_container), member.pin, CLIENT)

    after_password, after_pin = stored_hashes(container, member.person.id)
    assert params_of(after_password) == (2048, 2, 1)
    assert params_of(after_pin) == (2048, 2, 1)
    assert after_password != before_password
    hasher = stronger_container.hasher
    assert hasher.verify(after_password, member.password)
    assert hasher.verify(after_pin, member.pin)
    with container.unit() as unit:
        tags = list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))
    assert "credential:password:rehashed" in tags


def test_failed_sign_in_does_not_rehash(
    container: Container, world: World, stronger_container: Container
) -> None:
    member = world.member(world.organisation())
    before = stored_hashes(container, member.person.id)
    with stronger_container.unit() as unit, pytest.raises(SignInFailed):
        unit.signin.begin(member.username, "not the password at all", CLIENT)
    assert stored_hashes(container, member.person.id) == before


def test_sign_in_with_unchanged_parameters_keeps_the_hash(
    container: Container, world: World
) -> None:
    member = world.member(world.organisation())
    before = stored_hashes(container, member.person.id)
    with container.unit() as unit:
        flow = unit.signin.begin(member.username, member.password, CLIENT)
        unit.signin.complete(flow, member.totp(container), member.pin, CLIENT)
    assert stored_hashes(container, member.person.id) == before
