"""One-time passwords (RFC 4226 HOTP, RFC 6238 TOTP) with replay protection.

A code is accepted only for a time step (or counter) beyond the last one
accepted, and the mark is moved with a conditional UPDATE, so two nodes racing
with the same code cannot both win: the database decides.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass

import pyotp
from sqlalchemy import and_, bindparam, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core.clock import Clock
from core.crypto import DataCipher
from core.settings import TotpSettings
from tokens.models import OtpAlgorithm, OtpToken, TokenForm, TokenState

# Built once (every sign-in claims a step). TOTP: the mark is the last step
# used, and a step is taken only past it; HOTP: the mark is the next counter.
_CLAIM_TOTP = (
    update(OtpToken)
    .where(and_(OtpToken.id == bindparam("token_id"), OtpToken.last_step < bindparam("mark")))
    .values(last_step=bindparam("mark"))
)
_CLAIM_HOTP = (
    update(OtpToken)
    .where(and_(OtpToken.id == bindparam("token_id"), OtpToken.last_step <= bindparam("step")))
    .values(last_step=bindparam("mark"))
)


def new_totp_secret() -> str:
    """160 random bits, base32, as RFC 4226 recommends and authenticator apps expect."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def provisioning_uri(secret: str, account: str, settings: TotpSettings) -> str:
    return pyotp.TOTP(
        secret, digits=settings.digits, interval=settings.period_seconds
    ).provisioning_uri(name=account, issuer_name=settings.issuer)


def _clean(code: str) -> str:
    return "".join(ch for ch in code if not ch.isspace())


@dataclass
class OtpVerifier:
    session: Session
    cipher: DataCipher
    clock: Clock
    settings: TotpSettings

    def secret_of(self, token: OtpToken) -> str:
        return self.cipher.decrypt_text(token.secret_ciphertext, f"otp:{token.serial}")

    def seal(self, serial: str, secret: str) -> str:
        return self.cipher.encrypt_text(secret, f"otp:{serial}")

    def matching_step(self, token: OtpToken, code: str, window: int | None = None) -> int | None:
        """The time step (TOTP) or counter (HOTP) this code belongs to, if any."""
        code = _clean(code)
        # isdigit() alone lets through non-ASCII digits, which compare_digest refuses
        # with a TypeError instead of a plain "no match".
        if len(code) != token.digits or not (code.isascii() and code.isdigit()):
            return None
        secret = self.secret_of(token)
        if token.algorithm is OtpAlgorithm.TOTP:
            totp = pyotp.TOTP(secret, digits=token.digits, interval=token.period_seconds)
            now_step = int(self.clock.now().timestamp()) // token.period_seconds
            centre = now_step + token.drift_steps
            reach = self.settings.drift_steps if window is None else window
            for step in range(centre - reach, centre + reach + 1):
                if hmac.compare_digest(totp.generate_otp(step), code):
                    return step
            return None
        hotp = pyotp.HOTP(secret, digits=token.digits)
        reach = 10 if window is None else window
        for counter in range(token.last_step, token.last_step + reach + 1):
            if hmac.compare_digest(hotp.at(counter), code):
                return counter
        return None

    def claim(self, token: OtpToken, step: int) -> bool:
        """Move the token's mark past `step`; False if another request got there first."""
        totp = token.algorithm is OtpAlgorithm.TOTP
        mark = step if totp else step + 1
        self.session.flush()  # as the ORM statement this replaces did
        result = self.session.connection().execute(
            _CLAIM_TOTP if totp else _CLAIM_HOTP,
            {"token_id": token.id, "mark": mark, "step": step},
        )
        if result.rowcount == 1:
            # The row holds the mark already: keep the object in step without
            # marking it dirty, which would flush a second, unconditional UPDATE.
            set_committed_value(token, "last_step", mark)
            return True
        return False

    def verify(self, token: OtpToken, code: str) -> bool:
        step = self.matching_step(token, code)
        if step is None:
            return False
        if token.algorithm is OtpAlgorithm.TOTP and step <= token.last_step:
            return False
        return self.claim(token, step)

    def new_soft_token(self, person_id: int, organisation_id: int | None) -> tuple[OtpToken, str]:
        secret = new_totp_secret()
        serial = f"SOFT-{secrets.token_hex(8).upper()}"
        token = OtpToken(
            serial=serial,
            form=TokenForm.SOFT,
            algorithm=OtpAlgorithm.TOTP,
            digits=self.settings.digits,
            period_seconds=self.settings.period_seconds,
            secret_ciphertext=self.seal(serial, secret),
            last_step=0,
            drift_steps=0,
            state=TokenState.ASSIGNED,
            organisation_id=organisation_id,
            person_id=person_id,
            created_at=self.clock.now(),
        )
        self.session.add(token)
        self.session.flush()
        return token, secret
