"""Demo data: three organisations and someone in every role, so a newcomer can
try each journey at once. Loading twice reuses what exists.

The people are seeded directly (someone must exist before anyone can sponsor
or vet); everyone after them comes through vetting like anyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pyotp
from sqlalchemy import select

from directory.errors import UnknownOrganisation
from directory.models import OrganisationKind, PersonStatus, Role
from directory.service import principal_for
from idp.container import Unit
from tokens.models import OtpToken, PasswordCredential, PinCredential, TokenState
from vetting.models import CertificateOutcome, Confidence, IdentityMethod

COUNCIL = "NORTHSHIRE-CC"


@dataclass(frozen=True)
class DemoPerson:
    username: str
    given_name: str
    family_name: str
    organisation: str
    role: Role
    password: str
    pin: str


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
        "olivia.admin",
        "Olivia",
        "Admin",
        COUNCIL,
        Role.ORGANISATION_ADMIN,
        "orange kettle meadow 27",
        "513824",
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
        "lara.team",
        "Lara",
        "Team",
        COUNCIL,
        Role.LOCAL_AUTHORITY_TEAM,
        "linen window thistle 52",
        "846357",
    ),
    DemoPerson(
        "priya.practitioner",
        "Priya",
        "Practitioner",
        COUNCIL,
        Role.PRACTITIONER,
        "pepper garden beacon 18",
        "957468",
    ),
    DemoPerson(
        "paul.constable",
        "Paul",
        "Constable",
        "NORTHSHIRE-POLICE",
        Role.PRACTITIONER,
        "copper station bramble 73",
        "168579",
    ),
    DemoPerson(
        "carla.charity",
        "Carla",
        "Charity",
        "SAFE-HARBOUR",
        Role.ORGANISATION_ADMIN,
        "coral bicycle orchard 46",
        "279681",
    ),
    DemoPerson(
        "chris.charity",
        "Chris",
        "Charity",
        "SAFE-HARBOUR",
        Role.PRACTITIONER,
        "cinder puzzle willow 95",
        "381792",
    ),
]

ORGANISATIONS = [
    (COUNCIL, "Northshire County Council", OrganisationKind.LOCAL_AUTHORITY),
    ("NORTHSHIRE-POLICE", "Northshire Police", OrganisationKind.POLICE_FORCE),
    ("SAFE-HARBOUR", "Safe Harbour Children's Charity", OrganisationKind.NATIONAL_CHARITY),
]


@dataclass(frozen=True)
class DemoCredentials:
    person: DemoPerson
    totp_secret: str

    def current_code(self) -> str:
        return pyotp.TOTP(self.totp_secret).now()


def load_demo(unit: Unit) -> list[DemoCredentials]:
    directory = unit.directory
    today = unit.clock.today()
    orgs = {}
    council = None
    for code, name, kind in ORGANISATIONS:
        try:
            org = directory.organisation_by_code(code)
        except UnknownOrganisation:
            org = directory.create_organisation(
                code=code, name=name, kind=kind, accredited=True, registration_authority=council
            )
        orgs[code] = org
        if code == COUNCIL:
            council = org
    credentials = []
    for demo in DEMO_PEOPLE:
        person = directory.person_by_username(demo.username)
        if person is None:
            person = directory.create_person(
                username=demo.username,
                given_name=demo.given_name,
                family_name=demo.family_name,
                work_email=f"{demo.username}@{demo.organisation.lower()}.example.org",
                work_phone=None,
                clearance_expires_on=today + timedelta(days=3 * 365 - 30),
                training_expires_on=today + timedelta(days=3 * 365 - 30),
            )
            directory.add_position(
                person, orgs[demo.organisation], demo.role, today - timedelta(days=60)
            )
            person.status = PersonStatus.ACTIVE
            person.status_reason = "demo data"
            hasher = unit.container.hasher
            now = unit.clock.now()
            unit.session.add(
                PasswordCredential(person_id=person.id, hash=hasher.hash(demo.password), set_at=now)
            )
            unit.session.add(
                PinCredential(person_id=person.id, hash=hasher.hash(demo.pin), set_at=now)
            )
            token, _secret = unit.otp.new_soft_token(person.id, orgs[demo.organisation].id)
            token.state = TokenState.ACTIVE
            token.activated_at = now
            unit.audit.record("demo:person:seeded", subject_type="person", subject_id=person.id)
        token_row = unit.session.scalar(
            select(OtpToken).where(
                OtpToken.person_id == person.id, OtpToken.state == TokenState.ACTIVE
            )
        )
        secret = unit.otp.secret_of(token_row) if token_row else ""
        credentials.append(DemoCredentials(demo, secret))
    unit.commit()
    _pending_application(unit, today)
    unit.commit()
    return credentials


def _pending_application(unit: Unit, today: date) -> None:
    """One application with every check recorded, waiting for a second officer."""
    from vetting.models import Application

    if unit.session.scalar(select(Application).where(Application.family_name == "Newstarter")):
        return
    sponsor = unit.directory.person_by_username("olivia.admin")
    officer = unit.directory.person_by_username("victor.officer")
    assert sponsor is not None and officer is not None
    council = unit.directory.organisation_by_code(COUNCIL)
    sponsor_p, officer_p = principal_for(sponsor, today), principal_for(officer, today)
    vetting = unit.vetting
    app = vetting.sponsor(
        sponsor_p,
        organisation_id=council.id,
        given_name="Sam",
        family_name="Newstarter",
        work_email="sam.newstarter@northshire-cc.example.org",
        work_phone="01234 567890",
        role=Role.PRACTITIONER,
    )
    vetting.record_identity_check(
        officer_p,
        app.id,
        confidence=Confidence.MEDIUM,
        method=IdentityMethod.FACE_TO_FACE,
        checked_on=today - timedelta(days=3),
        evidence_reference="NCC-ID-2026-0042",
    )
    vetting.record_certificate(
        officer_p,
        app.id,
        certificate_number="001234567890",
        issued_on=today - timedelta(days=20),
        outcome=CertificateOutcome.NOTHING_RECORDED,
    )
    vetting.record_training(officer_p, app.id, completed_on=today - timedelta(days=2))
    vetting.record_agreement(officer_p, app.id, signed_on=today - timedelta(days=2))
