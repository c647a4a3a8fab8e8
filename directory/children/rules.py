"""Pure helpers shared by the service, the loader and the generator: the keys
search compares, the directory's identifier, and retention dates."""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import date

_LETTERS = re.compile(r"[^a-z]+")
# Letters that no Unicode decomposition takes to ASCII, as people type them.
_UNDECOMPOSED = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae",
                               "œ": "oe", "þ": "th", "ð": "d", "\u0131": "i"})
# An affine map on 10-digit numbers (the multiplier is coprime to 10**10), so
# identifiers are unique like the row ids they come from, without revealing
# how many records there are or in which order they were loaded.
_MULTIPLIER = 7_919_000_003
_OFFSET = 4_021_337_719
_MODULUS = 10**10


def name_key(name: str) -> str:
    """What name search compares: no accents, case, spaces or punctuation, so
    "O'Brien", "OBRIEN" and "O Brien" meet."""
    if name.isascii():
        return _LETTERS.sub("", name.lower())
    decomposed = unicodedata.normalize("NFKD", name.casefold().translate(_UNDECOMPOSED))
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _LETTERS.sub("", ascii_only.casefold())


def district_key(raw: str) -> str:
    """The outward code of a postcode or district, as stored: "ne1", "NE1 4AB" -> "NE1"."""
    compact = re.sub(r"\s+", "", raw).upper()
    if len(compact) >= 5 and compact[-3].isdigit():
        return compact[:-3]
    return compact[:4]


def identifier_for(row_id: int) -> str:
    """The directory's number for a child: ten digits and a check digit."""
    body = f"{(row_id * _MULTIPLIER + _OFFSET) % _MODULUS:010d}"
    return body + str(_check_digit(body))


def identifiers_for(row_ids: list[int]) -> list[str]:
    """`identifier_for` of each id, for a load's thousands at a time: the
    check digit from two tables of weighted digit sums (the body's first and
    last five digits), which the first call builds (a fifth of a second)."""
    high, low = _half_sums()
    found = []
    for row_id in row_ids:
        body = (row_id * _MULTIPLIER + _OFFSET) % _MODULUS
        first, last = divmod(body, 100_000)
        found.append(f"{body:010d}{(11 - (high[first] + low[last]) % 11) % 10}")
    return found


@functools.cache
def _half_sums() -> tuple[list[int], list[int]]:
    """Weighted digit sums of every five-digit number under the first five
    weights (11 to 7) and the last five (6 to 2)."""
    def sums(weights: tuple[int, ...]) -> list[int]:
        totals = [0]
        for weight in weights:  # the first digit's first: index = the number
            totals = [total + digit * weight for total in totals for digit in range(10)]
        return totals
    return sums(_WEIGHTS[:5]), sums(_WEIGHTS[5:])


_WEIGHTS = tuple(range(11, 1, -1))
# What the ASCII codes of ten digits add to the weighted sum beyond the digits.
_ZEROS = ord("0") * sum(_WEIGHTS)


def _check_digit(body: str) -> int:
    """Modulus 11 over ten ASCII digits (read as their codes: a load makes
    one identifier a record)."""
    total = sum(map(int.__mul__, body.encode(), _WEIGHTS)) - _ZEROS
    return (11 - total % 11) % 10


def valid_identifier(text: str) -> bool:
    return (len(text) == 11 and text.isascii() and text.isdigit()
            and _check_digit(text[:10]) == int(text[10]))


def years_before(day: date, years: int) -> date:
    """The date `years` before `day`; 29 February falls back to the 28th, so a
    child born on 29 February reaches an age on 1 March in other years."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def months_after(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, candidate)
        except ValueError:
            continue
    raise ValueError(day)  # pragma: no cover
