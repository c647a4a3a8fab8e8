"""The life of a hardware token: import, assign, activate, sign in, resync, loss,
replacement; and who may do each of those."""

from __future__ import annotations

import base64
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.errors import Conflict, InvalidInput, NotAllowed
from directory.models import Organisation, Role
from directory.service import Grant, Principal
from idp.container import Container
from tests.factories import Member, World, sign_in
from tests.tokens.pskc_files import (
    PRESHARED_KEY,
    RFC4226_CODES,
    RFC4226_SECRET,
    TOTP_URN,
    Package,
    build_pskc,
)
from tokens.attempts import Client
from tokens.errors import SignInFailed
from tokens.inventory import TokenStateConflict
from tokens.models import (
    AuthenticatorPolicy,
    OtpToken,
    SignInGuard,
    TokenEvent,
    TokenForm,
    TokenState,
)
from tokens.pskc import parse_pskc

CLIENT = Client("203.0.113.20", "pytest")
OPERATOR = Principal(0, "cli:test", (Grant(0, Role.PLATFORM_ADMIN),))
B32 = base64.b32encode(RFC4226_SECRET).decode()


def hotp(counter: int) -> str:
    return pyotp.HOTP(B32).at(counter)


def totp_at(clock: FrozenClock, offset_steps: int = 0) -> str:
    return pyotp.TOTP(B32).at(int(clock.now().timestamp()) + 30 * offset_steps)


def import_tokens(
    world: World, org: Organisation, packages: list[Package], *, psk: bytes | None = None
) -> list[OtpToken]:
    parsed = parse_pskc(build_pskc(packages, psk=psk), source="batch.xml", preshared_key=psk)
    world.unit.inventory.import_packages(OPERATOR, org, parsed, source="batch.xml",
                                         reason="new stock")
    world.unit.commit()
    serials = [p.serial for p in packages]
    return list(
        world.unit.session.scalars(select(OtpToken).where(OtpToken.serial.in_(serials)))
    )


def hardware_only(world: World, member: Member) -> None:
    """Retire the soft token the factory gave, so only hardware tokens sign in."""
    for token in world.unit.session.scalars(
        select(OtpToken).where(OtpToken.person_id == member.person.id)
    ):
        if token.form is TokenForm.SOFT:
            token.state = TokenState.RETURNED
    world.unit.commit()


def issue_hardware(
    world: World, org: Organisation, admin: Member, member: Member, package: Package
) -> OtpToken:
    """Import, assign and leave the token waiting for the person's first code."""
    (token,) = import_tokens(world, org, [package])
    world.unit.inventory.assign(world.principal(admin), token.serial, member.person)
    world.unit.commit()
    return token


@pytest.fixture
def org(world: World) -> Organisation:
    return world.organisation()


@pytest.fixture
def admin(world: World, org: Organisation) -> Member:
    return world.member(org, Role.ORGANISATION_ADMIN, given_name="Ada")


def events(container: Container, token: OtpToken) -> list[str]:
    with container.unit() as unit:
        return list(
            unit.session.scalars(
                select(TokenEvent.event).where(TokenEvent.token_id == token.id)
                .order_by(TokenEvent.id)
            )
        )


def audit_tags(container: Container) -> list[str]:
    with container.unit() as unit:
        return list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))


class TestImport:
    def test_tokens_go_into_stock_with_sealed_seeds_and_a_history(
        self, container: Container, world: World, org: Organisation
    ) -> None:
        tokens = import_tokens(
            world,
            org,
            [Package(serial=f"HW{n}") for n in range(3)] + [
                Package(serial="TT1", algorithm=TOTP_URN, counter=None, interval=30)
            ],
            psk=PRESHARED_KEY,
        )
        assert len(tokens) == 4
        for token in tokens:
            assert token.state is TokenState.IN_STOCK
            assert token.form is TokenForm.HARDWARE
            assert token.organisation_id == org.id and token.person_id is None
            assert B32 not in token.secret_ciphertext
            assert world.unit.otp.secret_of(token).rstrip("=") == B32.rstrip("=")
            assert events(container, token) == ["imported"]
        assert audit_tags(container).count("token:imported") == 1

    def test_a_serial_already_stored_refuses_the_whole_file(
        self, container: Container, world: World, org: Organisation
    ) -> None:
        import_tokens(world, org, [Package(serial="DUP1")])
        packages = parse_pskc(
            build_pskc([Package(serial="NEW1"), Package(serial="DUP1"), Package(serial="NEW2")]),
            source="second.xml",
        )
        with pytest.raises(InvalidInput) as refused:
            world.unit.inventory.import_packages(OPERATOR, org, packages, source="second.xml",
                                             reason="new stock")
        world.unit.session.rollback()
        assert [p.describe() for p in refused.value.problems] == [
            "second.xml, row 2, SerialNo: serial DUP1 is already in the inventory"
        ]
        with container.unit() as unit:
            assert unit.session.scalar(select(func.count()).select_from(OtpToken).where(
                OtpToken.serial.in_(["NEW1", "NEW2"])
            )) == 0

    def test_an_admin_of_another_organisation_cannot_import_for_this_one(
        self, world: World, org: Organisation
    ) -> None:
        other = world.organisation("Southshire")
        stranger = world.member(other, Role.ORGANISATION_ADMIN)
        packages = parse_pskc(build_pskc([Package(serial="X1")]), source="x.xml")
        with pytest.raises(NotAllowed):
            world.unit.inventory.import_packages(
                world.principal(stranger), org, packages, source="x.xml"
            )


class TestHotpAtSignIn:
    def test_rfc_4226_vectors_through_an_imported_token(
        self, container: Container, world: World, org: Organisation, admin: Member
    ) -> None:
        member = world.member(org)
        hardware_only(world, member)
        token = issue_hardware(world, org, admin, member, Package(serial="RFC4226"))
        assert token.state is TokenState.ASSIGNED
        # Not active yet: its codes do not sign in.
        with pytest.raises(SignInFailed):
            sign_in(container, member, CLIENT, code=RFC4226_CODES[0])
        activated = world.unit.inventory.activate(
            world.principal(member), token.id, RFC4226_CODES[1]
        )
        world.unit.commit()
        assert activated.state is TokenState.ACTIVE
        for code in RFC4226_CODES[2:]:
            signed = sign_in(container, member, CLIENT, code=code)
            assert "hwk" in signed.record.amr and "otp" in signed.record.amr
        # Each code works once.
        with pytest.raises(SignInFailed):
            sign_in(container, member, CLIENT, code=RFC4226_CODES[9])
        assert events(container, token) == ["imported", "assigned", "activated"]
        tags = audit_tags(container)
        assert tags.index("token:imported") < tags.index("token:assigned") < tags.index(
            "token:activated"
        )

    def test_lookahead_then_resync_with_two_consecutive_codes(
        self, container: Container, world: World, org: Organisation, admin: Member
    ) -> None:
        member = world.member(org)
        hardware_only(world, member)
        token = issue_hardware(world, org, admin, member, Package(serial="DRIFTY"))
        world.unit.inventory.activate(world.principal(member), token.id, hotp(0))
        world.unit.commit()
        # Pressed a few times idly: within the look-ahead of 10.
        sign_in(container, member, CLIENT, code=hotp(8))
        # Pressed 40 times: out of step.
        with pytest.raises(SignInFailed):
            sign_in(container, member, CLIENT, code=hotp(50))
        # One code alone, or two that are not consecutive, do not resync.
        with pytest.raises(InvalidInput):
            world.unit.inventory.resync(world.principal(member), token.id, hotp(50), hotp(52))
        world.unit.inventory.resync(world.principal(member), token.id, hotp(50), hotp(51))
        world.unit.commit()
        world.unit.session.refresh(token)
        assert token.last_step == 52
        # Neither resync code works again; the next one does.
        with pytest.raises(SignInFailed):
            sign_in(container, member, CLIENT, code=hotp(51))
        assert "hwk" in sign_in(container, member, CLIENT, code=hotp(52)).record.amr
        assert events(container, token)[-1] == "resynced"
        assert "token:resynced" in audit_tags(container)

    def test_resync_beyond_the_window_is_refused(
        self, world: World, org: Organisation, admin: Member
    ) -> None:
        member = world.member(org)
        token = issue_hardware(world, org, admin, member, Package(serial="FAR"))
        with pytest.raises(InvalidInput):
            world.unit.inventory.resync(world.principal(admin), token.id, hotp(150), hotp(151))


class TestTotp:
    def test_drift_is_found_and_kept(
        self, container: Container, world: World, org: Organisation, admin: Member,
        clock: FrozenClock,
    ) -> None:
        member = world.member(org)
        hardware_only(world, member)
        token = issue_hardware(
            world, org, admin, member,
            Package(serial="TOTP1", algorithm=TOTP_URN, counter=None, interval=30),
        )
        world.unit.inventory.activate(world.principal(member), token.id, totp_at(clock))
        world.unit.commit()
        clock.advance(seconds=30)
        # The token's clock runs 5 steps fast: beyond the ±1 step accepted.
        with pytest.raises(SignInFailed):
            sign_in(container, member, CLIENT, code=totp_at(clock, 5))
        # An admin of the person's organisation resyncs it with two consecutive codes.
        world.unit.inventory.resync(
            world.principal(admin), token.id, totp_at(clock, 4), totp_at(clock, 5)
        )
        world.unit.commit()
        world.unit.session.refresh(token)
        assert token.drift_steps == 5
        with pytest.raises(SignInFailed):  # the resync codes are used up
            sign_in(container, member, CLIENT, code=totp_at(clock, 5))
        clock.advance(seconds=30)
        signed = sign_in(container, member, CLIENT, code=totp_at(clock, 5))
        assert "hwk" in signed.record.amr

    def test_drift_beyond_ten_steps_is_not_resynced(
        self, world: World, org: Organisation, admin: Member, clock: FrozenClock
    ) -> None:
        member = world.member(org)
        token = issue_hardware(
            world, org, admin, member,
            Package(serial="TOTP2", algorithm=TOTP_URN, counter=None, interval=30),
        )
        with pytest.raises(InvalidInput):
            world.unit.inventory.resync(
                world.principal(member), token.id, totp_at(clock, 14), totp_at(clock, 15)
            )


class TestLoss:
    def test_a_lost_token_ends_sessions_and_no_longer_signs_in(
        self, container: Container, world: World, org: Organisation, admin: Member
    ) -> None:
        member = world.member(org)
        hardware_only(world, member)
        token = issue_hardware(world, org, admin, member, Package(serial="LOSE1"))
        world.unit.inventory.activate(world.principal(member), token.id, hotp(0))
        world.unit.commit()
        signed = sign_in(container, member, CLIENT, code=hotp(1))
        world.unit.inventory.report_lost(world.principal(admin), token.id)
        world.unit.commit()
        with container.unit() as unit:
            assert unit.sessions.resume(signed.token) is None
            assert unit.session.get(OtpToken, token.id).state is TokenState.LOST  # type: ignore[union-attr]
        with pytest.raises(SignInFailed):
            sign_in(container, member, CLIENT, code=hotp(2))
        assert events(container, token)[-1] == "lost"
        assert "token:lost" in audit_tags(container)
        # Found to be stolen after all: revoked.
        world.unit.inventory.report_lost(world.principal(admin), token.id, stolen=True)
        world.unit.commit()
        assert events(container, token)[-1] == "revoked"

    def test_the_holder_reports_their_own_token_stolen(
        self, container: Container, world: World, org: Organisation, admin: Member
    ) -> None:
        member = world.member(org)
        token = issue_hardware(world, org, admin, member, Package(serial="STOLEN1"))
        world.unit.inventory.activate(world.principal(member), token.id, hotp(0))
        world.unit.commit()
        signed = sign_in(container, member, CLIENT)  # with the soft token
        world.unit.inventory.report_lost(world.principal(member), token.id, stolen=True)
        world.unit.commit()
        world.unit.session.refresh(token)
        assert token.state is TokenState.REVOKED
        with container.unit() as unit:
            assert unit.sessions.resume(signed.token) is None
        assert "token:revoked" in audit_tags(container)
        with pytest.raises(TokenStateConflict):
            world.unit.inventory.report_lost(world.principal(member), token.id)


class TestReturn:
    def test_a_returned_token_stops_signing_in_and_can_be_assigned_again(
        self, container: Container, world: World, org: Organisation, admin: Member
    ) -> None:
        leaver = world.member(org)
        hardware_only(world, leaver)
        token = issue_hardware(world, org, admin, leaver, Package(serial="BACK1"))
        world.unit.inventory.activate(world.principal(leaver), token.id, hotp(0))
        world.unit.commit()
        signed = sign_in(container, leaver, CLIENT, code=hotp(1))
        world.unit.inventory.mark_returned(world.principal(admin), token.id)
        world.unit.commit()
        with container.unit() as unit:
            # The sessions it opened end with it; it signs nobody in now.
            assert unit.sessions.resume(signed.token) is None
            back = unit.session.get(OtpToken, token.id)
            assert back is not None and back.state is TokenState.RETURNED
            assert back.person_id is None
        with pytest.raises(SignInFailed):
            sign_in(container, leaver, CLIENT, code=hotp(2))
        # Back in circulation: a colleague gets it, and it works for them.
        joiner = world.member(org)
        hardware_only(world, joiner)
        world.unit.inventory.assign(world.principal(admin), "BACK1", joiner.person)
        world.unit.inventory.activate(world.principal(joiner), token.id, hotp(3))
        world.unit.commit()
        assert "hwk" in sign_in(container, joiner, CLIENT, code=hotp(4)).record.amr
        assert events(container, token) == [
            "imported", "assigned", "activated", "returned", "assigned", "activated",
        ]
        assert "token:returned" in audit_tags(container)

    @pytest.mark.parametrize("who", ["holder", "other_admin"])
    def test_only_an_admin_of_the_tokens_organisation_records_a_return(
        self, who: str, world: World, org: Organisation, admin: Member
    ) -> None:
        holder = world.member(org)
        token = issue_hardware(world, org, admin, holder, Package(serial="BACK2"))
        actor = (
            world.principal(holder)
            if who == "holder"
            else world.principal(world.member(world.organisation("Elsewhere"),
                                              Role.ORGANISATION_ADMIN))
        )
        with pytest.raises(NotAllowed):
            world.unit.inventory.mark_returned(actor, token.id)
        world.unit.session.rollback()
        world.unit.session.refresh(token)
        assert token.state is TokenState.ASSIGNED and token.person_id == holder.person.id

    def test_a_token_in_stock_or_revoked_cannot_be_returned(
        self, world: World, org: Organisation, admin: Member
    ) -> None:
        (token,) = import_tokens(world, org, [Package(serial="BACK3")])
        with pytest.raises(TokenStateConflict):
            world.unit.inventory.mark_returned(world.principal(admin), token.id)
        world.unit.inventory.report_lost(world.principal(admin), token.id, stolen=True)
        world.unit.commit()
        with pytest.raises(TokenStateConflict):
            world.unit.inventory.mark_returned(world.principal(admin), token.id)


class TestReplacement:
    def test_a_replacement_is_activated_with_password_pin_and_its_code(
        self, container: Container, world: World, org: Organisation, admin: Member
    ) -> None:
        member = world.member(org)
        hardware_only(world, member)
        old = issue_hardware(world, org, admin, member, Package(serial="OLD1"))
        world.unit.inventory.activate(world.principal(member), old.id, hotp(0))
        world.unit.inventory.report_lost(world.principal(admin), old.id)
        world.unit.commit()
        other_secret = b"another secret of 20"
        new = issue_hardware(
            world, org, admin, member, Package(serial="NEW1", secret=other_secret)
        )
        new_hotp = pyotp.HOTP(base64.b32encode(other_secret).decode())
        attempts = [
            (member.username, "wrong password 123", member.pin, new_hotp.at(0)),
            (member.username, member.password, "999999", new_hotp.at(0)),
            (member.username, member.password, member.pin, hotp(1)),  # the lost one's code
            ("nobody.here", member.password, member.pin, new_hotp.at(0)),
        ]
        for username, password, pin, code in attempts:
            with container.unit() as unit, pytest.raises(SignInFailed) as failed:
                unit.inventory.activate_replacement(username, password, pin, code, CLIENT)
            assert failed.value.message == SignInFailed().message
        with container.unit() as unit:
            guard = unit.session.get(SignInGuard, member.person.id)
            assert guard is not None and guard.consecutive_failures == 3
        with container.unit() as unit:
            person = unit.inventory.activate_replacement(
                member.username, member.password, member.pin, new_hotp.at(0), CLIENT
            )
            assert person.id == member.person.id
        with container.unit() as unit:
            assert unit.session.get(OtpToken, new.id).state is TokenState.ACTIVE  # type: ignore[union-attr]
            guard = unit.session.get(SignInGuard, member.person.id)
            assert guard is not None and guard.consecutive_failures == 0
        assert "hwk" in sign_in(container, member, CLIENT, code=new_hotp.at(1)).record.amr
        # The old token stays dead.
        with pytest.raises(SignInFailed):
            sign_in(container, member, CLIENT, code=hotp(2))
        assert events(container, new) == ["imported", "assigned", "activated"]

    def test_a_locked_account_cannot_activate_a_replacement(
        self, container: Container, world: World, org: Organisation, admin: Member
    ) -> None:
        member = world.member(org)
        issue_hardware(world, org, admin, member, Package(serial="LOCKED1"))
        for _ in range(container.settings.signin.lockout_threshold):
            with pytest.raises(SignInFailed):
                sign_in(container, member, CLIENT, password="wrong password here")
        with container.unit() as unit, pytest.raises(SignInFailed):
            unit.inventory.activate_replacement(
                member.username, member.password, member.pin, hotp(0), CLIENT
            )

    def test_a_hardware_token_assigned_at_enrolment_is_confirmed_by_its_code(
        self, container: Container, world: World, org: Organisation, admin: Member
    ) -> None:
        newcomer = world.newcomer(org)
        code = world.unit.activation.issue_code(newcomer)
        world.unit.commit()
        (token,) = import_tokens(world, org, [Package(serial="ENROL1")])
        world.unit.inventory.assign(world.principal(admin), token.serial, newcomer)
        world.unit.commit()
        with container.unit() as unit:
            flow = unit.activation.start(newcomer.username, code, "127.0.0.1")
            unit.activation.set_password(flow, "a long new password 77", "a long new password 77")
            # The page offers the assigned hardware token by serial, never its seed.
            assert unit.activation.assigned_hardware(flow) == "ENROL1"
            # An app token begun before the hardware token was noticed...
            soft = unit.activation.pending_token(flow)
            assert soft.secret.rstrip("=") != B32.rstrip("=")
            unit.activation.confirm_token(flow, hotp(0))
            assert unit.session.get(OtpToken, token.id).state is TokenState.ACTIVE  # type: ignore[union-attr]
            # ...is revoked once the hardware token is confirmed: one token, not two.
            pending_soft = unit.session.scalar(
                select(OtpToken).where(OtpToken.serial == soft.serial)
            )
            assert pending_soft is not None and pending_soft.state is TokenState.REVOKED

    def test_no_app_token_is_offered_where_the_policy_allows_none(
        self, container: Container, world: World, org: Organisation
    ) -> None:
        newcomer = world.newcomer(org)
        code = world.unit.activation.issue_code(newcomer)
        world.unit.session.add(
            AuthenticatorPolicy(organisation_id=org.id, allow_soft_token=False)
        )
        world.unit.commit()
        with container.unit() as unit:
            flow = unit.activation.start(newcomer.username, code, "127.0.0.1")
            unit.activation.set_password(flow, "a long new password 77", "a long new password 77")
            assert unit.activation.assigned_hardware(flow) is None
            with pytest.raises(Conflict):
                unit.activation.pending_token(flow)
            assert unit.session.scalar(
                select(OtpToken).where(OtpToken.person_id == newcomer.id)
            ) is None


class TestAuthority:
    def test_an_admin_of_another_organisation_is_refused(
        self, world: World, org: Organisation, admin: Member
    ) -> None:
        member = world.member(org)
        (token,) = import_tokens(world, org, [Package(serial="MINE1")])
        other = world.organisation("Southshire")
        stranger = world.principal(world.member(other, Role.ORGANISATION_ADMIN))
        inventory = world.unit.inventory
        with pytest.raises(NotAllowed):
            inventory.list_tokens(stranger, org.id)
        with pytest.raises(NotAllowed):
            inventory.assign(stranger, token.serial, member.person)
        with pytest.raises(NotAllowed):
            inventory.report_lost(stranger, token.id)
        with pytest.raises(NotAllowed):
            inventory.history(stranger, token)
        with pytest.raises(NotAllowed):
            inventory.resync(stranger, token.id, hotp(0), hotp(1))
        # Nor may an admin give a token to someone of another organisation.
        outsider = world.member(other)
        with pytest.raises(NotAllowed):
            inventory.assign(world.principal(admin), token.serial, outsider.person)
        # A practitioner may not assign at all, even in their own organisation.
        with pytest.raises(NotAllowed):
            inventory.assign(world.principal(member), token.serial, admin.person)
        world.unit.session.refresh(token)
        assert token.state is TokenState.IN_STOCK

    def test_lists_are_per_organisation_paged_and_filtered(
        self, world: World, org: Organisation, admin: Member
    ) -> None:
        other = world.organisation("Southshire")
        import_tokens(world, org, [Package(serial=f"N{n:03d}") for n in range(60)])
        import_tokens(world, other, [Package(serial=f"S{n:03d}") for n in range(3)])
        member = world.member(org)
        world.unit.inventory.assign(world.principal(admin), "N007", member.person)
        world.unit.commit()
        actor = world.principal(admin)
        first = world.unit.inventory.list_tokens(actor, org.id)
        assert first.total == 60 and first.pages == 2 and len(first.items) == 50
        assert first.items[0].serial == "N000"
        second = world.unit.inventory.list_tokens(actor, org.id, page=2)
        assert [t.serial for t in second.items][-1] == "N059"
        assigned = world.unit.inventory.list_tokens(actor, org.id, state=TokenState.ASSIGNED)
        assert [t.serial for t in assigned.items] == ["N007"]
        # The platform sees any organisation's.
        assert world.unit.inventory.list_tokens(OPERATOR, other.id).total == 3
        # An assigned token cannot be assigned again.
        with pytest.raises(TokenStateConflict):
            world.unit.inventory.assign(actor, "N007", world.member(org).person)


def test_history_is_in_order_with_the_actor(
    world: World, org: Organisation, admin: Member, clock: FrozenClock
) -> None:
    member = world.member(org)
    token = issue_hardware(world, org, admin, member, Package(serial="HIST1"))
    clock.advance(minutes=5)
    world.unit.inventory.activate(world.principal(member), token.id, hotp(0))
    clock.advance(minutes=5)
    world.unit.inventory.report_lost(world.principal(member), token.id)
    world.unit.commit()
    history = world.unit.inventory.history(world.principal(admin), token)
    assert [(e.event, e.state) for e in history] == [
        ("imported", TokenState.IN_STOCK),
        ("assigned", TokenState.ASSIGNED),
        ("activated", TokenState.ACTIVE),
        ("lost", TokenState.LOST),
    ]
    assert history[0].actor_label == "cli:test" and history[0].actor_id is None
    assert history[1].actor_id == admin.person.id
    assert history[3].actor_id == member.person.id
    assert history[2].at - history[1].at == timedelta(minutes=5)
