"""Importing an organisation's staff from its own LDAP into proposals, against
a real slapd: paging, no duplicates on re-import, the sponsor's confirmation,
and the clear error (with nothing changed) for wrong credentials or no server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from core.audit import AuditEntry
from core.errors import InvalidInput, NotAllowed
from directory.ldap_connect import DirectoryUnavailable, LdapTarget
from directory.ldap_import import ImportSource
from directory.models import Organisation, OrganisationKind, Role
from idp.container import Container, Unit
from tests import ldap_server
from tests.factories import World
from tests.ldap_server import LdapServer, free_port
from vetting.errors import UnknownApplication
from vetting.models import Application, ApplicationState
from vetting.staff_import import NotAProposal, StaffImport

slapd = ldap_server.slapd
ldap_base = ldap_server.ldap_base


def fill(server: LdapServer, base: str, count: int) -> str:
    """`count` staff under ou=staff,BASE, plus one without an email."""
    staff = f"ou=staff,{base}"
    conn = server.connect()
    try:
        assert conn.add(staff, ["organizationalUnit"], {"ou": "staff"})
        for i in range(count):
            assert conn.add(
                f"uid=staff{i},{staff}",
                ["inetOrgPerson"],
                {
                    "cn": f"Jo Staff{i}",
                    "givenName": "Jo",
                    "sn": f"Staff{i}",
                    "mail": f"Jo.Staff{i}@council.example",
                    "telephoneNumber": "0191 111 1111",
                    "userPassword": "never-read",
                },
            )
        assert conn.add(f"uid=nomail,{staff}", ["inetOrgPerson"], {"cn": "No Mail", "sn": "Mail"})
    finally:
        conn.unbind()
    return staff


def source(server: LdapServer, base: str, **target: object) -> ImportSource:
    values: dict[str, object] = {
        "url": server.url,
        "bind_dn": server.root_dn,
        "password": server.root_password,
        "base_dn": base,
        "timeout_seconds": 3,
    }
    values.update(target)
    return ImportSource(target=LdapTarget(**values), page_size=10)  # type: ignore[arg-type]


_OPEN_UNITS: list[Unit] = []


@pytest.fixture(autouse=True)
def _close_units() -> Iterator[None]:
    yield
    while _OPEN_UNITS:
        _OPEN_UNITS.pop().close()


def importer(container: Container) -> StaffImport:
    unit = container.unit()
    _OPEN_UNITS.append(unit)
    return StaffImport(unit.session, unit.clock, unit.audit, unit.directory)


def count_applications(container: Container) -> int:
    with container.unit() as unit:
        return int(unit.session.scalar(select(func.count()).select_from(Application)) or 0)


def proposal(world: World, org: Organisation, given_name: str = "Dana") -> int:
    """A colleague found in the organisation's own directory, as import-staff leaves it."""
    proposed = Application(
        organisation_id=org.id,
        sponsor_id=None,
        founding=False,
        role=Role.PRACTITIONER,
        given_name=given_name,
        family_name="Directory",
        work_email=f"{given_name.lower()}.directory@example.org",
        state=ApplicationState.PROPOSED,
        submitted_at=world.container.clock.now(),
        source_ref=f"ldap:{given_name.lower()}-0f3c7a2e",
    )
    world.unit.session.add(proposed)
    world.unit.commit()
    return proposed.id


@pytest.fixture
def org(world: World) -> Organisation:
    return world.organisation("Southshire Council")


def test_import_pages_through_the_directory_and_proposes_each_person(
    container: Container, world: World, org: Organisation, slapd: LdapServer, ldap_base: str
) -> None:
    staff = fill(slapd, ldap_base, 25)
    report = importer(container).import_staff(org.code, source(slapd, staff))
    assert report.pages == 3  # 26 entries, 10 a page
    assert report.found == 26
    assert report.proposed == 25
    assert len(report.unusable) == 1 and "nomail" in report.unusable[0]
    with container.unit() as unit:
        apps = list(unit.session.scalars(select(Application)))
        assert {a.state for a in apps} == {ApplicationState.PROPOSED}
        assert all(a.sponsor_id is None and a.person_id is None for a in apps)
        assert all(a.source_ref and a.source_ref.startswith("ldap:") for a in apps)
        assert apps[0].work_email.endswith("@council.example")
        entry = unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == "directory:import_staff:completed")
        ).one()
        assert entry.detail["proposed"] == 25


def test_reimport_does_not_duplicate(
    container: Container, world: World, org: Organisation, slapd: LdapServer, ldap_base: str
) -> None:
    staff = fill(slapd, ldap_base, 12)
    importer(container).import_staff(org.code, source(slapd, staff))
    again = importer(container).import_staff(org.code, source(slapd, staff))
    assert again.proposed == 0
    assert again.already_proposed == 12
    assert count_applications(container) == 12


def test_sponsor_confirms_a_proposal(
    container: Container, world: World, org: Organisation, slapd: LdapServer, ldap_base: str
) -> None:
    staff = fill(slapd, ldap_base, 2)
    importer(container).import_staff(org.code, source(slapd, staff))
    sponsor = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    elsewhere = world.organisation("Elsewhere")
    outsider = world.principal(world.member(elsewhere, Role.ORGANISATION_ADMIN))
    practitioner = world.principal(world.member(org))
    service = importer(container)
    proposed = service.proposals(sponsor, org.code)
    assert len(proposed) == 2
    with pytest.raises(NotAllowed):
        service.proposals(outsider, org.code)
    for stranger in (outsider, practitioner):
        with pytest.raises(UnknownApplication):
            service.confirm(stranger, proposed[0].id)
    app = service.confirm(sponsor, proposed[0].id)
    assert app.state is ApplicationState.SUBMITTED
    assert app.sponsor_id == sponsor.person_id
    with pytest.raises(NotAProposal):
        service.confirm(sponsor, proposed[0].id)
    assert len(importer(container).proposals(sponsor, org.code)) == 1


def confirmed(container: Container) -> list[dict[str, str]]:
    """The audit detail of each proposal confirmed (submitted), oldest first."""
    with container.unit() as unit:
        return [e.detail or {} for e in unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == "vetting:application:submitted")
            .order_by(AuditEntry.seq))]


def left_as_proposed(container: Container, application_id: int) -> bool:
    with container.unit() as unit:
        app = unit.session.get(Application, application_id)
        assert app is not None
        return app.state is ApplicationState.PROPOSED and app.sponsor_id is None


@pytest.mark.parametrize("reason", [None, "", "   ", "\t\n "])
def test_a_platform_admin_must_say_why_they_confirm_a_proposal(
    container: Container, world: World, org: Organisation, reason: str | None
) -> None:
    """Issue 5: every act of a platform admin carries their reason. One confirms
    only as the organisation's admin too (a platform admin alone is no sponsor),
    and owes the reason as when sponsoring."""
    pat = world.member(world.organisation("Platform", OrganisationKind.NATIONAL_CHARITY),
                       Role.PLATFORM_ADMIN, given_name="Pat")
    world.add_position(pat, org, Role.ORGANISATION_ADMIN)
    app_id = proposal(world, org)
    service = importer(container)
    with pytest.raises(InvalidInput) as error:
        service.confirm(world.principal(pat), app_id, reason)
    assert [p.field for p in error.value.problems] == ["reason"]
    assert left_as_proposed(container, app_id) and confirmed(container) == []
    app = service.confirm(world.principal(pat), app_id, "  the council's  request 42 ")
    assert app.state is ApplicationState.SUBMITTED and app.sponsor_id == pat.person.id
    assert confirmed(container) == [{"role": "practitioner", "source": "ldap:dana-0f3c7a2e",
                                      "reason": "the council's request 42"}]


def test_a_platform_admin_alone_confirms_nothing_even_with_a_reason(
    container: Container, world: World, org: Organisation
) -> None:
    pat = world.member(world.organisation("Platform", OrganisationKind.NATIONAL_CHARITY),
                       Role.PLATFORM_ADMIN, given_name="Pat")
    app_id = proposal(world, org)
    with pytest.raises(NotAllowed):
        importer(container).confirm(world.principal(pat), app_id, "the council asked")
    assert left_as_proposed(container, app_id) and confirmed(container) == []


def test_an_organisation_admin_confirms_with_or_without_a_reason(
    container: Container, world: World, org: Organisation
) -> None:
    admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    plain, blank, given, too_long = (proposal(world, org, name)
                                     for name in ("Dana", "Eli", "Fay", "Gus"))
    service = importer(container)
    service.confirm(admin, plain)
    service.confirm(admin, blank, "   ")  # blank: none given
    service.confirm(admin, given, " starts in May ")
    # What an admin does give is checked as a platform admin's is.
    with pytest.raises(InvalidInput) as error:
        service.confirm(admin, too_long, "x" * 301)
    assert [p.field for p in error.value.problems] == ["reason"]
    assert left_as_proposed(container, too_long)
    assert [(d["source"], d.get("reason")) for d in confirmed(container)] == [
        ("ldap:dana-0f3c7a2e", None), ("ldap:eli-0f3c7a2e", None),
        ("ldap:fay-0f3c7a2e", "starts in May")]


def test_wrong_credentials_change_nothing(
    container: Container, world: World, org: Organisation, slapd: LdapServer, ldap_base: str
) -> None:
    staff = fill(slapd, ldap_base, 3)
    with pytest.raises(DirectoryUnavailable) as caught:
        importer(container).import_staff(org.code, source(slapd, staff, password="wrong"))
    assert slapd.url in caught.value.message
    assert "invalidCredentials" in caught.value.message
    assert count_applications(container) == 0


def test_unreachable_server_changes_nothing(
    container: Container, world: World, org: Organisation, slapd: LdapServer, ldap_base: str
) -> None:
    dead = f"ldap://127.0.0.1:{free_port()}"
    with pytest.raises(DirectoryUnavailable) as caught:
        importer(container).import_staff(org.code, source(slapd, ldap_base, url=dead))
    assert dead in caught.value.message and "connect failed" in caught.value.message
    assert count_applications(container) == 0


def test_a_bad_filter_is_named(
    container: Container, world: World, org: Organisation, slapd: LdapServer, ldap_base: str
) -> None:
    bad = ImportSource(
        target=source(slapd, ldap_base).target, search_filter="(objectClass=nosuchclass"
    )
    with pytest.raises(DirectoryUnavailable) as caught:
        importer(container).import_staff(org.code, bad)
    assert "bad search filter" in caught.value.message
    assert count_applications(container) == 0
