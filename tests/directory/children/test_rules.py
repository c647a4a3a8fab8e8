"""The pure rules: search keys, identifiers, dates."""

from __future__ import annotations

from datetime import date

import pytest

from directory.children.rules import (
    district_key,
    identifier_for,
    identifiers_for,
    months_after,
    name_key,
    valid_identifier,
    years_before,
)
from directory.children.synth import nhs_test_number


@pytest.mark.parametrize(("typed", "key"), [
    ("O'Brien", "obrien"), ("OBRIEN", "obrien"), ("o brien", "obrien"),
    ("Zoë", "zoe"), ("Smith-Jones", "smithjones"), ("  Ali ", "ali"), ("Łukasz", "lukasz"),
    ("Søren", "soren"), ("Weiß", "weiss"),
])
def test_name_keys(typed: str, key: str) -> None:
    assert name_key(typed) == key


@pytest.mark.parametrize(("typed", "key"), [
    ("ne1", "NE1"), ("NE1 4AB", "NE1"), ("ne14ab", "NE1"), ("SW1A 1AA", "SW1A"), ("B1", "B1"),
])
def test_district_keys(typed: str, key: str) -> None:
    assert district_key(typed) == key


def test_identifiers_are_unique_valid_and_not_sequential() -> None:
    made = [identifier_for(n) for n in range(1, 200_001)]
    assert len(set(made)) == len(made)
    assert all(valid_identifier(i) for i in made[:1000])
    assert not valid_identifier(made[0][:10] + str((int(made[0][10]) + 1) % 10))
    assert abs(int(made[1][:10]) - int(made[0][:10])) > 1000


def test_dates() -> None:
    assert years_before(date(2026, 2, 28), 18) == date(2008, 2, 28)
    assert years_before(date(2028, 2, 29), 18) == date(2010, 2, 28)
    assert months_after(date(2026, 8, 31), 6) == date(2027, 2, 28)


def test_synthetic_nhs_numbers_are_in_the_test_range_and_valid() -> None:
    from directory.children.preparing import _nhs_ok
    numbers = [nhs_test_number(k) for k in range(0, 50_000, 5)]
    assert all(n.startswith("999") and _nhs_ok(n) for n in numbers)
    assert len(set(numbers)) == len(numbers)


def test_identifiers_keep_their_values_and_refuse_other_digits() -> None:
    assert [identifier_for(n) for n in (1, 2, 999, 123456789, 10**10 - 1)] == [
        "19403377224", "98593377254", "51023407167", "64827080861", "61023377161"]
    assert valid_identifier("19403377224")
    assert not valid_identifier("1940337722\u0664")  # an Arabic-Indic 4
    assert not valid_identifier("1940337722\u00b2")  # a superscript 2


def test_a_load_s_identifiers_are_those_one_at_a_time_would_be() -> None:
    """The loader makes identifiers from tables of digit sums: the same
    digits, check digit included, as identifier_for, for every body the
    check digit can come from."""
    ids = [*range(1, 20_001), 99_999, 100_000, 123456789, 10**10 - 1, 10**10, 3 * 10**10 + 7]
    made = identifiers_for(ids)
    assert made == [identifier_for(n) for n in ids]
    assert {m[10] for m in made} == set("0123456789")
    assert identifiers_for([]) == []
