"""Two admins adding a provider for one organisation at the same moment, made
to happen in one order every time: the add under test checks that there is
none, and just before its provider is written another admin's is committed
through a second connection. The database's unique organisation column is then
all that stands between them, as it would be in a real race."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from core.audit import AuditEntry
from directory.service import Principal
from idp.container import Container
from idp.federation.models import UpstreamProvider
from idp.federation.service import NewProvider

FIRST_ISSUER = "https://first.example.org"
FIRST_SECRET = "the-first-admins-secret-K3v9Qm"


@contextmanager
def provider_added_meanwhile(container: Container, first: Principal,
                             organisation_id: int) -> Iterator[None]:
    """While inside, the first flush of a new provider for the organisation, in
    any session, is preceded by `first`'s own add of one, committed. Fails if
    no add under test got as far as writing its provider."""
    raced = False

    def commit_the_first(session: Session, _context: Any, _instances: Any) -> None:
        nonlocal raced
        if raced or not any(isinstance(new, UpstreamProvider)
                            and new.organisation_id == organisation_id for new in session.new):
            return
        raced = True  # before the add below, whose own flush comes through here too
        with container.unit() as other:
            other.federation.add(first, NewProvider(
                organisation_id=organisation_id, issuer=FIRST_ISSUER, client_id="first",
                username_claim="email", client_secret=FIRST_SECRET), "the first of two at once")
            other.commit()

    event.listen(Session, "before_flush", commit_the_first)
    try:
        yield
    finally:
        event.remove(Session, "before_flush", commit_the_first)
    assert raced, "the add under test never wrote its provider"


def assert_the_first_stands(container: Container, organisation_id: int) -> None:
    """The provider that won is the first admin's, whole: its issuer, its secret
    still decrypting, and the only audit entry of an add its own."""
    with container.unit() as unit:
        found = unit.federation.provider_of(organisation_id)
        assert found is not None and found.issuer == FIRST_ISSUER, found
        assert unit.federation.credential(found).secret == FIRST_SECRET
        added = unit.session.scalars(select(AuditEntry.detail).where(
            AuditEntry.tag == "federation:provider:added",
            AuditEntry.organisation_id == organisation_id)).all()
        assert [d["issuer"] for d in added] == [FIRST_ISSUER], added
