"""Demo data: three organisations and someone in every role, so a newcomer can
try each journey at once. Loading twice reuses what exists.

Nobody here skips vetting. The first platform admin, vetting officers and
organisation admins are enrolled as a new deployment's operator would enrol
them (`VettingService.enrol_founding`, with every check recorded); everyone
else is sponsored, checked by one officer and cleared by the other. Each person
then activates with the code from their letter, like anyone else.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import timedelta

import pyotp
from sqlalchemy import select

from directory.errors import UnknownOrganisation
from directory.models import Organisation, OrganisationKind, Person, Role
from directory.service import Principal, principal_for
from idp.container import Unit
from tokens.models import OtpToken, TokenState
from vetting.models import Application, CertificateOutcome, Confidence, Decision, IdentityMethod
from vetting.service import Enrolment, FoundingEvidence

COUNCIL = "NORTHSHIRE-CC"
POLICE = "NORTHSHIRE-POLICE"
CHARITY = "SAFE-HARBOUR"
OPERATOR = "demo-loader"


@dataclass(frozen=True)
class DemoPerson:
    username: str
    given_name: str
    family_name: str
    organisation: str
    role: Role
    password: str
    pin: str
    # Founding people are enrolled by the operator; the rest are sponsored by this person.
    sponsor: str | None = None


DEMO_PEOPLE = [
    DemoPerson(
        "pat.platform",
        "Pat",
        "Platform",
        COUNCIL,
        Role.PLATFORM_ADMIN,
        "quiet harbour lantern 81",
        "402913",
    ),
    DemoPerson(
        "victor.officer",
        "Victor",
        "Officer",
        COUNCIL,
        Role.VETTING_OFFICER,
        "violet river compass 64",
        "624135",
    ),
    DemoPerson(
        "vera.officer",
        "Vera",
        "Officer",
        COUNCIL,
        Role.VETTING_OFFICER,
        "velvet mountain ladder 39",
        "735246",
    ),
    DemoPerson(
        "olivia.admin",
        "Olivia",
        "Admin",
        COUNCIL,
        Role.ORGANISATION_ADMIN,
        "orange kettle meadow 27",
        "513824",
    ),
    DemoPerson(
        "carla.charity",
        "Carla",
        "Charity",
        CHARITY,
        Role.ORGANISATION_ADMIN,
        "coral bicycle orchard 46",
        "279681",
    ),
    DemoPerson(
        "lara.team",
        "Lara",
        "Team",
        COUNCIL,
        Role.LOCAL_AUTHORITY_TEAM,
        "linen window thistle 52",
        "846357",
        sponsor="olivia.admin",
    ),
    DemoPerson(
        "priya.practitioner",
        "Priya",
        "Practitioner",
        COUNCIL,
        Role.PRACTITIONER,
        "pepper garden beacon 18",
        "957468",
        sponsor="olivia.admin",
    ),
    DemoPerson(
        "paul.constable",
        "Paul",
        "Constable",
        POLICE,
        Role.PRACTITIONER,
        "copper station bramble 73",
        "168579",
        sponsor="pat.platform",
    ),
    DemoPerson(
        "chris.charity",
        "Chris",
        "Charity",
        CHARITY,
        Role.PRACTITIONER,
        "cinder puzzle willow 95",
        "381792",
        sponsor="carla.charity",
    ),
]

ORGANISATIONS = [
    (COUNCIL, "Northshire County Council", OrganisationKind.LOCAL_AUTHORITY),
    (POLICE, "Northshire Police", OrganisationKind.POLICE_FORCE),
    (CHARITY, "Safe Harbour Children's Charity", OrganisationKind.NATIONAL_CHARITY),
]

CODE_LINE = re.compile(r"Activation code: (\S+)")


@dataclass(frozen=True)
class DemoCredentials:
    person: DemoPerson
    totp_secret: str

    def current_code(self) -> str:
        return pyotp.TOTP(self.totp_secret).now()


def _organisations(unit: Unit) -> dict[str, Organisation]:
    orgs: dict[str, Organisation] = {}
    council: Organisation | None = None
    for code, name, kind in ORGANISATIONS:
        try:
            org = unit.directory.organisation_by_code(code)
        except UnknownOrganisation:
            # The council is the registration authority for all three.
            org = unit.directory.create_organisation(
                code=code, name=name, kind=kind, accredited=True, registration_authority=council
            )
        orgs[code] = org
        if code == COUNCIL:
            council = org
    return orgs


def _evidence(unit: Unit, serial: int) -> FoundingEvidence:
    today = unit.clock.today()
    return FoundingEvidence(
        confidence=Confidence.MEDIUM,
        method=IdentityMethod.FACE_TO_FACE,
        identity_checked_on=today - timedelta(days=10),
        evidence_reference=f"DEMO-ID-{serial:04d}",
        certificate_number=f"{900000000000 + serial:012d}",
        certificate_issued_on=today - timedelta(days=30),
        certificate_outcome=CertificateOutcome.NOTHING_RECORDED,
        training_completed_on=today - timedelta(days=7),
        agreement_signed_on=today - timedelta(days=7),
    )


def _vet(unit: Unit, demo: DemoPerson, org: Organisation, serial: int) -> Enrolment:
    """Sponsor, record the checks as Victor, clear as Vera: the four-eyes path."""
    today = unit.clock.today()
    sponsor = unit.directory.person_by_username(demo.sponsor or "")
    victor = unit.directory.person_by_username("victor.officer")
    vera = unit.directory.person_by_username("vera.officer")
    assert sponsor and victor and vera, "the founding people come first"
    evidence = _evidence(unit, serial)
    v = unit.vetting
    app = v.sponsor(
        principal_for(sponsor, today),
        organisation_id=org.id,
        given_name=demo.given_name,
        family_name=demo.family_name,
        work_email=_email(demo),
        work_phone=None,
        role=demo.role,
        reason="demo data",  # owed when the sponsor is a platform admin (pat.platform)
    )
    recorder = principal_for(victor, today)
    _record_checks(unit, recorder, app.id, evidence)
    enrolled = v.decide(
        principal_for(vera, today),
        app.id,
        decision=Decision.CLEARED,
        reason="All checks satisfactory (demo data)",
    )
    assert enrolled is not None
    return enrolled


def _record_checks(
    unit: Unit, recorder: Principal, application_id: int, evidence: FoundingEvidence
) -> None:
    """The four checks an officer records, from one set of demo evidence."""
    v = unit.vetting
    v.record_identity_check(
        recorder,
        application_id,
        confidence=evidence.confidence,
        method=evidence.method,
        checked_on=evidence.identity_checked_on,
        evidence_reference=evidence.evidence_reference,
    )
    v.record_certificate(
        recorder,
        application_id,
        certificate_number=evidence.certificate_number,
        issued_on=evidence.certificate_issued_on,
        outcome=evidence.certificate_outcome,
    )
    v.record_training(recorder, application_id, completed_on=evidence.training_completed_on)
    v.record_agreement(recorder, application_id, signed_on=evidence.agreement_signed_on)


def _email(demo: DemoPerson) -> str:
    return f"{demo.username}@{demo.organisation.lower()}.example.org"


def _activate(unit: Unit, demo: DemoPerson, enrolled: Enrolment) -> None:
    """Activate with the letter's code, as the person would at /activate."""
    letter = unit.outbox.print_letter(enrolled.letter_id)
    match = CODE_LINE.search(letter)
    assert match, "an activation letter carries its code"
    unit.commit()
    activation = unit.activation
    flow = activation.start(enrolled.person.username, match.group(1), "demo-loader")
    activation.set_password(flow, demo.password, demo.password)
    pending = activation.pending_token(flow)
    # The previous step's code (inside the one-step drift window), so that the
    # current code is still unused when the newcomer first signs in. Not in a
    # step's last second: had the step changed before the code was checked,
    # the previous step's code would have been two steps old, and refused.
    period = unit.container.settings.totp.period_seconds
    into_step = unit.clock.now().timestamp() % period
    if into_step > period - 1:
        time.sleep(period - into_step + 0.01)
    earlier = int(unit.clock.now().timestamp()) - period
    activation.confirm_token(flow, pyotp.TOTP(pending.secret, interval=period).at(earlier))
    activation.set_pin(flow, demo.pin, demo.pin)


def load_demo(unit: Unit) -> list[DemoCredentials]:
    orgs = _organisations(unit)
    unit.commit()
    for serial, demo in enumerate(DEMO_PEOPLE, start=1):
        if unit.directory.person_by_username(demo.username) is not None:
            continue
        org = orgs[demo.organisation]
        if demo.sponsor is None:
            enrolled = unit.vetting.enrol_founding(
                OPERATOR,
                organisation_id=org.id,
                role=demo.role,
                given_name=demo.given_name,
                family_name=demo.family_name,
                work_email=_email(demo),
                work_phone=None,
                evidence=_evidence(unit, serial),
            )
        else:
            enrolled = _vet(unit, demo, org, serial)
        unit.commit()
        _activate(unit, demo, enrolled)
    _pending_application(unit)
    unit.commit()
    _demo_children(unit, orgs[COUNCIL])
    unit.commit()
    return [DemoCredentials(demo, _secret_of(unit, demo.username)) for demo in DEMO_PEOPLE]


def _secret_of(unit: Unit, username: str) -> str:
    person: Person | None = unit.directory.person_by_username(username)
    token = unit.session.scalar(
        select(OtpToken).where(
            OtpToken.person_id == (person.id if person else -1), OtpToken.state == TokenState.ACTIVE
        )
    )
    return unit.otp.secret_of(token) if token else ""


def _pending_application(unit: Unit) -> None:
    """One application with every check recorded by Victor, waiting for Vera."""
    if unit.session.scalar(select(Application).where(Application.family_name == "Newstarter")):
        return
    today = unit.clock.today()
    sponsor = unit.directory.person_by_username("olivia.admin")
    officer = unit.directory.person_by_username("victor.officer")
    assert sponsor is not None and officer is not None
    council = unit.directory.organisation_by_code(COUNCIL)
    evidence = _evidence(unit, 99)
    v = unit.vetting
    app = v.sponsor(
        principal_for(sponsor, today),
        organisation_id=council.id,
        given_name="Sam",
        family_name="Newstarter",
        work_email="sam.newstarter@northshire-cc.example.org",
        work_phone="01234 567890",
        role=Role.PRACTITIONER,
    )
    recorder = principal_for(officer, today)
    _record_checks(unit, recorder, app.id, evidence)


def _demo_children(unit: Unit, council: Organisation) -> None:
    """Forty synthetic children of the council (never real data), one shielded
    by Lara's team, so search, records and shielding can be tried at once."""
    from directory.children.models import Child
    from directory.children.synth import records
    from directory.service import Grant

    platform = Principal(0, OPERATOR, (Grant(0, Role.PLATFORM_ADMIN),))
    if unit.session.scalar(select(Child.id).limit(1)) is not None:
        return
    districts = [f"NE{n}" for n in range(1, 9)]
    unit.children.set_area(platform, council.id, districts)
    rows = records(40, la_codes=[council.code], districts=districts, today=unit.clock.today())
    unit.child_loader.load(platform, enumerate(rows, start=2), source_code=council.code,
                           file_label="demo")
    lara = unit.directory.person_by_username("lara.team")
    first = unit.session.scalar(select(Child).order_by(Child.id).limit(1))
    if lara is not None and first is not None:
        unit.children.decide_shield(principal_for(lara, unit.clock.today()), first.public_id,
                                    criteria="domestic_abuse",
                                    evidence_reference="DEMO-MARAC-1", shield=True)
