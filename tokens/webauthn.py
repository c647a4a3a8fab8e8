"""FIDO2 / WebAuthn security keys: registration, assertion, listing, removal.

A security key signs a challenge bound to this site's origin, so a phishing
site cannot relay it: that is why, with a PIN, it is the one authenticator
that reaches assurance level 3. Everything the ceremony must remember (the
challenge) is kept server-side in a `Flow` row, used once and expiring; the
browser holds only the flow's random token.

No Flask here: the pages, a future API and the tests call the same service,
and the step-up that relying applications ask for (acr_values) will reuse the
assertion half as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from core.audit import Auditor
from core.clock import Clock
from core.crypto import SecretDigester, new_token
from core.errors import DomainError, NotAllowed, NotFound
from core.settings import Settings
from directory.models import Person
from directory.service import Principal, home_organisation, require_admin_over
from tokens.models import Flow, SecurityKey
from tokens.policy import EffectivePolicy, Factor, policy_for

KEY_REGISTRATION = "key_registration"
CHALLENGE = "challenge"
MAX_KEY_NAME = 100
# A credential posted by a browser is a few kilobytes; anything far larger is not one.
MAX_CREDENTIAL_JSON = 64 * 1024


class KeyNotAllowed(NotAllowed):
    error_id = "keys.not_allowed"
    title = "Your organisation does not allow security keys"


class KeyRegistrationFailed(DomainError):
    error_id = "keys.registration_failed"
    title = (
        "The security key could not be registered. It may already be registered, or the "
        "request took too long. Try again."
    )


class KeyNotFound(NotFound):
    error_id = "keys.not_found"
    title = "Security key not found"


class AssertionRefused(Exception):
    """Why an assertion was refused: for the audit log only. Callers turn it into
    their own uniform failure, so the reason never reaches the person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    origin: str

    @classmethod
    def from_settings(cls, settings: Settings) -> RelyingParty:
        """Derived from the service's base URL unless set: keys are bound to the
        rp id for life, so it must follow the address people actually use."""
        parts = urlsplit(settings.service.base_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        return cls(
            id=settings.webauthn.rp_id or (parts.hostname or "localhost"),
            name=settings.webauthn.rp_name or settings.service.name,
            origin=settings.webauthn.origin or origin,
        )


@dataclass(frozen=True)
class PendingRegistration:
    flow_token: str
    options_json: str


@dataclass(frozen=True)
class AssertionChallenge:
    challenge: str  # base64url, to keep in the caller's flow
    options_json: str


@dataclass(frozen=True)
class VerifiedKey:
    key: SecurityKey
    user_verified: bool


def _credential_dict(credential_json: str) -> dict[str, Any]:
    if len(credential_json) > MAX_CREDENTIAL_JSON:
        raise ValueError("credential too large")
    parsed = json.loads(credential_json)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("id"), str):
        raise ValueError("not a credential")
    return parsed


def _transports(values: object) -> list[str]:
    known = {t.value for t in AuthenticatorTransport}
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, str) and v in known][:8]


@dataclass
class SecurityKeyService:
    session: Session
    settings: Settings
    clock: Clock
    audit: Auditor
    digester: SecretDigester

    @property
    def rp(self) -> RelyingParty:
        return RelyingParty.from_settings(self.settings)

    def policy(self, person: Person) -> EffectivePolicy:
        return policy_for(self.session, person, self.clock.today())

    def keys_of(self, person_id: int) -> list[SecurityKey]:
        return list(
            self.session.scalars(
                select(SecurityKey)
                .where(SecurityKey.person_id == person_id, SecurityKey.removed_at.is_(None))
                .order_by(SecurityKey.created_at, SecurityKey.id)
            )
        )

    def _descriptors(self, person_id: int) -> list[PublicKeyCredentialDescriptor]:
        return [
            PublicKeyCredentialDescriptor(
                id=base64url_to_bytes(key.credential_id),
                transports=[AuthenticatorTransport(t) for t in _transports(key.transports)],
            )
            for key in self.keys_of(person_id)
        ]

    # -- registration ---------------------------------------------------------

    def begin_registration(self, person: Person) -> PendingRegistration:
        """Options for navigator.credentials.create(); the challenge stays here."""
        policy = self.policy(person)
        if not policy.allows(Factor.SECURITY_KEY):
            self.audit.record(
                "key:registration:refused",
                "refused",
                subject_type="person",
                subject_id=person.id,
                organisation_id=home_organisation(person, self.clock.today()),
                detail={"reason": "organisation policy forbids security keys"},
            )
            self.session.commit()
            raise KeyNotAllowed()
        rp = self.rp
        options = generate_registration_options(
            rp_id=rp.id,
            rp_name=rp.name,
            user_name=person.username,
            # The public id, never the database id: the key stores it.
            user_id=person.public_id.encode(),
            user_display_name=person.display_name,
            timeout=self.settings.webauthn.challenge_seconds * 1000,
            attestation=AttestationConveyancePreference(policy.attestation),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement(policy.user_verification),
            ),
            exclude_credentials=self._descriptors(person.id),
        )
        token = new_token()
        now = self.clock.now()
        self.session.add(
            Flow(
                digest=self.digester.digest(token),
                kind=KEY_REGISTRATION,
                stage=CHALLENGE,
                person_id=person.id,
                epoch=person.security_epoch,
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.webauthn.challenge_seconds),
                data={"challenge": bytes_to_base64url(options.challenge)},
            )
        )
        # Committed here, like sign-in's flows: the page that shows these options
        # may itself be a refusal (4xx), whose unit of work is rolled back.
        self.session.commit()
        return PendingRegistration(token, options_to_json(options))

    def _registration_flow(self, flow_token: str, person: Person) -> Flow | None:
        flow = self.session.scalar(
            select(Flow).where(Flow.digest == self.digester.digest(flow_token))
        )
        if (
            flow is None
            or flow.kind != KEY_REGISTRATION
            or flow.person_id != person.id
            or flow.epoch != person.security_epoch
            or flow.finished_at is not None
            or flow.expires_at <= self.clock.now()
        ):
            return None
        return flow

    def _refuse_registration(self, person: Person, reason: str) -> KeyRegistrationFailed:
        """Audit and commit, so the used-up challenge stays used up."""
        self.audit.record(
            "key:registration:failure",
            "failure",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            detail={"reason": reason},
        )
        self.session.commit()
        return KeyRegistrationFailed()

    def finish_registration(
        self, person: Person, flow_token: str, credential_json: str, name: str
    ) -> SecurityKey:
        """Verify the authenticator's attestation and keep its public key."""
        flow = self._registration_flow(flow_token, person) if flow_token else None
        if flow is None:
            raise self._refuse_registration(person, "no pending challenge")
        flow.finished_at = self.clock.now()  # single use, whatever happens next
        policy = self.policy(person)
        if not policy.allows(Factor.SECURITY_KEY):
            raise self._refuse_registration(person, "organisation policy forbids security keys")
        try:
            posted = _credential_dict(credential_json)
            verified = verify_registration_response(
                credential=posted,
                expected_challenge=base64url_to_bytes(str(flow.data["challenge"])),
                expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin,
                require_user_verification=policy.user_verification == "required",
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise self._refuse_registration(person, f"attestation refused: {exc}") from exc
        # py_webauthn hands back the format as the raw string it parsed.
        fmt = AttestationFormat(verified.fmt)
        if policy.attestation == "direct" and fmt is AttestationFormat.NONE:
            raise self._refuse_registration(person, "policy requires an attestation statement")
        credential_id = bytes_to_base64url(verified.credential_id)
        if self.session.scalar(
            select(SecurityKey.id).where(SecurityKey.credential_id == credential_id)
        ):
            raise self._refuse_registration(person, "credential already registered")
        response = posted.get("response")
        transports = response.get("transports") if isinstance(response, dict) else None
        key = SecurityKey(
            person_id=person.id,
            credential_id=credential_id,
            public_key=bytes_to_base64url(verified.credential_public_key),
            sign_count=verified.sign_count,
            aaguid=verified.aaguid,
            attestation_format=fmt.value,
            transports=_transports(transports),
            user_verified=verified.user_verified,
            name=(name.strip() or "Security key")[:MAX_KEY_NAME],
            created_at=self.clock.now(),
        )
        self.session.add(key)
        self.session.flush()
        self.audit.record(
            "key:registered",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            detail={
                "key_id": key.id,
                "name": key.name,
                "aaguid": key.aaguid,
                "attestation": key.attestation_format,
                "user_verified": key.user_verified,
            },
        )
        return key

    # -- removal --------------------------------------------------------------

    def remove(self, person: Person, key_id: int) -> SecurityKey:
        """Only the key's own person removes it here; kept as a row for the record."""
        key = self.session.get(SecurityKey, key_id)
        if key is None or key.person_id != person.id or key.removed_at is not None:
            raise KeyNotFound()
        key.removed_at = self.clock.now()
        self.audit.record(
            "key:removed",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            detail={"key_id": key.id, "name": key.name},
        )
        return key

    def revoke(self, actor: Principal, person: Person, key_id: int, reason: str) -> SecurityKey:
        """An administrator's removal of a lost or stolen key. The person's own
        removal needs level 3, which a person whose only key is lost cannot
        reach; and a lost key may be in other hands, so every open session of
        the person ends as well."""
        require_admin_over(actor, person, self.clock.today())
        key = self.key_of(person, key_id)
        key.removed_at = self.clock.now()
        person.security_epoch += 1  # ends every session, on every node
        self.audit.record(
            "key:revoked",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            detail={"key_id": key.id, "name": key.name, "reason": reason},
        )
        return key

    def key_of(self, person: Person, key_id: int) -> SecurityKey:
        key = self.session.get(SecurityKey, key_id)
        if key is None or key.person_id != person.id or key.removed_at is not None:
            raise KeyNotFound()
        return key

    # -- assertion --------------------------------------------------------------

    def assertion_challenge(self, person: Person) -> AssertionChallenge:
        """Options for navigator.credentials.get(), listing only this person's
        keys; the caller keeps the challenge in its own server-side flow."""
        options = generate_authentication_options(
            rp_id=self.rp.id,
            timeout=self.settings.webauthn.challenge_seconds * 1000,
            allow_credentials=self._descriptors(person.id),
            user_verification=UserVerificationRequirement(self.policy(person).user_verification),
        )
        return AssertionChallenge(bytes_to_base64url(options.challenge), options_to_json(options))

    def verify_assertion(
        self, person: Person, credential_json: str, challenge: str | None, when: datetime
    ) -> VerifiedKey:
        """Check one assertion against one of the person's own live keys; raise
        `AssertionRefused` with the reason otherwise. The counter must move on:
        a clone of the key, or a replayed response, shows an old count."""
        if not challenge:
            raise AssertionRefused("no challenge issued")
        policy = self.policy(person)
        if not policy.allows(Factor.SECURITY_KEY):
            raise AssertionRefused("organisation policy forbids security keys")
        try:
            posted = _credential_dict(credential_json)
        except ValueError as exc:
            raise AssertionRefused(f"malformed credential: {exc}") from exc
        key = self.session.scalar(
            select(SecurityKey).where(SecurityKey.credential_id == posted["id"])
        )
        if key is None:
            raise AssertionRefused("unknown security key")
        if key.person_id != person.id:
            raise AssertionRefused("security key of another person")
        if key.removed_at is not None:
            raise AssertionRefused("removed security key")
        try:
            verified = verify_authentication_response(
                credential=posted,
                expected_challenge=base64url_to_bytes(challenge),
                expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin,
                credential_public_key=base64url_to_bytes(key.public_key),
                credential_current_sign_count=key.sign_count,
                require_user_verification=policy.user_verification == "required",
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise AssertionRefused(f"assertion refused: {exc}") from exc
        key.sign_count = verified.new_sign_count
        key.last_used_at = when
        return VerifiedKey(key, verified.user_verified)
