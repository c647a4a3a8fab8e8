"""Staff found in an organisation's own directory, proposed for vetting.

An import never creates an account, and never even submits an application:
it proposes (state PROPOSED, no sponsor), and the organisation's sponsor
confirms each proposal, which submits it with them as sponsor. From there the
ordinary vetting path (checks, four eyes, enrolment) applies unchanged.

A proposal carries `source_ref = "ldap:<stable id>"`, unique per
organisation, so re-running an import proposes nobody twice; an entry whose
email already belongs to an open application or a person is skipped too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.errors import Conflict, NotAllowed
from directory.accreditation import reason_detail
from directory.ldap_import import FoundPerson, ImportSource, ReadStats, read_people
from directory.models import Person, Role
from directory.service import DirectoryService, Principal
from vetting.errors import UnknownApplication
from vetting.models import Application, ApplicationState
from vetting.service import _applicant_problems

SOURCE_PREFIX = "ldap:"


@dataclass
class ImportReport:
    organisation_code: str
    server: str
    pages: int = 0
    found: int = 0
    proposed: int = 0
    already_proposed: int = 0
    already_known: int = 0
    unusable: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "pages": self.pages,
            "found": self.found,
            "proposed": self.proposed,
            "already_proposed": self.already_proposed,
            "already_known": self.already_known,
            "unusable": len(self.unusable),
        }


class NotAProposal(Conflict):
    error_id = "vetting.not_a_proposal"
    title = "This application is not waiting for confirmation"


@dataclass
class StaffImport:
    session: Session
    clock: Clock
    audit: Auditor
    directory: DirectoryService

    def import_staff(self, organisation_code: str, source: ImportSource) -> ImportReport:
        """Read the whole directory first, then write: an unreachable server or
        a failure mid-read leaves nothing half imported."""
        org = self.directory.organisation_by_code(organisation_code)
        report = ImportReport(org.code, source.target.url)
        stats = ReadStats()
        people: list[FoundPerson] = list(read_people(source, stats))
        report.pages, report.found, report.unusable = stats.pages, stats.entries, stats.unusable
        known_refs = set(
            self.session.scalars(
                select(Application.source_ref).where(
                    Application.organisation_id == org.id, Application.source_ref.is_not(None)
                )
            )
        )
        open_emails = set(
            self.session.scalars(
                select(func.lower(Application.work_email)).where(
                    Application.organisation_id == org.id,
                    Application.state.in_([ApplicationState.PROPOSED, ApplicationState.SUBMITTED]),
                )
            )
        )
        now = self.clock.now()
        for found in people:
            ref = f"{SOURCE_PREFIX}{found.source_id}"
            if ref in known_refs:
                report.already_proposed += 1
                continue
            email = found.work_email.lower()
            if email in open_emails or self._person_with_email(email):
                report.already_known += 1
                continue
            problems, normalised = _applicant_problems(
                found.given_name, found.family_name, found.work_email
            )
            if problems:
                report.unusable.append(f"{found.dn}: {problems[0].message}")
                continue
            self.session.add(
                Application(
                    organisation_id=org.id,
                    sponsor_id=None,
                    founding=False,
                    role=Role.PRACTITIONER,
                    given_name=found.given_name[:100],
                    family_name=found.family_name[:100],
                    work_email=normalised,
                    work_phone=(found.work_phone or "")[:40] or None,
                    source_ref=ref,
                    state=ApplicationState.PROPOSED,
                    submitted_at=now,
                )
            )
            known_refs.add(ref)
            open_emails.add(email)
            report.proposed += 1
        self.audit.record(
            "directory:import_staff:completed",
            subject_type="organisation",
            subject_id=org.code,
            organisation_id=org.id,
            detail={"server": source.target.url, **report.counts()},
        )
        self.session.commit()
        return report

    def _person_with_email(self, email: str) -> bool:
        stmt = select(Person.id).where(func.lower(Person.work_email) == email).limit(1)
        return self.session.scalar(stmt) is not None

    def proposals(self, actor: Principal, organisation_code: str) -> list[Application]:
        org = self.directory.organisation_by_code(organisation_code)
        if not (actor.has_role(Role.ORGANISATION_ADMIN, org.id) or actor.is_platform_admin):
            raise NotAllowed()
        stmt = (
            select(Application)
            .where(
                Application.organisation_id == org.id,
                Application.state == ApplicationState.PROPOSED,
            )
            .order_by(Application.family_name, Application.given_name, Application.id)
        )
        return list(self.session.scalars(stmt))

    def confirm(
        self, actor: Principal, application_id: int, reason: str | None = None
    ) -> Application:
        """The sponsor vouches for a proposed colleague: it becomes a submitted
        application with them as sponsor. Only an organisation admin of that
        organisation may (a platform admin is no sponsor: they do not know the
        organisation's staff). One who is a platform admin as well owes the
        reason every platform admin's act carries (issue 5), as when sponsoring;
        it is checked before the proposal changes, and kept in the audit entry."""
        app = self.session.get(Application, application_id)
        if app is None or not (
            actor.has_role(Role.ORGANISATION_ADMIN, app.organisation_id) or actor.is_platform_admin
        ):
            raise UnknownApplication()
        if not actor.has_role(Role.ORGANISATION_ADMIN, app.organisation_id):
            raise NotAllowed("Only a sponsor of the organisation can confirm a proposal")
        if app.state is not ApplicationState.PROPOSED:
            raise NotAProposal()
        why = reason_detail(actor, reason)
        app.state = ApplicationState.SUBMITTED
        app.sponsor_id = actor.person_id
        app.submitted_at = self.clock.now()
        self.audit.record(
            "vetting:application:submitted",
            subject_type="application",
            subject_id=app.id,
            organisation_id=app.organisation_id,
            detail={"role": app.role.value, "source": app.source_ref, **why},
        )
        self.session.commit()
        return app
