"""Reading the people in an organisation's own LDAP or Active Directory.

This module only reads: it returns `FoundPerson` values and knows nothing of
applications. `vetting.staff_import` turns them into proposals for the
organisation's sponsor, because only vetting may decide who becomes an
applicant (and nobody becomes an account from a directory entry).

Every directory names things differently, so the filter and the attribute map
are settings; the stable id attribute (entryUUID in OpenLDAP, objectGUID in
Active Directory) is what makes a re-import recognise someone already
proposed, even after a rename.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPInvalidFilterError

from directory.ldap_connect import DirectoryUnavailable, LdapTarget, open_connection

PAGED_RESULTS = "1.2.840.113556.1.4.319"

DEFAULT_MAP: dict[str, str] = {
    "given_name": "givenName",
    "family_name": "sn",
    "work_email": "mail",
    "work_phone": "telephoneNumber",
}


@dataclass(frozen=True)
class ImportSource:
    """An organisation's directory and how to read people out of it."""

    target: LdapTarget
    search_filter: str = "(objectClass=inetOrgPerson)"
    id_attribute: str = "entryUUID"
    attribute_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MAP))
    page_size: int = 500


@dataclass(frozen=True)
class FoundPerson:
    source_id: str
    dn: str
    given_name: str
    family_name: str
    work_email: str
    work_phone: str | None


@dataclass
class ReadStats:
    pages: int = 0
    entries: int = 0
    unusable: list[str] = field(default_factory=list)


def _first(raw: dict[str, Any], name: str) -> bytes | None:
    for key, values in raw.items():
        if key.lower() == name.lower() and values:
            value = values[0]
            return value if isinstance(value, bytes) else str(value).encode()
    return None


def _stable_id(value: bytes) -> str:
    """entryUUID is text; Active Directory's objectGUID is 16 raw bytes."""
    try:
        text = value.decode("utf-8")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    if len(value) == 16:
        return str(uuid.UUID(bytes_le=value))
    return value.hex()


def read_people(source: ImportSource, stats: ReadStats) -> Iterator[FoundPerson]:
    """Every person the filter finds, a page at a time (Active Directory
    returns at most 1,000 entries a search without paging)."""
    target = source.target
    conn = open_connection(target)
    mapping = source.attribute_map
    attributes = sorted({source.id_attribute, *mapping.values()})
    cookie: Any = None
    try:
        while True:
            conn.search(
                target.base_dn,
                source.search_filter,
                search_scope=ldap3.SUBTREE,
                attributes=attributes,
                paged_size=source.page_size,
                paged_cookie=cookie,
            )
            if conn.result["result"] not in (0, 32):
                raise DirectoryUnavailable(
                    f"LDAP server {target.url}: search of {target.base_dn} with "
                    f"{source.search_filter} failed: {conn.result.get('description')} "
                    f"{conn.result.get('message') or ''}".strip()
                )
            stats.pages += 1
            for item in conn.response or []:
                if item.get("type") != "searchResEntry":
                    continue
                stats.entries += 1
                raw = item["raw_attributes"]
                found = _person(item["dn"], raw, source, mapping)
                if isinstance(found, str):
                    stats.unusable.append(found)
                else:
                    yield found
            controls = conn.result.get("controls") or {}
            cookie = controls.get(PAGED_RESULTS, {}).get("value", {}).get("cookie")
            if not cookie:
                return
    except LDAPInvalidFilterError as exc:
        raise DirectoryUnavailable(
            f"LDAP server {target.url}: bad search filter {source.search_filter!r}: {exc}"
        ) from exc
    except LDAPException as exc:
        raise DirectoryUnavailable(f"LDAP server {target.url}: search failed: {exc}") from exc
    finally:
        conn.unbind()


def _person(
    dn: str, raw: dict[str, Any], source: ImportSource, mapping: dict[str, str]
) -> FoundPerson | str:
    """The person, or why the entry cannot be proposed."""
    ident = _first(raw, source.id_attribute)
    if ident is None:
        return f"{dn}: no {source.id_attribute}"
    values: dict[str, str | None] = {}
    for name, attribute in mapping.items():
        value = _first(raw, attribute)
        values[name] = value.decode("utf-8", "replace").strip() if value else None
    missing = [n for n in ("given_name", "family_name", "work_email") if not values.get(n)]
    if missing:
        return f"{dn}: no {', '.join(mapping.get(m, m) for m in missing)}"
    return FoundPerson(
        source_id=_stable_id(ident),
        dn=dn,
        given_name=values["given_name"] or "",
        family_name=values["family_name"] or "",
        work_email=(values["work_email"] or "").lower(),
        work_phone=values.get("work_phone"),
    )
