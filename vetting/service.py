"""Vetting: nobody gets an account without every check and a second pair of eyes.

The sponsor (an organisation admin) asks; a vetting officer of the
organisation's registration authority records the checks; a different officer,
who neither sponsored nor recorded any check, decides. Clearance enrols the
applicant: a person awaiting activation, a position, and a letter with a
one-time activation code. This is the only code path that creates a person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.errors import FieldProblem, InvalidInput, NotAllowed
from core.outbox import Outbox
from core.settings import Settings
from directory.accreditation import LAPSE_PREFIX, reason_detail
from directory.administration import Page, page_bounds
from directory.models import Organisation, Person, PersonStatus, Role
from directory.service import (
    DirectoryService,
    Principal,
    access_blockers,
    administered_clause,
    administers,
    home_organisation,
)
from directory.services import home_postcode_key, normalise_postcode
from tokens.activation import ActivationService
from tokens.sessions import SessionService
from vetting.errors import AlreadyDecided, CannotClear, ChecksIncomplete, UnknownApplication
from vetting.models import (
    CHECK_LEVEL,
    AgreementRecord,
    Application,
    ApplicationState,
    CertificateOutcome,
    Confidence,
    CriminalRecordCheck,
    Decision,
    IdentityCheck,
    IdentityMethod,
    TrainingRecord,
)

# [0-9], not \d: \d also matches other scripts' digits (full-width, Arabic-Indic...).
CERTIFICATE_NUMBER = re.compile(r"^[0-9]{12}$")


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February into a common year
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True)
class FoundingEvidence:
    """Everything an officer would record, given at once by an operator."""

    confidence: Confidence
    method: IdentityMethod
    identity_checked_on: date
    evidence_reference: str
    certificate_number: str
    certificate_issued_on: date
    certificate_outcome: CertificateOutcome
    training_completed_on: date
    agreement_signed_on: date


def _applicant_problems(
    given_name: str, family_name: str, work_email: str
) -> tuple[list[FieldProblem], str]:
    problems: list[FieldProblem] = []
    if not given_name.strip():
        problems.append(FieldProblem("given_name", "Enter the applicant's first name"))
    if not family_name.strip():
        problems.append(FieldProblem("family_name", "Enter the applicant's last name"))
    try:
        work_email = validate_email(work_email, check_deliverability=False).normalized
    except EmailNotValidError:
        problems.append(
            FieldProblem("work_email", "Enter a work email address in the correct format")
        )
    return problems, work_email


@dataclass(frozen=True)
class Enrolment:
    person: Person
    letter_id: int


@dataclass
class SweepReport:
    checked: int = 0
    suspended: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class VettingService:
    session: Session
    settings: Settings
    clock: Clock
    audit: Auditor
    directory: DirectoryService
    activation: ActivationService
    sessions: SessionService
    outbox: Outbox

    # -- who may act -----------------------------------------------------------

    def _officer_for(self, actor: Principal, organisation: Organisation) -> None:
        authority = organisation.registration_authority_id or organisation.id
        if not actor.has_role(Role.VETTING_OFFICER, authority):
            self.audit.record(
                "vetting:refused",
                "refused",
                organisation_id=organisation.id,
                detail={"reason": "not a vetting officer of the registration authority"},
            )
            # Kept although the request fails, as the other refusals here are.
            self.session.commit()
            raise NotAllowed()

    def application(self, application_id: int) -> Application:
        app = self.session.get(Application, application_id)
        if app is None:
            raise UnknownApplication()
        return app

    def _open(self, actor: Principal, application_id: int) -> Application:
        app = self.application(application_id)
        self._officer_for(actor, app.organisation)
        if app.state is not ApplicationState.SUBMITTED:
            raise AlreadyDecided()
        return app

    def may_see(self, actor: Principal, app: Application) -> bool:
        authority = app.organisation.registration_authority_id or app.organisation_id
        return (
            actor.is_platform_admin
            or administers(actor, app.organisation)
            or actor.has_role(Role.VETTING_OFFICER, authority)
        )

    def application_for(self, actor: Principal, application_id: int) -> Application:
        """An application as its sponsors and officers see it; to anyone else it
        does not exist, so its number reveals nothing."""
        app = self.session.get(Application, application_id)
        if app is None or not self.may_see(actor, app):
            raise UnknownApplication()
        return app

    def is_officer_for(self, actor: Principal, app: Application) -> bool:
        return self._is_officer_for_org(actor, app.organisation)

    def visible_applications(self, actor: Principal) -> list[Application]:
        """Sponsors see those of organisations they administer; officers those of
        organisations they vet; platform admins all."""
        officer_orgs = actor.organisations_with(Role.VETTING_OFFICER)
        stmt = select(Application).join(Application.organisation).order_by(Application.id.desc())
        sponsoring = administered_clause(actor)
        if sponsoring is not None:
            stmt = stmt.where(
                sponsoring | Organisation.registration_authority_id.in_(officer_orgs)
            )
        return list(self.session.scalars(stmt))

    def sponsoring_organisations(self, actor: Principal) -> list[Organisation]:
        """The organisations the actor may sponsor in, for the form to choose from."""
        return self.directory.administered_organisations(actor)

    def applications_of(
        self,
        actor: Principal,
        organisation_id: int,
        *,
        state: ApplicationState | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> Page[Application]:
        """An organisation's applications, newest first, for whoever administers
        it; refused alike whether the organisation exists or not."""
        page, per_page = page_bounds(page, per_page)
        org = self.session.get(Organisation, organisation_id)
        if org is None or not administers(actor, org):
            self.audit.record(
                "vetting:applications:refused",
                "refused",
                subject_type="organisation",
                subject_id=organisation_id,
                actor_id=actor.person_id or None,
                actor_label=actor.username,
                detail={"reason": "not an administrator of the organisation"},
            )
            self.session.commit()
            raise NotAllowed()
        where = [Application.organisation_id == org.id]
        if state is not None:
            where.append(Application.state == state)
        total = int(
            self.session.scalar(select(func.count()).select_from(Application).where(*where)) or 0
        )
        items = list(
            self.session.scalars(
                select(Application)
                .where(*where)
                .order_by(Application.id.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        )
        return Page(items, total, page, per_page)

    # -- sponsor -------------------------------------------------------------

    def sponsor(
        self,
        actor: Principal,
        *,
        organisation_id: int,
        given_name: str,
        family_name: str,
        work_email: str,
        work_phone: str | None,
        role: Role,
        reason: str | None = None,
    ) -> Application:
        """`reason` is owed by a platform admin, who may sponsor anywhere (issue 5);
        an organisation's own admins may give one. Checked with the other fields,
        so a form shows every problem at once and nothing is stored."""
        organisation = self.session.get(Organisation, organisation_id)
        # Refused alike whether the organisation exists or not: ids reveal nothing.
        if organisation is None or not administers(actor, organisation):
            self.audit.record(
                "vetting:application:refused",
                "refused",
                subject_type="organisation",
                subject_id=organisation_id,
                organisation_id=organisation.id if organisation else None,
                detail={"reason": "sponsor is not an admin of the organisation"},
            )
            self.session.commit()
            raise NotAllowed("You can only sponsor applications for organisations you administer")
        problems, work_email = _applicant_problems(given_name, family_name, work_email)
        if role is Role.PLATFORM_ADMIN and not actor.is_platform_admin:
            problems.append(
                FieldProblem("role", "Only a platform admin can sponsor a platform admin")
            )
        why: dict[str, str] = {}
        try:
            why = reason_detail(actor, reason)
        except InvalidInput as missing:
            problems += missing.problems
        if problems:
            raise InvalidInput(problems)
        app = Application(
            organisation_id=organisation.id,
            sponsor_id=actor.person_id or None,  # None: an application's own token
            founding=False,
            role=role,
            given_name=given_name.strip(),
            family_name=family_name.strip(),
            work_email=work_email,
            work_phone=(work_phone or "").strip() or None,
            state=ApplicationState.SUBMITTED,
            submitted_at=self.clock.now(),
        )
        self.session.add(app)
        self.session.flush()
        self.audit.record(
            "vetting:application:submitted",
            subject_type="application",
            subject_id=app.id,
            organisation_id=organisation.id,
            detail={"role": role.value, **why},
        )
        return app

    def enrol_founding(
        self,
        operator_label: str,
        *,
        organisation_id: int,
        role: Role,
        given_name: str,
        family_name: str,
        work_email: str,
        work_phone: str | None,
        evidence: FoundingEvidence,
    ) -> Enrolment:
        """Enrol someone before anyone exists to sponsor or vet them.

        A new deployment needs its first platform admin, vetting officers and
        organisation admins. An operator on the server (who could reach the
        database anyway) records the same evidence an officer would, and the
        same clearance rules apply: no check, no account, even here.
        """
        organisation = self.directory.organisation(organisation_id)
        problems, work_email = _applicant_problems(given_name, family_name, work_email)
        problems += self._certificate_problems(
            evidence.certificate_number.replace(" ", ""), evidence.certificate_issued_on
        )
        today = self.clock.today()
        for name, day in (
            ("identity_checked_on", evidence.identity_checked_on),
            ("training_completed_on", evidence.training_completed_on),
            ("agreement_signed_on", evidence.agreement_signed_on),
        ):
            if day > today:
                problems.append(FieldProblem(name, "The date must be today or in the past"))
        if not evidence.evidence_reference.strip():
            problems.append(FieldProblem("evidence_reference", "Enter the evidence reference"))
        if problems:
            raise InvalidInput(problems)
        now = self.clock.now()
        app = Application(
            organisation_id=organisation.id, sponsor_id=None, founding=True, role=role,
            given_name=given_name.strip(), family_name=family_name.strip(), work_email=work_email,
            work_phone=(work_phone or "").strip() or None, state=ApplicationState.SUBMITTED,
            submitted_at=now,
        )
        self.session.add(app)
        self.session.flush()
        self.session.add_all([
            IdentityCheck(
                application_id=app.id, confidence=evidence.confidence, method=evidence.method,
                checked_on=evidence.identity_checked_on,
                evidence_reference=evidence.evidence_reference.strip(), recorded_at=now,
            ),
            CriminalRecordCheck(
                application_id=app.id,
                certificate_number=evidence.certificate_number.replace(" ", ""),
                level=CHECK_LEVEL, issued_on=evidence.certificate_issued_on,
                outcome=evidence.certificate_outcome, recorded_at=now,
            ),
            TrainingRecord(application_id=app.id, completed_on=evidence.training_completed_on,
                           recorded_at=now),
            AgreementRecord(application_id=app.id, signed_on=evidence.agreement_signed_on,
                            recorded_at=now),
        ])
        self.session.flush()
        self.session.refresh(app)
        clearance_until, training_until = self._clearable(app)
        app.state = ApplicationState.CLEARED
        app.decision = Decision.CLEARED
        app.decision_reason = f"founding enrolment by {operator_label}"
        app.decided_at = now
        self.audit.record(
            "vetting:founding:cleared", subject_type="application", subject_id=app.id,
            organisation_id=organisation.id,
            detail={"operator": operator_label, "role": role.value,
                    "clearance_until": clearance_until.isoformat()},
        )
        return self._enrol(app, clearance_until, training_until)

    # -- checks ---------------------------------------------------------------

    def record_identity_check(
        self,
        actor: Principal,
        application_id: int,
        *,
        confidence: Confidence,
        method: IdentityMethod,
        checked_on: date,
        evidence_reference: str,
        home_postcode: str = "",
    ) -> IdentityCheck:
        """`home_postcode`, as seen on the evidence, is kept only as a keyed
        digest: the children's directory compares it with the records the
        person opens, to alert on a look at their own address."""
        app = self._open(actor, application_id)
        problems = []
        postcode = normalise_postcode(home_postcode) if home_postcode.strip() else None
        if home_postcode.strip() and postcode is None:
            problems.append(
                FieldProblem("home_postcode", "Enter a real UK postcode, like NE1 4AB")
            )
        if checked_on > self.clock.today():
            problems.append(
                FieldProblem("checked_on", "The date of the check must be today or in the past")
            )
        if not evidence_reference.strip():
            problems.append(
                FieldProblem("evidence_reference", "Enter the reference of the evidence seen")
            )
        if problems:
            raise InvalidInput(problems)
        if app.identity_check is not None:
            self.session.delete(app.identity_check)
            self.session.flush()
        check = IdentityCheck(
            application_id=app.id,
            confidence=confidence,
            method=method,
            checked_on=checked_on,
            evidence_reference=evidence_reference.strip(),
            home_postcode_key=(home_postcode_key(self.activation.digester, postcode[0])
                               if postcode else None),
            recorded_by_id=actor.person_id,
            recorded_at=self.clock.now(),
        )
        self.session.add(check)
        self.session.flush()
        self.session.refresh(app)
        self.audit.record(
            "vetting:identity_check:recorded",
            subject_type="application",
            subject_id=app.id,
            organisation_id=app.organisation_id,
            detail={"confidence": confidence.value, "method": method.value,
                    "home_postcode_recorded": postcode is not None},
        )
        return check

    def _certificate_problems(self, number: str, issued_on: date) -> list[FieldProblem]:
        problems = []
        if not CERTIFICATE_NUMBER.match(number):
            problems.append(
                FieldProblem("certificate_number", "The certificate number must be 12 digits")
            )
        if issued_on > self.clock.today():
            problems.append(
                FieldProblem("issued_on", "The issue date must be today or in the past")
            )
        elif add_years(issued_on, self.settings.vetting.clearance_years) < self.clock.today():
            problems.append(
                FieldProblem("issued_on", "This certificate is too old to give clearance")
            )
        return problems

    def record_certificate(
        self,
        actor: Principal,
        application_id: int,
        *,
        certificate_number: str,
        issued_on: date,
        outcome: CertificateOutcome,
    ) -> CriminalRecordCheck:
        app = self._open(actor, application_id)
        number = certificate_number.replace(" ", "")
        problems = self._certificate_problems(number, issued_on)
        if problems:
            raise InvalidInput(problems)
        if app.certificate is not None:
            self.session.delete(app.certificate)
            self.session.flush()
        check = CriminalRecordCheck(
            application_id=app.id,
            certificate_number=number,
            level=CHECK_LEVEL,
            issued_on=issued_on,
            outcome=outcome,
            recorded_by_id=actor.person_id,
            recorded_at=self.clock.now(),
        )
        self.session.add(check)
        self.session.flush()
        self.session.refresh(app)
        self.audit.record(
            "vetting:certificate:recorded",
            subject_type="application",
            subject_id=app.id,
            organisation_id=app.organisation_id,
            detail={"issued_on": issued_on.isoformat(), "outcome": outcome.value},
        )
        return check

    def record_training(self, actor: Principal, application_id: int, *, completed_on: date) -> None:
        app = self._open(actor, application_id)
        if completed_on > self.clock.today():
            raise InvalidInput(
                FieldProblem("completed_on", "The date must be today or in the past")
            )
        if app.training is not None:
            self.session.delete(app.training)
            self.session.flush()
        self.session.add(
            TrainingRecord(
                application_id=app.id,
                completed_on=completed_on,
                recorded_by_id=actor.person_id,
                recorded_at=self.clock.now(),
            )
        )
        self.session.flush()
        self.session.refresh(app)
        self.audit.record(
            "vetting:training:recorded",
            subject_type="application",
            subject_id=app.id,
            organisation_id=app.organisation_id,
        )

    def record_agreement(self, actor: Principal, application_id: int, *, signed_on: date) -> None:
        app = self._open(actor, application_id)
        if signed_on > self.clock.today():
            raise InvalidInput(FieldProblem("signed_on", "The date must be today or in the past"))
        if app.agreement is not None:
            self.session.delete(app.agreement)
            self.session.flush()
        self.session.add(
            AgreementRecord(
                application_id=app.id,
                signed_on=signed_on,
                recorded_by_id=actor.person_id,
                recorded_at=self.clock.now(),
            )
        )
        self.session.flush()
        self.session.refresh(app)
        self.audit.record(
            "vetting:agreement:recorded",
            subject_type="application",
            subject_id=app.id,
            organisation_id=app.organisation_id,
        )

    # -- decision and enrolment -------------------------------------------------

    def decide(
        self, actor: Principal, application_id: int, *, decision: Decision, reason: str
    ) -> Enrolment | None:
        app = self._open(actor, application_id)
        if actor.person_id == app.sponsor_id or actor.person_id in app.recorders():
            self.audit.record(
                "vetting:decision:refused",
                "refused",
                subject_type="application",
                subject_id=app.id,
                organisation_id=app.organisation_id,
                detail={"reason": "four eyes"},
            )
            self.session.commit()
            raise NotAllowed(
                "A decision must be made by an officer who neither sponsored the application "
                "nor recorded any of its checks"
            )
        if not reason.strip():
            raise InvalidInput(FieldProblem("reason", "Give the reason for the decision"))
        now = self.clock.now()
        if decision is Decision.REFUSED:
            app.state = ApplicationState.REFUSED
            app.decision, app.decision_reason = decision, reason.strip()
            app.decided_by_id, app.decided_at = actor.person_id, now
            self.audit.record(
                "vetting:decision:refused_clearance",
                subject_type="application",
                subject_id=app.id,
                organisation_id=app.organisation_id,
                detail={"reason": reason.strip()},
            )
            return None
        clearance_until, training_until = self._clearable(app)
        app.state = ApplicationState.CLEARED
        app.decision, app.decision_reason = decision, reason.strip()
        app.decided_by_id, app.decided_at = actor.person_id, now
        self.audit.record(
            "vetting:decision:cleared",
            subject_type="application",
            subject_id=app.id,
            organisation_id=app.organisation_id,
            detail={"clearance_until": clearance_until.isoformat()},
        )
        return self._enrol(app, clearance_until, training_until)

    def _clearable(self, app: Application) -> tuple[date, date]:
        if not (app.identity_check and app.certificate and app.training and app.agreement):
            missing = [
                name
                for name, rec in (
                    ("identity check", app.identity_check),
                    ("criminal-record check", app.certificate),
                    ("training", app.training),
                    ("user agreement", app.agreement),
                )
                if rec is None
            ]
            raise ChecksIncomplete(f"Still to record: {', '.join(missing)}")
        minimum = Confidence(self.settings.vetting.minimum_identity_confidence)
        if app.identity_check.confidence.rank < minimum.rank:
            raise CannotClear(f"The identity check must reach at least {minimum.value} confidence")
        if app.certificate.outcome is CertificateOutcome.BARRED:
            raise CannotClear("A person on the children's barred list cannot be cleared")
        if app.organisation.accreditation.value != "accredited":
            raise CannotClear("The organisation is not accredited")
        clearance_until = add_years(
            app.certificate.issued_on, self.settings.vetting.clearance_years
        )
        training_until = add_years(
            app.training.completed_on, self.settings.vetting.training_valid_years
        )
        if clearance_until < self.clock.today() or training_until < self.clock.today():
            raise CannotClear("The certificate or the training has already lapsed")
        return clearance_until, training_until

    def _enrol(self, app: Application, clearance_until: date, training_until: date) -> Enrolment:
        person = self.directory.create_person(
            given_name=app.given_name,
            family_name=app.family_name,
            work_email=app.work_email,
            work_phone=app.work_phone,
            clearance_expires_on=clearance_until,
            training_expires_on=training_until,
        )
        self.directory.add_position(person, app.organisation, app.role, self.clock.today())
        if app.identity_check is not None:
            person.home_postcode_key = app.identity_check.home_postcode_key
        app.person_id = person.id
        if app.certificate is not None:
            app.certificate.person_id = person.id
        code = self.activation.issue_code(person)
        expires = self.clock.today() + timedelta(days=self.settings.vetting.activation_code_days)
        letter = self.outbox.post(
            kind="activation",
            recipient_name=person.display_name,
            person_id=person.id,
            organisation_id=app.organisation_id,
            body=(
                f"Dear {person.display_name},\n\n"
                f"Your {self.settings.service.name} account is ready to activate.\n\n"
                f"Username: {person.username}\n"
                f"Activation code: {code}\n\n"
                f"Go to {self.settings.service.base_url}/activate and enter both. "
                f"The code works once and expires on {expires.isoformat()}.\n"
                "You will choose a password, set up a token and choose a PIN.\n"
                "Nobody from the service will ever ask you for this code.\n"
            ),
        )
        self.audit.record(
            "vetting:enrolled",
            subject_type="person",
            subject_id=person.id,
            organisation_id=app.organisation_id,
            detail={"application": app.id, "username": person.username, "letter": letter.id},
        )
        return Enrolment(person, letter.id)

    # -- renewal and lapse ------------------------------------------------------

    def person_to_renew(self, actor: Principal, username: str) -> Person:
        """A person this officer may record a certificate for; to anyone else,
        nobody of that name exists."""
        person = self.directory.person_by_username(username)
        today = self.clock.today()
        if person is None or not any(
            self._is_officer_for_org(actor, p.organisation)
            for p in person.positions
            if p.current_on(today)
        ):
            raise InvalidInput(
                FieldProblem("username", "There is nobody with that username whom you vet")
            )
        return person

    def renew_certificate(
        self,
        actor: Principal,
        person_id: int,
        *,
        certificate_number: str,
        issued_on: date,
        outcome: CertificateOutcome,
    ) -> Person:
        """A new certificate extends clearance, and lifts a suspension for lapse
        if nothing else is wrong."""
        person = self.directory.person(person_id)
        today = self.clock.today()
        if not any(
            self._is_officer_for_org(actor, p.organisation)
            for p in person.positions
            if p.current_on(today)
        ):
            raise NotAllowed()
        number = certificate_number.replace(" ", "")
        problems = self._certificate_problems(number, issued_on)
        if problems:
            raise InvalidInput(problems)
        self.session.add(
            CriminalRecordCheck(
                person_id=person.id,
                certificate_number=number,
                level=CHECK_LEVEL,
                issued_on=issued_on,
                outcome=outcome,
                recorded_by_id=actor.person_id,
                recorded_at=self.clock.now(),
            )
        )
        if outcome is CertificateOutcome.BARRED:
            self.directory.set_status(
                person,
                PersonStatus.SUSPENDED,
                "barred from working with children",
                tag="vetting:suspended",
            )
            return person
        person.clearance_expires_on = add_years(issued_on, self.settings.vetting.clearance_years)
        self.audit.record(
            "vetting:clearance:renewed",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            detail={"clearance_until": person.clearance_expires_on.isoformat()},
        )
        if (
            person.status is PersonStatus.SUSPENDED
            and person.status_reason.startswith(LAPSE_PREFIX)
            and not access_blockers(person, self.clock.today(), ignore_status=True)
        ):
            self.directory.set_status(
                person, PersonStatus.ACTIVE, "clearance renewed", tag="vetting:reinstated"
            )
        return person

    def _is_officer_for_org(self, actor: Principal, organisation: Organisation) -> bool:
        return actor.has_role(
            Role.VETTING_OFFICER, organisation.registration_authority_id or organisation.id
        )

    def sweep(self) -> SweepReport:
        """Suspend everyone active whose clearance, training, position or
        organisation has lapsed, ending their sessions at once."""
        today = self.clock.today()
        report = SweepReport()
        for person in self.directory.people_needing_sweep():
            report.checked += 1
            blockers = access_blockers(person, today)
            if not blockers:
                continue
            reason = LAPSE_PREFIX + ", ".join(blockers)
            self.directory.set_status(
                person, PersonStatus.SUSPENDED, reason, tag="vetting:sweep:suspended"
            )
            self.sessions.end_all_for(person, "suspended by sweep")
            report.suspended.append((person.username, reason))
        self.audit.record(
            "vetting:sweep:completed",
            detail={"checked": report.checked, "suspended": len(report.suspended)},
        )
        return report
