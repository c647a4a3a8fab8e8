"""Reaching an LDAP server, and the one error that says why we could not.

Shared by the publisher (our directory out to LDAP) and the staff importer (an
organisation's LDAP or Active Directory in). Every failure to reach, secure or
bind becomes `DirectoryUnavailable` naming the server and the step that
failed, so an operator reads one line and knows what to fix.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.core.tls import Tls

from core.errors import ConfigurationError, ServiceUnavailable
from core.settings import LdapSettings


class DirectoryUnavailable(ServiceUnavailable):
    """An LDAP server could not be used: unreachable, refused TLS, refused the
    bind, or died during the run. Nothing here changed because of it."""

    error_id = "directory.ldap_unavailable"
    title = "The LDAP directory could not be used"


@dataclass(frozen=True)
class LdapTarget:
    """One server and the identity we bind as. `repr` hides the password."""

    url: str
    bind_dn: str
    password: str
    base_dn: str
    use_starttls: bool = False
    timeout_seconds: int = 10
    verify_certificates: bool = True

    def __repr__(self) -> str:
        return f"LdapTarget(url={self.url!r}, bind_dn={self.bind_dn!r}, base_dn={self.base_dn!r})"

    @classmethod
    def from_settings(cls, settings: LdapSettings) -> LdapTarget:
        """Check the [ldap] settings before anything is attempted."""
        missing = [
            name for name in ("url", "bind_dn", "base_dn") if not getattr(settings, name).strip()
        ]
        if missing:
            raise ConfigurationError(f"ldap.{missing[0]}: missing (publishing is not configured)")
        password = settings.password
        if settings.password_file:
            try:
                password = Path(settings.password_file).read_text().strip()
            except OSError as exc:
                raise ConfigurationError(
                    f"ldap.password_file: cannot read {settings.password_file}: {exc.strerror}"
                ) from exc
        if not password:
            raise ConfigurationError("ldap.password: missing (or set ldap.password_file)")
        if not settings.url.startswith(("ldap://", "ldaps://")):
            raise ConfigurationError(
                f"ldap.url: expected ldap://... or ldaps://..., got {settings.url!r}"
            )
        return cls(
            url=settings.url.rstrip("/"),
            bind_dn=settings.bind_dn,
            password=password,
            base_dn=settings.base_dn,
            use_starttls=settings.use_starttls,
            timeout_seconds=settings.timeout_seconds,
        )


def open_connection(target: LdapTarget) -> ldap3.Connection:
    """A bound connection, or DirectoryUnavailable saying which step failed.

    `get_info=NONE`: reading the schema costs 15 ms a connection against
    0.9 ms without, and we never need it. Exceptions stay off: callers read
    each operation's result code, and only transport failures raise.
    """
    tls = None
    if target.url.startswith("ldaps://") or target.use_starttls:
        tls = Tls(validate=ssl.CERT_REQUIRED if target.verify_certificates else ssl.CERT_NONE)
    try:
        server = ldap3.Server(
            target.url, get_info=ldap3.NONE, connect_timeout=target.timeout_seconds, tls=tls
        )
    except LDAPException as exc:
        raise DirectoryUnavailable(f"LDAP server {target.url}: bad address: {exc}") from exc
    conn = ldap3.Connection(
        server,
        user=target.bind_dn,
        password=target.password,
        receive_timeout=target.timeout_seconds,
        raise_exceptions=False,
        auto_referrals=False,
    )
    step = "connect"
    try:
        conn.open()
        if target.use_starttls:
            step = "StartTLS"
            if not conn.start_tls():
                raise DirectoryUnavailable(
                    f"LDAP server {target.url}: StartTLS refused: {conn.result.get('description')}"
                )
        step = "bind"
        if not conn.bind():
            description = conn.result.get("description") or "refused"
            conn.unbind()
            raise DirectoryUnavailable(
                f"LDAP server {target.url}: bind as {target.bind_dn} failed: {description}"
            )
    except LDAPException as exc:
        raise DirectoryUnavailable(f"LDAP server {target.url}: {step} failed: {exc}") from exc
    return conn
