"""Security keys: registration, sign-in in place of the token code, the
organisation's policy, and the step-up of a session to level 3 — each refusal
tested as carefully as the success, with a software authenticator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from directory.models import Organisation
from idp.container import Container
from tests.factories import Member, World, sign_in
from tests.tokens.soft_authenticator import SoftAuthenticator
from tokens.assurance import level_of, meets, merge_amr
from tokens.attempts import Client
from tokens.errors import FlowExpired, SignInFailed
from tokens.models import AuthenticatorPolicy, AuthSession, SecurityKey, SignInGuard
from tokens.policy import DEFAULT_POLICY, EffectivePolicy, Factor, strictest
from tokens.signin import SignedIn
from tokens.webauthn import KeyNotAllowed, KeyNotFound, KeyRegistrationFailed, RelyingParty

CLIENT = Client("203.0.113.40", "pytest")


# -- helpers -------------------------------------------------------------------------


def set_policy(world: World, org: Organisation, **values: Any) -> None:
    row = world.unit.session.get(AuthenticatorPolicy, org.id)
    if row is None:
        row = AuthenticatorPolicy(organisation_id=org.id)
        world.unit.session.add(row)
    defaults: dict[str, Any] = {
        "allow_soft_token": True, "allow_hardware_token": True, "allow_security_key": True,
        "attestation": "none", "user_verification": "preferred",
    }
    for name, value in {**defaults, **values}.items():
        setattr(row, name, value)
    world.unit.commit()


def register(
    container: Container,
    member: Member,
    key: SoftAuthenticator,
    *,
    attestation: str = "none",
    name: str = "Blue key",
    **wrong: str,
) -> SecurityKey:
    with container.unit() as unit:
        person = unit.directory.person(member.person.id)
        pending = unit.keys.begin_registration(person)
        credential = key.create(pending.options_json, attestation=attestation, **wrong)
        saved = unit.keys.finish_registration(person, pending.flow_token, credential, name)
        unit.commit()
        unit.session.expunge(saved)
        return saved


def key_sign_in(
    container: Container,
    member: Member,
    key: SoftAuthenticator,
    *,
    pin: str | None = None,
    **assertion: Any,
) -> SignedIn:
    """Password, then a security key and the PIN, through the real service."""
    with container.unit() as unit:
        flow = unit.signin.begin(member.username, member.password, CLIENT)
        options = unit.signin.key_options(flow)
        assert options is not None
        credential = key.get(options, **assertion)
        return unit.signin.complete_with_key(
            flow, credential, member.pin if pin is None else pin, CLIENT
        )


def failures_of(container: Container, member: Member) -> int:
    with container.unit() as unit:
        guard = unit.session.get(SignInGuard, member.person.id)
        return 0 if guard is None else guard.consecutive_failures


def last_failure_reason(container: Container) -> str:
    with container.unit() as unit:
        entry = unit.session.scalar(
            select(AuditEntry)
            .where(AuditEntry.tag.like("%:failure"))
            .order_by(AuditEntry.seq.desc())
            .limit(1)
        )
        assert entry is not None
        return str(entry.detail.get("reason"))


def stored_key(container: Container, key_id: int) -> SecurityKey:
    with container.unit() as unit:
        row = unit.session.get(SecurityKey, key_id)
        assert row is not None
        unit.session.expunge(row)
        return row


@pytest.fixture
def org(world: World) -> Organisation:
    return world.organisation()


@pytest.fixture
def alex(world: World, org: Organisation) -> Member:
    return world.member(org, given_name="Alex")


@pytest.fixture
def key() -> SoftAuthenticator:
    return SoftAuthenticator()


# -- the relying party ----------------------------------------------------------------


def test_the_relying_party_follows_the_base_url_unless_set(container: Container) -> None:
    rp = RelyingParty.from_settings(container.settings)
    assert rp == RelyingParty("localhost", "ContactPoint", "http://localhost:5000")


# -- registration ----------------------------------------------------------------------


class TestRegistration:
    def test_a_key_is_registered_with_its_public_key_only(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        saved = register(container, alex, key)
        row = stored_key(container, saved.id)
        assert row.person_id == alex.person.id
        assert row.name == "Blue key"
        assert row.attestation_format == "none"
        assert row.transports == ["usb"]
        assert row.user_verified is True
        assert row.aaguid == "00112233-4455-6677-8899-aabbccddeeff"
        with container.unit() as unit:
            assert [k.id for k in unit.keys.keys_of(alex.person.id)] == [saved.id]
            tags = list(unit.session.scalars(select(AuditEntry.tag)))
        assert "key:registered" in tags

    def test_packed_self_attestation_is_accepted(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        saved = register(container, alex, key, attestation="packed")
        assert stored_key(container, saved.id).attestation_format == "packed"

    @pytest.mark.parametrize(
        ("wrong", "reason"),
        [
            ({"origin": "https://phish.example"}, "origin"),
            ({"rp_id": "phish.example"}, "RP ID"),
        ],
    )
    def test_a_wrong_origin_or_rp_id_is_refused(
        self, container: Container, alex: Member, key: SoftAuthenticator,
        wrong: dict[str, str], reason: str,
    ) -> None:
        with pytest.raises(KeyRegistrationFailed):
            register(container, alex, key, **wrong)
        assert reason in last_failure_reason(container)
        with container.unit() as unit:
            assert unit.keys.keys_of(alex.person.id) == []

    def test_a_challenge_is_used_once(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        with container.unit() as unit:
            person = unit.directory.person(alex.person.id)
            pending = unit.keys.begin_registration(person)
            credential = key.create(pending.options_json)
            unit.keys.finish_registration(person, pending.flow_token, credential, "One")
            unit.commit()
            # The same response again, and a fresh key answering the used challenge.
            for again in (credential, SoftAuthenticator().create(pending.options_json)):
                with pytest.raises(KeyRegistrationFailed):
                    unit.keys.finish_registration(person, pending.flow_token, again, "Two")
            assert len(unit.keys.keys_of(person.id)) == 1

    def test_a_challenge_expires(
        self, container: Container, clock: FrozenClock, alex: Member, key: SoftAuthenticator
    ) -> None:
        with container.unit() as unit:
            person = unit.directory.person(alex.person.id)
            pending = unit.keys.begin_registration(person)
            unit.commit()
            clock.advance(seconds=container.settings.webauthn.challenge_seconds + 1)
            with pytest.raises(KeyRegistrationFailed):
                unit.keys.finish_registration(
                    person, pending.flow_token, key.create(pending.options_json), "Late"
                )

    def test_another_persons_challenge_cannot_be_answered(
        self, container: Container, world: World, org: Organisation, alex: Member,
        key: SoftAuthenticator,
    ) -> None:
        sam = world.member(org, given_name="Sam")
        with container.unit() as unit:
            pending = unit.keys.begin_registration(unit.directory.person(alex.person.id))
            unit.commit()
            with pytest.raises(KeyRegistrationFailed):
                unit.keys.finish_registration(
                    unit.directory.person(sam.person.id), pending.flow_token,
                    key.create(pending.options_json), "Stolen",
                )

    def test_the_same_credential_cannot_be_registered_twice(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        register(container, alex, key)
        with container.unit() as unit:
            person = unit.directory.person(alex.person.id)
            pending = unit.keys.begin_registration(person)
            options = json.loads(pending.options_json)
            # The key already registered is excluded in the options it is given.
            assert len(options["excludeCredentials"]) == 1
            unit.commit()

    def test_policy_forbidding_keys_refuses_registration(
        self, container: Container, world: World, org: Organisation, alex: Member,
        key: SoftAuthenticator,
    ) -> None:
        set_policy(world, org, allow_security_key=False)
        with pytest.raises(KeyNotAllowed):
            register(container, alex, key)
        with container.unit() as unit:
            tags = list(unit.session.scalars(select(AuditEntry.tag)))
        assert "key:registration:refused" in tags

    def test_policy_changed_during_registration_is_still_enforced(
        self, container: Container, world: World, org: Organisation, alex: Member,
        key: SoftAuthenticator,
    ) -> None:
        with container.unit() as unit:
            person = unit.directory.person(alex.person.id)
            pending = unit.keys.begin_registration(person)
            unit.commit()
            set_policy(world, org, allow_security_key=False)
            with pytest.raises(KeyRegistrationFailed):
                unit.keys.finish_registration(
                    person, pending.flow_token, key.create(pending.options_json), "Late"
                )

    def test_direct_attestation_refuses_a_key_without_a_statement(
        self, container: Container, world: World, org: Organisation, alex: Member,
        key: SoftAuthenticator,
    ) -> None:
        set_policy(world, org, attestation="direct")
        with container.unit() as unit:
            options = json.loads(
                unit.keys.begin_registration(unit.directory.person(alex.person.id)).options_json
            )
            unit.commit()
        assert options["attestation"] == "direct"
        with pytest.raises(KeyRegistrationFailed):
            register(container, alex, key, attestation="none")
        assert stored_key(
            container, register(container, alex, key, attestation="packed").id
        ).attestation_format == "packed"

    def test_required_user_verification_refuses_a_key_that_did_not_verify(
        self, container: Container, world: World, org: Organisation, alex: Member
    ) -> None:
        set_policy(world, org, user_verification="required")
        with pytest.raises(KeyRegistrationFailed):
            register(container, alex, SoftAuthenticator(user_verification=False))
        register(container, alex, SoftAuthenticator(user_verification=True))


# -- removal -----------------------------------------------------------------------


def test_a_key_is_removed_only_by_its_person(
    container: Container, world: World, org: Organisation, alex: Member, key: SoftAuthenticator
) -> None:
    saved = register(container, alex, key)
    sam = world.member(org, given_name="Sam")
    with container.unit() as unit:
        with pytest.raises(KeyNotFound):
            unit.keys.remove(unit.directory.person(sam.person.id), saved.id)
        unit.keys.remove(unit.directory.person(alex.person.id), saved.id)
        unit.commit()
        with pytest.raises(KeyNotFound):
            unit.keys.remove(unit.directory.person(alex.person.id), saved.id)
        assert unit.keys.keys_of(alex.person.id) == []
        assert "key:removed" in list(unit.session.scalars(select(AuditEntry.tag)))


# -- sign-in -----------------------------------------------------------------------


class TestSignInWithAKey:
    def test_password_key_and_pin_reach_level_3(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        saved = register(container, alex, key)
        signed = key_sign_in(container, alex, key)
        assert signed.record.acr == container.settings.assurance.level3 == "AAL3"
        assert signed.record.amr == ["pwd", "hwk", "pin"]
        row = stored_key(container, saved.id)
        assert row.sign_count == 1
        assert row.last_used_at == container.clock.now()
        with container.unit() as unit:
            success = unit.session.scalar(
                select(AuditEntry).where(AuditEntry.tag == "signin:success")
            )
            assert success is not None and success.detail["key_id"] == saved.id
        # A second sign-in moves the counter on.
        key_sign_in(container, alex, key)
        assert stored_key(container, saved.id).sign_count == 2

    def test_a_key_that_keeps_no_counter_still_works(
        self, container: Container, alex: Member
    ) -> None:
        key = SoftAuthenticator(counts=False)
        register(container, alex, key)
        key_sign_in(container, alex, key)
        key_sign_in(container, alex, key)

    def test_the_token_code_still_gives_level_2(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        register(container, alex, key)
        signed = sign_in(container, alex, CLIENT)
        assert signed.record.acr == "AAL2"
        assert signed.record.amr == ["pwd", "otp", "swk", "pin"]

    @pytest.mark.parametrize(
        ("wrong", "reason"),
        [
            ({"origin": "https://phish.example"}, "origin"),
            ({"rp_id": "phish.example"}, "RP ID"),
            ({"sign_count": 0}, "sign count"),
            ({"challenge": "AAAAAAAAAAAAAAAAAAAAAA"}, "challenge"),
        ],
    )
    def test_a_wrong_assertion_is_the_uniform_failure_counted_and_audited(
        self, container: Container, alex: Member, key: SoftAuthenticator,
        wrong: dict[str, Any], reason: str,
    ) -> None:
        register(container, alex, key)
        key_sign_in(container, alex, key)  # the stored counter is now 1
        with pytest.raises(SignInFailed) as failure:
            key_sign_in(container, alex, key, **wrong)
        assert failure.value.message == SignInFailed().message
        assert failures_of(container, alex) == 1
        assert reason in last_failure_reason(container)

    def test_a_regressed_counter_is_refused(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        register(container, alex, key)
        for _ in range(3):
            key_sign_in(container, alex, key)
        with pytest.raises(SignInFailed):
            key_sign_in(container, alex, key, sign_count=2)
        assert "sign count" in last_failure_reason(container)

    def test_a_replayed_assertion_is_refused(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        register(container, alex, key)
        with container.unit() as unit:
            flow = unit.signin.begin(alex.username, alex.password, CLIENT)
            options = unit.signin.key_options(flow)
            assert options is not None
            credential = key.get(options)
            unit.signin.complete_with_key(flow, credential, alex.pin, CLIENT)
            # The same flow again: it is used up.
            with pytest.raises(FlowExpired):
                unit.signin.complete_with_key(flow, credential, alex.pin, CLIENT)
            # A new flow: its challenge is not the one the replayed response signed.
            flow = unit.signin.begin(alex.username, alex.password, CLIENT)
            assert unit.signin.key_options(flow) is not None
            with pytest.raises(SignInFailed):
                unit.signin.complete_with_key(flow, credential, alex.pin, CLIENT)
        assert "challenge" in last_failure_reason(container)

    def test_a_challenge_never_issued_is_refused(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        register(container, alex, key)
        with container.unit() as unit:
            flow = unit.signin.begin(alex.username, alex.password, CLIENT)
            other = unit.signin.begin(alex.username, alex.password, CLIENT)
            options = unit.signin.key_options(other)
            assert options is not None
            # The response answers the other flow's challenge; this flow issued none.
            with pytest.raises(SignInFailed):
                unit.signin.complete_with_key(flow, key.get(options), alex.pin, CLIENT)
        assert last_failure_reason(container) == "no challenge issued"

    def test_a_key_of_another_person_is_refused(
        self, container: Container, world: World, org: Organisation, alex: Member,
        key: SoftAuthenticator,
    ) -> None:
        sam = world.member(org, given_name="Sam")
        register(container, alex, key)
        sams_key = SoftAuthenticator()
        sams_row = register(container, sam, sams_key)
        with container.unit() as unit:
            flow = unit.signin.begin(alex.username, alex.password, CLIENT)
            options = unit.signin.key_options(flow)
            assert options is not None
            assert sams_row.credential_id not in options  # only Alex's keys are offered
            stolen = sams_key.get(
                options, credential_id=next(iter(sams_key.credentials))
            )
            with pytest.raises(SignInFailed):
                unit.signin.complete_with_key(flow, stolen, alex.pin, CLIENT)
        assert last_failure_reason(container) == "security key of another person"
        assert failures_of(container, alex) == 1

    def test_a_removed_key_is_refused(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        saved = register(container, alex, key)
        with container.unit() as unit:
            unit.keys.remove(unit.directory.person(alex.person.id), saved.id)
            unit.commit()
        with container.unit() as unit:
            flow = unit.signin.begin(alex.username, alex.password, CLIENT)
            options = unit.signin.key_options(flow)
            assert options is not None
            assert json.loads(options)["allowCredentials"] == []
            credential = key.get(options, credential_id=next(iter(key.credentials)))
            with pytest.raises(SignInFailed):
                unit.signin.complete_with_key(flow, credential, alex.pin, CLIENT)
        assert last_failure_reason(container) == "removed security key"

    @pytest.mark.parametrize("pin", ["", "000000"])
    def test_a_valid_key_without_the_right_pin_is_refused(
        self, container: Container, alex: Member, key: SoftAuthenticator, pin: str
    ) -> None:
        register(container, alex, key)
        with pytest.raises(SignInFailed):
            key_sign_in(container, alex, key, pin=pin)
        assert last_failure_reason(container) == "wrong PIN"
        assert failures_of(container, alex) == 1

    @pytest.mark.parametrize("posted", ["", "{}", "not json", '{"id": "AAAA"}', "[1]"])
    def test_garbage_instead_of_a_credential_is_refused(
        self, container: Container, alex: Member, key: SoftAuthenticator, posted: str
    ) -> None:
        register(container, alex, key)
        with container.unit() as unit:
            flow = unit.signin.begin(alex.username, alex.password, CLIENT)
            assert unit.signin.key_options(flow) is not None
            with pytest.raises(SignInFailed):
                unit.signin.complete_with_key(flow, posted, alex.pin, CLIENT)

    def test_a_locked_account_is_refused_even_with_a_good_key(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        register(container, alex, key)
        for _ in range(container.settings.signin.lockout_threshold):
            with pytest.raises(SignInFailed):
                key_sign_in(container, alex, key, pin="000000")
        with pytest.raises(SignInFailed):
            sign_in(container, alex, CLIENT)


# -- the organisation's policy -----------------------------------------------------------


class TestPolicyAtSignIn:
    def test_keys_forbidden_refuses_a_registered_key_uniformly(
        self, container: Container, world: World, org: Organisation, alex: Member,
        key: SoftAuthenticator,
    ) -> None:
        register(container, alex, key)
        set_policy(world, org, allow_security_key=False)
        with pytest.raises(SignInFailed) as failure:
            key_sign_in(container, alex, key)
        assert failure.value.message == SignInFailed().message
        assert "policy" in last_failure_reason(container)
        # The key was right, so this is no guess: not counted towards a lock.
        assert failures_of(container, alex) == 0

    def test_soft_tokens_forbidden_refuses_the_app_code_uniformly(
        self, container: Container, world: World, org: Organisation, alex: Member
    ) -> None:
        set_policy(world, org, allow_soft_token=False)
        with pytest.raises(SignInFailed) as failure:
            sign_in(container, alex, CLIENT)
        assert failure.value.message == SignInFailed().message
        assert last_failure_reason(container) == "organisation policy forbids soft_token"

    def test_soft_tokens_forbidden_still_lets_a_key_in(
        self, container: Container, world: World, org: Organisation, alex: Member,
        key: SoftAuthenticator,
    ) -> None:
        register(container, alex, key)
        set_policy(world, org, allow_soft_token=False)
        assert key_sign_in(container, alex, key).record.acr == "AAL3"

    def test_required_user_verification_refuses_an_assertion_without_it(
        self, container: Container, world: World, org: Organisation, alex: Member
    ) -> None:
        key = SoftAuthenticator(user_verification=False)
        register(container, alex, key)
        set_policy(world, org, user_verification="required")
        with pytest.raises(SignInFailed):
            key_sign_in(container, alex, key)
        assert "verif" in last_failure_reason(container)

    def test_the_strictest_of_a_persons_organisations_applies(
        self, container: Container, world: World, org: Organisation, alex: Member
    ) -> None:
        other = world.organisation("Southshire Council")
        world.add_position(alex, other, alex.person.positions[0].role)
        set_policy(world, other, allow_soft_token=False)
        with pytest.raises(SignInFailed):
            sign_in(container, alex, CLIENT)


def test_strictest_policy_combines_by_the_strongest_requirement() -> None:
    lax = EffectivePolicy(frozenset(Factor), "none", "discouraged")
    strict = EffectivePolicy(frozenset({Factor.SECURITY_KEY}), "direct", "required")
    assert strictest([]) == DEFAULT_POLICY
    assert strictest([lax]) == EffectivePolicy(frozenset(Factor), "none", "preferred")
    assert strictest([lax, strict]) == strict


# -- assurance and step-up ----------------------------------------------------------------


def test_levels_are_compared_by_number_not_by_name(container: Container) -> None:
    names = container.settings.assurance
    assert level_of("AAL3", names) == 3 and level_of("AAL2", names) == 2
    assert level_of("something else", names) == 0 and level_of(None, names) == 0
    assert meets("AAL3", 2, names) and not meets("AAL2", 3, names)
    assert merge_amr(["pwd", "otp", "swk", "pin"], ["hwk", "pin"]) == [
        "pwd", "otp", "swk", "pin", "hwk"
    ]


class TestStepUp:
    def test_a_level_2_session_steps_up_with_a_key_and_the_pin(
        self, container: Container, alex: Member, key: SoftAuthenticator
    ) -> None:
        register(container, alex, key)
        signed = sign_in(container, alex, CLIENT)
        assert signed.record.acr == "AAL2"
        with container.unit() as unit:
            record = unit.session.get(AuthSession, signed.record.id)
            assert record is not None
            flow, options = unit.signin.begin_step_up(record)
            unit.signin.step_up(flow, record, key.get(options), alex.pin, CLIENT)
        with container.unit() as unit:
            record = unit.session.get(AuthSession, signed.record.id)
            assert record is not None
            assert record.acr == "AAL3"
            assert record.amr == ["pwd", "otp", "swk", "pin", "hwk"]
            entry = unit.session.scalar(
                select(AuditEntry).where(AuditEntry.tag == "session:stepped_up")
            )
            assert entry is not None and entry.detail["from"] == "AAL2"

    @pytest.mark.parametrize(
        ("pin", "wrong", "reason"),
        [
            ("000000", {}, "wrong PIN"),
            (None, {"origin": "https://phish.example"}, "origin"),
            (None, {"sign_count": 0}, "sign count"),
        ],
    )
    def test_a_failed_step_up_leaves_the_session_at_level_2(
        self, container: Container, alex: Member, key: SoftAuthenticator,
        pin: str | None, wrong: dict[str, Any], reason: str,
    ) -> None:
        register(container, alex, key)
        key_sign_in(container, alex, key)  # the counter is now 1
        signed = sign_in(container, alex, CLIENT)
        with container.unit() as unit:
            record = unit.session.get(AuthSession, signed.record.id)
            assert record is not None
            flow, options = unit.signin.begin_step_up(record)
            with pytest.raises(SignInFailed):
                unit.signin.step_up(
                    flow, record, key.get(options, **wrong), pin or alex.pin, CLIENT
                )
            # The flow is used up by the failure: no second try with the same challenge.
            with pytest.raises(FlowExpired):
                unit.signin.step_up(flow, record, key.get(options), alex.pin, CLIENT)
        assert reason in last_failure_reason(container)
        assert failures_of(container, alex) == 1
        with container.unit() as unit:
            record = unit.session.get(AuthSession, signed.record.id)
            assert record is not None and record.acr == "AAL2"

    def test_a_step_up_flow_belongs_to_one_session(
        self, container: Container, clock: FrozenClock, alex: Member, key: SoftAuthenticator
    ) -> None:
        register(container, alex, key)
        first = sign_in(container, alex, CLIENT)
        clock.advance(seconds=container.settings.totp.period_seconds)  # a fresh code
        second = sign_in(container, alex, CLIENT)
        with container.unit() as unit:
            one = unit.session.get(AuthSession, first.record.id)
            two = unit.session.get(AuthSession, second.record.id)
            assert one is not None and two is not None
            flow, options = unit.signin.begin_step_up(one)
            with pytest.raises(FlowExpired):
                unit.signin.step_up(flow, two, key.get(options), alex.pin, CLIENT)
            assert two.acr == "AAL2"

    def test_step_up_is_refused_where_keys_are_forbidden(
        self, container: Container, world: World, org: Organisation, alex: Member,
        key: SoftAuthenticator,
    ) -> None:
        register(container, alex, key)
        signed = sign_in(container, alex, CLIENT)
        set_policy(world, org, allow_security_key=False)
        with container.unit() as unit:
            record = unit.session.get(AuthSession, signed.record.id)
            assert record is not None
            flow, options = unit.signin.begin_step_up(record)
            with pytest.raises(SignInFailed):
                unit.signin.step_up(flow, record, key.get(options), alex.pin, CLIENT)
            assert record.acr == "AAL2"
