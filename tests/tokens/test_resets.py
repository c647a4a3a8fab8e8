"""Forgotten PIN and forgotten password: each reset end to end, and above all the
attempts that must fail, every one of them with the same uninformative error,
counted towards the account's lock and audited."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.errors import Conflict, InvalidInput, NotAllowed
from core.outbox import Letter
from directory.models import Organisation, PersonStatus, Role
from idp.container import Container
from tests.factories import Member, World, sign_in
from tests.runlog import remember
from tokens.attempts import Client, guard_for
from tokens.errors import FlowExpired, SignInFailed, TooManyAttempts, WeakSecret
from tokens.models import AuthenticatorPolicy, Flow, LetterCode, SignInGuard
from tokens.resets import NEW_SECRET_MINUTES, RESET_CODE_DAYS, ResetFailed, ResetKind

CLIENT = Client("203.0.113.21", "pytest")
NEW_PIN = "735104"
NEW_PASSWORD = "lantern orchard velvet 1984"
CODE_LINE = re.compile(r"reset code: (\S+)")


# -- helpers -------------------------------------------------------------------------


def request(container: Container, world: World, actor: Member, target: Member,
            kind: ResetKind, reason: str | None = None) -> int:
    principal = world.principal(actor)
    with container.unit() as unit:
        return unit.resets.request(principal, target.person.id, kind, reason).letter_id


def code_in(container: Container, letter_id: int) -> str:
    with container.unit() as unit:
        body = unit.outbox.print_letter(letter_id)
        unit.commit()
    found = CODE_LINE.search(body)
    assert found, body
    remember("letter code", found.group(1))
    return found.group(1)


def next_step(clock: FrozenClock) -> None:
    """Move to the next TOTP step, so the token shows a code not yet used."""
    clock.advance(seconds=30)


def pin_reset(
    container: Container,
    member: Member,
    letter: str,
    *,
    username: str | None = None,
    password: str | None = None,
    token_code: str | None = None,
) -> str:
    """Steps 1 and 2 of a PIN reset through the real service; returns the flow
    in which the new PIN is chosen."""
    with container.unit() as unit:
        flow = unit.resets.begin_pin_reset(
            member.username if username is None else username,
            member.password if password is None else password,
            CLIENT,
        )
        return unit.resets.prove_pin_reset(
            flow, member.totp(container) if token_code is None else token_code, letter, CLIENT
        )


def password_reset(
    container: Container,
    member: Member,
    letter: str,
    *,
    username: str | None = None,
    pin: str | None = None,
    token_code: str | None = None,
) -> str:
    with container.unit() as unit:
        return unit.resets.prove_password_reset(
            member.username if username is None else username,
            member.totp(container) if token_code is None else token_code,
            member.pin if pin is None else pin,
            letter,
            CLIENT,
        )


def set_pin(container: Container, flow: str, pin: str = NEW_PIN) -> None:
    with container.unit() as unit:
        unit.resets.set_new_pin(flow, pin, pin)


def set_password(container: Container, flow: str, password: str = NEW_PASSWORD) -> None:
    with container.unit() as unit:
        unit.resets.set_new_password(flow, password, password)


def failures_of(container: Container, member: Member) -> int:
    with container.unit() as unit:
        row = unit.session.get(SignInGuard, member.person.id)
        return row.consecutive_failures if row else 0


def audit_entries(container: Container, prefix: str) -> list[AuditEntry]:
    with container.unit() as unit:
        rows = list(
            unit.session.scalars(
                select(AuditEntry).where(AuditEntry.tag.startswith(prefix)).order_by(AuditEntry.seq)
            )
        )
        unit.session.expunge_all()
        return rows


@dataclass
class Cast:
    org: Organisation
    admin: Member
    member: Member
    others: dict[str, Member] = field(default_factory=dict)


@pytest.fixture
def cast(world: World) -> Cast:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Olivia")
    member = world.member(org, given_name="Priya")
    return Cast(org, admin, member)


# -- end to end ---------------------------------------------------------------------


def test_a_forgotten_pin_is_reset_and_the_old_one_stops_working(
    container: Container, world: World, cast: Cast, clock: FrozenClock
) -> None:
    member = cast.member
    before = sign_in(container, member, CLIENT)  # a session open elsewhere
    next_step(clock)
    letter_id = request(container, world, cast.admin, member, ResetKind.PIN)

    with container.unit() as unit:
        letter = unit.session.get(Letter, letter_id)
        assert letter is not None and letter.kind == "pin_reset"
        assert letter.person_id == member.person.id and letter.organisation_id == cast.org.id
        stored = letter.body_ciphertext or ""
    code = code_in(container, letter_id)
    # At rest the letter is ciphertext; once printed, nothing of it is kept.
    assert code not in stored and member.username not in stored and "reset" not in stored
    with container.unit() as unit:
        printed = unit.session.get(Letter, letter_id)
        assert printed is not None and printed.body_ciphertext is None
        digest = unit.session.scalars(select(LetterCode.digest)).one()
        assert code not in digest

    flow = pin_reset(container, member, code)
    set_pin(container, flow)

    with container.unit() as unit:
        assert unit.sessions.resume(before.token) is None  # other sessions ended
    next_step(clock)
    assert sign_in(container, member, CLIENT, pin=NEW_PIN).person.id == member.person.id
    next_step(clock)
    with pytest.raises(SignInFailed):
        sign_in(container, member, CLIENT)  # the old PIN
    tags = [e.tag for e in audit_entries(container, "reset:pin")]
    assert tags == [
        "reset:pin:requested", "reset:pin:password:success", "reset:pin:proven",
        "reset:pin:completed",
    ]


def test_a_forgotten_password_is_reset_and_the_old_one_stops_working(
    container: Container, world: World, cast: Cast, clock: FrozenClock
) -> None:
    member = cast.member
    before = sign_in(container, member, CLIENT)
    next_step(clock)
    letter_id = request(container, world, cast.admin, member, ResetKind.PASSWORD)
    with container.unit() as unit:
        letter = unit.session.get(Letter, letter_id)
        assert letter is not None and letter.kind == "password_reset"
    code = code_in(container, letter_id)

    flow = password_reset(container, member, code)
    set_password(container, flow)

    with container.unit() as unit:
        assert unit.sessions.resume(before.token) is None
    next_step(clock)
    assert sign_in(container, member, CLIENT, password=NEW_PASSWORD).person.id == member.person.id
    next_step(clock)
    with pytest.raises(SignInFailed):
        sign_in(container, member, CLIENT)  # the old password
    tags = [e.tag for e in audit_entries(container, "reset:password")]
    assert tags == ["reset:password:requested", "reset:password:proven", "reset:password:completed"]


def test_the_local_authority_team_and_platform_admins_may_ask_for_resets(
    container: Container, world: World, cast: Cast
) -> None:
    team = world.member(cast.org, Role.LOCAL_AUTHORITY_TEAM, given_name="Tara")
    platform = world.member(world.organisation("Platform operations"), Role.PLATFORM_ADMIN)
    assert request(container, world, team, cast.member, ResetKind.PIN)
    # A platform admin says why (issue 5); an organisation's own people may.
    with pytest.raises(InvalidInput):
        request(container, world, platform, cast.member, ResetKind.PASSWORD)
    assert request(container, world, platform, cast.member, ResetKind.PASSWORD, "asked")


# -- every failed proof is the same failure --------------------------------------------

Setup = Callable[[World, Container, Cast, FrozenClock, ResetKind], dict[str, str]]


def _request_code(world: World, c: Container, cast: Cast, kind: ResetKind) -> str:
    return code_in(c, request(c, world, cast.admin, cast.member, kind))


def _wrong_letter(world: World, c: Container, cast: Cast, clock: FrozenClock,
                  kind: ResetKind) -> dict[str, str]:
    _request_code(world, c, cast, kind)
    return {"letter": "7QK2M-9XHRT-ABCDE-FGHJK-MNPQR-STVWX"}


def _empty_letter(world: World, c: Container, cast: Cast, clock: FrozenClock,
                  kind: ResetKind) -> dict[str, str]:
    _request_code(world, c, cast, kind)
    return {"letter": ""}


def _expired(world: World, c: Container, cast: Cast, clock: FrozenClock,
             kind: ResetKind) -> dict[str, str]:
    code = _request_code(world, c, cast, kind)
    clock.advance(days=RESET_CODE_DAYS, seconds=1)
    return {"letter": code}


def _reused(world: World, c: Container, cast: Cast, clock: FrozenClock,
            kind: ResetKind) -> dict[str, str]:
    code = _request_code(world, c, cast, kind)
    if kind is ResetKind.PIN:
        set_pin(c, pin_reset(c, cast.member, code))
        cast.member.pin = NEW_PIN
    else:
        set_password(c, password_reset(c, cast.member, code))
        cast.member.password = NEW_PASSWORD
    next_step(clock)
    return {"letter": code}


def _revoked(world: World, c: Container, cast: Cast, clock: FrozenClock,
             kind: ResetKind) -> dict[str, str]:
    first = _request_code(world, c, cast, kind)
    _request_code(world, c, cast, kind)  # a second letter replaces the first
    return {"letter": first}


def _other_purpose(world: World, c: Container, cast: Cast, clock: FrozenClock,
                   kind: ResetKind) -> dict[str, str]:
    other = ResetKind.PASSWORD if kind is ResetKind.PIN else ResetKind.PIN
    return {"letter": _request_code(world, c, cast, other)}


def _activation_code(world: World, c: Container, cast: Cast, clock: FrozenClock,
                     kind: ResetKind) -> dict[str, str]:
    code = world.unit.activation.issue_code(cast.member.person)
    world.unit.commit()
    return {"letter": code}


def _other_person(world: World, c: Container, cast: Cast, clock: FrozenClock,
                  kind: ResetKind) -> dict[str, str]:
    colleague = world.member(cast.org, given_name="Colin")
    _request_code(world, c, cast, kind)
    return {"letter": code_in(c, request(c, world, cast.admin, colleague, kind))}


def _wrong_token(world: World, c: Container, cast: Cast, clock: FrozenClock,
                 kind: ResetKind) -> dict[str, str]:
    code = _request_code(world, c, cast, kind)
    right = cast.member.totp(c)
    return {"letter": code, "token_code": "000000" if right != "000000" else "111111"}


def _replayed_token(world: World, c: Container, cast: Cast, clock: FrozenClock,
                    kind: ResetKind) -> dict[str, str]:
    code = _request_code(world, c, cast, kind)
    used = cast.member.totp(c)
    sign_in(c, cast.member, CLIENT, code=used)  # the same code, already used
    return {"letter": code, "token_code": used}


def _policy_forbids(world: World, c: Container, cast: Cast, clock: FrozenClock,
                    kind: ResetKind) -> dict[str, str]:
    """The right code from a soft token the organisation no longer allows."""
    code = _request_code(world, c, cast, kind)
    world.unit.session.add(
        AuthenticatorPolicy(organisation_id=cast.org.id, allow_soft_token=False,
                            allow_hardware_token=True, allow_security_key=True,
                            attestation="none", user_verification="preferred")
    )
    world.unit.commit()
    return {"letter": code}


def _locked(world: World, c: Container, cast: Cast, clock: FrozenClock,
            kind: ResetKind) -> dict[str, str]:
    code = _request_code(world, c, cast, kind)
    with c.unit() as unit:
        row = guard_for(unit.session, cast.member.person.id)
        row.consecutive_failures = 5
        row.locked_until = clock.now().replace(year=clock.now().year + 1)
        unit.commit()
    return {"letter": code}


def _suspended(world: World, c: Container, cast: Cast, clock: FrozenClock,
               kind: ResetKind) -> dict[str, str]:
    code = _request_code(world, c, cast, kind)
    with c.unit() as unit:
        person = unit.directory.person(cast.member.person.id)
        unit.directory.set_status(person, PersonStatus.SUSPENDED, "test", tag="person:suspended")
        unit.commit()
    return {"letter": code}


def _wrong_password(world: World, c: Container, cast: Cast, clock: FrozenClock,
                    kind: ResetKind) -> dict[str, str]:
    return {"letter": _request_code(world, c, cast, kind), "password": "not the password 12"}


def _wrong_pin(world: World, c: Container, cast: Cast, clock: FrozenClock,
               kind: ResetKind) -> dict[str, str]:
    return {"letter": _request_code(world, c, cast, kind), "pin": "135792"}


def _unknown_user(world: World, c: Container, cast: Cast, clock: FrozenClock,
                  kind: ResetKind) -> dict[str, str]:
    return {"letter": _request_code(world, c, cast, kind), "username": "nobody.here"}


COMMON: list[tuple[str, Setup, str]] = [
    ("wrong letter code", _wrong_letter, "letter code"),
    ("empty letter code", _empty_letter, "letter code"),
    ("expired letter code", _expired, "letter code"),
    ("reused letter code", _reused, "letter code"),
    ("revoked letter code", _revoked, "letter code"),
    ("other purpose's code", _other_purpose, "letter code"),
    ("activation code", _activation_code, "letter code"),
    ("other person's code", _other_person, "letter code"),
    ("wrong token code", _wrong_token, "token code"),
    ("replayed token code", _replayed_token, "token code"),
    ("token the policy forbids", _policy_forbids, "policy forbids soft_token"),
    ("locked account", _locked, "account locked"),
    ("suspended person", _suspended, "account suspended"),
    ("unknown username", _unknown_user, "unknown username"),
]
PIN_CASES = [*COMMON, ("wrong password", _wrong_password, "wrong password")]
PASSWORD_CASES = [*COMMON, ("wrong PIN", _wrong_pin, "wrong PIN")]


def _attempt(container: Container, cast: Cast, kind: ResetKind, wrong: dict[str, str]) -> None:
    letter = wrong.pop("letter")
    if kind is ResetKind.PIN:
        pin_reset(container, cast.member, letter, **wrong)
    else:
        password_reset(container, cast.member, letter, **wrong)


def _check_one_failure(
    container: Container, world: World, cast: Cast, clock: FrozenClock, kind: ResetKind,
    setup: Setup, reason: str,
) -> None:
    wrong = setup(world, container, cast, clock, kind)
    counted_before = failures_of(container, cast.member)
    seen_before = len(audit_entries(container, f"reset:{kind.value}:failure"))

    with pytest.raises(ResetFailed) as error:
        _attempt(container, cast, kind, dict(wrong))

    # What the person sees never says which factor or rule it was.
    assert type(error.value) is ResetFailed
    assert str(error.value) == error.value.message == ResetFailed.title
    assert cast.member.username not in str(error.value)
    # What the audit trail keeps does say, for the administrators.
    failures = audit_entries(container, f"reset:{kind.value}:failure")[seen_before:]
    assert len(failures) == 1
    assert reason in failures[0].detail["reason"]
    # Counted towards the lock, except where there is no account to count against.
    expected = counted_before + (0 if "username" in wrong else 1)
    assert failures_of(container, cast.member) == expected
    # No flow towards a new secret came of it.
    with container.unit() as unit:
        stages = unit.session.scalars(select(Flow.stage).where(Flow.kind.endswith("_reset")))
        assert not {"new_pin", "new_password"} & set(stages) - (
            {"new_pin" if kind is ResetKind.PIN else "new_password"} if setup is _reused else set()
        )


@pytest.mark.parametrize(
    ("setup", "reason"), [c[1:] for c in PIN_CASES], ids=[c[0] for c in PIN_CASES]
)
def test_every_failed_pin_reset_is_the_same_failure(
    container: Container, world: World, cast: Cast, clock: FrozenClock, setup: Setup, reason: str
) -> None:
    _check_one_failure(container, world, cast, clock, ResetKind.PIN, setup, reason)


@pytest.mark.parametrize(
    ("setup", "reason"), [c[1:] for c in PASSWORD_CASES], ids=[c[0] for c in PASSWORD_CASES]
)
def test_every_failed_password_reset_is_the_same_failure(
    container: Container, world: World, cast: Cast, clock: FrozenClock, setup: Setup, reason: str
) -> None:
    _check_one_failure(container, world, cast, clock, ResetKind.PASSWORD, setup, reason)


@pytest.mark.parametrize("kind", list(ResetKind))
def test_a_letter_code_survives_a_failed_attempt_but_works_only_once(
    container: Container, world: World, cast: Cast, clock: FrozenClock, kind: ResetKind
) -> None:
    """A wrong token code must not burn the letter; a successful proof does."""
    code = _request_code(world, container, cast, kind)
    with pytest.raises(ResetFailed):
        _attempt(container, cast, kind, {"letter": code, "token_code": "999999"})
    next_step(clock)
    _attempt(container, cast, kind, {"letter": code})
    next_step(clock)
    with pytest.raises(ResetFailed):
        _attempt(container, cast, kind, {"letter": code})


def test_pin_reset_step_one_alone_proves_nothing_and_works_once(
    container: Container, world: World, cast: Cast, clock: FrozenClock
) -> None:
    code = _request_code(world, container, cast, ResetKind.PIN)
    with container.unit() as unit:
        flow = unit.resets.begin_pin_reset(cast.member.username, cast.member.password, CLIENT)
    # The new-PIN stage cannot be reached with the step-1 flow.
    with container.unit() as unit, pytest.raises(FlowExpired):
        unit.resets.set_new_pin(flow, NEW_PIN, NEW_PIN)
    with container.unit() as unit, pytest.raises(ResetFailed):
        unit.resets.prove_pin_reset(flow, "000001", code, CLIENT)
    # A failure ends the step-1 flow: the next try starts again from the password.
    next_step(clock)
    with container.unit() as unit, pytest.raises(FlowExpired):
        unit.resets.prove_pin_reset(flow, cast.member.totp(container), code, CLIENT)
    # A sign-in flow is no reset flow either.
    with container.unit() as unit:
        signin_flow = unit.signin.begin(cast.member.username, cast.member.password, CLIENT)
    with container.unit() as unit, pytest.raises(FlowExpired):
        unit.resets.prove_pin_reset(signin_flow, cast.member.totp(container), code, CLIENT)


def test_pin_reset_step_one_flow_expires(
    container: Container, world: World, cast: Cast, clock: FrozenClock
) -> None:
    code = _request_code(world, container, cast, ResetKind.PIN)
    with container.unit() as unit:
        flow = unit.resets.begin_pin_reset(cast.member.username, cast.member.password, CLIENT)
    clock.advance(minutes=container.settings.signin.flow_minutes, seconds=1)
    with container.unit() as unit, pytest.raises(FlowExpired):
        unit.resets.prove_pin_reset(flow, cast.member.totp(container), code, CLIENT)


@pytest.mark.parametrize("kind", list(ResetKind))
def test_the_new_secret_must_meet_the_rules_and_be_chosen_in_time(
    container: Container, world: World, cast: Cast, clock: FrozenClock, kind: ResetKind
) -> None:
    code = _request_code(world, container, cast, kind)
    if kind is ResetKind.PIN:
        flow = pin_reset(container, cast.member, code)
        with container.unit() as unit:
            with pytest.raises(WeakSecret):
                unit.resets.set_new_pin(flow, "123456", "123456")
            with pytest.raises(InvalidInput):
                unit.resets.set_new_pin(flow, NEW_PIN, "735105")
    else:
        flow = password_reset(container, cast.member, code)
        with container.unit() as unit:
            with pytest.raises(WeakSecret):
                unit.resets.set_new_password(flow, "short", "short")
            personal = f"{cast.member.username}2024"
            with pytest.raises(WeakSecret):
                unit.resets.set_new_password(flow, personal, personal)
            with pytest.raises(InvalidInput):
                unit.resets.set_new_password(flow, NEW_PASSWORD, NEW_PASSWORD + "x")
    clock.advance(minutes=NEW_SECRET_MINUTES, seconds=1)
    with pytest.raises(FlowExpired):
        (set_pin if kind is ResetKind.PIN else set_password)(container, flow)


@pytest.mark.parametrize("kind", list(ResetKind))
def test_suspension_between_proof_and_choice_ends_the_reset(
    container: Container, world: World, cast: Cast, clock: FrozenClock, kind: ResetKind
) -> None:
    code = _request_code(world, container, cast, kind)
    flow = (pin_reset if kind is ResetKind.PIN else password_reset)(container, cast.member, code)
    with container.unit() as unit:
        person = unit.directory.person(cast.member.person.id)
        unit.directory.set_status(person, PersonStatus.SUSPENDED, "test", tag="person:suspended")
        unit.commit()
    with pytest.raises(FlowExpired):
        (set_pin if kind is ResetKind.PIN else set_password)(container, flow)


def test_failed_resets_lock_the_account_for_sign_in_too(
    container: Container, world: World, cast: Cast, clock: FrozenClock
) -> None:
    code = _request_code(world, container, cast, ResetKind.PASSWORD)
    for _ in range(container.settings.signin.lockout_threshold):
        with pytest.raises(ResetFailed):
            password_reset(container, cast.member, code, pin="135792")
    with container.unit() as unit:
        row = unit.session.get(SignInGuard, cast.member.person.id)
        assert row is not None and row.locked_until is not None
    with pytest.raises(SignInFailed):
        sign_in(container, cast.member, CLIENT)
    # Locked, even the right factors and the right letter do not reset.
    with pytest.raises(ResetFailed):
        password_reset(container, cast.member, code)


def test_failed_resets_count_against_the_address_with_sign_in(
    container: Container, world: World, cast: Cast
) -> None:
    limit = container.settings.signin.address_failures_per_window
    with container.unit() as unit:
        for _ in range(limit):
            with pytest.raises(ResetFailed):
                unit.resets.begin_pin_reset("nobody.here", "whatever it is 1", CLIENT)
        with pytest.raises(TooManyAttempts):
            unit.resets.prove_password_reset("nobody.here", "1", "1", "1", CLIENT)
        with pytest.raises(TooManyAttempts):
            unit.signin.begin(cast.member.username, cast.member.password, CLIENT)
    assert audit_entries(container, "reset:password:throttled")


# -- who may ask -----------------------------------------------------------------------


def _other_org_admin(world: World, cast: Cast) -> Member:
    return world.member(world.organisation("Southshire Council"), Role.ORGANISATION_ADMIN)


def _other_org_team(world: World, cast: Cast) -> Member:
    return world.member(world.organisation("Southshire Council"), Role.LOCAL_AUTHORITY_TEAM)


def _practitioner(world: World, cast: Cast) -> Member:
    return world.member(cast.org, Role.PRACTITIONER)


def _vetting_officer(world: World, cast: Cast) -> Member:
    return world.member(cast.org, Role.VETTING_OFFICER)


def _themselves(world: World, cast: Cast) -> Member:
    return cast.member


def _admin_themselves(world: World, cast: Cast) -> Member:
    cast.member = cast.admin
    return cast.admin


def _platform_admin_themselves(world: World, cast: Cast) -> Member:
    platform = world.member(world.organisation("Platform operations"), Role.PLATFORM_ADMIN)
    cast.member = platform
    return platform


REFUSED = [
    ("admin of another organisation", _other_org_admin),
    ("team of another organisation", _other_org_team),
    ("practitioner", _practitioner),
    ("vetting officer", _vetting_officer),
    ("the person themselves", _themselves),
    ("an admin for themselves", _admin_themselves),
    ("a platform admin for themselves", _platform_admin_themselves),
]


@pytest.mark.parametrize("kind", list(ResetKind))
@pytest.mark.parametrize("make_actor", [r[1] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_only_the_persons_admins_and_team_may_ask_for_a_reset(
    container: Container, world: World, cast: Cast, kind: ResetKind,
    make_actor: Callable[[World, Cast], Member],
) -> None:
    actor = make_actor(world, cast)
    with pytest.raises(NotAllowed):
        request(container, world, actor, cast.member, kind)
    refused = audit_entries(container, f"reset:{kind.value}:refused")
    assert len(refused) == 1
    assert refused[0].outcome == "refused"
    assert refused[0].subject_id == str(cast.member.person.id)
    assert refused[0].actor_label == actor.username
    with container.unit() as unit:
        assert unit.session.scalars(select(LetterCode)).all() == []
        assert unit.outbox.all() == []


def test_an_unknown_person_looks_like_somebody_elses(
    container: Container, world: World, cast: Cast
) -> None:
    principal = world.principal(cast.admin)
    with container.unit() as unit, pytest.raises(NotAllowed):
        unit.resets.request(principal, 99999, ResetKind.PIN)


@pytest.mark.parametrize(
    "status", [PersonStatus.SUSPENDED, PersonStatus.AWAITING_ACTIVATION, PersonStatus.CLOSED]
)
def test_no_reset_letter_for_an_account_that_is_not_active(
    container: Container, world: World, cast: Cast, status: PersonStatus
) -> None:
    cast.member.person.status = status
    world.unit.commit()
    with pytest.raises(Conflict):
        request(container, world, cast.admin, cast.member, ResetKind.PIN)
    with container.unit() as unit:
        assert unit.outbox.all() == []
