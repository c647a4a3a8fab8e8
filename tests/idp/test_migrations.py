"""The migrations are the schema: they must build exactly what the models
describe, on SQLite and on PostgreSQL, and they must go down as well as up."""

from __future__ import annotations

from datetime import date

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from core.db import make_engine
from idp import database
from idp.models import Base


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_downgrade_to_nothing_and_up_again(database_url: str) -> None:
    engine = make_engine(database_url)
    database.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    database.upgrade(engine)
    assert database.is_current(engine)
    assert "audit_entry" in inspect(engine).get_table_names()
    engine.dispose()


def test_former_names_get_their_childs_search_keys(database_url: str) -> None:
    """0009 copies each child's date of birth and district onto its former
    names, so records loaded before it are found by former surname + DOB."""
    engine = make_engine(database_url)
    database.downgrade(engine, "0008")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO organisation (id, code, name, kind, accreditation, "
            "accreditation_changed_at) VALUES (1, 'LA1', 'Council', 'local_authority', "
            "'accredited', '2026-01-01 00:00:00')"))
        for n, district in ((1, "NE1"), (2, None)):
            conn.execute(text(
                "INSERT INTO child (id, public_id, identifier, responsible_la_id, forename, "
                "surname, forename_key, surname_key, gender, date_of_birth, whereabouts, "
                "postcode_district, match_key, content_digest, shielded, retain_to_25, "
                "created_at, updated_at) VALUES (:n, :p, :i, 1, 'A', 'B', 'a', 'b', 'female', "
                ":born, 'current_address', :district, 'm', 'c', false, false, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                {"n": n, "p": f"p{n}", "i": f"i{n}", "born": date(2015, 3, n),
                 "district": district})
            conn.execute(text(
                "INSERT INTO child_former_name (child_id, forename, surname, surname_key) "
                "VALUES (:n, 'A', 'Brooks', 'brooks')"), {"n": n})
    database.upgrade(engine)
    with engine.connect() as conn:
        copied = conn.execute(text(
            "SELECT child_id, date_of_birth, postcode_district FROM child_former_name "
            "ORDER BY child_id")).all()
    engine.dispose()
    assert [(n, str(born), district) for n, born, district in copied] == [
        (1, "2015-03-01", "NE1"), (2, "2015-03-02", None)]
