"""Publishing the directory to a real slapd: first run, incremental runs,
reconciling a server changed behind our back, a server dying half way, and
the errors for bad settings, wrong credentials and an unreachable server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import ldap3
import pytest
from sqlalchemy import func, insert, select

from core.audit import AuditEntry
from core.errors import ConfigurationError
from core.settings import Settings
from directory.ldap_connect import DirectoryUnavailable, LdapTarget, open_connection
from directory.ldap_publish import LdapPublisher, PublishFailed
from directory.models import Organisation, Person, PersonStatus, Position, Role
from directory.services_models import LdapPublication, LdapRun, Service, ServiceKind
from idp.container import Container, Unit
from tests import ldap_server
from tests.conftest import make_settings, need
from tests.factories import World
from tests.ldap_server import LdapServer, free_port, ldap_settings, slapd_available

slapd = ldap_server.slapd
ldap_base = ldap_server.ldap_base


@pytest.fixture
def ldap_container(
    database_url: str, tmp_path: Path, container: Container, slapd: LdapServer, ldap_base: str
) -> Container:
    """The test container, with [ldap] pointing at this test's subtree."""
    container.settings = make_settings(
        database_url, tmp_path / "instance", ldap=ldap_settings(slapd, ldap_base)
    )
    return container


def add_service(world: World, org: Organisation, name: str, **extra: object) -> Service:
    now = world.container.clock.now()
    values: dict[str, object] = {
        "name": name,
        "name_folded": name.casefold(),
        "kind": ServiceKind.GP_PRACTICE,
        "organisation_id": org.id,
        "address_line1": "1 High Street",
        "town": "Northtown",
        "postcode": "NE1 1AA",
        "postcode_district": "NE1",
        "phone": "0191 000 0000",
        "secure_email": "practice@nhs.example",
        "opening_hours": "Mon-Fri 08:00-18:30",
        "starts_on": now.date() - timedelta(days=365),
        "created_at": now,
        "updated_at": now,
    }
    values.update(extra)
    service = Service(**values)
    world.unit.session.add(service)
    world.unit.commit()
    return service


def active_person(world: World, org: Organisation, **names: str) -> Person:
    person = world.newcomer(org, **names)
    person.status = PersonStatus.ACTIVE
    world.unit.commit()
    return person


def seed(world: World, people: int = 5) -> tuple[Organisation, Service, list[Person]]:
    org = world.organisation("Northshire County Council")
    service = add_service(world, org, "Riverside Surgery")
    made = [active_person(world, org, given_name=f"Pat{i}") for i in range(people)]
    made[0].positions[0].service_id = service.id
    world.unit.commit()
    return org, service, made


def server_entries(server: LdapServer, base: str) -> dict[str, dict[str, list[str]]]:
    conn = server.connect()
    try:
        found = conn.extend.standard.paged_search(
            base, "(objectClass=*)", attributes=["*"], paged_size=500, generator=True
        )
        return {
            item["dn"].lower(): {k.lower(): list(v) for k, v in item["attributes"].items()}
            for item in found
            if item.get("type") == "searchResEntry"
        }
    finally:
        conn.unbind()


_OPEN_UNITS: list[Unit] = []


@pytest.fixture(autouse=True)
def _close_units() -> Iterator[None]:
    """Each publisher gets a unit of its own; close them so no connection
    outlives the test's database."""
    yield
    while _OPEN_UNITS:
        _OPEN_UNITS.pop().close()


def publisher(container: Container, **kwargs: object) -> LdapPublisher:
    unit = container.unit()
    _OPEN_UNITS.append(unit)
    if not kwargs:
        return unit.ldap_publisher
    s = container.settings.ldap
    return LdapPublisher(
        unit.session,
        unit.clock,
        unit.audit,
        LdapTarget.from_settings(s),
        connections=s.connections,
        page_size=s.page_size,
        **kwargs,  # type: ignore[arg-type]
    )


class TestPublish:
    def test_first_run_writes_organisations_services_and_people(
        self, ldap_container: Container, world: World, slapd: LdapServer, ldap_base: str
    ) -> None:
        org, service, people = seed(world)
        report = publisher(ldap_container).publish()
        assert report.status == "completed"
        # ou=people, 1 organisation, 1 service, 5 people
        assert (report.added, report.modified, report.deleted, report.failed) == (8, 0, 0, 0)
        entries = server_entries(slapd, ldap_base)
        org_dn = f"o={org.code},{ldap_base}".lower()
        assert entries[org_dn]["description"] == ["Northshire County Council"]
        svc = entries[f"ou={service.public_id},{org_dn}"]
        assert set(svc["ou"]) == {service.public_id, "Riverside Surgery"}
        assert svc["businesscategory"] == ["gp_practice"]
        assert svc["postalcode"] == ["NE1 1AA"]
        assert "Secure email: practice@nhs.example" in svc["description"]
        person = entries[f"uid={people[0].username},ou=people,{ldap_base}".lower()]
        assert person["givenname"] == ["Pat0"]
        assert person["mail"] == [people[0].work_email]
        assert person["o"] == ["Northshire County Council"]
        assert person["ou"] == ["Riverside Surgery"]
        assert person["title"] == ["practitioner"]
        with ldap_container.unit() as unit:
            run = unit.session.scalars(select(LdapRun)).one()
            assert run.status == "completed"
            assert run.counts["added"] == 8
            assert unit.session.scalar(select(func.count()).select_from(LdapPublication)) == 8
            tags = set(unit.session.scalars(select(AuditEntry.tag)))
            assert "directory:publish:completed" in tags

    def test_no_secret_attributes_are_ever_published(
        self, ldap_container: Container, world: World, slapd: LdapServer, ldap_base: str
    ) -> None:
        org = world.organisation()
        world.member(org)  # has a password, a PIN and a soft token
        world.unit.commit()
        publisher(ldap_container).publish()
        entries = server_entries(slapd, ldap_base)
        people = [
            e for e in entries.values() if "inetorgperson" in [c.lower() for c in e["objectclass"]]
        ]
        assert len(people) == 1
        for entry in entries.values():
            for name in entry:
                words = ("password", "pin", "token", "otp", "secret")
                assert not any(word in name for word in words)

    def test_second_run_writes_nothing(self, ldap_container: Container, world: World) -> None:
        seed(world)
        publisher(ldap_container).publish()
        again = publisher(ldap_container).publish()
        assert again.writes == 0
        assert again.unchanged == 8
        full = publisher(ldap_container).publish(full=True)
        assert full.writes == 0
        assert full.unchanged == 8

    def test_incremental_sends_only_what_changed(
        self, ldap_container: Container, world: World, slapd: LdapServer, ldap_base: str
    ) -> None:
        _, _, people = seed(world)
        publisher(ldap_container).publish()
        people[1].work_phone = "0191 222 3333"
        people[2].status = PersonStatus.SUSPENDED  # no longer published
        world.unit.commit()
        report = publisher(ldap_container).publish()
        assert (report.added, report.modified, report.deleted) == (0, 1, 1)
        assert report.unchanged == 6
        entries = server_entries(slapd, ldap_base)
        assert entries[f"uid={people[1].username},ou=people,{ldap_base}".lower()][
            "telephonenumber"
        ] == ["0191 222 3333"]
        assert f"uid={people[2].username},ou=people,{ldap_base}".lower() not in entries

    def test_full_reconciles_a_server_changed_behind_our_back(
        self, ldap_container: Container, world: World, slapd: LdapServer, ldap_base: str
    ) -> None:
        _, _, people = seed(world)
        publisher(ldap_container).publish()
        gone = f"uid={people[3].username},ou=people,{ldap_base}"
        altered = f"uid={people[4].username},ou=people,{ldap_base}"
        stray = f"uid=intruder,ou=people,{ldap_base}"
        conn = slapd.connect()
        assert conn.delete(gone)
        assert conn.modify(altered, {"mail": [(ldap3.MODIFY_REPLACE, ["wrong@example.org"])]})
        assert conn.add(stray, ["inetOrgPerson"], {"cn": "In Truder", "sn": "Truder"})
        conn.unbind()
        # The ledger knows nothing of it: an incremental run sends nothing.
        assert publisher(ldap_container).publish().writes == 0
        report = publisher(ldap_container).publish(full=True)
        assert (report.added, report.modified, report.deleted) == (1, 1, 1)
        entries = server_entries(slapd, ldap_base)
        assert gone.lower() in entries
        assert entries[altered.lower()]["mail"] == [people[4].work_email]
        assert stray.lower() not in entries
        assert publisher(ldap_container).publish(full=True).writes == 0
        assert publisher(ldap_container).publish().writes == 0

    def test_deleted_source_is_removed(
        self, ldap_container: Container, world: World, slapd: LdapServer, ldap_base: str
    ) -> None:
        org, service, _ = seed(world)
        publisher(ldap_container).publish()
        service.ends_on = world.container.clock.today() - timedelta(days=1)  # closed
        world.unit.commit()
        report = publisher(ldap_container).publish()
        # the service goes; Pat0's `ou` loses it
        assert (report.deleted, report.modified) == (1, 1)
        assert f"ou={service.public_id},o={org.code},{ldap_base}".lower() not in server_entries(
            slapd, ldap_base
        )


class TestFailures:
    def test_wrong_credentials_give_one_clear_error_and_change_nothing(
        self, database_url: str, tmp_path: Path, container: Container, world: World,
        slapd: LdapServer, ldap_base: str,
    ) -> None:
        seed(world)
        container.settings = make_settings(
            database_url,
            tmp_path / "instance",
            ldap=ldap_settings(slapd, ldap_base, password="not-the-password"),
        )
        with pytest.raises(DirectoryUnavailable) as caught:
            publisher(container).publish()
        assert slapd.url in caught.value.message
        assert "bind as cn=admin" in caught.value.message
        assert "invalidCredentials" in caught.value.message
        assert set(server_entries(slapd, ldap_base)) == {ldap_base.lower()}
        with container.unit() as unit:
            assert unit.session.scalar(select(func.count()).select_from(LdapPublication)) == 0
            run = unit.session.scalars(select(LdapRun)).one()
            assert run.status == "failed"
            assert "directory:publish:failed" in set(unit.session.scalars(select(AuditEntry.tag)))

    def test_unreachable_server(
        self, database_url: str, tmp_path: Path, container: Container, world: World,
        slapd: LdapServer, ldap_base: str,
    ) -> None:
        seed(world)
        dead = f"ldap://127.0.0.1:{free_port()}"
        container.settings = make_settings(
            database_url, tmp_path / "instance", ldap=ldap_settings(slapd, ldap_base, url=dead)
        )
        with pytest.raises(DirectoryUnavailable) as caught:
            publisher(container).publish()
        assert dead in caught.value.message
        assert "connect failed" in caught.value.message
        with container.unit() as unit:
            assert unit.session.scalar(select(func.count()).select_from(LdapPublication)) == 0

    def test_bad_settings_are_named(self, settings: Settings) -> None:
        with pytest.raises(ConfigurationError, match=r"ldap\.url: missing"):
            LdapTarget.from_settings(settings.ldap)


@pytest.fixture
def own_slapd(tmp_path: Path) -> LdapServer:
    """A server of this test's own, because the test kills it."""
    need(slapd_available(), "OpenLDAP slapd is not installed")
    server = LdapServer(tmp_path / "slapd")
    server.create()
    server.start()
    yield server  # type: ignore[misc]
    server.stop()


def test_a_server_killed_half_way_and_the_next_run_finishes(
    database_url: str, tmp_path: Path, container: Container, world: World, own_slapd: LdapServer
) -> None:
    org = world.organisation()
    for i in range(40):
        active_person(world, org, given_name=f"Kim{i}")
    base = own_slapd.suffix
    container.settings = make_settings(
        database_url, tmp_path / "instance", ldap=ldap_settings(own_slapd, base)
    )
    killed = threading.Event()

    def kill_after(writes: int) -> None:
        if writes >= 15 and not killed.is_set():
            killed.set()
            own_slapd.kill()

    with pytest.raises(PublishFailed) as caught:
        publisher(container, on_write=kill_after).publish()
    report = caught.value.report
    assert report.status == "failed"
    assert own_slapd.url in caught.value.message
    assert 15 <= report.added < 42
    with container.unit() as unit:
        run = unit.session.scalars(select(LdapRun)).one()
        assert run.status == "failed"
        assert run.counts["added"] == report.added
        # the ledger holds exactly what the server accepted
        ledger = unit.session.scalar(select(func.count()).select_from(LdapPublication))
        assert ledger == report.added
    own_slapd.start()  # same data folder
    held_before = len(own_slapd.dns_under(base)) - 1
    assert held_before >= report.added
    finish = publisher(container).publish()
    assert finish.status == "completed"
    assert finish.added + finish.modified == 42 - report.added
    assert len(own_slapd.dns_under(base)) == 43  # base + ou=people + org + 40 people
    assert publisher(container).publish().writes == 0


def test_large_runs_write_from_processes_with_the_same_result(
    ldap_container: Container, world: World, slapd: LdapServer, ldap_base: str
) -> None:
    """Above the threshold, writers are processes (ldap3 is GIL-bound in threads)."""
    _, _, people = seed(world, people=30)
    first = publisher(ldap_container, process_threshold=1).publish()
    assert (first.added, first.failed) == (33, 0)
    people[5].work_phone = "0191 999 0000"
    world.unit.commit()
    second = publisher(ldap_container, process_threshold=1).publish()
    assert (second.added, second.modified, second.unchanged) == (0, 1, 32)
    assert len(server_entries(slapd, ldap_base)) == 34
    assert publisher(ldap_container, process_threshold=1).publish(full=True).writes == 0


def test_starttls_refused_is_named(slapd: LdapServer, ldap_base: str) -> None:
    """This slapd has no certificate: asking for StartTLS must fail, never fall
    back to sending the bind password in clear."""
    target = LdapTarget(
        slapd.url, slapd.root_dn, slapd.root_password, ldap_base, use_starttls=True
    )
    with pytest.raises(DirectoryUnavailable) as caught:
        open_connection(target)
    assert slapd.url in caught.value.message
    assert "StartTLS" in caught.value.message


def test_a_refused_write_fails_the_run_and_the_next_run_sends_it(
    ldap_container: Container, world: World, slapd: LdapServer, ldap_base: str
) -> None:
    _, _, people = seed(world)
    people[2].family_name = " "  # no sn: inetOrgPerson refuses the entry
    world.unit.commit()
    with pytest.raises(PublishFailed) as caught:
        publisher(ldap_container).publish()
    report = caught.value.report
    assert (report.added, report.failed) == (7, 1)
    assert "objectClassViolation" in (report.error or "")
    assert people[2].username in (report.error or "")
    people[2].family_name = "Fixed"
    world.unit.commit()
    again = publisher(ldap_container).publish()
    assert (again.added, again.modified, again.failed, again.unchanged) == (1, 0, 0, 7)


def test_process_writers_survive_a_killed_server_too(
    database_url: str, tmp_path: Path, container: Container, world: World, own_slapd: LdapServer
) -> None:
    """The same guarantee when the writers are processes: the server is
    killed (from a watching thread) once 150 people are on it."""
    org = world.organisation()
    now = container.clock.now()
    world.unit.session.execute(
        insert(Person),
        [
            {
                "username": f"bulk{i}", "username_folded": f"bulk{i}", "given_name": "Bulk",
                "family_name": f"Person{i}", "work_email": f"bulk{i}@example.org",
                "status": PersonStatus.ACTIVE, "status_reason": "test",
                "status_changed_at": now, "security_epoch": 1, "created_at": now,
                "public_id": f"00000000-0000-0000-0000-{i:012d}",
            }
            for i in range(1500)
        ],
    )
    ids = world.unit.session.scalars(select(Person.id).order_by(Person.id)).all()
    world.unit.session.execute(
        insert(Position),
        [
            {"person_id": pid, "organisation_id": org.id, "role": Role.PRACTITIONER,
             "starts_on": now.date() - timedelta(days=1)}
            for pid in ids
        ],
    )
    world.unit.commit()
    container.settings = make_settings(
        database_url, tmp_path / "instance", ldap=ldap_settings(own_slapd, own_slapd.suffix)
    )
    people = f"ou=people,{own_slapd.suffix}"
    stop = threading.Event()

    def watch() -> None:
        conn = own_slapd.connect()
        while not stop.is_set():
            conn.search(people, "(objectClass=inetOrgPerson)", attributes=["1.1"])
            if len(conn.response or []) >= 150:
                own_slapd.kill()
                return
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(PublishFailed) as caught:
            publisher(container, process_threshold=1).publish()
    finally:
        stop.set()
        watcher.join()
    report = caught.value.report
    assert 150 <= report.added < 1502
    own_slapd.start()
    finish = publisher(container).publish()
    assert finish.added + finish.modified == 1502 - report.added
    assert len(own_slapd.dns_under(own_slapd.suffix)) == 1503
