"""One-time codes sent by letter (activation, PIN reset, password reset)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.clock import Clock
from core.crypto import SecretDigester, new_letter_code, normalise_letter_code
from tokens.models import CodePurpose, LetterCode


@dataclass
class LetterCodes:
    session: Session
    digester: SecretDigester
    clock: Clock

    def issue(self, person_id: int, purpose: CodePurpose, valid_for: timedelta) -> str:
        """A fresh code; any earlier unused code for the same purpose stops working."""
        now = self.clock.now()
        self.session.execute(
            update(LetterCode)
            .where(
                LetterCode.person_id == person_id,
                LetterCode.purpose == purpose,
                LetterCode.used_at.is_(None),
                LetterCode.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        code = new_letter_code()
        self.session.add(
            LetterCode(
                person_id=person_id,
                purpose=purpose,
                digest=self.digester.digest(code),
                created_at=now,
                expires_at=now + valid_for,
            )
        )
        self.session.flush()
        return code

    def redeem(self, person_id: int, purpose: CodePurpose, typed: str) -> bool:
        """Use the code once. The conditional UPDATE makes a race use it once too."""
        digest = self.digester.digest(normalise_letter_code(typed))
        row = self.session.scalar(select(LetterCode).where(LetterCode.digest == digest))
        now = self.clock.now()
        if (
            row is None
            or row.person_id != person_id
            or row.purpose is not purpose
            or row.used_at is not None
            or row.revoked_at is not None
            or row.expires_at <= now
        ):
            return False
        result = self.session.execute(
            update(LetterCode)
            .where(LetterCode.id == row.id, LetterCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
