"""Vetting: nobody gets an account without every check and a second pair of eyes;
access lapses when the checks do."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.errors import Conflict, InvalidInput, NotAllowed, NotFound
from core.outbox import Letter
from directory.models import (
    Accreditation,
    Organisation,
    OrganisationKind,
    Person,
    PersonStatus,
    Role,
)
from directory.services import home_postcode_key
from idp.container import Container
from tests.factories import Member, World, sign_in
from tokens.attempts import Client
from tokens.models import AuthSession
from vetting.errors import AlreadyDecided, CannotClear, ChecksIncomplete
from vetting.models import (
    Application,
    ApplicationState,
    CertificateOutcome,
    Confidence,
    Decision,
    IdentityMethod,
)
from vetting.service import add_years

CLIENT = Client("203.0.113.40", "pytest")
CODE_LINE = re.compile(r"Activation code: (\S+)")


@dataclass
class Cast:
    org: Organisation
    sponsor: Member
    recorder: Member
    decider: Member


@pytest.fixture
def cast(world: World) -> Cast:
    org = world.organisation()
    return Cast(
        org=org,
        sponsor=world.member(org, Role.ORGANISATION_ADMIN, given_name="Sponsor"),
        recorder=world.member(org, Role.VETTING_OFFICER, given_name="Recorder"),
        decider=world.member(org, Role.VETTING_OFFICER, given_name="Decider"),
    )


def people(container: Container) -> int:
    with container.unit() as unit:
        return unit.directory.count_people()


def apply(
    container: Container, world: World, sponsor: Member, org: Organisation, **changes: Any
) -> int:
    fields: dict[str, Any] = {
        "organisation_id": org.id,
        "given_name": "Tamsin",
        "family_name": "Fairweather",
        "work_email": "tamsin.fairweather@northshire.gov.uk",
        "work_phone": "01632 960123",
        "role": Role.PRACTITIONER,
    }
    fields.update(changes)
    with container.unit() as unit:
        app = unit.vetting.sponsor(world.principal(sponsor), **fields)
        unit.commit()
        return app.id


def record(
    container: Container, world: World, officer: Member, app_id: int, check: str, **changes: Any
) -> None:
    today = container.clock.today()
    values: dict[str, dict[str, Any]] = {
        "identity": {
            "confidence": Confidence.MEDIUM,
            "method": IdentityMethod.FACE_TO_FACE,
            "checked_on": today,
            "evidence_reference": "GPG45-2026-0042",
        },
        "certificate": {
            "certificate_number": "001234567890",
            "issued_on": today - timedelta(days=30),
            "outcome": CertificateOutcome.NOTHING_RECORDED,
        },
        "training": {"completed_on": today - timedelta(days=7)},
        "agreement": {"signed_on": today},
    }
    call = {
        "identity": "record_identity_check",
        "certificate": "record_certificate",
        "training": "record_training",
        "agreement": "record_agreement",
    }[check]
    with container.unit() as unit:
        getattr(unit.vetting, call)(
            world.principal(officer), app_id, **{**values[check], **changes}
        )
        unit.commit()


CHECKS = ("identity", "certificate", "training", "agreement")


def record_all(
    container: Container, world: World, officer: Member, app_id: int, **per_check: dict[str, Any]
) -> None:
    for check in CHECKS:
        record(container, world, officer, app_id, check, **per_check.get(check, {}))


def decide(
    container: Container,
    world: World,
    officer: Member,
    app_id: int,
    decision: Decision = Decision.CLEARED,
    reason: str = "All checks satisfactory",
) -> tuple[int | None, int | None]:
    """The decision; returns (person id, letter id) of an enrolment."""
    with container.unit() as unit:
        enrolment = unit.vetting.decide(
            world.principal(officer), app_id, decision=decision, reason=reason
        )
        unit.commit()
        if enrolment is None:
            return None, None
        return enrolment.person.id, enrolment.letter_id


def application(container: Container, app_id: int) -> Application:
    with container.unit() as unit:
        app = unit.vetting.application(app_id)
        unit.session.expunge_all()  # with its checks, loaded alongside
        return app


def audit_tags(container: Container) -> list[str]:
    with container.unit() as unit:
        return list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))


def enrol(
    container: Container, world: World, cast: Cast, **per_check: dict[str, Any]
) -> tuple[int, int]:
    app_id = apply(container, world, cast.sponsor, cast.org)
    record_all(container, world, cast.recorder, app_id, **per_check)
    person_id, letter_id = decide(container, world, cast.decider, app_id)
    assert person_id is not None and letter_id is not None
    return person_id, letter_id


# -- the whole enrolment ---------------------------------------------------------------


def test_full_enrolment(container: Container, world: World, cast: Cast) -> None:
    today = container.clock.today()
    issued = today - timedelta(days=30)
    before = people(container)

    app_id = apply(container, world, cast.sponsor, cast.org)
    record_all(container, world, cast.recorder, app_id)
    assert people(container) == before  # every check recorded, still nobody
    person_id, letter_id = decide(container, world, cast.decider, app_id)

    assert people(container) == before + 1
    with container.unit() as unit:
        person = unit.directory.person(person_id)  # type: ignore[arg-type]
        assert person.status is PersonStatus.AWAITING_ACTIVATION
        assert person.username == "tamsin.fairweather"
        assert person.work_email == "tamsin.fairweather@northshire.gov.uk"
        assert person.clearance_expires_on == date(issued.year + 3, issued.month, issued.day)
        assert person.training_expires_on == add_years(today - timedelta(days=7), 3)
        assert [(p.organisation_id, p.role, p.starts_on, p.ends_on) for p in person.positions] == [
            (cast.org.id, Role.PRACTITIONER, today, None)
        ]
        app = unit.vetting.application(app_id)
        assert app.state is ApplicationState.CLEARED
        assert (app.person_id, app.decided_by_id) == (person_id, cast.decider.person.id)
        assert app.certificate is not None and app.certificate.person_id == person_id
        waiting = unit.outbox.waiting()
        assert [(w.id, w.kind, w.person_id) for w in waiting] == [
            (letter_id, "activation", person_id)
        ]
        body = unit.outbox.print_letter(letter_id)  # type: ignore[arg-type]
        unit.commit()
        username = person.username

    assert f"Username: {username}" in body
    match = CODE_LINE.search(body)
    assert match, body
    with container.unit() as unit:
        flow = unit.activation.start(username, match.group(1), "203.0.113.40")
        assert unit.activation.stage_of(flow) == "password"

    tags = audit_tags(container)
    for tag in (
        "vetting:application:submitted",
        "vetting:identity_check:recorded",
        "vetting:certificate:recorded",
        "vetting:training:recorded",
        "vetting:agreement:recorded",
        "vetting:decision:cleared",
        "vetting:enrolled",
    ):
        assert tag in tags


def test_registration_authority_officers_vet_for_the_organisations_they_serve(
    container: Container, world: World, cast: Cast
) -> None:
    school = world.organisation(
        "Hillside Primary", OrganisationKind.SCHOOL, registration_authority=cast.org
    )
    head = world.member(school, Role.ORGANISATION_ADMIN)
    app_id = apply(container, world, head, school, role=Role.PRACTITIONER)
    record_all(container, world, cast.recorder, app_id)
    person_id, _ = decide(container, world, cast.decider, app_id)
    with container.unit() as unit:
        person = unit.directory.person(person_id)  # type: ignore[arg-type]
        assert [p.organisation_id for p in person.positions] == [school.id]


@pytest.mark.parametrize(
    ("issued_on", "expires_on"),
    [
        (date(2026, 11, 25), date(2029, 11, 25)),
        (date(2024, 2, 29), date(2027, 2, 28)),  # a leap day into a common year
        (date(2023, 11, 25), date(2026, 11, 25)),  # good through today, the last day
    ],
)
def test_clearance_is_issue_date_plus_three_years(
    container: Container, world: World, cast: Cast, issued_on: date, expires_on: date
) -> None:
    assert container.clock.today() == date(2026, 11, 25)
    person_id, _ = enrol(container, world, cast, certificate={"issued_on": issued_on})
    with container.unit() as unit:
        assert unit.directory.person(person_id).clearance_expires_on == expires_on


@pytest.mark.parametrize("confidence", [Confidence.MEDIUM, Confidence.HIGH, Confidence.VERY_HIGH])
def test_identity_confidence_of_medium_or_better_clears(
    container: Container, world: World, cast: Cast, confidence: Confidence
) -> None:
    enrol(container, world, cast, identity={"confidence": confidence})


def test_disclosed_information_is_for_the_officer_to_weigh(
    container: Container, world: World, cast: Cast
) -> None:
    enrol(container, world, cast, certificate={"outcome": CertificateOutcome.INFORMATION_DISCLOSED})


def test_usernames_stay_unique(container: Container, world: World, cast: Cast) -> None:
    first, _ = enrol(container, world, cast)
    second, _ = enrol(container, world, cast)
    with container.unit() as unit:
        names = {unit.directory.person(first).username, unit.directory.person(second).username}
    assert names == {"tamsin.fairweather", "tamsin.fairweather2"}


# -- who may sponsor ------------------------------------------------------------------------


def _admin_elsewhere(world: World, cast: Cast) -> Member:
    return world.member(world.organisation("Southshire Council"), Role.ORGANISATION_ADMIN)


def _practitioner(world: World, cast: Cast) -> Member:
    return world.member(cast.org, Role.PRACTITIONER)


def _officer(world: World, cast: Cast) -> Member:
    return cast.recorder


def _former_admin(world: World, cast: Cast) -> Member:
    former = world.member(cast.org, Role.ORGANISATION_ADMIN)
    former.person.positions[0].ends_on = world.container.clock.today() - timedelta(days=1)
    world.unit.commit()
    return former


SPONSOR_REFUSALS = [
    ("admin of another organisation", _admin_elsewhere),
    ("practitioner", _practitioner),
    ("vetting officer", _officer),
    ("former admin", _former_admin),
]


@pytest.mark.parametrize(
    "make", [r[1] for r in SPONSOR_REFUSALS], ids=[r[0] for r in SPONSOR_REFUSALS]
)
def test_only_the_organisations_admins_may_sponsor(
    container: Container, world: World, cast: Cast, make: Callable[[World, Cast], Member]
) -> None:
    actor = make(world, cast)
    with pytest.raises(NotAllowed):
        apply(container, world, actor, cast.org)
    with container.unit() as unit:
        assert unit.session.scalars(select(Application)).first() is None
    assert audit_tags(container)[-1] == "vetting:application:refused"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"given_name": "  "}, "given_name"),
        ({"family_name": ""}, "family_name"),
        ({"work_email": "not an email"}, "work_email"),
        ({"work_email": "tamsin@"}, "work_email"),
        ({"role": Role.PLATFORM_ADMIN}, "role"),
    ],
)
def test_sponsoring_needs_good_details(
    container: Container, world: World, cast: Cast, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as error:
        apply(container, world, cast.sponsor, cast.org, **changes)
    assert [p.field for p in error.value.problems] == [field]


def _applications(container: Container) -> int:
    with container.unit() as unit:
        return len(unit.session.scalars(select(Application.id)).all())


def _submitted(container: Container) -> list[dict[str, Any]]:
    with container.unit() as unit:
        return [e.detail or {} for e in unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == "vetting:application:submitted")
            .order_by(AuditEntry.seq))]


@pytest.mark.parametrize("reason", [None, "", "   ", "\t\n "])
def test_a_platform_admin_must_say_why_they_sponsor(
    container: Container, world: World, cast: Cast, reason: str | None
) -> None:
    """Issue 5: a platform admin may act anywhere, so each act carries their reason."""
    platform = world.member(world.organisation("Platform", OrganisationKind.NATIONAL_CHARITY),
                            Role.PLATFORM_ADMIN, given_name="Pat")
    with pytest.raises(InvalidInput) as error:
        apply(container, world, platform, cast.org, reason=reason)
    assert [p.field for p in error.value.problems] == ["reason"]
    assert _applications(container) == 0 and _submitted(container) == []
    app_id = apply(container, world, platform, cast.org, reason="  the council's request 42 ")
    assert application(container, app_id).sponsor_id == platform.person.id
    assert _submitted(container) == [{"role": "practitioner",
                                      "reason": "the council's request 42"}]


def test_a_platform_admins_missing_reason_is_named_with_the_other_problems(
    container: Container, world: World, cast: Cast
) -> None:
    platform = world.member(world.organisation("Platform"), Role.PLATFORM_ADMIN)
    with pytest.raises(InvalidInput) as error:
        apply(container, world, platform, cast.org, given_name=" ", reason=" ")
    assert [p.field for p in error.value.problems] == ["given_name", "reason"]
    assert _applications(container) == 0


def test_an_organisation_admin_may_sponsor_with_or_without_a_reason(
    container: Container, world: World, cast: Cast
) -> None:
    apply(container, world, cast.sponsor, cast.org)
    apply(container, world, cast.sponsor, cast.org, reason="   ")  # blank: none given
    apply(container, world, cast.sponsor, cast.org, reason=" new starter in May ")
    assert _submitted(container) == [
        {"role": "practitioner"}, {"role": "practitioner"},
        {"role": "practitioner", "reason": "new starter in May"}]
    # What an admin does give is checked as a platform admin's is.
    with pytest.raises(InvalidInput) as error:
        apply(container, world, cast.sponsor, cast.org, reason="x" * 301)
    assert [p.field for p in error.value.problems] == ["reason"]
    assert _applications(container) == 3


# -- who may record checks ------------------------------------------------------------------


def _school_officer(world: World, cast: Cast, school: Organisation) -> Member:
    """An officer of the school itself: the school is not its own registration authority."""
    return world.member(school, Role.VETTING_OFFICER)


def _other_authority_officer(world: World, cast: Cast, school: Organisation) -> Member:
    return world.member(world.organisation("Southshire Council"), Role.VETTING_OFFICER)


def _school_sponsor(world: World, cast: Cast, school: Organisation) -> Member:
    return world.member(school, Role.ORGANISATION_ADMIN)


def _authority_admin(world: World, cast: Cast, school: Organisation) -> Member:
    return cast.sponsor


def _authority_practitioner(world: World, cast: Cast, school: Organisation) -> Member:
    return world.member(cast.org, Role.PRACTITIONER)


RECORDER_REFUSALS = [
    ("officer of a non-registration-authority organisation", _school_officer),
    ("officer of another registration authority", _other_authority_officer),
    ("the sponsor", _school_sponsor),
    ("admin of the registration authority", _authority_admin),
    ("practitioner of the registration authority", _authority_practitioner),
]


@pytest.mark.parametrize(
    "make", [r[1] for r in RECORDER_REFUSALS], ids=[r[0] for r in RECORDER_REFUSALS]
)
def test_only_officers_of_the_registration_authority_record_checks(
    container: Container,
    world: World,
    cast: Cast,
    make: Callable[[World, Cast, Organisation], Member],
) -> None:
    school = world.organisation(
        "Hillside Primary", OrganisationKind.SCHOOL, registration_authority=cast.org
    )
    head = world.member(school, Role.ORGANISATION_ADMIN)
    app_id = apply(container, world, head, school)
    actor = make(world, cast, school)
    for check in CHECKS:
        with pytest.raises(NotAllowed):
            record(container, world, actor, app_id, check)
    assert application(container, app_id).recorders() == set()
    assert audit_tags(container)[-4:] == ["vetting:refused"] * 4
    # While an officer of the school's registration authority may.
    record(container, world, cast.recorder, app_id, "identity")
    assert application(container, app_id).recorders() == {cast.recorder.person.id}


@pytest.mark.parametrize(
    ("check", "changes", "field"),
    [
        ("certificate", {"certificate_number": "12345678901"}, "certificate_number"),
        ("certificate", {"certificate_number": "1234567890123"}, "certificate_number"),
        ("certificate", {"certificate_number": "12345678901A"}, "certificate_number"),
        (
            "certificate",
            {"certificate_number": "".join(chr(0xFF10 + int(d)) for d in "123456789012")},
            "certificate_number",
        ),
        ("certificate", {"certificate_number": ""}, "certificate_number"),
        ("certificate", {"issued_on": date(2026, 11, 26)}, "issued_on"),
        ("certificate", {"issued_on": date(2023, 11, 24)}, "issued_on"),  # too old to clear
        ("identity", {"checked_on": date(2026, 11, 26)}, "checked_on"),
        ("identity", {"evidence_reference": "   "}, "evidence_reference"),
        ("identity", {"home_postcode": "NE1"}, "home_postcode"),
        ("identity", {"home_postcode": "not a postcode"}, "home_postcode"),
        ("training", {"completed_on": date(2026, 11, 26)}, "completed_on"),
        ("agreement", {"signed_on": date(2026, 11, 26)}, "signed_on"),
    ],
)
def test_checks_must_be_recorded_correctly(
    container: Container, world: World, cast: Cast, check: str, changes: dict[str, Any], field: str
) -> None:
    assert container.clock.today() == date(2026, 11, 25)
    app_id = apply(container, world, cast.sponsor, cast.org)
    with pytest.raises(InvalidInput) as error:
        record(container, world, cast.recorder, app_id, check, **changes)
    assert [p.field for p in error.value.problems] == [field]
    assert field in str(error.value)
    assert application(container, app_id).recorders() == set()


def test_certificate_number_may_be_typed_with_spaces(
    container: Container, world: World, cast: Cast
) -> None:
    app_id = apply(container, world, cast.sponsor, cast.org)
    record(
        container, world, cast.recorder, app_id, "certificate", certificate_number="0012 3456 7890"
    )
    with container.unit() as unit:
        app = unit.vetting.application(app_id)
        assert app.certificate is not None
        assert app.certificate.certificate_number == "001234567890"
        assert app.certificate.level == "enhanced_with_childrens_barred_list"


# -- the decision -------------------------------------------------------------------------


def test_the_sponsor_may_not_decide(container: Container, world: World, cast: Cast) -> None:
    # The sponsor is an officer too, so only the four-eyes rule stands in the way.
    world.add_position(cast.sponsor, cast.org, Role.VETTING_OFFICER)
    app_id = apply(container, world, cast.sponsor, cast.org)
    record_all(container, world, cast.recorder, app_id)
    before = people(container)
    with pytest.raises(NotAllowed):
        decide(container, world, cast.sponsor, app_id)
    assert people(container) == before
    assert application(container, app_id).state is ApplicationState.SUBMITTED
    assert audit_tags(container)[-1] == "vetting:decision:refused"
    decide(container, world, cast.decider, app_id)  # someone else still can
    assert people(container) == before + 1


@pytest.mark.parametrize("own_check", CHECKS)
def test_an_officer_who_recorded_a_check_may_not_decide(
    container: Container, world: World, cast: Cast, own_check: str
) -> None:
    app_id = apply(container, world, cast.sponsor, cast.org)
    for check in CHECKS:
        officer = cast.decider if check == own_check else cast.recorder
        record(container, world, officer, app_id, check)
    before = people(container)
    with pytest.raises(NotAllowed):
        decide(container, world, cast.decider, app_id)
    with pytest.raises(NotAllowed):
        decide(container, world, cast.recorder, app_id)
    assert people(container) == before
    third = world.member(cast.org, Role.VETTING_OFFICER)
    before = people(container)
    decide(container, world, third, app_id)
    assert people(container) == before + 1


def _officer_elsewhere(world: World, cast: Cast) -> Member:
    return world.member(world.organisation("Southshire Council"), Role.VETTING_OFFICER)


DECIDER_REFUSALS = [
    ("admin of another organisation", _admin_elsewhere),
    ("practitioner", _practitioner),
    ("officer of another registration authority", _officer_elsewhere),
]


@pytest.mark.parametrize(
    "make", [r[1] for r in DECIDER_REFUSALS], ids=[r[0] for r in DECIDER_REFUSALS]
)
def test_non_officers_may_not_decide(
    container: Container, world: World, cast: Cast, make: Callable[[World, Cast], Member]
) -> None:
    app_id = apply(container, world, cast.sponsor, cast.org)
    record_all(container, world, cast.recorder, app_id)
    with pytest.raises(NotAllowed):
        decide(container, world, make(world, cast), app_id)
    assert application(container, app_id).state is ApplicationState.SUBMITTED
    assert audit_tags(container)[-1] == "vetting:refused"


@pytest.mark.parametrize("missing", CHECKS)
def test_every_check_is_needed_before_clearance(
    container: Container, world: World, cast: Cast, missing: str
) -> None:
    app_id = apply(container, world, cast.sponsor, cast.org)
    for check in CHECKS:
        if check != missing:
            record(container, world, cast.recorder, app_id, check)
    before = people(container)
    with pytest.raises(ChecksIncomplete) as error:
        decide(container, world, cast.decider, app_id)
    label = {
        "identity": "identity check",
        "certificate": "criminal-record check",
        "training": "training",
        "agreement": "user agreement",
    }[missing]
    assert label in str(error.value)
    assert people(container) == before
    assert application(container, app_id).state is ApplicationState.SUBMITTED


def test_no_checks_at_all_is_incomplete(container: Container, world: World, cast: Cast) -> None:
    app_id = apply(container, world, cast.sponsor, cast.org)
    with pytest.raises(ChecksIncomplete):
        decide(container, world, cast.decider, app_id)


def _barred(container: Container, world: World, cast: Cast) -> dict[str, dict[str, Any]]:
    return {"certificate": {"outcome": CertificateOutcome.BARRED}}


def _low_confidence(container: Container, world: World, cast: Cast) -> dict[str, dict[str, Any]]:
    return {"identity": {"confidence": Confidence.LOW}}


def _training_lapsed(container: Container, world: World, cast: Cast) -> dict[str, dict[str, Any]]:
    return {"training": {"completed_on": date(2023, 11, 24)}}


def _organisation_suspended(
    container: Container, world: World, cast: Cast
) -> dict[str, dict[str, Any]]:
    cast.org.accreditation = Accreditation.SUSPENDED
    world.unit.commit()
    return {}


CANNOT_CLEAR = [
    ("on the barred list", _barred),
    ("identity confidence low", _low_confidence),
    ("training already lapsed", _training_lapsed),
]


@pytest.mark.parametrize("make", [c[1] for c in CANNOT_CLEAR], ids=[c[0] for c in CANNOT_CLEAR])
def test_what_cannot_be_cleared(
    container: Container,
    world: World,
    cast: Cast,
    make: Callable[[Container, World, Cast], dict[str, dict[str, Any]]],
) -> None:
    app_id = apply(container, world, cast.sponsor, cast.org)
    record_all(container, world, cast.recorder, app_id, **make(container, world, cast))
    before = people(container)
    with pytest.raises(CannotClear):
        decide(container, world, cast.decider, app_id)
    assert people(container) == before
    assert application(container, app_id).state is ApplicationState.SUBMITTED
    # Refusing is always possible.
    assert decide(container, world, cast.decider, app_id, Decision.REFUSED) == (None, None)
    assert application(container, app_id).state is ApplicationState.REFUSED


def test_organisation_suspended_before_the_decision_cannot_be_cleared(
    container: Container, world: World, cast: Cast
) -> None:
    """Its officers lose their rights with it; a registration authority that still
    stands may not clear someone for it either."""
    school = world.organisation(
        "Hillside Primary", OrganisationKind.SCHOOL, registration_authority=cast.org
    )
    head = world.member(school, Role.ORGANISATION_ADMIN)
    app_id = apply(container, world, head, school)
    record_all(container, world, cast.recorder, app_id)
    school.accreditation = Accreditation.SUSPENDED
    world.unit.commit()
    before = people(container)
    with pytest.raises(CannotClear):
        decide(container, world, cast.decider, app_id)
    assert people(container) == before


def test_higher_minimum_confidence_follows_settings(
    container: Container, world: World, cast: Cast, database_url: str, tmp_path: Any
) -> None:
    from tests.conftest import make_settings

    strict = Container(
        make_settings(
            database_url, tmp_path / "strict", vetting={"minimum_identity_confidence": "high"}
        ),
        secrets=container.secrets,
        clock=container.clock,
    )
    try:
        app_id = apply(strict, world, cast.sponsor, cast.org)
        record_all(strict, world, cast.recorder, app_id)  # medium
        with pytest.raises(CannotClear):
            decide(strict, world, cast.decider, app_id)
    finally:
        strict.dispose()


def test_refused_decision_creates_no_person(container: Container, world: World, cast: Cast) -> None:
    before = people(container)
    app_id = apply(container, world, cast.sponsor, cast.org)
    record_all(container, world, cast.recorder, app_id)
    assert decide(container, world, cast.decider, app_id, Decision.REFUSED, "Identity doubt") == (
        None,
        None,
    )
    assert people(container) == before
    app = application(container, app_id)
    assert app.state is ApplicationState.REFUSED
    assert (app.decision, app.decision_reason, app.person_id) == (
        Decision.REFUSED,
        "Identity doubt",
        None,
    )
    with container.unit() as unit:
        assert unit.outbox.all() == []
    # Decided is decided.
    with pytest.raises(AlreadyDecided):
        decide(container, world, cast.decider, app_id)
    with pytest.raises(AlreadyDecided):
        record(container, world, cast.recorder, app_id, "training")
    assert people(container) == before


def test_cleared_application_cannot_be_decided_again(
    container: Container, world: World, cast: Cast
) -> None:
    app_id = apply(container, world, cast.sponsor, cast.org)
    record_all(container, world, cast.recorder, app_id)
    decide(container, world, cast.decider, app_id)
    before = people(container)
    third = world.member(cast.org, Role.VETTING_OFFICER)
    with pytest.raises(AlreadyDecided):
        decide(container, world, third, app_id)
    assert people(container) == before + 1  # (the third officer)


def test_a_decision_needs_a_reason(container: Container, world: World, cast: Cast) -> None:
    app_id = apply(container, world, cast.sponsor, cast.org)
    record_all(container, world, cast.recorder, app_id)
    with pytest.raises(InvalidInput) as error:
        decide(container, world, cast.decider, app_id, reason="  ")
    assert error.value.problems[0].field == "reason"


# -- the letter -----------------------------------------------------------------------------


def test_letter_prints_once_and_its_body_is_wiped(
    container: Container, world: World, cast: Cast, clock: FrozenClock
) -> None:
    _, letter_id = enrol(container, world, cast)
    clock.advance(hours=2)
    with container.unit() as unit:
        body = unit.outbox.print_letter(letter_id)
        unit.commit()
    assert "Activation code:" in body
    with container.unit() as unit:
        letter = unit.session.get(Letter, letter_id)
        assert letter is not None
        assert letter.body_ciphertext is None
        assert letter.printed_at == clock.now()
        assert unit.outbox.waiting() == []
        with pytest.raises(Conflict):
            unit.outbox.print_letter(letter_id)
        with pytest.raises(NotFound):
            unit.outbox.print_letter(letter_id + 1000)


def test_letter_is_stored_encrypted(container: Container, world: World, cast: Cast) -> None:
    person_id, letter_id = enrol(container, world, cast)
    with container.engine.connect() as conn:
        row = conn.execute(
            text("SELECT * FROM outbox_letter WHERE id = :i"), {"i": letter_id}
        ).one()
    stored = " ".join(str(v) for v in row)
    with container.unit() as unit:
        body = unit.outbox.print_letter(letter_id)
        username = unit.directory.person(person_id).username
    match = CODE_LINE.search(body)
    assert match
    code = match.group(1)
    assert code not in stored
    assert code.replace("-", "") not in stored
    assert username not in stored
    assert "Activation code" not in stored


def test_letter_ciphertext_does_not_move_to_another_letter(
    container: Container, world: World, cast: Cast
) -> None:
    from cryptography.exceptions import InvalidTag

    _, letter_id = enrol(container, world, cast)
    with container.unit() as unit:
        original = unit.session.get(Letter, letter_id)
        assert original is not None
        copy = unit.outbox.post(kind="activation", recipient_name="Someone Else", body="decoy")
        copy.body_ciphertext = original.body_ciphertext
        with pytest.raises(InvalidTag):
            unit.outbox.print_letter(copy.id)


# -- lapse and the sweep -----------------------------------------------------------------------


def sweep(container: Container) -> Any:
    with container.unit() as unit:
        report = unit.vetting.sweep()
        unit.commit()
        return report


def person_state(container: Container, member: Member) -> tuple[PersonStatus, str]:
    with container.unit() as unit:
        person = unit.directory.person(member.person.id)
        return person.status, person.status_reason


def test_sweep_suspends_on_lapse_by_time_and_leaves_the_valid_alone(
    container: Container, world: World, clock: FrozenClock
) -> None:
    org = world.organisation("Lapse Council")
    valid = world.member(org)
    clearance = world.member(org, clearance_days=10)
    training = world.member(org, training_days=10)
    both = world.member(org, clearance_days=5, training_days=8)

    clock.advance(days=10)  # the last good day for two of them
    report = sweep(container)
    assert report.suspended == [(both.username, "lapsed: clearance lapsed, training lapsed")]

    clock.advance(days=1)
    report = sweep(container)
    assert sorted(report.suspended) == sorted(
        [
            (clearance.username, "lapsed: clearance lapsed"),
            (training.username, "lapsed: training lapsed"),
        ]
    )
    assert report.checked == 3  # those still active when it ran
    assert person_state(container, valid) == (PersonStatus.ACTIVE, "enrolled after clearance")
    for member in (clearance, training, both):
        status, reason = person_state(container, member)
        assert status is PersonStatus.SUSPENDED and reason.startswith("lapsed: ")

    assert sweep(container).suspended == []  # nothing more to do


def _lapse_clearance(world: World, member: Member, org: Organisation) -> None:
    member.person.clearance_expires_on = world.container.clock.today() - timedelta(days=1)


def _lapse_training(world: World, member: Member, org: Organisation) -> None:
    member.person.training_expires_on = world.container.clock.today() - timedelta(days=1)


def _end_position(world: World, member: Member, org: Organisation) -> None:
    member.person.positions[0].ends_on = world.container.clock.today() - timedelta(days=1)


def _suspend_organisation(world: World, member: Member, org: Organisation) -> None:
    org.accreditation = Accreditation.SUSPENDED


LAPSES = [
    ("clearance", _lapse_clearance, "clearance lapsed"),
    ("training", _lapse_training, "training lapsed"),
    ("position ended", _end_position, "no current position"),
    ("organisation suspended", _suspend_organisation, "organisation not accredited"),
]


@pytest.mark.parametrize(
    ("lapse", "reason"), [(x[1], x[2]) for x in LAPSES], ids=[x[0] for x in LAPSES]
)
def test_sweep_suspends_and_ends_sessions_at_once(
    container: Container,
    world: World,
    clock: FrozenClock,
    lapse: Callable[[World, Member, Organisation], None],
    reason: str,
) -> None:
    lapsing_org = world.organisation("Lapsing Council")
    other_org = world.organisation("Steady Council")
    lapsing = world.member(lapsing_org)
    valid = world.member(other_org)
    gone = sign_in(container, lapsing, CLIENT)
    kept = sign_in(container, valid, CLIENT)
    clock.advance(minutes=5)

    lapse(world, lapsing, lapsing_org)
    world.unit.commit()
    report = sweep(container)

    assert report.suspended == [(lapsing.username, f"lapsed: {reason}")]
    with container.unit() as unit:
        # Ended in the table itself, not only when next presented.
        ended = unit.session.get(AuthSession, gone.record.id)
        assert ended is not None and ended.ended_reason == "suspended by sweep"
        assert unit.sessions.open_sessions(lapsing.person.id) == []
        assert unit.sessions.resume(gone.token) is None
        assert unit.sessions.resume(kept.token) is not None
    assert person_state(container, valid)[0] is PersonStatus.ACTIVE
    tags = audit_tags(container)
    assert tags.count("vetting:sweep:suspended") == 1
    assert tags[-1] == "vetting:sweep:completed"


def test_sweep_leaves_people_who_are_not_active_alone(
    container: Container, world: World, clock: FrozenClock
) -> None:
    org = world.organisation()
    suspended = world.member(org, status=PersonStatus.SUSPENDED, clearance_days=1)
    waiting = world.newcomer(org, clearance_days=1)
    clock.advance(days=5)
    report = sweep(container)
    assert report.suspended == []
    assert report.checked == 0
    assert person_state(container, suspended)[1] == "enrolled after clearance"
    with container.unit() as unit:
        assert unit.directory.person(waiting.id).status is PersonStatus.AWAITING_ACTIVATION


# -- renewal --------------------------------------------------------------------------------


@pytest.fixture
def vetted(world: World) -> tuple[Organisation, Member, Member]:
    org = world.organisation()
    officer = world.member(org, Role.VETTING_OFFICER, clearance_days=2000, training_days=2000)
    practitioner = world.member(org, clearance_days=10)
    return org, officer, practitioner


def renew(
    container: Container, world: World, officer: Member, person: Person | Member, **changes: Any
) -> None:
    person = person.person if isinstance(person, Member) else person
    values: dict[str, Any] = {
        "certificate_number": "009876543210",
        "issued_on": container.clock.today(),
        "outcome": CertificateOutcome.NOTHING_RECORDED,
    }
    values.update(changes)
    with container.unit() as unit:
        unit.vetting.renew_certificate(world.principal(officer), person.id, **values)
        unit.commit()


def test_renewal_extends_clearance_and_reinstates_after_a_lapse(
    container: Container,
    world: World,
    clock: FrozenClock,
    vetted: tuple[Organisation, Member, Member],
) -> None:
    _, officer, practitioner = vetted
    clock.advance(days=11)
    sweep(container)
    assert person_state(container, practitioner)[0] is PersonStatus.SUSPENDED
    clock.advance(hours=1)

    renew(container, world, officer, practitioner)

    with container.unit() as unit:
        person = unit.directory.person(practitioner.person.id)
        assert person.clearance_expires_on == add_years(clock.today(), 3)
        assert (person.status, person.status_reason) == (PersonStatus.ACTIVE, "clearance renewed")
    assert "vetting:reinstated" in audit_tags(container)
    sign_in(container, practitioner, CLIENT)


def test_renewal_before_lapse_just_extends(
    container: Container, world: World, vetted: tuple[Organisation, Member, Member]
) -> None:
    _, officer, practitioner = vetted
    renew(container, world, officer, practitioner)
    with container.unit() as unit:
        person = unit.directory.person(practitioner.person.id)
        assert person.status is PersonStatus.ACTIVE
        assert person.clearance_expires_on == add_years(container.clock.today(), 3)


def test_renewal_does_not_lift_a_suspension_for_another_reason(
    container: Container, world: World, vetted: tuple[Organisation, Member, Member]
) -> None:
    _, officer, practitioner = vetted
    with container.unit() as unit:
        person = unit.directory.person(practitioner.person.id)
        unit.directory.set_status(person, PersonStatus.SUSPENDED, "under investigation", tag="t")
        unit.commit()
    renew(container, world, officer, practitioner)
    assert person_state(container, practitioner) == (PersonStatus.SUSPENDED, "under investigation")


def test_renewal_does_not_lift_a_suspension_while_something_else_lapsed(
    container: Container,
    world: World,
    clock: FrozenClock,
    vetted: tuple[Organisation, Member, Member],
) -> None:
    org, officer, _ = vetted
    both = world.member(org, clearance_days=10, training_days=10)
    clock.advance(days=11)
    sweep(container)
    renew(container, world, officer, both)
    status, _ = person_state(container, both)
    assert status is PersonStatus.SUSPENDED
    with container.unit() as unit:
        assert unit.directory.person(both.person.id).clearance_expires_on == add_years(
            clock.today(), 3
        )


def test_barred_renewal_suspends_and_ends_sessions(
    container: Container, world: World, vetted: tuple[Organisation, Member, Member]
) -> None:
    _, officer, practitioner = vetted
    signed = sign_in(container, practitioner, CLIENT)
    renew(container, world, officer, practitioner, outcome=CertificateOutcome.BARRED)
    status, reason = person_state(container, practitioner)
    assert status is PersonStatus.SUSPENDED and "barred" in reason
    with container.unit() as unit:
        assert unit.sessions.resume(signed.token) is None
        person = unit.directory.person(practitioner.person.id)
        assert person.clearance_expires_on == practitioner.person.clearance_expires_on


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"certificate_number": "98765"}, "certificate_number"),
        ({"issued_on": date(2026, 11, 26)}, "issued_on"),
        ({"issued_on": date(2020, 1, 1)}, "issued_on"),
    ],
)
def test_renewal_needs_a_good_certificate(
    container: Container,
    world: World,
    vetted: tuple[Organisation, Member, Member],
    changes: dict[str, Any],
    field: str,
) -> None:
    _, officer, practitioner = vetted
    with pytest.raises(InvalidInput) as error:
        renew(container, world, officer, practitioner, **changes)
    assert error.value.problems[0].field == field


@pytest.mark.parametrize("role", [Role.ORGANISATION_ADMIN, Role.PRACTITIONER])
def test_only_officers_renew(
    container: Container, world: World, vetted: tuple[Organisation, Member, Member], role: Role
) -> None:
    org, _, practitioner = vetted
    actor = world.member(org, role)
    before = practitioner.person.clearance_expires_on
    with pytest.raises(NotAllowed):
        renew(container, world, actor, practitioner)
    with container.unit() as unit:
        assert unit.directory.person(practitioner.person.id).clearance_expires_on == before


def test_officers_of_another_authority_may_not_renew(
    container: Container, world: World, vetted: tuple[Organisation, Member, Member]
) -> None:
    _, _, practitioner = vetted
    stranger = world.member(world.organisation("Southshire Council"), Role.VETTING_OFFICER)
    with pytest.raises(NotAllowed):
        renew(container, world, stranger, practitioner)


def test_the_home_postcode_seen_at_the_identity_check_reaches_the_person_as_a_digest_only(
    container: Container, world: World, cast: Cast
) -> None:
    person_id, _letter = enrol(container, world, cast, identity={"home_postcode": "ne1  4ab"})
    with container.unit() as unit:
        person = unit.directory.person(person_id)
        key = person.home_postcode_key
        assert key is not None and len(key) == 32
        # The same postcode however typed; no trace of the postcode itself.
        assert key == home_postcode_key(container.digester, "NE14AB")
        assert key != home_postcode_key(container.digester, "NE1 4AC")
        rows = unit.session.execute(text(
            "SELECT p.home_postcode_key, i.home_postcode_key FROM person p, identity_check i "
            "WHERE p.id = :p"), {"p": person_id}).all()
        assert rows
        assert all("NE1" not in str(value).upper() for row in rows for value in row)
    with container.unit() as unit:
        detail = unit.session.scalars(select(AuditEntry.detail).where(
            AuditEntry.tag == "vetting:identity_check:recorded")).one()
    assert detail["home_postcode_recorded"] is True
    assert "NE1" not in str(detail).upper()

    # Without one (it is optional), the person has none.
    other_id, _ = enrol(container, world, cast)
    with container.unit() as unit:
        assert unit.directory.person(other_id).home_postcode_key is None

