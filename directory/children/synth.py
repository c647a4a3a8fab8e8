"""Realistic synthetic child records for demos and benchmarks; never real data.

Identifiers are marked synthetic (SYN...) or NHS numbers from the 999 range
the NHS reserves for testing, phone
numbers from Ofcom's drama ranges (01632 960xxx, 07700 900xxx), postcodes are
well-formed but made up, and names are drawn from common-name lists, so no row
can describe a real child.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from typing import IO, Any

from directory.children.preparing import COLUMNS

FORENAMES = (
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Rosie", "Sophia",
    "Grace", "Freya", "Willow", "Florence", "Emily", "Ella", "Poppy", "Evie", "Elsie",
    "Charlotte", "Evelyn", "Sienna", "Sofia", "Daisy", "Phoebe", "Sophie", "Alice", "Harper",
    "Matilda", "Ruby", "Emilia", "Maya", "Millie", "Isabelle", "Aisha", "Zara", "Fatima",
    "Maryam", "Amira", "Hannah", "Noah", "Oliver", "George", "Arthur", "Muhammad", "Leo",
    "Harry", "Oscar", "Archie", "Henry", "Theodore", "Freddie", "Jack", "Charlie", "Theo",
    "Alfie", "Jacob", "Thomas", "Finley", "Arlo", "William", "Lucas", "Roman", "Tommy",
    "Isaac", "Teddy", "Alexander", "Luca", "Edward", "James", "Joshua", "Albie", "Elijah",
    "Max", "Mohammed", "Reggie", "Hunter", "Louie", "Ibrahim", "Yusuf", "Adam", "Samuel",
    "Rory",
)
SURNAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall",
    "Thomas", "Clarke", "Jackson", "Wood", "Harris", "Edwards", "Turner", "Martin", "Cooper",
    "Hill", "Ward", "Hughes", "Moore", "Clark", "King", "Harrison", "Lewis", "Baker", "Lee",
    "Allen", "Morris", "Khan", "Scott", "Watson", "Davis", "Parker", "James", "Bennett",
    "Young", "Phillips", "Richardson", "Mitchell", "Bailey", "Carter", "Cook", "Singh", "Shaw",
    "Bell", "Collins", "Morgan", "Kelly", "Begum", "Miller", "Cox", "Marshall", "Simpson",
    "Anderson", "Ellis", "Adams", "Wilkinson", "Ali", "Ahmed", "Foster", "Graham", "Murphy",
    "Chapman", "Mason", "Webb", "Rogers", "Campbell", "Gray", "Hunt", "Holmes", "Mills",
    "Price", "Palmer", "Atkinson", "Barker", "Lloyd", "Reid", "Matthews", "Fisher", "Dixon",
    "Hussain", "Kaur", "Nowak", "Kowalski", "Okafor", "Mensah", "Nguyen", "Chen", "Silva",
    "Costa", "Murray", "Stevens", "Gibson", "Pearson", "Butler", "Barnes", "Fox", "Ryan",
    "Knight", "Hamilton", "Owen", "Dawson", "Kennedy", "Hayes", "Walsh", "Byrne", "Doyle",
    "Quinn",
)
STREETS = ("High Street", "Station Road", "Church Lane", "Victoria Road", "Green Lane",
           "Manor Road", "Park Avenue", "Mill Lane", "Queens Road", "The Crescent",
           "Kingsway", "Oak Drive", "Elm Grove", "School Lane", "North Street")
TOWNS = ("Northtown", "Eastbury", "Westford", "Southam Vale", "Millbridge", "Oakham Cross")
RELATIONSHIPS = ("mother", "father", "stepmother", "stepfather", "grandmother", "foster carer",
                 "aunt", "special guardian")


def nhs_test_number(k: int) -> str:
    """The k-th valid NHS number of the 999 range reserved for testing (with
    k under about 900,000): distinct k give distinct numbers."""
    serial = k * 10 // 11  # about 1 in 11 bodies has no valid check digit
    while True:
        body = f"999{serial % 10**6:06d}"
        total = sum(int(d) * (10 - i) for i, d in enumerate(body))
        check = 11 - total % 11
        check = 0 if check == 11 else check
        if check != 10:
            return body + str(check)
        serial += 1


def records(
    count: int,
    *,
    la_codes: Sequence[str],
    districts: Sequence[str] = ("NE1", "NE2", "NE3", "NE4", "NE5", "NE6", "NE7", "NE8"),
    schools: Sequence[str] = (),
    gps: Sequence[str] = (),
    today: date | None = None,
    seed: int = 2009,
) -> Iterator[dict[str, Any]]:
    """`count` records as import rows, the same for the same seed."""
    rng = random.Random(seed)
    today = today or date.today()
    for n in range(count):
        surname = rng.choice(SURNAMES)
        born = today - timedelta(days=rng.randrange(1, 18 * 365))
        where = rng.random()
        whereabouts = ("current_address" if where < 0.97 else "last_known_address"
                       if where < 0.985 else "no_known_address" if where < 0.995
                       else "left_england")
        district = districts[n % len(districts)] if districts else "NE1"
        row: dict[str, Any] = {
            # Mostly the supplier's own local number (unique by seed and row);
            # one in five an NHS number from the range reserved for testing.
            "source_scheme": "local_id",
            "source_id": f"SYN{seed}-{n}",
            "local_authority": la_codes[n % len(la_codes)],
            "forename": rng.choice(FORENAMES),
            "surname": surname,
            "former_names": "",
            "gender": rng.choice(("female", "male", "female", "male", "not_specified")),
            "date_of_birth": born.isoformat(),
            "date_of_death": "",
            "whereabouts": whereabouts,
            "address_line1": "", "address_line2": "", "town": "", "postcode": "",
            "return_intention": "unknown" if whereabouts == "left_england" else "",
            "carer1_name": f"{rng.choice(FORENAMES)} {surname}",
            "carer1_relationship": rng.choice(RELATIONSHIPS),
            "carer1_phone": f"07700 900{rng.randrange(1000):03d}",
            "carer2_name": "", "carer2_relationship": "", "carer2_phone": "",
            "school": rng.choice(schools) if schools and born < today - timedelta(days=4 * 365)
            else "",
            "school_start": "",
            "gp_practice": rng.choice(gps) if gps else "",
            "retain_to_25": "",
        }
        if whereabouts in ("current_address", "last_known_address"):
            row["address_line1"] = f"{rng.randrange(1, 300)} {rng.choice(STREETS)}"
            row["town"] = rng.choice(TOWNS)
            # made-up inward codes: digit + two letters from the allowed set
            row["postcode"] = (f"{district} {rng.randrange(10)}"
                               f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
                               f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}")
        if rng.random() < 0.35:
            other = rng.choice((surname, rng.choice(SURNAMES)))
            row["carer2_name"] = f"{rng.choice(FORENAMES)} {other}"
            row["carer2_relationship"] = rng.choice(RELATIONSHIPS)
            row["carer2_phone"] = f"01632 960{rng.randrange(1000):03d}"
        if row["school"]:
            row["school_start"] = (born + timedelta(days=4 * 365 + 200)).isoformat()
        if rng.random() < 0.03:
            row["former_names"] = f"{row['forename']} {rng.choice(SURNAMES)}"
        if n % 5 == 0 and n < 800_000 and seed == 2009:
            row["source_scheme"], row["source_id"] = "nhs_number", nhs_test_number(n)
        yield row


def write(rows: Iterator[dict[str, Any]], out: IO[str], *, jsonl: bool = False) -> int:
    written = 0
    if jsonl:
        for row in rows:
            out.write(json.dumps(row) + "\n")
            written += 1
        return written
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS))
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        written += 1
    return written
