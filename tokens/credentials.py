"""Setting a person's password or PIN, wherever it is chosen: at activation
and in the reset journeys. One place applies the rules, hashes with argon2id
and stores, so the journeys cannot drift apart."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from core.errors import FieldProblem, InvalidInput
from core.settings import PasswordSettings
from directory.models import Person
from tokens.models import PasswordCredential, PinCredential
from tokens.passwords import SecretHasher, check_password, check_pin


def personal_words(person: Person) -> tuple[str, ...]:
    """What a password must not be built from: the person's own details."""
    return (
        person.username,
        person.given_name,
        person.family_name,
        person.work_email.split("@")[0],
    )


def store_password(
    session: Session,
    hasher: SecretHasher,
    rules: PasswordSettings,
    person: Person,
    password: str,
    confirmation: str,
    now: datetime,
) -> None:
    if password != confirmation:
        raise InvalidInput(FieldProblem("password_confirmation", "The passwords do not match"))
    check_password(password, rules, personal_words(person))
    hashed = hasher.hash(password)
    row = session.get(PasswordCredential, person.id)
    if row is None:
        session.add(PasswordCredential(person_id=person.id, hash=hashed, set_at=now))
    else:
        row.hash, row.set_at = hashed, now


def store_pin(
    session: Session,
    hasher: SecretHasher,
    person: Person,
    pin: str,
    confirmation: str,
    now: datetime,
) -> None:
    if pin != confirmation:
        raise InvalidInput(FieldProblem("pin_confirmation", "The PINs do not match"))
    check_pin(pin)
    hashed = hasher.hash(pin)
    row = session.get(PinCredential, person.id)
    if row is None:
        session.add(PinCredential(person_id=person.id, hash=hashed, set_at=now))
    else:
        row.hash, row.set_at = hashed, now
