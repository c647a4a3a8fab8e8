"""A throwaway OpenLDAP server for tests and benchmarks.

Real slapd rather than a mock, because what matters (paging, schema checks,
refusals, a server that dies half way) is exactly what a mock gets wrong. The
configuration is built with `slapadd -n 0` from an LDIF (core, cosine and
inetorgperson schemas, one mdb database without fsync), the base entries with
`slapadd -n 1`, and slapd runs in the foreground on a free loopback port until
it is sent SIGTERM. The data folder survives a stop, so a test can restart the
same server after killing it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
import pytest
from ldap3.core.exceptions import LDAPException

from tests.conftest import need

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = "/usr/lib/ldap"


def slapd_available() -> bool:
    return (
        Path(SLAPD).exists()
        and Path(SLAPADD).exists()
        and (SCHEMA_DIR / "inetorgperson.ldif").exists()
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LdapServer:
    """One slapd with one mdb database under `suffix`."""

    folder: Path
    suffix: str = "dc=contactpoint,dc=test"
    root_dn: str = "cn=admin,dc=contactpoint,dc=test"
    root_password: str = "throwaway-root-password"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def _config_ldif(self) -> str:
        schemas = "\n".join(
            f"include: file://{SCHEMA_DIR / name}.ldif"
            for name in ("core", "cosine", "inetorgperson")
        )
        data = self.folder / "data"
        return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {self.folder / "slapd.pid"}

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULE_DIR}
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: unlimited

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {self.suffix}
olcRootDN: {self.root_dn}
olcRootPW: {self.root_password}
olcDbDirectory: {data}
olcDbNoSync: TRUE
olcDbMaxSize: 4294967296
olcSizeLimit: unlimited
olcDbIndex: objectClass eq
olcAccess: {{0}}to * by dn.exact="{self.root_dn}" manage by anonymous auth by * read
"""

    def _base_ldif(self) -> str:
        first = self.suffix.split(",")[0].split("=", 1)[1]
        return f"""dn: {self.suffix}
objectClass: dcObject
objectClass: organization
dc: {first}
o: ContactPoint test directory
"""

    def create(self) -> None:
        """Build the configuration and the base entry (about 0.1 s)."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        (self.folder / "slapd.d").mkdir(parents=True)
        (self.folder / "data").mkdir()
        config = self.folder / "config.ldif"
        config.write_text(self._config_ldif())
        base = self.folder / "base.ldif"
        base.write_text(self._base_ldif())
        for args in (
            [SLAPADD, "-n", "0", "-F", str(self.folder / "slapd.d"), "-l", str(config)],
            [SLAPADD, "-n", "1", "-F", str(self.folder / "slapd.d"), "-l", str(base)],
        ):
            done = subprocess.run(args, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")

    def start(self, wait_seconds: float = 10.0) -> None:
        """Start slapd in the foreground and wait until a bind succeeds."""
        self.process = subprocess.Popen(
            [SLAPD, "-F", str(self.folder / "slapd.d"), "-h", f"{self.url}/", "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.process.returncode}")
            try:
                conn = self.connect()
                conn.unbind()
                return
            except LDAPException:
                time.sleep(0.02)
        raise RuntimeError(f"slapd did not answer on {self.url} within {wait_seconds} s")

    def stop(self) -> None:
        """SIGTERM, as an operator (or a crash of the host) would stop it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-write, with no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def connect(self) -> ldap3.Connection:
        server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=2)
        return ldap3.Connection(
            server, self.root_dn, self.root_password, auto_bind=True, receive_timeout=10
        )

    def dns_under(self, base: str) -> set[str]:
        """Every DN at or below `base`, as the server spells them."""
        conn = self.connect()
        try:
            found = conn.extend.standard.paged_search(
                base, "(objectClass=*)", attributes=["1.1"], paged_size=1000, generator=True
            )
            return {item["dn"] for item in found if item.get("type") == "searchResEntry"}
        finally:
            conn.unbind()


# -- pytest fixtures (imported by the LDAP test modules) -----------------------

@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    """One slapd for the whole run; each test works in a subtree of its own."""
    need(slapd_available(), f"OpenLDAP slapd is not installed ({SLAPD}; apt-get install slapd)")
    server = LdapServer(tmp_path_factory.mktemp("slapd") / "server")
    server.create()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ldap_base(slapd: LdapServer) -> str:
    """A fresh, empty subtree for one test, so tests cannot see each other's entries."""
    base = f"ou=t{uuid.uuid4().hex[:12]},{slapd.suffix}"
    conn = slapd.connect()
    try:
        conn.add(base, ["organizationalUnit"], {"ou": base.split(",")[0][3:]})
    finally:
        conn.unbind()
    return base


def ldap_settings(server: LdapServer, base_dn: str, **extra: object) -> dict[str, object]:
    """The [ldap] section pointing at `server`, for make_settings(..., ldap=...)."""
    values: dict[str, object] = {
        "url": server.url,
        "bind_dn": server.root_dn,
        "password": server.root_password,
        "base_dn": base_dn,
        "connections": 3,
        "page_size": 50,
        "timeout_seconds": 5,
    }
    values.update(extra)
    return values
