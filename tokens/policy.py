"""Each organisation's authenticator policy, resolved for one person.

A person may hold positions in several organisations; the strictest of their
current organisations' policies applies, because every one of those
organisations relies on the same sign-in. No row for an organisation means
its people may use every authenticator, with attestation "none" and user
verification "preferred".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.errors import FieldProblem, InvalidInput, NotAllowed
from directory.accreditation import reason_detail
from directory.models import Organisation, Person
from directory.service import Principal, administers, current_positions
from tokens.models import AuthenticatorPolicy, TokenForm

ATTESTATIONS = ("none", "direct")
USER_VERIFICATIONS = ("discouraged", "preferred", "required")


class Factor(enum.StrEnum):
    SOFT_TOKEN = "soft_token"  # noqa: S105 - a factor name, not a secret
    HARDWARE_TOKEN = "hardware_token"  # noqa: S105 - a factor name, not a secret
    SECURITY_KEY = "security_key"


def factor_of_token(form: TokenForm) -> Factor:
    return Factor.HARDWARE_TOKEN if form is TokenForm.HARDWARE else Factor.SOFT_TOKEN


@dataclass(frozen=True)
class EffectivePolicy:
    allowed: frozenset[Factor]
    attestation: str
    user_verification: str

    def allows(self, factor: Factor) -> bool:
        return factor in self.allowed


DEFAULT_POLICY = EffectivePolicy(frozenset(Factor), "none", "preferred")


# Built once: sign-in reads the policy of the person's organisations every time.
_POLICIES = select(AuthenticatorPolicy.__table__).where(
    AuthenticatorPolicy.__table__.c.organisation_id.in_(bindparam("ids", expanding=True))
)


def _one(row: AuthenticatorPolicy) -> EffectivePolicy:
    allowed = set()
    if row.allow_soft_token:
        allowed.add(Factor.SOFT_TOKEN)
    if row.allow_hardware_token:
        allowed.add(Factor.HARDWARE_TOKEN)
    if row.allow_security_key:
        allowed.add(Factor.SECURITY_KEY)
    # An unknown value in the table is read as the strictest, never the laxest.
    attestation = row.attestation if row.attestation in ATTESTATIONS else "direct"
    uv = row.user_verification if row.user_verification in USER_VERIFICATIONS else "required"
    return EffectivePolicy(frozenset(allowed), attestation, uv)


def strictest(policies: list[EffectivePolicy]) -> EffectivePolicy:
    result = DEFAULT_POLICY
    for policy in policies:
        result = EffectivePolicy(
            result.allowed & policy.allowed,
            max(result.attestation, policy.attestation, key=ATTESTATIONS.index),
            max(result.user_verification, policy.user_verification, key=USER_VERIFICATIONS.index),
        )
    return result


def policy_for(session: Session, person: Person, today: date) -> EffectivePolicy:
    """The policy that applies to this person today."""
    return policy_of(session, {p.organisation_id for p in current_positions(person, today)})


def policy_of(session: Session, organisation_ids: set[int]) -> EffectivePolicy:
    """The strictest policy of these organisations (a person's current ones)."""
    if not organisation_ids:
        return DEFAULT_POLICY
    session.flush()  # a policy changed in this unit counts, as the ORM's autoflush made it
    rows = session.connection().execute(_POLICIES, {"ids": sorted(organisation_ids)})
    return strictest([_one(AuthenticatorPolicy(**row._mapping)) for row in rows])


@dataclass
class PolicyService:
    """Reading and setting an organisation's policy: platform admins for any
    organisation, organisation admins for their own; every change audited with
    what it was before, because it decides how strongly people must sign in."""

    session: Session
    audit: Auditor

    def get(self, organisation_id: int) -> EffectivePolicy:
        row = self.session.get(AuthenticatorPolicy, organisation_id)
        return DEFAULT_POLICY if row is None else _one(row)

    def set(
        self,
        actor: Principal,
        organisation_id: int,
        *,
        allowed: frozenset[Factor],
        attestation: str,
        user_verification: str,
        reason: str | None = None,
    ) -> EffectivePolicy:
        org = self.session.get(Organisation, organisation_id)
        if org is None or not administers(actor, org):
            raise NotAllowed()
        problems: list[FieldProblem] = []
        why: dict[str, str] = {}
        try:
            why = reason_detail(actor, reason)
        except InvalidInput as error:
            problems.extend(error.problems)
        if attestation not in ATTESTATIONS:
            problems.append(FieldProblem("attestation", "expected none or direct"))
        if user_verification not in USER_VERIFICATIONS:
            problems.append(
                FieldProblem("user_verification", "expected required, preferred or discouraged")
            )
        if not allowed:
            problems.append(FieldProblem("allowed", "allow at least one authenticator"))
        if problems:
            raise InvalidInput(problems)
        before = self.get(organisation_id)
        row = self.session.get(AuthenticatorPolicy, organisation_id)
        if row is None:
            row = AuthenticatorPolicy(organisation_id=organisation_id)
            self.session.add(row)
        row.allow_soft_token = Factor.SOFT_TOKEN in allowed
        row.allow_hardware_token = Factor.HARDWARE_TOKEN in allowed
        row.allow_security_key = Factor.SECURITY_KEY in allowed
        row.attestation = attestation
        row.user_verification = user_verification
        self.session.flush()
        after = _one(row)
        self.audit.record(
            "policy:authenticators:changed",
            subject_type="organisation",
            subject_id=organisation_id,
            organisation_id=organisation_id,
            detail={"before": _describe(before), "after": _describe(after),
                    **why},
        )
        return after


def _describe(policy: EffectivePolicy) -> dict[str, object]:
    return {
        "allowed": sorted(f.value for f in policy.allowed),
        "attestation": policy.attestation,
        "user_verification": policy.user_verification,
    }
