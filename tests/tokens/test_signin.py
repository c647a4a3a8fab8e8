"""The sign-in rules: four factors, one uninformative failure, locks, throttling,
sessions that end when they must."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.errors import InvalidInput, NotAllowed
from directory.models import Accreditation, Organisation, PersonStatus, Role
from idp.container import Container
from tests.conftest import make_settings
from tests.factories import Member, World, sign_in
from tokens.attempts import Client, guard_for
from tokens.errors import FlowExpired, SignInFailed, TooManyAttempts
from tokens.models import AuthSession, SignInGuard

CLIENT = Client("203.0.113.9", "pytest")
OTHER_CLIENT = Client("198.51.100.77", "pytest")
WRONG = "not the password at all"


# -- helpers -------------------------------------------------------------------------


def fails(
    container: Container, member: Member, client: Client = CLIENT, **wrong: str
) -> SignInFailed:
    with pytest.raises(SignInFailed) as error:
        sign_in(container, member, client, **wrong)
    return error.value


def wrong_passwords(
    container: Container,
    member: Member,
    times: int,
    client: Callable[[int], Client] = lambda i: CLIENT,
) -> None:
    with container.unit() as unit:
        for i in range(times):
            with pytest.raises(SignInFailed):
                unit.signin.begin(member.username, WRONG, client(i))


def audit_log(container: Container) -> list[AuditEntry]:
    with container.unit() as unit:
        entries = list(unit.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        unit.session.expunge_all()
        return entries


def tags_since(container: Container, seq: int) -> list[str]:
    return [e.tag for e in audit_log(container) if e.seq > seq]


def last_seq(container: Container) -> int:
    entries = audit_log(container)
    return entries[-1].seq if entries else 0


def guard(container: Container, member: Member) -> SignInGuard:
    with container.unit() as unit:
        row = guard_for(unit.session, member.person.id)
        unit.session.expunge(row)
        return row


def set_lock(container: Container, member: Member, *, permanent: bool) -> None:
    with container.unit() as unit:
        row = guard_for(unit.session, member.person.id)
        row.consecutive_failures = 100 if permanent else 5
        row.locked_permanently = permanent
        row.locked_until = None if permanent else container.clock.now() + timedelta(minutes=15)
        unit.commit()


# -- one failure for everything -------------------------------------------------------

Setup = Callable[[World, Container, Member, Organisation], dict[str, str]]


def _unknown_user(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    return {"username": "nobody.here"}


def _wrong_password(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    return {"password": WRONG}


def _empty_password(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    return {"password": ""}


def _wrong_pin(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    return {"pin": "913577"}


def _wrong_code(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    return {"code": m.totp(c, offset_steps=4)}


def _foreign_digits(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    full_width = "".join(chr(0xFF10 + int(d)) for d in "123456")
    return {"code": full_width}


def _replayed_code(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    sign_in(c, m, CLIENT)
    return {}  # the same code again, within its step


def _locked(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    wrong_passwords(c, m, 5)
    return {}


def _status(status: PersonStatus) -> Setup:
    def setup(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
        m.person.status = status
        world.unit.commit()
        return {}

    return setup


def _lapsed_clearance(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    m.person.clearance_expires_on = c.clock.today() - timedelta(days=1)
    world.unit.commit()
    return {}


def _lapsed_training(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    m.person.training_expires_on = c.clock.today() - timedelta(days=1)
    world.unit.commit()
    return {}


def _ended_position(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    m.person.positions[0].ends_on = c.clock.today() - timedelta(days=1)
    world.unit.commit()
    return {}


def _future_position(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    m.person.positions[0].starts_on = c.clock.today() + timedelta(days=1)
    world.unit.commit()
    return {}


def _organisation_suspended(
    world: World, c: Container, m: Member, o: Organisation
) -> dict[str, str]:
    o.accreditation = Accreditation.SUSPENDED
    world.unit.commit()
    return {}


def _organisation_pending(world: World, c: Container, m: Member, o: Organisation) -> dict[str, str]:
    o.accreditation = Accreditation.PENDING
    world.unit.commit()
    return {}


SCENARIOS = [
    # id, setup, audit tag of the failure, what the audit says was wrong
    ("unknown user", _unknown_user, "signin:password:failure", "unknown username"),
    ("wrong password", _wrong_password, "signin:password:failure", "wrong password"),
    ("empty password", _empty_password, "signin:password:failure", "wrong password"),
    ("wrong PIN", _wrong_pin, "signin:second_factor:failure", "wrong PIN"),
    ("wrong code", _wrong_code, "signin:second_factor:failure", "wrong or reused token code"),
    ("non-ASCII digits", _foreign_digits, "signin:second_factor:failure", "wrong or reused"),
    ("replayed code", _replayed_code, "signin:second_factor:failure", "wrong or reused"),
    ("locked account", _locked, "signin:password:failure", "account locked"),
    ("suspended", _status(PersonStatus.SUSPENDED), "signin:password:failure", "account suspended"),
    ("closed", _status(PersonStatus.CLOSED), "signin:password:failure", "account closed"),
    (
        "awaiting activation",
        _status(PersonStatus.AWAITING_ACTIVATION),
        "signin:password:failure",
        "account awaiting activation",
    ),
    ("lapsed clearance", _lapsed_clearance, "signin:password:failure", "clearance lapsed"),
    ("lapsed training", _lapsed_training, "signin:password:failure", "training lapsed"),
    ("ended position", _ended_position, "signin:password:failure", "no current position"),
    ("position not started", _future_position, "signin:password:failure", "no current position"),
    (
        "organisation suspended",
        _organisation_suspended,
        "signin:password:failure",
        "organisation not accredited",
    ),
    (
        "organisation pending",
        _organisation_pending,
        "signin:password:failure",
        "organisation not accredited",
    ),
]


@pytest.mark.parametrize(
    ("setup", "tag", "reason"),
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
def test_every_refusal_is_the_same_sign_in_failure(
    container: Container, world: World, setup: Setup, tag: str, reason: str
) -> None:
    org = world.organisation()
    member = world.member(org)
    wrong = setup(world, container, member, org)
    before = last_seq(container)

    error = fails(container, member, **wrong)

    # What the person sees never says which factor or rule it was.
    assert type(error) is SignInFailed
    assert error.error_id == "signin.failed"
    assert str(error) == error.message == SignInFailed.title
    assert member.username not in str(error)
    # What the audit trail keeps does say, for the administrators.
    failures = [e for e in audit_log(container) if e.seq > before and e.outcome == "failure"]
    assert [e.tag for e in failures] == [tag]
    assert reason in failures[0].detail["reason"]
    # And no session came of it (the replay case has the one its first use started).
    with container.unit() as unit:
        sessions = unit.session.scalars(select(AuthSession)).all()
        assert len(sessions) == (1 if setup is _replayed_code else 0)


def test_unknown_username_still_costs_a_password_check(
    container: Container, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Time must not tell which usernames exist: an argon2 check is made either way."""
    member = world.member(world.organisation())
    calls: list[str | None] = []
    real = container.hasher.verify

    def counting(stored: str | None, presented: str) -> bool:
        calls.append(stored)
        return real(stored, presented)

    monkeypatch.setattr(container.hasher, "verify", counting)
    fails(container, member, username="nobody.here")
    assert calls == [None]
    fails(container, member, password=WRONG)
    assert len(calls) == 2 and calls[1] is not None


def test_username_is_matched_whatever_its_case(container: Container, world: World) -> None:
    member = world.member(world.organisation())
    signed = sign_in(container, member, CLIENT, username=f"  {member.username.upper()} ")
    assert signed.person.id == member.person.id


def test_clearance_is_good_through_its_last_day(
    container: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation(), clearance_days=1)
    clock.advance(days=1)
    sign_in(container, member, CLIENT)
    clock.advance(days=1)
    fails(container, member)


def test_access_ending_between_the_two_steps_fails_the_second(
    container: Container, world: World
) -> None:
    member = world.member(world.organisation())
    with container.unit() as unit:
        flow = unit.signin.begin(member.username, member.password, CLIENT)
    with container.unit() as admin:
        person = admin.directory.person(member.person.id)
        admin.directory.set_status(
            person, PersonStatus.SUSPENDED, "investigation", tag="test:suspend"
        )
        admin.commit()
    with container.unit() as unit, pytest.raises(SignInFailed):
        unit.signin.complete(flow, member.totp(container), member.pin, CLIENT)


# -- the flow between the steps --------------------------------------------------------


def test_second_step_flow_works_once(container: Container, world: World) -> None:
    member = world.member(world.organisation())
    with container.unit() as unit:
        flow = unit.signin.begin(member.username, member.password, CLIENT)
        with pytest.raises(SignInFailed):
            unit.signin.complete(flow, member.totp(container), "913577", CLIENT)
        # A failed second step cannot be retried on the same flow: start again.
        with pytest.raises(FlowExpired):
            unit.signin.complete(flow, member.totp(container), member.pin, CLIENT)


def test_second_step_flow_cannot_be_reused_after_success(
    container: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    with container.unit() as unit:
        flow = unit.signin.begin(member.username, member.password, CLIENT)
        unit.signin.complete(flow, member.totp(container), member.pin, CLIENT)
        clock.advance(seconds=30)
        with pytest.raises(FlowExpired):
            unit.signin.complete(flow, member.totp(container), member.pin, CLIENT)


def test_a_flow_checked_by_two_requests_is_used_by_the_first_only(
    container: Container, world: World, clock: FrozenClock
) -> None:
    """Two requests that both saw the flow waiting (the page's check) race to
    complete it: using it up is conditional, so the second finds it used."""
    member = world.member(world.organisation())
    with container.unit() as unit:
        flow = unit.signin.begin(member.username, member.password, CLIENT)
    with container.unit() as first, container.unit() as second:
        assert first.signin.is_pending(flow)
        assert second.signin.is_pending(flow)
        first.signin.complete(flow, member.totp(container), member.pin, CLIENT)
        clock.advance(seconds=30)  # a fresh code: only the flow can refuse it
        with pytest.raises(FlowExpired):
            second.signin.complete(flow, member.totp(container), member.pin, CLIENT)
    with container.unit() as unit:
        assert not unit.signin.is_pending(flow)
        sessions = unit.session.scalars(
            select(AuthSession).where(AuthSession.person_id == member.person.id)
        ).all()
        assert len(sessions) == 1


def test_second_step_flow_expires(container: Container, world: World, clock: FrozenClock) -> None:
    member = world.member(world.organisation())
    minutes = container.settings.signin.flow_minutes
    with container.unit() as unit:
        late = unit.signin.begin(member.username, member.password, CLIENT)
        in_time = unit.signin.begin(member.username, member.password, CLIENT)
    clock.advance(minutes=minutes, seconds=-1)
    with container.unit() as unit:
        unit.signin.complete(in_time, member.totp(container), member.pin, CLIENT)
    clock.advance(seconds=31)
    with container.unit() as unit, pytest.raises(FlowExpired):
        unit.signin.complete(late, member.totp(container), member.pin, CLIENT)


@pytest.mark.parametrize("token", ["", "made-up", "x" * 43])
def test_made_up_flow_tokens_are_refused(container: Container, world: World, token: str) -> None:
    member = world.member(world.organisation())
    with container.unit() as unit, pytest.raises(FlowExpired):
        unit.signin.complete(token, member.totp(container), member.pin, CLIENT)


# -- account locks -----------------------------------------------------------------


def test_five_failures_lock_for_fifteen_minutes_even_with_the_right_password(
    container: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    wrong_passwords(container, member, 4)
    with container.unit() as unit:  # four is not yet a lock
        unit.signin.begin(member.username, member.password, CLIENT)
    wrong_passwords(container, member, 1)
    before = last_seq(container)

    fails(container, member)  # right password, locked

    clock.advance(minutes=14, seconds=59)
    fails(container, member)
    clock.advance(seconds=1)
    sign_in(container, member, CLIENT)
    assert "signin:success" in tags_since(container, before)
    lock = next(e for e in audit_log(container) if e.tag == "signin:lockout")
    assert lock.detail["minutes"] == 15
    assert lock.subject_id == str(member.person.id)


def test_failures_at_the_second_step_count_towards_the_lock(
    container: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    for n in range(5):
        fails(container, member, pin=f"91357{n}")
        clock.advance(seconds=30)
    assert guard(container, member).locked_until is not None
    fails(container, member)  # everything right, but locked


def test_each_further_lock_doubles(container: Container, world: World, clock: FrozenClock) -> None:
    member = world.member(world.organisation())
    wrong_passwords(container, member, 5)
    clock.advance(minutes=15)

    wrong_passwords(container, member, 1)  # failures are still consecutive: locked again
    clock.advance(minutes=29, seconds=59)
    fails(container, member)
    clock.advance(seconds=1)
    with container.unit() as unit:
        unit.signin.begin(member.username, member.password, CLIENT)

    wrong_passwords(container, member, 1)
    clock.advance(minutes=59)
    fails(container, member)
    clock.advance(minutes=1)
    sign_in(container, member, CLIENT)

    minutes = [e.detail["minutes"] for e in audit_log(container) if e.tag == "signin:lockout"]
    assert minutes == [15, 30, 60]


def test_success_resets_the_count_and_the_doubling(
    container: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    wrong_passwords(container, member, 5)
    clock.advance(minutes=15)
    sign_in(container, member, CLIENT)
    state = guard(container, member)
    assert (state.consecutive_failures, state.lock_count, state.locked_until) == (0, 0, None)

    wrong_passwords(container, member, 4)
    clock.advance(seconds=30)
    sign_in(container, member, CLIENT)  # four after a success is not a lock
    wrong_passwords(container, member, 5)
    clock.advance(minutes=15)
    sign_in(container, member, CLIENT)  # and the next lock is 15 minutes again, not 30

    minutes = [e.detail["minutes"] for e in audit_log(container) if e.tag == "signin:lockout"]
    assert minutes == [15, 15]


def test_a_password_step_alone_does_not_reset_the_count(container: Container, world: World) -> None:
    member = world.member(world.organisation())
    wrong_passwords(container, member, 4)
    with container.unit() as unit:
        unit.signin.begin(member.username, member.password, CLIENT)
    wrong_passwords(container, member, 1)
    assert guard(container, member).locked_until is not None


def test_unknown_usernames_lock_nobody(container: Container, world: World) -> None:
    member = world.member(world.organisation())
    with container.unit() as unit:
        for _ in range(6):
            with pytest.raises(SignInFailed):
                unit.signin.begin(member.username + "x", WRONG, CLIENT)
    sign_in(container, member, CLIENT)


def addresses(i: int) -> Client:
    """A distributed guesser: never enough from one address to be throttled."""
    return Client(f"192.0.2.{i % 200}", "guesser")


def test_hundred_failures_lock_until_an_administrator_unlocks(
    container: Container, world: World, clock: FrozenClock
) -> None:
    org = world.organisation()
    member = world.member(org)
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    limit = container.settings.signin.permanent_lockout_after
    assert limit == 100

    wrong_passwords(container, member, limit, addresses)

    assert guard(container, member).locked_permanently
    clock.advance(days=30)
    fails(container, member)
    clock.advance(days=300)
    fails(container, member)

    before = last_seq(container)
    with container.unit() as unit:
        unit.signin.unlock(world.principal(admin), unit.directory.person(member.person.id))
        unit.commit()
    assert tags_since(container, before) == ["signin:unlocked"]
    sign_in(container, member, CLIENT)
    assert [e.tag for e in audit_log(container)].count("signin:lockout:permanent") == 1


def test_ninety_nine_failures_still_unlock_with_time(
    container: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    wrong_passwords(
        container, member, container.settings.signin.permanent_lockout_after - 1, addresses
    )
    state = guard(container, member)
    assert not state.locked_permanently
    assert state.locked_until is not None  # (another attempt now would be the hundredth)
    clock.advance(minutes=15)
    sign_in(container, member, CLIENT)


# -- who may unlock ----------------------------------------------------------------------


@pytest.mark.parametrize("permanent", [True, False], ids=["permanent", "timed"])
def test_organisation_admin_unlocks_their_own_people(
    container: Container, world: World, permanent: bool
) -> None:
    org = world.organisation()
    member = world.member(org)
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    set_lock(container, member, permanent=permanent)
    fails(container, member)
    with container.unit() as unit:
        unit.signin.unlock(world.principal(admin), unit.directory.person(member.person.id))
        unit.commit()
    state = guard(container, member)
    assert (state.consecutive_failures, state.locked_permanently, state.locked_until) == (
        0,
        False,
        None,
    )
    sign_in(container, member, CLIENT)


def test_platform_admin_unlocks_anyone(container: Container, world: World) -> None:
    member = world.member(world.organisation())
    platform = world.member(world.organisation("Platform operations"), Role.PLATFORM_ADMIN)
    set_lock(container, member, permanent=True)
    with container.unit() as unit:
        person = unit.directory.person(member.person.id)
        # A platform admin says why (issue 5: every platform-admin act carries a reason).
        with pytest.raises(InvalidInput):
            unit.signin.unlock(world.principal(platform), person)
        unit.signin.unlock(world.principal(platform), person, "rang the help desk")
        unit.commit()
    sign_in(container, member, CLIENT)


def _other_org_admin(world: World, org: Organisation, target: Member) -> Member:
    return world.member(world.organisation("Southshire Council"), Role.ORGANISATION_ADMIN)


def _practitioner(world: World, org: Organisation, target: Member) -> Member:
    return world.member(org, Role.PRACTITIONER)


def _vetting_officer(world: World, org: Organisation, target: Member) -> Member:
    return world.member(org, Role.VETTING_OFFICER)


def _team_elsewhere(world: World, org: Organisation, target: Member) -> Member:
    """The team of a local authority that is not the organisation's registration
    authority. (The team of the person's own authority may unlock since issue 5
    gave teams what organisation admins have: tests/directory/test_local_authority_area.py.)"""
    return world.member(world.organisation("Southshire Council"), Role.LOCAL_AUTHORITY_TEAM)


def _former_admin(world: World, org: Organisation, target: Member) -> Member:
    former = world.member(org, Role.ORGANISATION_ADMIN)
    former.person.positions[0].ends_on = world.container.clock.today() - timedelta(days=1)
    world.unit.commit()
    return former


def _admin_of_suspended_org(world: World, org: Organisation, target: Member) -> Member:
    """An admin of the same organisation cannot act once it loses accreditation."""
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    org.accreditation = Accreditation.SUSPENDED
    world.unit.commit()
    return admin


REFUSED_UNLOCKERS = [
    ("admin of another organisation", _other_org_admin),
    ("practitioner", _practitioner),
    ("vetting officer", _vetting_officer),
    ("local authority team of another area", _team_elsewhere),
    ("former admin", _former_admin),
    ("admin of a suspended organisation", _admin_of_suspended_org),
]


@pytest.mark.parametrize(
    "make_actor", [r[1] for r in REFUSED_UNLOCKERS], ids=[r[0] for r in REFUSED_UNLOCKERS]
)
def test_only_the_persons_own_admins_may_unlock(
    container: Container,
    world: World,
    make_actor: Callable[[World, Organisation, Member], Member],
) -> None:
    org = world.organisation()
    member = world.member(org)
    actor = make_actor(world, org, member)
    set_lock(container, member, permanent=True)
    before = last_seq(container)
    with container.unit() as unit, pytest.raises(NotAllowed):
        unit.signin.unlock(world.principal(actor), unit.directory.person(member.person.id))
    assert guard(container, member).locked_permanently
    assert "signin:unlocked" not in tags_since(container, before)
    org.accreditation = Accreditation.ACCREDITED
    world.unit.commit()
    fails(container, member)


@pytest.mark.parametrize("role", [Role.ORGANISATION_ADMIN, Role.PLATFORM_ADMIN])
def test_nobody_may_unlock_themselves(container: Container, world: World, role: Role) -> None:
    admin = world.member(world.organisation(), role)
    set_lock(container, admin, permanent=True)
    with container.unit() as unit, pytest.raises(NotAllowed):
        unit.signin.unlock(world.principal(admin), unit.directory.person(admin.person.id))
    assert guard(container, admin).locked_permanently


# -- throttling by address --------------------------------------------------------------


@pytest.fixture
def throttled(
    container: Container, database_url: str, tmp_path: Path, clock: FrozenClock
) -> Iterator[Container]:
    """The same deployment with a small allowance per address."""
    settings = make_settings(
        database_url, tmp_path / "throttled", signin={"address_failures_per_window": 3}
    )
    built = Container(settings, secrets=container.secrets, clock=clock)
    yield built
    built.dispose()


def test_too_many_failures_from_one_address_are_throttled(
    throttled: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    allowed = throttled.settings.signin.address_failures_per_window
    window = throttled.settings.signin.address_window_seconds
    with throttled.unit() as unit:
        for i in range(allowed):
            with pytest.raises(SignInFailed):
                unit.signin.begin(f"guess{i}", WRONG, CLIENT)
    clock.advance(seconds=100)

    with pytest.raises(TooManyAttempts) as error:
        sign_in(throttled, member, CLIENT)  # even the right details

    assert 0 < error.value.retry_after <= window - 100
    assert member.username not in str(error.value)
    assert "signin:throttled" in [e.tag for e in audit_log(throttled)]
    # Another address is not affected, and nor is the account.
    sign_in(throttled, member, OTHER_CLIENT)
    # The next window starts afresh.
    clock.advance(seconds=window)
    sign_in(throttled, member, CLIENT)


def test_throttling_counts_failures_of_any_kind(
    throttled: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    fails(throttled, member, username="nobody")
    fails(throttled, member, password=WRONG)
    fails(throttled, member, pin="913577")
    with pytest.raises(TooManyAttempts):
        sign_in(throttled, member, CLIENT)


def test_throttling_applies_to_the_second_step_too(throttled: Container, world: World) -> None:
    member = world.member(world.organisation())
    with throttled.unit() as unit:
        flow = unit.signin.begin(member.username, member.password, CLIENT)
        for i in range(3):
            with pytest.raises(SignInFailed):
                unit.signin.begin(f"guess{i}", WRONG, CLIENT)
        with pytest.raises(TooManyAttempts):
            unit.signin.complete(flow, member.totp(throttled), member.pin, CLIENT)


def test_successes_are_not_throttled(
    throttled: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    for _ in range(6):
        sign_in(throttled, member, CLIENT)
        clock.advance(seconds=30)


# -- audit --------------------------------------------------------------------------------


def test_sign_in_writes_its_audit_trail(container: Container, world: World) -> None:
    member = world.member(world.organisation())
    before = last_seq(container)
    sign_in(container, member, CLIENT)
    entries = [e for e in audit_log(container) if e.seq > before]
    assert [e.tag for e in entries] == ["signin:password:success", "signin:success"]
    success = entries[-1]
    assert success.actor_id == member.person.id
    assert success.actor_label == member.username
    assert success.detail["amr"] == ["pwd", "otp", "swk", "pin"]
    assert success.detail["acr"] == "AAL2"


def test_lockout_writes_failures_then_the_lock(container: Container, world: World) -> None:
    member = world.member(world.organisation())
    before = last_seq(container)
    wrong_passwords(container, member, 5)
    tags = tags_since(container, before)
    assert tags == ["signin:password:failure"] * 4 + ["signin:lockout", "signin:password:failure"]


# -- sessions ------------------------------------------------------------------------------


def test_each_sign_in_gets_a_new_random_session_token(
    container: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    first = sign_in(container, member, CLIENT)
    clock.advance(seconds=30)
    second = sign_in(container, member, CLIENT)
    assert first.token != second.token
    assert len(first.token) >= 43
    with container.unit() as unit:
        digests = set(unit.session.scalars(select(AuthSession.digest)))
        # Only digests are kept: a copy of the table gives no usable cookie.
        assert first.token not in digests and second.token not in digests
        assert container.digester.digest(first.token) in digests
        assert unit.sessions.resume(first.token) is not None
        assert unit.sessions.resume(second.token) is not None
        assert (
            unit.sessions.resume(first.token).record.id
            != unit.sessions.resume(  # type: ignore[union-attr]
                second.token
            ).record.id
        )  # type: ignore[union-attr]


@pytest.mark.parametrize("token", ["", "nonsense", "x" * 43])
def test_unknown_session_token_resumes_nothing(container: Container, token: str) -> None:
    with container.unit() as unit:
        assert unit.sessions.resume(token) is None


def test_idle_limit_ends_the_session(
    container: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    idle = container.settings.sessions.idle_minutes
    assert idle == 30
    signed = sign_in(container, member, CLIENT)
    with container.unit() as unit:
        clock.advance(minutes=idle - 1)
        assert unit.sessions.resume(signed.token) is not None
        clock.advance(minutes=idle - 1)  # idle time counts from the last activity
        assert unit.sessions.resume(signed.token) is not None
        clock.advance(minutes=idle)
        assert unit.sessions.resume(signed.token) is None
        record = unit.session.get(AuthSession, signed.record.id)
        assert record is not None and record.ended_reason == "idle limit"
        unit.commit()
        clock.advance(seconds=1)
        assert unit.sessions.resume(signed.token) is None


def test_absolute_limit_ends_an_active_session(
    container: Container, world: World, clock: FrozenClock
) -> None:
    member = world.member(world.organisation())
    hours = container.settings.sessions.absolute_hours
    assert hours == 12
    signed = sign_in(container, member, CLIENT)
    with container.unit() as unit:
        for _ in range(hours * 60 // 20 - 1):
            clock.advance(minutes=20)
            assert unit.sessions.resume(signed.token) is not None
        clock.advance(minutes=19, seconds=59)
        assert unit.sessions.resume(signed.token) is not None
        clock.advance(seconds=1)
        assert unit.sessions.resume(signed.token) is None
        record = unit.session.get(AuthSession, signed.record.id)
        assert record is not None and record.ended_reason == "absolute limit"


def test_sign_out_ends_the_session(container: Container, world: World, clock: FrozenClock) -> None:
    member = world.member(world.organisation())
    signed = sign_in(container, member, CLIENT)
    clock.advance(seconds=30)
    other = sign_in(container, member, CLIENT)
    before = last_seq(container)
    with container.unit() as unit:
        unit.signin.sign_out(signed.token)
    with container.unit() as unit:
        assert unit.sessions.resume(signed.token) is None
        assert unit.sessions.resume(other.token) is not None  # only that one
    assert tags_since(container, before) == ["session:signed_out"]


def test_signing_out_an_unknown_session_is_harmless(container: Container) -> None:
    with container.unit() as unit:
        unit.signin.sign_out("not-a-session")


@pytest.mark.parametrize("status", [PersonStatus.SUSPENDED, PersonStatus.CLOSED])
def test_status_change_ends_open_sessions_at_once(
    container: Container, world: World, clock: FrozenClock, status: PersonStatus
) -> None:
    member = world.member(world.organisation())
    first = sign_in(container, member, CLIENT)
    clock.advance(seconds=30)
    second = sign_in(container, member, OTHER_CLIENT)
    with container.unit() as admin:
        person = admin.directory.person(member.person.id)
        admin.directory.set_status(person, status, "investigation", tag="person:status")
        admin.commit()
    with container.unit() as unit:
        assert unit.sessions.resume(first.token) is None
        assert unit.sessions.resume(second.token) is None
    # Putting the account back does not bring the old sessions back.
    with container.unit() as admin:
        person = admin.directory.person(member.person.id)
        admin.directory.set_status(person, PersonStatus.ACTIVE, "cleared", tag="person:status")
        admin.commit()
    with container.unit() as unit:
        assert unit.sessions.resume(first.token) is None
    clock.advance(seconds=30)
    sign_in(container, member, CLIENT)


def test_lapse_during_a_session_ends_it(
    container: Container, world: World, clock: FrozenClock
) -> None:
    clock.set(clock.now().replace(hour=23, minute=45))
    member = world.member(world.organisation(), clearance_days=0)
    signed = sign_in(container, member, CLIENT)
    with container.unit() as unit:
        clock.advance(minutes=10)
        assert unit.sessions.resume(signed.token) is not None
        clock.advance(minutes=10)  # past midnight: clearance has lapsed
        assert unit.sessions.resume(signed.token) is None


def test_session_records_the_client(container: Container, world: World) -> None:
    member = world.member(world.organisation())
    signed = sign_in(container, member, Client("203.0.113.50", "Firefox " + "x" * 400))
    record: Any = signed.record
    assert record.client_address == "203.0.113.50"
    assert record.user_agent.startswith("Firefox") and len(record.user_agent) == 300
    assert record.absolute_expires_at - record.created_at == timedelta(hours=12)
