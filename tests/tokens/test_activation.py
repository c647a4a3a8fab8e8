"""Activation: from a letter's code to an account that signs in with four factors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.errors import InvalidInput
from directory.models import Accreditation, Organisation, Person, PersonStatus
from idp.container import Container
from tests.factories import Member, World, sign_in
from tests.runlog import remember
from tokens.activation import PendingToken
from tokens.attempts import Client
from tokens.errors import ActivationFailed, FlowExpired, TooManyAttempts, WeakSecret
from tokens.models import LetterCode, OtpToken, PasswordCredential, PinCredential, TokenState

ADDRESS = "203.0.113.30"
PASSWORD = "marble lantern quietly 37"
PIN = "580364"


def issue(container: Container, person: Person) -> str:
    with container.unit() as unit:
        code = unit.activation.issue_code(unit.directory.person(person.id))
        unit.commit()
        remember("activation code", code)
        return code


def start(container: Container, username: str, code: str, address: str = ADDRESS) -> str:
    with container.unit() as unit:
        return unit.activation.start(username, code, address)


def current_code(secret: str, clock: FrozenClock) -> str:
    return pyotp.TOTP(secret).at(int(clock.now().timestamp()))


def pending(container: Container, flow: str) -> PendingToken:
    with container.unit() as unit:
        return unit.activation.pending_token(flow)


def activate(container: Container, person: Person, code: str) -> tuple[str, PendingToken]:
    """Every stage with good answers; returns the flow and the token set up."""
    flow = start(container, person.username, code)
    with container.unit() as unit:
        unit.activation.set_password(flow, PASSWORD, PASSWORD)
    token = pending(container, flow)
    with container.unit() as unit:
        unit.activation.confirm_token(flow, current_code(token.secret, container.clock))  # type: ignore[arg-type]
    with container.unit() as unit:
        unit.activation.set_pin(flow, PIN, PIN)
    return flow, token


def status_of(container: Container, person: Person) -> PersonStatus:
    with container.unit() as unit:
        return unit.directory.person(person.id).status


@pytest.fixture
def org(world: World) -> Organisation:
    return world.organisation()


@pytest.fixture
def newcomer(world: World, org: Organisation) -> Person:
    return world.newcomer(org, given_name="Tamsin", family_name="Fairweather")


# -- the whole journey -------------------------------------------------------------------


def test_activation_ends_with_an_account_that_signs_in_with_four_factors(
    container: Container, newcomer: Person, clock: FrozenClock
) -> None:
    code = issue(container, newcomer)
    assert status_of(container, newcomer) is PersonStatus.AWAITING_ACTIVATION

    _, token = activate(container, newcomer, code)

    assert status_of(container, newcomer) is PersonStatus.ACTIVE
    with container.unit() as unit:
        stored = unit.session.get(PasswordCredential, newcomer.id)
        pin = unit.session.get(PinCredential, newcomer.id)
        assert stored is not None and pin is not None
        assert PASSWORD not in stored.hash and PIN not in pin.hash
        tokens = list(
            unit.session.scalars(select(OtpToken).where(OtpToken.person_id == newcomer.id))
        )
        assert [(t.serial, t.state) for t in tokens] == [(token.serial, TokenState.ACTIVE)]
        assert token.secret not in tokens[0].secret_ciphertext
        tags = list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))
    assert [t for t in tags if t.startswith("activation:")] == [
        "activation:code:success",
        "activation:password:set",
        "activation:token:confirmed",
        "activation:completed",
    ]

    clock.advance(seconds=30)  # the code used to confirm the token is spent
    member = Member(newcomer, PASSWORD, PIN, token.secret)
    signed = sign_in(container, member, Client(ADDRESS, "pytest"))
    assert signed.person.id == newcomer.id
    assert signed.record.amr == ["pwd", "otp", "swk", "pin"]


def test_code_typed_from_paper_is_accepted(container: Container, newcomer: Person) -> None:
    code = issue(container, newcomer)
    typed = code.lower().replace("-", " ").replace("0", "o")
    assert start(container, newcomer.username.upper(), typed)


def test_the_token_being_set_up_keeps_its_secret_between_asks(
    container: Container, newcomer: Person
) -> None:
    flow = start(container, newcomer.username, issue(container, newcomer))
    with container.unit() as unit:
        unit.activation.set_password(flow, PASSWORD, PASSWORD)
    first, again = pending(container, flow), pending(container, flow)
    assert (first.serial, first.secret) == (again.serial, again.secret)
    assert first.uri.startswith("otpauth://totp/")
    assert newcomer.username in first.uri


# -- the letter's code --------------------------------------------------------------


def test_code_works_once(container: Container, newcomer: Person) -> None:
    code = issue(container, newcomer)
    start(container, newcomer.username, code)
    with pytest.raises(ActivationFailed):
        start(container, newcomer.username, code)


def test_code_expires_after_fourteen_days(
    container: Container, world: World, org: Organisation, clock: FrozenClock
) -> None:
    days = container.settings.vetting.activation_code_days
    assert days == 14
    late = world.newcomer(org)
    in_time = world.newcomer(org)
    late_code, in_time_code = issue(container, late), issue(container, in_time)
    clock.advance(days=days, seconds=-1)
    start(container, in_time.username, in_time_code)
    clock.advance(seconds=1)
    with pytest.raises(ActivationFailed):
        start(container, late.username, late_code)


def _wrong_code(container: Container, person: Person, code: str, other: Person) -> tuple[str, str]:
    flipped = ("1" if code[0] != "1" else "2") + code[1:]
    return person.username, flipped


def _truncated_code(
    container: Container, person: Person, code: str, other: Person
) -> tuple[str, str]:
    return person.username, code[:-1]


def _empty_code(container: Container, person: Person, code: str, other: Person) -> tuple[str, str]:
    return person.username, ""


def _wrong_username(
    container: Container, person: Person, code: str, other: Person
) -> tuple[str, str]:
    return "nobody.here", code


def _empty_username(
    container: Container, person: Person, code: str, other: Person
) -> tuple[str, str]:
    return "", code


def _someone_elses_username(
    container: Container, person: Person, code: str, other: Person
) -> tuple[str, str]:
    """A code works only with the username it was issued for."""
    issue(container, other)
    return other.username, code


def _earlier_code(
    container: Container, person: Person, code: str, other: Person
) -> tuple[str, str]:
    issue(container, person)  # a new letter revokes the old code
    return person.username, code


def _another_purpose(
    container: Container, person: Person, code: str, other: Person
) -> tuple[str, str]:
    from tokens.models import CodePurpose

    with container.unit() as unit:
        reset = unit.codes.issue(person.id, CodePurpose.PIN_RESET, timedelta(days=14))
        unit.commit()
    return person.username, reset


WRONG_STARTS = [
    ("wrong code", _wrong_code),
    ("truncated code", _truncated_code),
    ("empty code", _empty_code),
    ("wrong username", _wrong_username),
    ("empty username", _empty_username),
    ("someone else's username", _someone_elses_username),
    ("revoked earlier code", _earlier_code),
    ("code for another purpose", _another_purpose),
]


@pytest.mark.parametrize("wrong", [w[1] for w in WRONG_STARTS], ids=[w[0] for w in WRONG_STARTS])
def test_wrong_starts_fail_alike(
    container: Container,
    world: World,
    org: Organisation,
    newcomer: Person,
    wrong: Callable[[Container, Person, str, Person], tuple[str, str]],
) -> None:
    code = issue(container, newcomer)
    other = world.newcomer(org)
    username, typed = wrong(container, newcomer, code, other)
    with pytest.raises(ActivationFailed) as error:
        start(container, username, typed)
    assert str(error.value) == ActivationFailed.title
    with container.unit() as unit:
        tags = list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))
    assert tags[-1] == "activation:code:failure"


def test_wrong_attempt_does_not_spend_the_real_code(container: Container, newcomer: Person) -> None:
    code = issue(container, newcomer)
    with pytest.raises(ActivationFailed):
        start(container, newcomer.username, code[:-1] + ("1" if code[-1] != "1" else "2"))
    assert start(container, newcomer.username, code)


def test_new_code_revokes_the_earlier_one_but_works_itself(
    container: Container, newcomer: Person
) -> None:
    first = issue(container, newcomer)
    second = issue(container, newcomer)
    assert first != second
    with pytest.raises(ActivationFailed):
        start(container, newcomer.username, first)
    assert start(container, newcomer.username, second)
    with container.unit() as unit:
        rows = list(unit.session.scalars(select(LetterCode).order_by(LetterCode.id)))
        assert rows[0].revoked_at is not None and rows[0].used_at is None
        assert rows[1].used_at is not None
        # Codes are kept only as keyed digests.
        assert all(r.digest not in (first, second) for r in rows)


def _set_status(status: PersonStatus) -> Callable[[World, Person, Organisation], None]:
    def change(world: World, person: Person, org: Organisation) -> None:
        person.status = status
        world.unit.commit()

    return change


def _lapse_clearance(world: World, person: Person, org: Organisation) -> None:
    person.clearance_expires_on = world.container.clock.today() - timedelta(days=1)
    world.unit.commit()


def _suspend_org(world: World, person: Person, org: Organisation) -> None:
    org.accreditation = Accreditation.SUSPENDED
    world.unit.commit()


NOT_ACTIVATABLE = [
    ("already active", _set_status(PersonStatus.ACTIVE)),
    ("suspended", _set_status(PersonStatus.SUSPENDED)),
    ("closed", _set_status(PersonStatus.CLOSED)),
    ("clearance lapsed", _lapse_clearance),
    ("organisation suspended", _suspend_org),
]


@pytest.mark.parametrize(
    "change", [n[1] for n in NOT_ACTIVATABLE], ids=[n[0] for n in NOT_ACTIVATABLE]
)
def test_a_good_code_does_not_activate_someone_who_may_not_have_access(
    container: Container,
    world: World,
    org: Organisation,
    newcomer: Person,
    change: Callable[[World, Person, Organisation], None],
) -> None:
    code = issue(container, newcomer)
    change(world, newcomer, org)
    with pytest.raises(ActivationFailed):
        start(container, newcomer.username, code)


def test_failed_starts_from_one_address_are_throttled(
    container: Container, newcomer: Person, clock: FrozenClock
) -> None:
    code = issue(container, newcomer)
    allowed = container.settings.signin.address_failures_per_window
    with container.unit() as unit:
        for _ in range(allowed):
            with pytest.raises(ActivationFailed):
                unit.activation.start(newcomer.username, "AAAAA-AAAAA", ADDRESS)
    with pytest.raises(TooManyAttempts):
        start(container, newcomer.username, code)
    assert start(container, newcomer.username, code, address="198.51.100.1")


# -- the stages -----------------------------------------------------------------------


@pytest.fixture
def flow(container: Container, newcomer: Person) -> str:
    return start(container, newcomer.username, issue(container, newcomer))


def test_stages_cannot_be_skipped(container: Container, flow: str, clock: FrozenClock) -> None:
    with container.unit() as unit:
        assert unit.activation.stage_of(flow) == "password"
        with pytest.raises(FlowExpired):
            unit.activation.pending_token(flow)
        with pytest.raises(FlowExpired):
            unit.activation.confirm_token(flow, "123456")
        with pytest.raises(FlowExpired):
            unit.activation.set_pin(flow, PIN, PIN)
        unit.activation.set_password(flow, PASSWORD, PASSWORD)
        assert unit.activation.stage_of(flow) == "token"
        # Neither back nor forward.
        with pytest.raises(FlowExpired):
            unit.activation.set_password(flow, PASSWORD, PASSWORD)
        with pytest.raises(FlowExpired):
            unit.activation.set_pin(flow, PIN, PIN)
        token = unit.activation.pending_token(flow)
        unit.activation.confirm_token(flow, current_code(token.secret, clock))
        assert unit.activation.stage_of(flow) == "pin"
        with pytest.raises(FlowExpired):
            unit.activation.confirm_token(flow, current_code(token.secret, clock))
        unit.activation.set_pin(flow, PIN, PIN)
        # A finished flow is finished.
        assert unit.activation.stage_of(flow) is None
        with pytest.raises(FlowExpired):
            unit.activation.set_pin(flow, "581364", "581364")


def test_made_up_flow_is_refused(container: Container) -> None:
    with container.unit() as unit, pytest.raises(FlowExpired):
        unit.activation.set_password("made-up", PASSWORD, PASSWORD)


def test_abandoned_flow_expires(container: Container, flow: str, clock: FrozenClock) -> None:
    clock.advance(minutes=60)
    with container.unit() as unit:
        assert unit.activation.stage_of(flow) is None
        with pytest.raises(FlowExpired):
            unit.activation.set_password(flow, PASSWORD, PASSWORD)


def test_suspension_during_activation_ends_the_flow(
    container: Container, flow: str, newcomer: Person
) -> None:
    with container.unit() as admin:
        person = admin.directory.person(newcomer.id)
        admin.directory.set_status(person, PersonStatus.SUSPENDED, "investigation", tag="t")
        admin.commit()
    with container.unit() as unit, pytest.raises(FlowExpired):
        unit.activation.set_password(flow, PASSWORD, PASSWORD)


@pytest.mark.parametrize(
    ("password", "confirmation", "field"),
    [
        ("short one", "short one", "password"),
        ("password1234", "password1234", "password"),
        ("Fairweather2024!", "Fairweather2024!", "password"),  # the person's own name
        ("tamsin.fairweather", "tamsin.fairweather", "password"),  # the username
        ("contactpoint2024", "contactpoint2024", "password"),
        ("aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "password"),
        (PASSWORD, PASSWORD + " ", "password_confirmation"),
    ],
)
def test_password_policy_is_enforced(
    container: Container, flow: str, newcomer: Person, password: str, confirmation: str, field: str
) -> None:
    with container.unit() as unit:
        with pytest.raises(InvalidInput) as error:
            unit.activation.set_password(flow, password, confirmation)
        assert error.value.problems[0].field == field
        assert unit.session.get(PasswordCredential, newcomer.id) is None
        # A refused choice can be put right on the same stage.
        assert unit.activation.stage_of(flow) == "password"
        unit.activation.set_password(flow, PASSWORD, PASSWORD)


@pytest.fixture
def at_token_stage(container: Container, flow: str) -> PendingToken:
    with container.unit() as unit:
        unit.activation.set_password(flow, PASSWORD, PASSWORD)
        return unit.activation.pending_token(flow)


@pytest.mark.parametrize("offset", [-3, 5])
def test_token_needs_a_current_code(
    container: Container, flow: str, at_token_stage: PendingToken, clock: FrozenClock, offset: int
) -> None:
    stale = pyotp.TOTP(at_token_stage.secret).at(int(clock.now().timestamp()) + 30 * offset)
    with container.unit() as unit:
        with pytest.raises(InvalidInput) as error:
            unit.activation.confirm_token(flow, stale)
        assert error.value.problems[0].field == "code"
        assert unit.activation.stage_of(flow) == "token"
        unit.activation.confirm_token(flow, current_code(at_token_stage.secret, clock))
        assert unit.activation.stage_of(flow) == "pin"


def test_token_is_not_confirmed_by_another_secret(
    container: Container, flow: str, at_token_stage: PendingToken, clock: FrozenClock
) -> None:
    other = pyotp.random_base32()
    with container.unit() as unit, pytest.raises(InvalidInput):
        unit.activation.confirm_token(flow, current_code(other, clock))


@pytest.mark.parametrize(
    ("pin", "confirmation", "field"),
    [
        ("123456", "123456", "pin"),
        ("111111", "111111", "pin"),
        ("12345", "12345", "pin"),
        ("58036a", "58036a", "pin"),
        (PIN, "580365", "pin_confirmation"),
    ],
)
def test_pin_policy_is_enforced(
    container: Container,
    flow: str,
    at_token_stage: PendingToken,
    clock: FrozenClock,
    newcomer: Person,
    pin: str,
    confirmation: str,
    field: str,
) -> None:
    with container.unit() as unit:
        unit.activation.confirm_token(flow, current_code(at_token_stage.secret, clock))
        with pytest.raises(WeakSecret if field == "pin" else InvalidInput) as error:
            unit.activation.set_pin(flow, pin, confirmation)
        assert error.value.problems[0].field == field
    assert status_of(container, newcomer) is PersonStatus.AWAITING_ACTIVATION
    with container.unit() as unit:
        unit.activation.set_pin(flow, PIN, PIN)
    assert status_of(container, newcomer) is PersonStatus.ACTIVE


def test_half_finished_activation_gives_no_access(
    container: Container,
    flow: str,
    at_token_stage: PendingToken,
    newcomer: Person,
    clock: FrozenClock,
) -> None:
    with container.unit() as unit:
        unit.activation.confirm_token(flow, current_code(at_token_stage.secret, clock))
    clock.advance(seconds=30)
    member = Member(newcomer, PASSWORD, PIN, at_token_stage.secret)
    from tokens.errors import SignInFailed

    with pytest.raises(SignInFailed):
        sign_in(container, member, Client(ADDRESS))
