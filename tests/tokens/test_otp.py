"""One-time passwords: the RFC test vectors, one use per code, bounded drift."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from cryptography.exceptions import InvalidTag

from core.clock import FrozenClock
from core.crypto import DataCipher
from core.settings import TotpSettings, load_settings
from idp.container import Container, Unit
from tokens.models import OtpAlgorithm, OtpToken, TokenForm, TokenState
from tokens.otp import OtpVerifier, new_totp_secret, provisioning_uri


def fullwidth(digits: str) -> str:
    """The same digits in their full-width forms, as some keyboards type them."""
    return "".join(chr(0xFF10 + int(d)) for d in digits)


RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()

# RFC 6238 appendix B, SHA1 column.
RFC6238_SHA1 = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]

# RFC 4226 appendix D, counters 0 to 9.
RFC4226 = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]


def totp_settings() -> TotpSettings:
    return load_settings(environ={}).totp


def make_token(
    verifier: OtpVerifier,
    secret: str,
    *,
    algorithm: OtpAlgorithm = OtpAlgorithm.TOTP,
    digits: int = 6,
    form: TokenForm = TokenForm.SOFT,
) -> OtpToken:
    serial = f"TEST-{secrets.token_hex(4)}"
    return OtpToken(
        serial=serial,
        form=form,
        algorithm=algorithm,
        digits=digits,
        period_seconds=30,
        secret_ciphertext=verifier.seal(serial, secret),
        last_step=0,
        drift_steps=0,
        state=TokenState.ACTIVE,
        created_at=verifier.clock.now(),
    )


# -- the published vectors, no database needed ----------------------------------


@pytest.fixture
def offline() -> OtpVerifier:
    cipher = DataCipher(secrets.token_bytes(32))
    return OtpVerifier(None, cipher, FrozenClock(), totp_settings())  # type: ignore[arg-type]


@pytest.mark.parametrize(("at", "code"), RFC6238_SHA1)
def test_rfc6238_vectors(offline: OtpVerifier, at: int, code: str) -> None:
    assert isinstance(offline.clock, FrozenClock)
    offline.clock.set(datetime.fromtimestamp(at, UTC))
    token = make_token(offline, RFC_SECRET, digits=8)
    assert offline.matching_step(token, code, window=0) == at // 30
    assert offline.matching_step(token, code) == at // 30


@pytest.mark.parametrize(("at", "code"), RFC6238_SHA1)
def test_rfc6238_codes_do_not_match_at_other_times(
    offline: OtpVerifier, at: int, code: str
) -> None:
    assert isinstance(offline.clock, FrozenClock)
    offline.clock.set(datetime.fromtimestamp(at + 3600, UTC))
    token = make_token(offline, RFC_SECRET, digits=8)
    assert offline.matching_step(token, code) is None


def test_rfc6238_codes_need_all_their_digits(offline: OtpVerifier) -> None:
    assert isinstance(offline.clock, FrozenClock)
    offline.clock.set(datetime.fromtimestamp(59, UTC))
    token = make_token(offline, RFC_SECRET, digits=8)
    assert offline.matching_step(token, "94287082") == 1
    assert offline.matching_step(token, "287082") is None  # the last six digits alone
    assert offline.matching_step(token, "942870820") is None


@pytest.mark.parametrize(("counter", "code"), list(enumerate(RFC4226)))
def test_rfc4226_vectors(offline: OtpVerifier, counter: int, code: str) -> None:
    token = make_token(offline, RFC_SECRET, algorithm=OtpAlgorithm.HOTP, form=TokenForm.HARDWARE)
    assert offline.matching_step(token, code) == counter
    token.last_step = counter
    assert offline.matching_step(token, code, window=0) == counter


def test_rfc4226_lookahead_is_bounded(offline: OtpVerifier) -> None:
    token = make_token(offline, RFC_SECRET, algorithm=OtpAlgorithm.HOTP, form=TokenForm.HARDWARE)
    hotp = pyotp.HOTP(RFC_SECRET)
    assert offline.matching_step(token, hotp.at(10)) == 10
    assert offline.matching_step(token, hotp.at(11)) is None
    token.last_step = 5
    assert offline.matching_step(token, RFC4226[4]) is None  # behind the mark
    assert offline.matching_step(token, hotp.at(15)) == 15


# -- one use per code, with the mark kept in the database --------------------------


@pytest.fixture
def totp_token(container: Container) -> tuple[int, str]:
    with container.unit() as unit:
        token, secret = unit.otp.new_soft_token(None, None)
        token.state = TokenState.ACTIVE
        unit.commit()
        return token.id, secret


@pytest.fixture
def work(container: Container) -> Iterator[Unit]:
    with container.unit() as unit:
        yield unit


def code_at(secret: str, clock: FrozenClock, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(int(clock.now().timestamp()) + 30 * offset_steps)


def load(unit: Unit, token_id: int) -> OtpToken:
    token = unit.session.get(OtpToken, token_id)
    assert token is not None
    return token


def test_totp_code_is_accepted_once(
    work: Unit, totp_token: tuple[int, str], clock: FrozenClock
) -> None:
    token_id, secret = totp_token
    token = load(work, token_id)
    code = code_at(secret, clock)
    assert work.otp.verify(token, code)
    assert not work.otp.verify(token, code)
    clock.advance(seconds=10)  # same step, still inside the window
    assert not work.otp.verify(token, code)


def test_replay_is_refused_by_another_node(
    container: Container, totp_token: tuple[int, str], clock: FrozenClock
) -> None:
    token_id, secret = totp_token
    code = code_at(secret, clock)
    with container.unit() as one:
        assert one.otp.verify(load(one, token_id), code)
        one.commit()
    with container.unit() as two:
        assert not two.otp.verify(load(two, token_id), code)


def test_racing_nodes_cannot_both_use_a_code(
    container: Container, totp_token: tuple[int, str], clock: FrozenClock
) -> None:
    """Both nodes read the token before either used the code; the database decides."""
    token_id, secret = totp_token
    code = code_at(secret, clock)
    with container.unit() as one, container.unit() as two:
        first, second = load(one, token_id), load(two, token_id)
        one.commit()
        two.commit()  # end the reads; the objects keep what they read
        assert first.last_step == second.last_step == 0
        assert one.otp.verify(first, code)
        one.commit()
        assert not two.otp.verify(second, code)
        two.commit()
    with container.unit() as check:
        assert load(check, token_id).last_step == int(clock.now().timestamp()) // 30


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_one_step_of_drift_either_side_is_accepted(
    work: Unit, totp_token: tuple[int, str], clock: FrozenClock, offset: int
) -> None:
    token_id, secret = totp_token
    assert work.otp.verify(load(work, token_id), code_at(secret, clock, offset))


@pytest.mark.parametrize("offset", [-2, 2, -3, 3, 20])
def test_two_or_more_steps_of_drift_are_refused(
    work: Unit, totp_token: tuple[int, str], clock: FrozenClock, offset: int
) -> None:
    token_id, secret = totp_token
    token = load(work, token_id)
    assert not work.otp.verify(token, code_at(secret, clock, offset))
    assert token.last_step == 0  # a refused code moves nothing


def test_drift_follows_settings(
    work: Unit, totp_token: tuple[int, str], clock: FrozenClock
) -> None:
    token_id, secret = totp_token
    token = load(work, token_id)
    assert work.otp.matching_step(token, code_at(secret, clock, 2), window=2) is not None
    assert work.otp.matching_step(token, code_at(secret, clock, 1), window=0) is None


def test_older_code_is_refused_after_a_newer_one(
    work: Unit, totp_token: tuple[int, str], clock: FrozenClock
) -> None:
    token_id, secret = totp_token
    token = load(work, token_id)
    newer, current, older = (code_at(secret, clock, n) for n in (1, 0, -1))
    assert work.otp.verify(token, newer)
    assert not work.otp.verify(token, current)
    assert not work.otp.verify(token, older)


def test_next_steps_code_works_after_this_ones(
    work: Unit, totp_token: tuple[int, str], clock: FrozenClock
) -> None:
    token_id, secret = totp_token
    token = load(work, token_id)
    assert work.otp.verify(token, code_at(secret, clock))
    clock.advance(seconds=30)
    assert work.otp.verify(token, code_at(secret, clock))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: c[:3] + " " + c[3:],
        lambda c: " " + c + " ",
        lambda c: c[:3] + "\t" + c[3:],
    ],
)
def test_spaces_in_a_typed_code_are_ignored(
    work: Unit, totp_token: tuple[int, str], clock: FrozenClock, mangle
) -> None:  # type: ignore[no-untyped-def]
    token_id, secret = totp_token
    assert work.otp.verify(load(work, token_id), mangle(code_at(secret, clock)))


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "abcdef", "12345a", fullwidth("123456")])
def test_malformed_codes_are_refused(work: Unit, totp_token: tuple[int, str], bad: str) -> None:
    token_id, _ = totp_token
    assert not work.otp.verify(load(work, token_id), bad)


def test_code_of_another_secret_is_refused(
    work: Unit, totp_token: tuple[int, str], clock: FrozenClock
) -> None:
    token_id, _ = totp_token
    other = new_totp_secret()
    assert not work.otp.verify(load(work, token_id), code_at(other, clock))


def test_hotp_codes_work_once_in_order(work: Unit) -> None:
    token = make_token(work.otp, RFC_SECRET, algorithm=OtpAlgorithm.HOTP, form=TokenForm.HARDWARE)
    work.session.add(token)
    work.session.flush()
    assert work.otp.verify(token, RFC4226[0])
    assert not work.otp.verify(token, RFC4226[0])
    assert work.otp.verify(token, RFC4226[3])  # presses lost in between are skipped
    assert token.last_step == 4
    assert not work.otp.verify(token, RFC4226[1])
    assert not work.otp.verify(token, RFC4226[3])
    assert work.otp.verify(token, RFC4226[4])


# -- the soft token's secret ----------------------------------------------------------


def test_new_secret_has_160_bits() -> None:
    secret = new_totp_secret()
    assert len(base64.b32decode(secret)) == 20
    assert new_totp_secret() != secret


def test_secret_is_stored_encrypted_and_bound_to_its_token(
    work: Unit, totp_token: tuple[int, str]
) -> None:
    token_id, secret = totp_token
    token = load(work, token_id)
    assert secret not in token.secret_ciphertext
    assert work.otp.secret_of(token) == secret
    other, _ = work.otp.new_soft_token(None, None)
    other.secret_ciphertext = token.secret_ciphertext
    with pytest.raises(InvalidTag):
        work.otp.secret_of(other)


def test_provisioning_uri_describes_the_token() -> None:
    settings = totp_settings()
    uri = provisioning_uri(RFC_SECRET, "sam.jones", settings)
    parsed = urlparse(uri)
    query = parse_qs(parsed.query)
    assert parsed.scheme == "otpauth"
    assert parsed.netloc == "totp"
    assert "sam.jones" in parsed.path
    assert query["secret"] == [RFC_SECRET]
    assert query["issuer"] == [settings.issuer]
    # Defaults may be left out of the URI; anything else must be stated.
    assert query.get("digits", ["6"]) == [str(settings.digits)]
    assert query.get("period", ["30"]) == [str(settings.period_seconds)]
