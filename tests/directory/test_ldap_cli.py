"""`contactpoint directory publish | import-staff | proposals`, run as an
operator runs them: settings from the environment, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner, Result

from idp.cli import main
from tests import ldap_server
from tests.directory.test_ldap_publish import active_person
from tests.factories import World
from tests.ldap_server import LdapServer
from tests.vetting.test_staff_import import fill

slapd = ldap_server.slapd
ldap_base = ldap_server.ldap_base


def run(database_url: str, tmp_path: Path, server: LdapServer, base: str, *args: str,
        password: str | None = None) -> Result:
    ambient = {name: None for name in os.environ if name.startswith("CONTACTPOINT_")}
    env: dict[str, str | None] = {
        **ambient,
        "CONTACTPOINT_DATABASE__URL": database_url,
        "CONTACTPOINT_SERVICE__INSTANCE_DIR": str(tmp_path / "instance"),
        "CONTACTPOINT_LDAP__URL": server.url,
        "CONTACTPOINT_LDAP__BIND_DN": server.root_dn,
        "CONTACTPOINT_LDAP__PASSWORD": password or server.root_password,
        "CONTACTPOINT_LDAP__BASE_DN": base,
        "CONTACTPOINT_LDAP__CONNECTIONS": "2",
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_publish_twice_then_wrong_password(
    database_url: str, tmp_path: Path, world: World, slapd: LdapServer, ldap_base: str
) -> None:
    org = world.organisation()
    for i in range(3):
        active_person(world, org, given_name=f"Lee{i}")
    first = run(database_url, tmp_path, slapd, ldap_base, "directory", "publish")
    assert first.exit_code == 0, first.output
    assert "added 5, modified 0, deleted 0" in first.output
    second = run(database_url, tmp_path, slapd, ldap_base, "directory", "publish", "--full")
    assert "added 0, modified 0, deleted 0, unchanged 5" in second.output
    refused = run(database_url, tmp_path, slapd, ldap_base, "directory", "publish",
                  password="wrong")
    assert refused.exit_code == 1
    assert refused.output.count("\n") == 1
    assert f"LDAP server {slapd.url}: bind as {slapd.root_dn} failed" in refused.output


def test_import_staff_and_list_proposals(
    database_url: str, tmp_path: Path, world: World, slapd: LdapServer, ldap_base: str
) -> None:
    org = world.organisation()
    staff = fill(slapd, ldap_base, 4)
    secret = tmp_path / "bind-password"
    secret.write_text(slapd.root_password + "\n")
    args = ["directory", "import-staff", org.code, "--url", slapd.url, "--bind-dn",
            slapd.root_dn, "--password-file", str(secret), "--base-dn", staff,
            "--page-size", "2"]
    done = run(database_url, tmp_path, slapd, ldap_base, *args)
    assert done.exit_code == 0, done.output
    assert "5 found in 3 page(s); 4 proposed" in done.output
    again = run(database_url, tmp_path, slapd, ldap_base, *args)
    assert "0 proposed, 4 already proposed" in again.output
    listed = run(database_url, tmp_path, slapd, ldap_base, "directory", "proposals", org.code)
    assert "4 proposal(s)" in listed.output
    assert "Jo Staff0" in listed.output
