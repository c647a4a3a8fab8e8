"""What a load does to a supplied row before the database is involved:
parsing it (from a block of the file's text), checking it, working out its
keyed digests and sealing its hidden fields; on PostgreSQL also writing its
columns as COPY text.

Kept apart from the loader (loading.ChildLoader), which matches and writes,
because this is most of a load's CPU and needs nothing but the row, a few
lookups read once a load and the keys: a large file is prepared in worker
processes (`prepared_rows`) while the loader's own process writes what they
return, so checking overlaps with writing instead of taking turns with it.
A row comes out the same wherever it was prepared; only the random parts
(public id, nonces) differ.
"""

from __future__ import annotations

import csv
import gc
import io
import itertools
import json
import multiprocessing
import operator
import os
import re
import signal
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

from core.crypto import DataCipher, SecretDigester
from core.errors import FieldProblem
from directory.children.models import (
    SETTING_KINDS,
    Gender,
    InvolvementRole,
    ReturnIntention,
    Whereabouts,
)
from directory.children.rules import name_key
from directory.services import iso_date, normalise_postcode
from directory.services_models import ServiceKind

COLUMNS = (
    "source_scheme", "source_id", "local_authority", "forename", "surname", "former_names",
    "gender", "date_of_birth", "date_of_death", "whereabouts", "address_line1", "address_line2",
    "town", "postcode", "return_intention", "carer1_name", "carer1_relationship",
    "carer1_phone", "carer2_name", "carer2_relationship", "carer2_phone", "school",
    "school_start", "gp_practice", "retain_to_25",
)
REQUIRED = ("local_authority", "forename", "surname", "gender", "date_of_birth", "whereabouts")
SCHEMES = ("nhs_number", "pupil_number", "local_id")
# Rows a worker is handed at a time: enough that the cost of passing a chunk
# between processes is small beside preparing it.
CHUNK = 2000
# Below this many rows a load prepares in its own process: starting a worker
# (a fresh interpreter importing the models) costs more than it would save.
PARALLEL_FROM = 20_000
# Chunks handed out ahead of the one being written: the workers keep going
# while the loader waits on the database, and memory stays bounded.
AHEAD = 4

_COLUMN_SET = frozenset(COLUMNS)
_GENDERS = frozenset(g.value for g in Gender)
_WHEREABOUTS = frozenset(w.value for w in Whereabouts)
_WITH_ADDRESS = frozenset((Whereabouts.CURRENT_ADDRESS.value,
                           Whereabouts.LAST_KNOWN_ADDRESS.value))
_INTENTIONS = frozenset(r.value for r in ReturnIntention)
_CONSENTS = frozenset(("", "yes", "no", "true", "false"))
_ASCII_PHONE = re.compile(r"[0-9 +()\-]*")
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class Lookups:
    """What checking a row needs from the database, read once a load (and
    handed to each worker): local authorities by code, settings and GP
    practices by public id, today, and the supplying body."""

    local_authorities: Mapping[str, int]
    services: Mapping[str, tuple[int, ServiceKind]]
    today: date
    source_id: int


class Checked(NamedTuple):
    """A row that passed its checks. `content` is what the record holds, in
    JSON terms: what the content digest is made of, what a queued conflict
    keeps and what `ChildLoader.apply_content` writes back."""

    content: dict[str, Any]
    forename_key: str
    surname_key: str
    district: str | None
    scheme: str | None
    source_ref: str | None


class PreparedRow(NamedTuple):
    """A row checked, keyed and sealed: what writing it as a new record, or
    matching it to an existing one, takes.

    `child` is the new record's columns after its id and identifier, in the
    order of `loading.CHILD_COLUMNS` and already in the drivers' terms (dates
    as ISO text), its hidden fields sealed under the public id it starts
    with; `supply` likewise for the supplier's row after its child id;
    `settings` the (service id, role, start) of its school and GP practice,
    `formers` the (forename, surname, surname key, date of birth, district)
    of its former names. A row that matches an existing record is sealed
    again under that record's public id, from its content (`Checked`), which
    is left out here: it is rarely needed and is the dearest part to pass
    between processes.

    For PostgreSQL (`RowPreparer.copy_text`) `child` and `supply` are those
    columns as COPY text, and each of `settings` and `formers` a line's
    columns after its child id (a setting's up to its source body)."""

    number: int
    content_digest: str
    match_key: str
    id_digest: str | None
    scheme: str | None
    source_ref: str | None
    child: tuple[Any, ...] | str
    supply: tuple[Any, ...] | str
    # (service id, role, start) tuples, or COPY text: see above.
    settings: tuple[Any, ...]
    # (forename, surname, surname key, date of birth, district) tuples, or COPY text.
    formers: tuple[Any, ...]


class RowProblems(NamedTuple):
    """A row that did not pass, with every problem found in it."""

    number: int
    problems: list[FieldProblem]


Prepared = PreparedRow | RowProblems


class RowPreparer:
    """Checks, keys and seals rows. Holds no state between rows, so rows can
    be prepared in any process, in chunks, and come out the same; what
    depends on earlier rows (the same child twice in a file) is the
    loader's, which sees the results in file order. It pickles (to a worker)
    with its cipher and digester as their derived subkeys only."""

    def __init__(self, lookups: Lookups, cipher: DataCipher, digester: SecretDigester,
                 *, copy_text: bool = False) -> None:
        self.lookups = lookups
        self.cipher = cipher
        self.digester = digester
        # Rows as PostgreSQL's COPY reads them (see _as_copy_text), or as tuples.
        self.copy_text = copy_text

    def content_digest(self, content: Mapping[str, Any]) -> str:
        """The keyed digest of what a body supplied, compared on the next load
        so that a re-run writes nothing. It is made of `repr(sorted(content.
        items()))`, the form records already hold, written out by a template
        because sorting and repr-ing the pairs was a tenth of a row's CPU."""
        return keyed_digest(self.digester, "content", _CONTENT_REPR % _content_values(content))

    def prepare(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> list[Prepared]:
        return [self.prepare_row(number, raw) for number, raw in rows]

    def prepare_row(self, number: int, raw: Mapping[str, Any]) -> Prepared:
        """The row checked, keyed and sealed, or every problem found in it."""
        checked = self.check(raw)
        if isinstance(checked, list):
            return RowProblems(number, checked)
        content, forename_key, surname_key, district, scheme, source_ref = checked
        content_digest = self.content_digest(content)
        address = content["address"]
        born = content["born"]
        match = match_key(self.digester, surname_key, forename_key, born,
                          address["postcode"] if address else "")
        id_digest = (keyed_digest(self.digester, "source", scheme or "", source_ref)
                     if source_ref else None)
        public_id = time_ordered_uuid()
        seal = self.cipher.encrypt_text
        carers = content["carers"]
        address_enc = seal(_to_json(address), f"child:{public_id}:address") if address else None
        carers_enc = seal(_to_json(carers), f"child:{public_id}:carers") if carers else None
        sealed_id = (seal(source_ref, f"child:{public_id}:source:{self.lookups.source_id}")
                     if source_ref else None)
        if self.copy_text:
            return self._as_copy_text(number, content, content_digest, match, id_digest,
                                      scheme, source_ref, public_id, forename_key,
                                      surname_key, district, address_enc, carers_enc,
                                      sealed_id)
        return PreparedRow(
            number, content_digest, match, id_digest, scheme, source_ref,
            (public_id, content["la"], content["forename"], content["surname"], forename_key,
             surname_key, content["gender"], born, content["died"], content["where"],
             address_enc, district, content["return"], carers_enc, match, content_digest,
             content["retain_to_25"]),
            (scheme, sealed_id, id_digest, content_digest),
            involvements(content),
            tuple((f, s, name_key(s), born, district) for f, s in content["former"]),
        )

    def _as_copy_text(self, number: int, content: dict[str, Any], content_digest: str,
                      match: str, id_digest: str | None, scheme: str | None,
                      source_ref: str | None, public_id: str, forename_key: str,
                      surname_key: str, district: str | None, address_enc: str | None,
                      carers_enc: str | None, sealed_id: str | None) -> PreparedRow:
        """The same row with its columns as lines of PostgreSQL's COPY text
        format: formatting them here, in a worker, rather than value by value
        in the loader's COPY was a sixth of the loader's CPU. Only the names
        are free text; every other value is a key, an enum, an ISO date, hex
        or base64, which need no escaping."""
        forename, surname = content["forename"], content["surname"]
        if _COPY_SPECIAL.search(forename) or _COPY_SPECIAL.search(surname):
            forename, surname = copy_field(forename), copy_field(surname)
        born, district_text = content["born"], district or NULL
        child = (f"{public_id}\t{content['la']}\t{forename}\t{surname}\t{forename_key}\t"
                 f"{surname_key}\t{content['gender']}\t{born}\t{content['died'] or NULL}\t"
                 f"{content['where']}\t{address_enc or NULL}\t{district_text}\t"
                 f"{content['return'] or NULL}\t{carers_enc or NULL}\t{match}\t"
                 f"{content_digest}\t{'t' if content['retain_to_25'] else 'f'}")
        supply = f"{scheme or NULL}\t{sealed_id or NULL}\t{id_digest or NULL}\t{content_digest}"
        settings = tuple(f"{service}\t{NULL}\t{role}\t{start or NULL}\t{NULL}\tf\tf\tf\t{NULL}"
                         for service, role, start in involvements(content))
        formers = tuple(copy_line((f, s, name_key(s), born, district))
                        for f, s in content["former"])
        return PreparedRow(number, content_digest, match, id_digest, scheme, source_ref,
                           child, supply, settings, formers)

    def check(self, raw: Mapping[str, Any]) -> Checked | list[FieldProblem]:
        """The row's content, or every problem found in it (in column order).

        Written out flat, one field after another, because it runs once for
        each of millions of rows: no enum lookups, one pass to trim the text."""
        if "__error__" in raw:
            return [FieldProblem("row", str(raw["__error__"]))]
        problems: list[FieldProblem] = []
        if not raw.keys() <= _COLUMN_SET:
            # A fixed schema: a column we do not hold (a "concern", a note) is refused.
            problems.extend(FieldProblem(name, "not a field of the child record")
                            for name in sorted(set(raw) - _COLUMN_SET))
        text = _texts(raw)
        lookups = self.lookups
        today = lookups.today
        scheme, source_ref = text.get("source_scheme", ""), text.get("source_id", "")
        # A scheme alone is checked too: stored unchecked, one too long for its
        # column failed the whole COPY on PostgreSQL instead of naming its row.
        if (source_ref or scheme) and scheme not in SCHEMES:
            problems.append(FieldProblem("source_scheme", f"one of {', '.join(SCHEMES)}"))
        if scheme == "nhs_number" and source_ref and not _nhs_ok(source_ref):
            problems.append(FieldProblem("source_id", "not a valid NHS number"))
        if len(source_ref) > 40:
            problems.append(FieldProblem("source_id", "must be 40 characters or fewer"))

        la = text.get("local_authority", "")
        la_id = lookups.local_authorities.get(la)
        if not la:
            problems.append(FieldProblem("local_authority", "enter the local authority's code"))
        elif la_id is None:
            problems.append(FieldProblem("local_authority", f"no local authority {la!r}"))
        forename, forename_key = _name(text, "forename", problems, "forename")
        surname, surname_key = _name(text, "surname", problems, "surname")

        former: list[list[str]] = []
        former_raw = raw.get("former_names") or []
        if former_raw:
            for each in (former_raw if isinstance(former_raw, list) else
                         [f for f in str(former_raw).split("|") if f.strip()]):
                parts = " ".join(str(each).split()).rsplit(" ", 1)
                if len(parts) != 2 or not name_key(parts[1]) or len(parts[1]) > 100:
                    problems.append(FieldProblem("former_names", "each as 'Forename Surname', "
                                                 "separated by |"))
                    break
                former.append(parts)

        gender = text.get("gender", "")
        if gender not in _GENDERS:
            problems.append(FieldProblem("gender", "female, male or not_specified"))
        born_text = text.get("date_of_birth", "")
        born = iso_date(born_text, "date_of_birth", problems)
        if not born_text:
            problems.append(FieldProblem("date_of_birth", "enter the date of birth"))
        elif born is not None and born > today:
            problems.append(FieldProblem("date_of_birth", "must be in the past"))
        died_text = text.get("date_of_death", "")
        died = iso_date(died_text, "date_of_death", problems)
        if died and born and died < born:
            problems.append(FieldProblem("date_of_death", "must be on or after the date of birth"))
        if died and died > today:
            problems.append(FieldProblem("date_of_death", "must not be in the future"))

        where = text.get("whereabouts", "")
        if where not in _WHEREABOUTS:
            problems.append(FieldProblem("whereabouts", "current_address, last_known_address, "
                                         "no_known_address or left_england"))
        postcode_text = text.get("postcode", "")
        postcode = normalise_postcode(postcode_text) if postcode_text else None
        if postcode_text and postcode is None:
            problems.append(FieldProblem("postcode", "not a valid UK postcode"))
        address: dict[str, str] | None = None
        district = None
        if where in _WITH_ADDRESS:
            line1 = " ".join(text.get("address_line1", "").split())[:200]
            if not line1:
                problems.append(FieldProblem("address_line1", "enter the first line of the "
                                             "address"))
            if not postcode_text:
                problems.append(FieldProblem("postcode", "enter the postcode"))
            address = {"address_line1": line1,
                       "address_line2": " ".join(text.get("address_line2", "").split())[:200],
                       "town": " ".join(text.get("town", "").split())[:200],
                       "postcode": postcode[0] if postcode else ""}
            district = postcode[1] if postcode else None
        intention = None
        if where == Whereabouts.LEFT_ENGLAND.value:
            intention = text.get("return_intention", "") or ReturnIntention.UNKNOWN.value
            if intention not in _INTENTIONS:
                problems.append(FieldProblem("return_intention", "yes, no or unknown"))

        carers = []
        for name_field, relationship_field, phone_field in _CARER_FIELDS:
            carer, _key = _name(text, name_field, problems, "name", required=False)
            if not carer:
                continue
            phone = text.get(phone_field, "")
            if phone and not _phone_ok(phone):
                problems.append(FieldProblem(phone_field, "not a valid phone number"))
            carers.append({"name": carer, "relationship": text.get(relationship_field, "")[:40],
                           "phone": phone})

        school = _service(text, "school", SETTING_KINDS[InvolvementRole.EDUCATIONAL_SETTING],
                          lookups, problems)
        gp = _service(text, "gp_practice", SETTING_KINDS[InvolvementRole.GP_PRACTICE],
                      lookups, problems)
        school_start = iso_date(text.get("school_start", ""), "school_start", problems)
        consent = text.get("retain_to_25", "").lower()
        if consent not in _CONSENTS:
            problems.append(FieldProblem("retain_to_25", "yes or no"))
        if problems:
            return problems

        assert born is not None and la_id is not None
        content = {
            "la": la_id, "forename": forename, "surname": surname, "former": former,
            "gender": gender, "born": born.isoformat(),
            "died": died.isoformat() if died else None, "where": where,
            "address": address, "return": intention, "carers": carers, "school": school,
            "school_start": school_start.isoformat() if school_start else None,
            "gp": gp, "retain_to_25": consent in ("yes", "true"),
        }
        return Checked(content, forename_key, surname_key, district, scheme or None,
                       source_ref or None)


def keyed_digest(digester: SecretDigester, *parts: str) -> str:
    """What a load keeps of values it must find again but not reveal (a
    postcode, a supplier's identifier): an HMAC, which without the key
    cannot be reversed by trying every postcode."""
    return digester.digest("\x1f".join(parts))[:32]


def match_key(digester: SecretDigester, surname_key: str, forename_key: str, born: str,
              postcode: str) -> str:
    """The keyed digest a record is matched by when the body's own
    identifier does not find it: name, date of birth (ISO) and postcode."""
    return keyed_digest(digester, "match", surname_key, forename_key, born,
                        postcode.replace(" ", ""))


def content_match_key(digester: SecretDigester, content: Mapping[str, Any]) -> str:
    address = content["address"]
    return match_key(digester, name_key(content["surname"]), name_key(content["forename"]),
                     content["born"], address["postcode"] if address else "")


def district_of(content: Mapping[str, Any]) -> str | None:
    """The postcode district search compares ("NE1"), from a body's content."""
    address = content["address"]
    postcode = normalise_postcode(address["postcode"]) if address else None
    return postcode[1] if postcode else None


_CARER_FIELDS = tuple((f"carer{n}_name", f"carer{n}_relationship", f"carer{n}_phone")
                      for n in (1, 2))
_to_json = json.JSONEncoder(check_circular=False).encode
# The content's keys in sorted order, and the repr of its sorted items with
# the values left to fill in (see RowPreparer.content_digest).
_CONTENT_KEYS = ("address", "born", "carers", "died", "forename", "former", "gender", "gp",
                 "la", "retain_to_25", "return", "school", "school_start", "surname", "where")
_CONTENT_REPR = "[" + ", ".join(f"({key!r}, %r)" for key in _CONTENT_KEYS) + "]"
_content_values = operator.itemgetter(*_CONTENT_KEYS)


def involvements(content: Mapping[str, Any]) -> tuple[tuple[int, str, str | None], ...]:
    """(service id, role, start) of the school and GP practice a body's content names."""
    school, gp = content["school"], content["gp"]
    if school is None and gp is None:
        return ()
    found: list[tuple[int, str, str | None]] = []
    if school is not None:
        found.append((school, InvolvementRole.EDUCATIONAL_SETTING.value,
                      content["school_start"]))
    if gp is not None:
        found.append((gp, InvolvementRole.GP_PRACTICE.value, None))
    return tuple(found)


def _texts(raw: Mapping[str, Any]) -> dict[str, str]:
    """Every supplied value as trimmed text: a CSV's cells are text already,
    a JSON line's may be numbers or null."""
    return {name: value.strip() if value.__class__ is str else
            "" if value is None else str(value).strip() for name, value in raw.items()}


def _name(text: Mapping[str, str], field: str, problems: list[FieldProblem], label: str,
          required: bool = True) -> tuple[str, str]:
    """The name with its spacing tidied, and its search key."""
    value = " ".join(text.get(field, "").split())
    key = ""
    if not value:
        if required:
            problems.append(FieldProblem(field, f"enter the {label}"))
    elif len(value) > 100:
        problems.append(FieldProblem(field, "must be 100 characters or fewer"))
    else:
        key = name_key(value)
        if not key:
            problems.append(FieldProblem(field, "must contain letters"))
    return value, key


def _service(text: Mapping[str, str], field: str, kinds: frozenset[ServiceKind],
             lookups: Lookups, problems: list[FieldProblem]) -> int | None:
    ref = text.get(field, "")
    if not ref:
        return None
    found = lookups.services.get(ref)
    if found is None or found[1] not in kinds:
        problems.append(FieldProblem(field, f"no {field.replace('_', ' ')} with id {ref!r} in "
                                     "the service directory"))
        return None
    return found[0]


def _phone_ok(phone: str) -> bool:
    """Digits, spaces and + ( ) - only, with 10 to 15 digits. The regular
    expression is the fast path for the ASCII numbers nearly every file holds."""
    if phone.isascii():
        if _ASCII_PHONE.fullmatch(phone) is None:
            return False
    elif not all(c.isdigit() or c in " +()-" for c in phone):
        return False
    return 10 <= sum(map(str.isdigit, phone)) <= 15


def _nhs_ok(value: str) -> bool:
    """The NHS number's modulus-11 check digit."""
    digits = value.replace(" ", "")
    if len(digits) != 10 or not _DIGITS.issuperset(digits):
        return False
    total = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9]))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


# PostgreSQL's COPY text format: a tab between columns, \\N for null, and a
# backslash before a backslash, tab, newline or carriage return in a value.
NULL = "\\N"
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_field(value: Any) -> str:
    """One value as a column of PostgreSQL's COPY text format."""
    if value is None:
        return NULL
    if value is True or value is False:
        return "t" if value else "f"
    text = value if value.__class__ is str else str(value)
    return text.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(text) else text


def copy_line(values: Iterable[Any]) -> str:
    """Values as one line of PostgreSQL's COPY text format, without its newline."""
    return "\t".join(map(copy_field, values))


def time_ordered_uuid() -> str:
    """A version 7 UUID (milliseconds, then random bits): new records land at
    the end of the public-id index instead of on a random page of it."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62 \
        | rand & (2**62 - 1)
    # The canonical form uuid.UUID(int=value) would print, without building one.
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def default_workers() -> int:
    """Worker processes for a large load: one per core this process may use
    but the one the loader writes from (whose database, if local, wants a
    core too), at least one, and no more than four (beyond that the single
    writer is the limit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1))


class RowChunk:
    """Rows already read (a list of dicts given to the loader), a chunk at a time."""

    __slots__ = ("_by_number", "items")

    def __init__(self, items: list[tuple[int, Mapping[str, Any]]]) -> None:
        self.items = items
        self._by_number: dict[int, Mapping[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def rows(self) -> Iterable[tuple[int, Mapping[str, Any]]]:
        return self.items

    def raw(self, number: int) -> Mapping[str, Any]:
        """The row as supplied, for the few rows that change a record."""
        if self._by_number is None:
            self._by_number = dict(self.items)
        return self._by_number[number]

    def __reduce__(self) -> tuple[Any, ...]:
        return (RowChunk, (self.items,))


class RowBlock:
    """Lines of a file, cut where a row ends, and the number of the first row
    in them: parsed where they are prepared (a worker), so that the loader
    reads a file as text and never builds or passes a dict a row, which was
    a fifth of its CPU. Numbers are counted as `csv_records` counts them."""

    __slots__ = ("_by_number", "count", "first_number", "header", "text")

    def __init__(self, first_number: int, count: int, text: str,
                 header: tuple[str, ...] | None) -> None:
        self.first_number = first_number
        self.count = count  # rows in it, blank ones included
        self.text = text
        self.header = header  # None: JSON lines
        self._by_number: dict[int, Mapping[str, Any]] | None = None

    def __len__(self) -> int:
        return self.count

    def rows(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        lines = io.StringIO(self.text, newline="")
        if self.header is None:
            return json_records(lines, self.first_number)
        return csv_records(csv.reader(lines), self.header, self.first_number)

    def raw(self, number: int) -> Mapping[str, Any]:
        """The row as supplied, for the few rows that change a record: the
        block is parsed again here, once."""
        if self._by_number is None:
            self._by_number = dict(self.rows())
        return self._by_number[number]

    def __reduce__(self) -> tuple[Any, ...]:
        return (RowBlock, (self.first_number, self.count, self.text, self.header))


Chunk = RowChunk | RowBlock


def csv_records(reader: Iterator[list[str]], header: tuple[str, ...], first_number: int
                ) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of a CSV file after its header, numbered as a spreadsheet
    shows them (the header is row 1): a blank line or a row of empty cells
    is skipped but counted, a row with too many or too few values is an error."""
    width = len(header)
    for number, cells in enumerate(reader, start=first_number):
        if not "".join(cells).strip():
            continue
        if len(cells) != width:
            yield number, {"__error__": f"has {len(cells)} values, the header has {width}"}
            continue
        yield number, dict(zip(header, cells, strict=True))


def json_records(lines: Iterable[str], first_number: int
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
    """The objects of a JSON lines file, numbered by line; blank lines skipped."""
    for number, line in enumerate(lines, start=first_number):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, {"__error__": f"not valid JSON ({error.msg})"}
            continue
        yield number, value if isinstance(value, dict) else {"__error__": "not an object"}


def in_chunks(rows: Iterable[tuple[int, Mapping[str, Any]]]) -> Iterator[RowChunk]:
    """Rows already read, CHUNK at a time, as prepared_rows takes them."""
    iterator = iter(rows)
    while items := list(itertools.islice(iterator, CHUNK)):
        yield RowChunk(items)


def prepared_rows(chunks: Iterable[Chunk], preparer: RowPreparer, workers: int
                  ) -> Generator[tuple[Prepared, Chunk], None, None]:
    """Every row prepared, with the chunk it came in (which gives the row as
    supplied, `Chunk.raw`), in the order given.

    A file of PARALLEL_FROM rows or more is handed to `workers` processes a
    chunk at a time, AHEAD chunks a worker in flight; what comes back is
    yielded in order, so the caller writes one chunk while the workers
    prepare the next ones. Smaller files (and `workers=0`) are prepared here.
    A worker that fails, or dies, fails the load: its exception (or
    BrokenProcessPool) is raised here, and the caller's transaction is rolled
    back as for any other error. Closing the iterator early stops the workers."""
    chunks = iter(chunks)
    head: list[Chunk] = []
    seen = 0
    for chunk in chunks:
        head.append(chunk)
        seen += len(chunk)
        if seen >= PARALLEL_FROM:
            break
    if workers < 1 or seen < PARALLEL_FROM:
        for chunk in itertools.chain(head, chunks):
            for number, raw in chunk.rows():
                yield preparer.prepare_row(number, raw), chunk
        return
    # Spawned, not forked: a fork would copy the loader's open database
    # connection and whatever threads (a progress bar's) hold locks.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(preparer,))
    pending: deque[tuple[Chunk, Future[list[Prepared]]]] = deque()
    try:
        for chunk in itertools.chain(head, chunks):
            pending.append((chunk, pool.submit(_prepare_in_worker, chunk)))
            if len(pending) > AHEAD * workers:
                done, future = pending.popleft()
                yield from ((prepared, done) for prepared in future.result())
        while pending:
            done, future = pending.popleft()
            yield from ((prepared, done) for prepared in future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# The preparer of a worker process, set once when the worker starts so that
# each chunk carries only its rows.
_worker_preparer: RowPreparer | None = None


def _start_worker(preparer: RowPreparer) -> None:
    global _worker_preparer
    _worker_preparer = preparer
    # A worker makes and drops a few dozen containers a row, none of them in
    # cycles: the default collector threshold (700) had it scanning them all
    # the time, some 5 % of its CPU. What it holds for good is frozen.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # Ctrl+C reaches the whole process group: the loader stops the workers
    # and rolls back; a worker interrupted mid-chunk would only add noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _prepare_in_worker(chunk: Chunk) -> list[Prepared]:
    assert _worker_preparer is not None, "started without a preparer"
    return _worker_preparer.prepare(chunk.rows())
