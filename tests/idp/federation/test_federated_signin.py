"""Signing in through an organisation's own OpenID Connect provider (a second,
live instance of this service), linking an upstream account, and every
refusal: unlinked, bad signature, wrong nonce, replayed or foreign state,
a person without access."""

from __future__ import annotations

from datetime import timedelta

import httpx
from joserfc.jwk import ECKey
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from directory.models import Person as PersonRow
from directory.models import Role
from idp.container import Container
from idp.federation.models import UpstreamLink
from idp.federation.service import NewProvider
from tests.factories import Member, World
from tests.idp.federation.conftest import (
    Browser,
    Here,
    UpstreamIdp,
    local,
    reasons,
    register_downstream,
    tags,
    through_upstream,
    with_query,
)
from tokens.models import AuthSession

UNIFORM = "The details you entered do not match our records"


def _link(browser: Browser, here: Here, upstream: UpstreamIdp) -> httpx.Response:
    """The person signs in here with all four factors, then links."""
    signed = browser.sign_in(here.person)
    assert signed.status_code == 302
    callback = through_upstream(upstream, browser.start_link(here.organisation))
    return browser.http.get(local(callback))


def _federated(fresh: Browser, here: Here, upstream: UpstreamIdp,
               member: Member | None = None, **changes: str) -> httpx.Response:
    """Sign in through the organisation's provider; the callback's answer.
    `changes` alter the authorization request on its way to the provider."""
    url = with_query(fresh.start_federated(here.organisation), **changes)
    return fresh.http.get(local(through_upstream(upstream, url, member)))


def _accept(world: World, here: Here, values: list[str]) -> None:
    """The organisation's admin sets which upstream acr values meet level 2."""
    world.unit.federation.set_accepted_acr(world.principal(here.admin), here.organisation.id,
                                           values)
    world.unit.commit()


def _links(container: Container) -> list[UpstreamLink]:
    with container.unit() as unit:
        links = list(unit.session.scalars(select(UpstreamLink)))
        unit.session.expunge_all()
        return links


def _session_of(container: Container, person_id: int) -> AuthSession:
    with container.unit() as unit:
        record = unit.session.scalars(
            select(AuthSession).where(AuthSession.person_id == person_id)
            .order_by(AuthSession.id.desc())).first()
        assert record is not None
        unit.session.expunge(record)
        return record


def test_a_person_links_their_organisation_account_after_a_full_sign_in(
    browser: Browser, here: Here, upstream: UpstreamIdp, container: Container
) -> None:
    answer = _link(browser, here, upstream)
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/account/organisation-account")
    page = browser.http.get("/account/organisation-account")
    assert "Your organisation&#39;s account is linked." in page.text
    assert upstream.person.username in page.text  # the upstream username, shown to them
    [link] = _links(container)
    assert link.person_id == here.person.person.id
    assert link.issuer == upstream.base
    assert link.subject == upstream.person.person.public_id
    assert "federation:link:added" in tags(container)


def test_linked_sign_in_asks_for_token_and_pin_and_records_fed_in_amr(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container
) -> None:
    _link(browser, here, upstream)
    answer = _federated(fresh, here, upstream)
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/sign-in/token")
    # The second step is the usual one: token code and PIN.
    done = fresh.form("/sign-in/token", {"code": here.person.totp(container, 1),
                                         "pin": here.person.pin})
    assert done.status_code == 302, done.text[:300]
    assert fresh.http.get("/").status_code == 200
    record = _session_of(container, here.person.person.id)
    assert record.acr == "AAL2"
    assert record.amr == ["fed", "otp", "swk", "pin"]
    assert "signin:federated:success" in tags(container)


def test_an_accepted_upstream_acr_skips_token_and_pin(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container,
    world: World,
) -> None:
    _link(browser, here, upstream)
    _accept(world, here, ["AAL2"])  # the upstream instance signs in at AAL2
    answer = _federated(fresh, here, upstream)
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/"
    assert fresh.http.get("/").status_code == 200
    record = _session_of(container, here.person.person.id)
    assert record.acr == "AAL2"
    assert record.amr == ["fed"]


def test_an_upstream_acr_not_accepted_still_asks_for_token_and_pin(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container,
    world: World,
) -> None:
    _link(browser, here, upstream)
    _accept(world, here, ["urn:example:mfa"])  # not what the upstream sends
    answer = _federated(fresh, here, upstream)
    assert answer.headers["Location"].endswith("/sign-in/token")
    assert fresh.http.get("/").status_code == 302  # no session yet


def test_an_unlinked_upstream_account_gets_the_uniform_failure(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container
) -> None:
    _link(browser, here, upstream)
    # Another person of the same organisation, never linked.
    answer = _federated(fresh, here, upstream, upstream.others[0])
    assert answer.status_code == 401
    assert UNIFORM in answer.text
    assert fresh.http.get("/").status_code == 302  # not signed in
    assert reasons(container, "signin:federated:failure")[-1].startswith(
        "unlinked upstream account")


def test_a_bad_signature_is_refused(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container
) -> None:
    _link(browser, here, upstream)
    callback = through_upstream(upstream, fresh.start_federated(here.organisation))
    upstream.tamper.spoil = True
    answer = fresh.http.get(local(callback))
    assert answer.status_code == 401
    assert UNIFORM in answer.text
    assert fresh.http.get("/").status_code == 302
    assert reasons(container, "signin:federated:failure")[-1].startswith("bad signature")


def test_a_wrong_nonce_is_refused(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container
) -> None:
    _link(browser, here, upstream)
    answer = _federated(fresh, here, upstream, nonce="not-the-one-sent")
    assert answer.status_code == 401
    assert UNIFORM in answer.text
    assert reasons(container, "signin:federated:failure")[-1] == "wrong nonce"


def test_a_replayed_or_foreign_state_is_refused(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container
) -> None:
    _link(browser, here, upstream)
    callback = through_upstream(upstream, fresh.start_federated(here.organisation))
    # Another browser (no state of its own) cannot use the callback.
    thief = Browser(browser.base, container)
    stolen = thief.http.get(local(callback))
    thief.close()
    assert stolen.status_code == 401 and UNIFORM in stolen.text
    kept = dict(fresh.http.cookies)
    first = fresh.http.get(local(callback))
    assert first.status_code == 302  # the rightful browser goes on
    # The same callback again, with the cookie it had: the state was used.
    replay = Browser(browser.base, container)
    replay.http.cookies.update(kept)
    again = replay.http.get(local(callback))
    replay.close()
    assert again.status_code == 401 and UNIFORM in again.text
    assert reasons(container, "signin:federated:failure")[-2:] == [
        "state mismatched", "state replayed"]


def test_a_linked_person_whose_clearance_lapsed_gets_nothing(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container
) -> None:
    _link(browser, here, upstream)
    with container.unit() as unit:
        person = unit.session.get(PersonRow, here.person.person.id)
        assert person is not None
        person.clearance_expires_on = container.clock.today() - timedelta(days=1)
        unit.commit()
    answer = _federated(fresh, here, upstream)
    assert answer.status_code == 401 and UNIFORM in answer.text
    assert "clearance" in reasons(container, "signin:federated:failure")[-1]


def test_an_upstream_account_links_to_one_person_only(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container,
    world: World,
) -> None:
    _link(browser, here, upstream)
    colleague = world.member(here.organisation, given_name="Cal")
    assert fresh.sign_in(colleague).status_code == 302
    # The colleague signs in upstream as Priya's upstream account.
    answer = fresh.http.get(local(through_upstream(upstream,
                                                   fresh.start_link(here.organisation))))
    assert answer.status_code == 302
    assert "could not be linked" in fresh.http.get("/account/organisation-account").text
    [link] = _links(container)
    assert link.person_id == here.person.person.id
    assert reasons(container, "federation:link:failure")[-1] == (
        "upstream account linked to another person")


def test_linking_needs_a_full_sign_in_here(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container,
    world: World,
) -> None:
    """A session begun upstream (amr `fed`) cannot link another upstream account."""
    _link(browser, here, upstream)
    _accept(world, here, ["AAL2"])
    assert _federated(fresh, here, upstream).headers["Location"] == "/"
    refused = fresh.form("/account/organisation-account",
                         {"organisation": str(here.organisation.id)})
    assert refused.status_code == 302
    assert refused.headers["Location"].endswith("/account/organisation-account")
    assert "Sign in with your password, token and PIN first" in fresh.http.get(
        "/account/organisation-account").text


def test_a_person_removes_their_own_link_and_an_admin_of_the_organisation_anyones(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container
) -> None:
    _link(browser, here, upstream)
    [link] = _links(container)
    removed = browser.form(f"/account/organisation-account/{link.id}/remove", {},
                           page="/account/organisation-account")
    assert removed.status_code == 302
    assert _links(container) == []
    _link_again = browser.form("/account/organisation-account",
                               {"organisation": str(here.organisation.id)})
    browser.http.get(local(through_upstream(upstream, _link_again.headers["Location"])))
    [link] = _links(container)
    # The organisation's admin removes it (the walker in test_tenant_isolation
    # proves admins of other organisations cannot).
    assert fresh.sign_in(here.admin).status_code == 302
    by_admin = fresh.form(f"/account/organisation-account/{link.id}/remove", {},
                          page="/account/organisation-account")
    assert by_admin.status_code == 302
    assert _links(container) == []
    with container.unit() as unit:
        entries = unit.session.scalars(select(AuditEntry).where(
            AuditEntry.tag == "federation:link:removed").order_by(AuditEntry.seq)).all()
        assert [e.detail["by"] for e in entries] == ["self", "admin"]


def test_private_key_jwt_to_the_provider_works_the_same(
    browser: Browser, fresh: Browser, upstream: UpstreamIdp, container: Container,
    world: World, port: int,
) -> None:
    """The provider's client authenticates with a private key (RFC 7523), kept
    encrypted here; the rest of the journey is the same."""
    key = ECKey.generate_key("P-256", parameters={"kid": "contactpoint-1"})
    client_id, _ = register_downstream(
        upstream.world, upstream.admin, upstream.platform, port,
        auth_method="private_key_jwt", jwks={"keys": [key.as_dict(private=False)]})
    org = world.organisation("Southshire Council")
    person = world.member(org, given_name="Kim")
    pem = key.as_pem(private=True).decode()
    world.unit.federation.add(world.principal(world.member(org, Role.ORGANISATION_ADMIN)),
                              NewProvider(organisation_id=org.id, issuer=upstream.base,
                                          client_id=client_id, username_claim="email",
                                          private_key_pem=pem))
    world.unit.commit()
    with container.unit() as unit:
        provider = unit.federation.provider_of(org.id)
        assert provider is not None and provider.auth_method == "private_key_jwt"
        assert "PRIVATE KEY" not in provider.credential_ciphertext
    here = Here(org, person, person)
    assert _link(browser, here, upstream).status_code == 302
    [link] = _links(container)
    assert link.person_id == person.person.id
    assert link.upstream_username == upstream.person.person.work_email
    answer = _federated(fresh, here, upstream)
    assert answer.headers["Location"].endswith("/sign-in/token")


def test_an_upstream_linked_through_another_organisation_gets_nothing(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container,
    world: World, port: int,
) -> None:
    """Two organisations use the same provider (one issuer, a client each): an
    account linked through one does not sign in through the other, even for a
    person who holds a position in both."""
    _link(browser, here, upstream)
    other_client, secret = register_downstream(upstream.world, upstream.admin,
                                               upstream.platform, port)
    other = world.organisation("Eastshire Council")
    world.add_position(here.person, other, Role.PRACTITIONER)
    world.unit.federation.add(world.principal(world.member(other, Role.ORGANISATION_ADMIN)),
                              NewProvider(organisation_id=other.id, issuer=upstream.base,
                                          client_id=other_client, username_claim="email",
                                          client_secret=secret))
    world.unit.commit()
    answer = _federated(fresh, Here(other, here.person, here.admin), upstream)
    assert answer.status_code == 401 and UNIFORM in answer.text
    assert reasons(container, "signin:federated:failure")[-1] == (
        "upstream of another organisation")


def test_an_admin_sees_and_removes_a_link_from_the_person_page(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container
) -> None:
    _link(browser, here, upstream)
    [link] = _links(container)
    assert fresh.sign_in(here.admin).status_code == 302
    page = f"/admin/people/{here.person.person.id}"
    shown = fresh.http.get(page)
    assert shown.status_code == 200, shown.status_code
    assert "Linked organisation accounts" in shown.text
    assert upstream.person.username in shown.text
    removed = fresh.form(f"/account/organisation-account/{link.id}/remove", {"next": page},
                         page=page)
    assert removed.status_code == 302 and removed.headers["Location"] == page
    assert _links(container) == []


def test_a_link_callback_after_the_session_ended_links_nothing(
    browser: Browser, here: Here, upstream: UpstreamIdp, container: Container
) -> None:
    """The browser still holds the request's state, but its session here was
    ended (say, by an administrator) while the person was at the provider."""
    assert browser.sign_in(here.person).status_code == 302
    callback = through_upstream(upstream, browser.start_link(here.organisation))
    with container.unit() as unit:
        unit.sessions.end_all_for(unit.directory.person(here.person.person.id), "test")
        unit.commit()
    answer = browser.http.get(local(callback))
    assert answer.status_code == 302
    assert _links(container) == []
    assert reasons(container, "federation:link:failure")[-1] == (
        "link callback for another person or purpose")


def test_the_choice_lists_only_organisations_with_a_provider_and_asks_no_username(
    fresh: Browser, here: Here, world: World
) -> None:
    elsewhere = world.organisation("Westshire Council")
    page = fresh.http.get("/sign-in/organisation")
    assert page.status_code == 200
    assert here.organisation.name in page.text
    assert elsewhere.name not in page.text
    assert 'name="username"' not in page.text and 'name="password"' not in page.text
    # An organisation without a provider cannot be chosen: the page again, no redirect.
    refused = fresh.form("/sign-in/organisation", {"organisation": str(elsewhere.id)})
    assert refused.status_code == 200
    assert "Sign in with your organisation" in fresh.http.get("/sign-in").text


def test_a_callback_after_the_request_expired_is_refused(
    browser: Browser, fresh: Browser, here: Here, upstream: UpstreamIdp, container: Container,
    clock: FrozenClock,
) -> None:
    _link(browser, here, upstream)
    callback = through_upstream(upstream, fresh.start_federated(here.organisation))
    clock.advance(seconds=11 * 60)
    answer = fresh.http.get(local(callback))
    assert answer.status_code == 401 and UNIFORM in answer.text
    assert reasons(container, "signin:federated:failure")[-1] == "request expired"
