"""Federation: registering an organisation's provider, signing in through it,
and linking upstream accounts to people.

The upstream step replaces step 1 of the sign-in only. Every callback that
proves nothing (an unlinked account, a bad signature, a wrong nonce, a state
replayed or from another browser, a person without access) ends in the same
`SignInFailed` as any other sign-in, counted against the client address and
audited as `signin:federated:failure` with the specific reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.crypto import DataCipher, SecretDigester, new_token
from core.errors import Conflict, FieldProblem, InvalidInput, NotAllowed, NotFound
from directory.accreditation import reason_detail
from directory.models import Organisation, Person
from directory.service import DirectoryService, Principal, require_admin_over
from idp.federation.models import UpstreamLink, UpstreamProvider, UpstreamRequest
from idp.federation.upstream import (
    ClientCredential,
    Discovery,
    MetadataCache,
    UpstreamRefused,
    UpstreamUnavailable,
    authorization_url,
    exchange_code,
    is_acceptable_url,
    private_key_of,
    validate_id_token,
)
from tokens.assurance import FEDERATED, HARDWARE_KEY, OTP, PASSWORD, PIN
from tokens.attempts import Attempts, Client
from tokens.errors import SignInFailed
from tokens.signin import SignedIn, SignInService

SIGNIN = "signin"
LINK = "link"
REQUEST_MINUTES = 10
AUTH_METHODS = ("client_secret_basic", "private_key_jwt")


class LinkRefused(SignInFailed):
    """Linking failed; as uninformative as a failed sign-in."""

    error_id = "federation.link_failed"
    title = (
        "Your organisation's account could not be linked. Start again, and sign in there "
        "with your own account."
    )


@dataclass(frozen=True)
class NewProvider:
    organisation_id: int
    issuer: str
    client_id: str
    username_claim: str
    accepted_acr: tuple[str, ...] = ()
    client_secret: str | None = None
    private_key_pem: str | None = None


@dataclass(frozen=True)
class TestReport:
    discovery: Discovery
    key_ids: list[str]


@dataclass(frozen=True)
class Upstream:
    """What a callback proved: who the provider says signed in, and for what."""

    request: UpstreamRequest
    provider: UpstreamProvider
    subject: str
    username: str | None
    acr: str | None


def four_factor(amr: list[str]) -> bool:
    """A session from a full sign-in here: password, token or key, and PIN."""
    return (
        PASSWORD in amr and PIN in amr and (OTP in amr or HARDWARE_KEY in amr)
        and FEDERATED not in amr
    )


def _already_has_one() -> Conflict:
    """One provider an organisation (a unique column): refused alike whether the
    first was there before the check or arrived while this one was being added."""
    return Conflict("this organisation already has a provider; remove it first")


@dataclass
class FederationService:
    session: Session
    clock: Clock
    audit: Auditor
    cipher: DataCipher
    digester: SecretDigester
    metadata: MetadataCache
    directory: DirectoryService
    signin: SignInService
    attempts: Attempts
    redirect_uri: str

    # -- providers ---------------------------------------------------------------

    def may_manage(self, actor: Principal, organisation_id: int) -> bool:
        """Whoever administers the organisation (`directory.service.administers`:
        its admins, its area's local authority team, platform admins) decides how
        its people sign in, and sees and removes their links, as they manage its
        tokens and applications."""
        return self.directory.administers(actor, organisation_id)

    def _may_manage(self, actor: Principal, organisation_id: int) -> None:
        if not self.may_manage(actor, organisation_id):
            raise NotAllowed()

    def provider_for(self, actor: Principal, organisation_id: int) -> UpstreamProvider | None:
        """The organisation's provider (or None), for someone who manages it."""
        self._may_manage(actor, organisation_id)
        return self.provider_of(organisation_id)

    def add(self, actor: Principal, new: NewProvider, reason: str | None = None
            ) -> UpstreamProvider:
        """Register an organisation's provider; its secret or key kept encrypted.
        Exactly one of the two is given; a problem with that pair is named on
        `client_secret`, where the console's form and the API's body both start."""
        self._may_manage(actor, new.organisation_id)
        if self.session.get(Organisation, new.organisation_id) is None:
            raise NotFound("No such organisation")  # a platform admin's mistyped id
        why = reason_detail(actor, reason)
        problems = []
        issuer = new.issuer.strip()
        if not is_acceptable_url(issuer):
            problems.append(FieldProblem("issuer", "must be an https URL"))
        if not new.client_id.strip():
            problems.append(FieldProblem("client_id", "must not be empty"))
        if not new.username_claim.strip():
            problems.append(FieldProblem("username_claim", "must not be empty"))
        if (new.client_secret is None) == (new.private_key_pem is None):
            problems.append(FieldProblem("client_secret",
                                         "give a client secret or a private key"))
        elif new.client_secret is not None and not new.client_secret.strip():
            problems.append(FieldProblem("client_secret", "must not be empty"))
        elif new.private_key_pem is not None:
            try:
                private_key_of(new.private_key_pem)
            except Exception:
                problems.append(FieldProblem("private_key", "not an RSA or EC private key"))
        if problems:
            raise InvalidInput(problems)
        if self.provider_of(new.organisation_id) is not None:
            raise _already_has_one()
        method = "private_key_jwt" if new.private_key_pem is not None else "client_secret_basic"
        provider = UpstreamProvider(
            organisation_id=new.organisation_id,
            issuer=issuer,
            client_id=new.client_id.strip(),
            auth_method=method,
            credential_ciphertext="",
            username_claim=new.username_claim.strip(),
            accepted_acr=sorted(set(new.accepted_acr)),
            created_at=self.clock.now(),
        )
        self.session.add(provider)
        try:
            self.session.flush()
        except IntegrityError:
            # Another admin's provider for the organisation landed after the check
            # above: the same answer as if it had been there, not a database error.
            # The whole unit is rolled back, as `link` does: no SAVEPOINT, which
            # pysqlite opens as the transaction itself, so releasing it commits.
            self.session.rollback()
            raise _already_has_one() from None
        secret = new.private_key_pem if new.private_key_pem is not None else new.client_secret
        assert secret is not None
        provider.credential_ciphertext = self.cipher.encrypt_text(
            secret, self._credential_context(provider)
        )
        self.audit.record(
            "federation:provider:added",
            subject_type="organisation",
            subject_id=new.organisation_id,
            organisation_id=new.organisation_id,
            detail={
                "issuer": provider.issuer,
                "client_id": provider.client_id,
                "auth_method": method,
                "username_claim": provider.username_claim,
                "accepted_acr": provider.accepted_acr,
                **why,
            },
        )
        return provider

    @staticmethod
    def _credential_context(provider: UpstreamProvider) -> str:
        return f"upstream-provider:{provider.id}:{provider.organisation_id}"

    def credential(self, provider: UpstreamProvider) -> ClientCredential:
        secret = self.cipher.decrypt_text(
            provider.credential_ciphertext, self._credential_context(provider)
        )
        return ClientCredential(provider.client_id, provider.auth_method, secret)

    def providers(self) -> list[tuple[UpstreamProvider, Organisation]]:
        rows = self.session.execute(
            select(UpstreamProvider, Organisation)
            .join(Organisation, Organisation.id == UpstreamProvider.organisation_id)
            .order_by(Organisation.name)
        )
        return [(p, o) for p, o in rows]

    def provider_of(self, organisation_id: int) -> UpstreamProvider | None:
        return self.session.scalar(
            select(UpstreamProvider).where(UpstreamProvider.organisation_id == organisation_id)
        )

    def set_accepted_acr(self, actor: Principal, organisation_id: int,
                         values: list[str], reason: str | None = None) -> UpstreamProvider:
        """Which upstream `acr` values meet level 2 for this organisation (none:
        token and PIN are always asked). Audited with what it was before, as
        it decides how strongly its people sign in."""
        self._may_manage(actor, organisation_id)
        why = reason_detail(actor, reason)
        provider = self.provider_of(organisation_id)
        if provider is None:
            raise NotFound("this organisation has no provider")
        before = list(provider.accepted_acr)
        provider.accepted_acr = sorted({v.strip() for v in values if v.strip()})
        self.audit.record(
            "federation:policy:changed",
            subject_type="organisation",
            subject_id=organisation_id,
            organisation_id=organisation_id,
            detail={"before": before, "after": provider.accepted_acr, **why},
        )
        return provider

    def remove(self, actor: Principal, organisation_id: int, reason: str | None = None) -> int:
        """Remove the provider and every link to it; returns how many links went.
        The reason (the console asks for one) goes on the audit trail."""
        self._may_manage(actor, organisation_id)
        why = reason_detail(actor, reason)
        provider = self.provider_of(organisation_id)
        if provider is None:
            raise NotFound("this organisation has no provider")
        links = self.session.execute(
            delete(UpstreamLink).where(UpstreamLink.provider_id == provider.id)
        ).rowcount  # type: ignore[attr-defined]
        self.session.execute(
            delete(UpstreamRequest).where(UpstreamRequest.provider_id == provider.id)
        )
        self.session.delete(provider)
        self.audit.record(
            "federation:provider:removed",
            subject_type="organisation",
            subject_id=organisation_id,
            organisation_id=organisation_id,
            detail={"issuer": provider.issuer, "links_removed": links, **why},
        )
        return int(links)

    def test(self, organisation_id: int, actor: Principal | None = None) -> TestReport:
        """Fetch discovery and the JWKS now; `UpstreamUnavailable` names the step.
        Without an actor (the operator's CLI) nobody is asked; a console user must
        manage the organisation."""
        if actor is not None:
            self._may_manage(actor, organisation_id)
        provider = self.provider_of(organisation_id)
        if provider is None:
            raise NotFound("this organisation has no provider")
        found = self.metadata.discovery(provider.issuer)
        keys = self.metadata.keys(found)
        return TestReport(found, sorted(str(k.kid) for k in keys.keys))

    # -- the authorization request -------------------------------------------------

    def start(self, organisation_id: int, purpose: str, person_id: int | None = None
              ) -> tuple[str, str]:
        """An authorization request to the organisation's provider: (url, state).
        The browser must present `state` back, from its own session."""
        provider = self.provider_of(organisation_id)
        if provider is None:
            raise NotFound("this organisation has no provider")
        found = self.metadata.discovery(provider.issuer)
        state, nonce, verifier = new_token(), new_token(16), new_token(48)
        now = self.clock.now()
        # Requests past their time prove nothing any more: cleared as new ones come.
        self.session.execute(
            delete(UpstreamRequest).where(
                UpstreamRequest.expires_at < now - timedelta(minutes=REQUEST_MINUTES)
            )
        )
        self.session.add(
            UpstreamRequest(
                state_digest=self.digester.digest(state),
                provider_id=provider.id,
                purpose=purpose,
                person_id=person_id,
                nonce=nonce,
                verifier_ciphertext=self.cipher.encrypt_text(verifier, "upstream-request"),
                created_at=now,
                expires_at=now + timedelta(minutes=REQUEST_MINUTES),
            )
        )
        url = authorization_url(self.credential(provider), found, self.redirect_uri,
                                state=state, nonce=nonce, verifier=verifier)
        self.session.commit()
        return url, state

    def start_link(self, person: Person, amr: list[str], organisation_id: int
                   ) -> tuple[str, str]:
        """Start linking for a person signed in here with all four factors, to the
        provider of an organisation they hold a current position in."""
        if not four_factor(amr):
            raise NotAllowed("Sign in with your password, token and PIN first")
        if organisation_id not in {p.organisation_id for p, _ in self.linkable(person)}:
            raise NotFound("no identity provider of yours to link")
        return self.start(organisation_id, LINK, person.id)

    def linkable(self, person: Person) -> list[tuple[UpstreamProvider, Organisation]]:
        today = self.clock.today()
        organisations = {p.organisation_id for p in person.positions if p.current_on(today)}
        return [(p, o) for p, o in self.providers() if p.organisation_id in organisations]

    def _refuse(self, client: Client, reason: str, person_id: int | None = None,
                purpose: str = SIGNIN) -> SignInFailed:
        person = self.directory.person(person_id) if person_id is not None else None
        tag = "signin:federated:failure" if purpose == SIGNIN else "federation:link:failure"
        self.attempts.failed(client, person, tag, {"reason": reason}, count=False)
        return SignInFailed() if purpose == SIGNIN else LinkRefused()

    def callback(self, *, state: str, expected_state: str | None, code: str | None,
                 error: str | None, client: Client) -> Upstream:
        """Check a callback completely: the state (this browser's, unused, in
        time), the code exchanged with PKCE, the ID token's signature and claims."""
        self.attempts.check_address(client, "signin")
        if not state or not expected_state or state != expected_state:
            raise self._refuse(client, "state mismatched")
        digest = self.digester.digest(state)
        request = self.session.scalar(
            select(UpstreamRequest).where(UpstreamRequest.state_digest == digest)
        )
        if request is None:
            raise self._refuse(client, "unknown state")
        purpose, person_id = request.purpose, request.person_id
        now = self.clock.now()
        used = self.session.execute(
            update(UpstreamRequest)
            .where(UpstreamRequest.id == request.id, UpstreamRequest.used_at.is_(None))
            .values(used_at=now)
        ).rowcount  # type: ignore[attr-defined]
        if used != 1:
            raise self._refuse(client, "state replayed", person_id, purpose)
        if request.expires_at <= now:
            raise self._refuse(client, "request expired", person_id, purpose)
        if error or not code:
            raise self._refuse(client, f"provider answered {error or 'no code'}", person_id,
                               purpose)
        provider = self.session.get(UpstreamProvider, request.provider_id)
        assert provider is not None  # the foreign key holds it
        try:
            found = self.metadata.discovery(provider.issuer)
            verifier = self.cipher.decrypt_text(request.verifier_ciphertext, "upstream-request")
            id_token = exchange_code(self.credential(provider), found, self.redirect_uri,
                                     code, verifier, self.metadata.timeout)
            claims = validate_id_token(id_token, found, self.metadata, provider.client_id,
                                       request.nonce, self.clock.now().timestamp())
        except UpstreamRefused as refused:
            raise self._refuse(client, refused.reason, person_id, purpose) from None
        except UpstreamUnavailable as unavailable:
            raise self._refuse(client, str(unavailable), person_id, purpose) from None
        username = claims.get(provider.username_claim)
        acr = claims.get("acr")
        return Upstream(
            request=request,
            provider=provider,
            subject=str(claims["sub"]),
            username=username if isinstance(username, str) else None,
            acr=acr if isinstance(acr, str) else None,
        )

    # -- signing in --------------------------------------------------------------

    def sign_in(self, upstream: Upstream, client: Client) -> str | SignedIn:
        """The linked person's step 1; a flow token for the second step, or a
        session when the organisation accepts the upstream `acr` as level 2."""
        if upstream.request.purpose != SIGNIN:
            raise self._refuse(client, "a link request's callback used to sign in")
        provider = upstream.provider
        link = self.session.scalar(
            select(UpstreamLink).where(
                UpstreamLink.issuer == provider.issuer, UpstreamLink.subject == upstream.subject
            )
        )
        if link is None:
            raise self._refuse(client, f"unlinked upstream account {upstream.subject!r}")
        if link.provider_id != provider.id:
            raise self._refuse(client, "upstream of another organisation", link.person_id)
        accepted = upstream.acr is not None and upstream.acr in provider.accepted_acr
        return self.signin.begin_upstream(
            link.person_id, provider.organisation_id, provider.issuer, client, accepted=accepted
        )

    # -- links -------------------------------------------------------------------

    def link(self, upstream: Upstream, person_id: int, client: Client) -> UpstreamLink:
        """Store the (issuer, subject) for the person who asked, once."""
        request, provider = upstream.request, upstream.provider
        if request.purpose != LINK or request.person_id != person_id:
            # Audited against the person who started the request, not whoever came back.
            raise self._refuse(client, "link callback for another person or purpose",
                               request.person_id, LINK)
        person = self.directory.person(person_id)
        if not any(
            p.organisation_id == provider.organisation_id and p.current_on(self.clock.today())
            for p in person.positions
        ):
            raise self._refuse(client, "no current position in the provider's organisation",
                               person_id, LINK)
        existing = self.session.scalar(
            select(UpstreamLink).where(
                UpstreamLink.issuer == provider.issuer, UpstreamLink.subject == upstream.subject
            )
        )
        if existing is not None and existing.person_id != person_id:
            raise self._refuse(client, "upstream account linked to another person",
                               person_id, LINK)
        if existing is not None:
            return existing
        for old in self.session.scalars(
            select(UpstreamLink).where(
                UpstreamLink.person_id == person_id, UpstreamLink.provider_id == provider.id
            )
        ):
            self.session.delete(old)  # one upstream account per person and provider
        made = UpstreamLink(
            provider_id=provider.id,
            person_id=person_id,
            issuer=provider.issuer,
            subject=upstream.subject,
            upstream_username=upstream.username,
            linked_at=self.clock.now(),
        )
        self.session.add(made)
        try:
            self.session.flush()
        except IntegrityError:
            self.session.rollback()  # a race for the same upstream account
            raise self._refuse(client, "upstream account linked meanwhile", person_id,
                               LINK) from None
        self.audit.record(
            "federation:link:added",
            subject_type="person",
            subject_id=person_id,
            actor_id=person_id,
            actor_label=person.username,
            organisation_id=provider.organisation_id,
            detail={"issuer": provider.issuer, "subject": upstream.subject,
                    "upstream_username": upstream.username},
        )
        self.session.commit()
        return made

    def links_of(self, person_id: int) -> list[tuple[UpstreamLink, Organisation]]:
        rows = self.session.execute(
            select(UpstreamLink, Organisation)
            .join(UpstreamProvider, UpstreamProvider.id == UpstreamLink.provider_id)
            .join(Organisation, Organisation.id == UpstreamProvider.organisation_id)
            .where(UpstreamLink.person_id == person_id)
            .order_by(UpstreamLink.id)
        )
        return [(link, org) for link, org in rows]

    def unlink(self, actor: Principal, link_id: int) -> None:
        """The person removes their own link; whoever administers the provider's
        organisation (with the person in it) or a platform admin anyone's."""
        link = self.session.get(UpstreamLink, link_id)
        if link is None:
            raise NotFound()
        provider = self.session.get(UpstreamProvider, link.provider_id)
        assert provider is not None
        if actor.person_id != link.person_id:
            person = self.directory.person(link.person_id)
            require_admin_over(actor, person, self.clock.today())
            self._may_manage(actor, provider.organisation_id)
        self.session.delete(link)
        self.audit.record(
            "federation:link:removed",
            subject_type="person",
            subject_id=link.person_id,
            organisation_id=provider.organisation_id,
            detail={"issuer": link.issuer, "subject": link.subject,
                    "by": "self" if actor.person_id == link.person_id else "admin"},
        )
