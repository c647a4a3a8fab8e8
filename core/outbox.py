"""Letters waiting to be posted: the stand-in for a print room.

A letter may carry a one-time code, so its body is encrypted at rest and is
destroyed once printed; after that the code exists only on paper (and as a
keyed digest where it is checked).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.audit import Auditor
from core.clock import Clock
from core.crypto import DataCipher
from core.db import Base, UTCDateTime
from core.errors import Conflict, NotFound


class Letter(Base):
    __tablename__ = "outbox_letter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    recipient_name: Mapped[str] = mapped_column(String(200), nullable=False)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"))
    body_ciphertext: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    printed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass
class Outbox:
    session: Session
    cipher: DataCipher
    clock: Clock
    audit: Auditor

    def post(
        self,
        *,
        kind: str,
        recipient_name: str,
        body: str,
        person_id: int | None = None,
        organisation_id: int | None = None,
    ) -> Letter:
        letter = Letter(
            kind=kind,
            recipient_name=recipient_name,
            person_id=person_id,
            organisation_id=organisation_id,
            created_at=self.clock.now(),
        )
        self.session.add(letter)
        self.session.flush()
        letter.body_ciphertext = self.cipher.encrypt_text(body, f"letter:{letter.id}")
        self.audit.record(
            "outbox:letter:queued",
            subject_type="letter",
            subject_id=letter.id,
            organisation_id=organisation_id,
            detail={"kind": kind, "person": person_id},
        )
        return letter

    def waiting(self) -> list[Letter]:
        stmt = select(Letter).where(Letter.printed_at.is_(None)).order_by(Letter.id)
        return list(self.session.scalars(stmt))

    def all(self) -> list[Letter]:
        return list(self.session.scalars(select(Letter).order_by(Letter.id)))

    def print_letter(self, letter_id: int) -> str:
        """Return the body once and wipe it; a second print is refused."""
        letter = self.session.get(Letter, letter_id)
        if letter is None:
            raise NotFound(f"no letter {letter_id}")
        if letter.body_ciphertext is None:
            raise Conflict(f"letter {letter_id} was already printed")
        body = self.cipher.decrypt_text(letter.body_ciphertext, f"letter:{letter.id}")
        letter.body_ciphertext = None
        letter.printed_at = self.clock.now()
        self.audit.record(
            "outbox:letter:printed",
            subject_type="letter",
            subject_id=letter.id,
            organisation_id=letter.organisation_id,
            detail={"kind": letter.kind},
        )
        return body
