"""The authorization code flow as a certified relying-party library drives it,
and the refusals around it."""

from __future__ import annotations

import httpx
import pytest
from authlib.integrations.base_client.errors import OAuthError
from joserfc import jwt
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from idp.container import Container
from idp.oidc.models import Grant
from tests.idp.oidc.conftest import CALLBACK, Cast, Person, query_of
from tests.idp.oidc.helpers import (
    decode_access_token,
    jwks,
    relying_party,
    start,
    tokens_for,
    verify_id_token,
)


def _tags(container: Container) -> list[str]:
    with container.unit() as unit:
        return list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))


def test_discovery_advertises_every_endpoint_and_the_jwks_publishes_the_next_keys(
    live: str,
) -> None:
    config = httpx.get(f"{live}/.well-known/openid-configuration").json()
    assert config["issuer"] == live
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                 "introspection_endpoint", "revocation_endpoint", "end_session_endpoint",
                 "pushed_authorization_request_endpoint"):
        assert config[name].startswith(live + "/")
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["response_types_supported"] == ["code"]
    assert config["authorization_response_iss_parameter_supported"] is True
    assert config["backchannel_logout_supported"] is True
    keys = httpx.get(config["jwks_uri"]).json()["keys"]
    # One signing and one published-ahead key for each algorithm; no private parts.
    assert sorted(k["alg"] for k in keys) == ["ES256", "ES256", "RS256", "RS256"]
    assert all("d" not in k for k in keys)


def test_a_person_signs_in_to_an_application_and_it_gets_valid_tokens(
    live: str, cast: Cast, person: Person, container: Container
) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret,
                       scope="openid profile email positions clearance")
    url, verifier, nonce = start(rp, live)
    callback = person.visit(url)
    assert callback.startswith(CALLBACK)
    answer = query_of(callback)
    assert answer["iss"] == live  # RFC 9207
    assert "code" in answer and "state" in answer
    token = rp.fetch_token(f"{live}/oauth2/token", authorization_response=callback,
                           code_verifier=verifier)
    claims = verify_id_token(live, token["id_token"], app.client_id, nonce)
    assert claims["sub"] == cast.person.person.public_id
    assert claims["acr"] == "AAL2"
    assert claims["amr"] == ["pwd", "otp", "swk", "pin"]  # a soft token: swk
    assert claims["name"] == "Priya Shah"
    assert claims["email"] == cast.person.person.work_email
    assert claims["positions"][0]["role"] == "practitioner"
    assert claims["clearance_valid_until"] == cast.person.person.clearance_expires_on.isoformat()
    header, access = decode_access_token(live, token["access_token"])
    assert header["typ"] == "at+jwt"  # RFC 9068
    assert access["aud"] == f"{live}/api/v1"
    assert access["exp"] - access["iat"] == 300
    assert access["client_id"] == app.client_id
    info = rp.get(f"{live}/oauth2/userinfo").json()
    assert info["sub"] == claims["sub"]
    assert info["given_name"] == "Priya"
    # The consent is remembered: the second time, no question.
    url, verifier, nonce = start(rp, live)
    assert person.visit(url, consent=None).startswith(CALLBACK)
    assert "oidc:consent:granted" in _tags(container)
    assert "oidc:code:issued" in _tags(container)


def test_refresh_tokens_rotate_and_a_rotated_one_coming_back_ends_the_family(
    live: str, cast: Cast, person: Person
) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret)
    first, _nonce = tokens_for(rp, live, person)
    second = rp.refresh_token(f"{live}/oauth2/token", refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    # Someone replays the first refresh token: refused, and the family is ended...
    with pytest.raises(OAuthError) as refused:
        rp.refresh_token(f"{live}/oauth2/token", refresh_token=first["refresh_token"])
    assert refused.value.error == "invalid_grant"
    # ...so the legitimate holder's current token no longer works either.
    with pytest.raises(OAuthError):
        rp.refresh_token(f"{live}/oauth2/token", refresh_token=second["refresh_token"])
    introspected = httpx.post(f"{live}/oauth2/introspect", auth=(app.client_id, app.secret),
                              data={"token": second["access_token"]}).json()
    assert introspected == {"active": False}


def test_a_replayed_code_is_refused_and_revokes_what_the_first_use_issued(
    live: str, cast: Cast, person: Person, container: Container
) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret)
    url, verifier, _nonce = start(rp, live)
    callback = person.visit(url)
    issued = rp.fetch_token(f"{live}/oauth2/token", authorization_response=callback,
                            code_verifier=verifier)
    code = query_of(callback)["code"]
    again = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
        "code_verifier": verifier})
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    refresh = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret), data={
        "grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"
    assert httpx.get(f"{live}/oauth2/userinfo", headers={
        "Authorization": f"Bearer {issued['access_token']}"}).status_code == 401
    assert "oidc:code:replayed" in _tags(container)


def test_a_code_lives_sixty_seconds(
    live: str, cast: Cast, person: Person, clock: FrozenClock
) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret)
    url, verifier, _nonce = start(rp, live)
    callback = person.visit(url)
    clock.advance(seconds=61)
    with pytest.raises(OAuthError) as refused:
        rp.fetch_token(f"{live}/oauth2/token", authorization_response=callback,
                       code_verifier=verifier)
    assert refused.value.error == "invalid_grant"


@pytest.mark.parametrize("redirect_uri", ["https://evil.example.net/callback",
                                          CALLBACK + "/extra", CALLBACK.upper()])
def test_an_unregistered_redirect_uri_gets_an_error_page_and_never_a_redirect(
    live: str, cast: Cast, person: Person, redirect_uri: str
) -> None:
    app = cast.register()
    person.sign_in()
    rp = relying_party(live, app.client_id, app.secret)
    rp.redirect_uri = redirect_uri
    url, _verifier, _nonce = start(rp, live)
    response = person.http.get(url)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "cannot be used" in response.text


def test_an_unknown_or_unapproved_client_gets_an_error_page_and_invalid_client(
    live: str, cast: Cast, person: Person
) -> None:
    pending = cast.register(approve=False)
    for client_id in (pending.client_id, "cp-nobody"):
        rp = relying_party(live, client_id, pending.secret)
        url, _verifier, _nonce = start(rp, live)
        response = person.http.get(url)
        assert response.status_code == 400
        assert "Location" not in response.headers
        assert "invalid_client" in response.text
    token = httpx.post(f"{live}/oauth2/token", auth=(pending.client_id, pending.secret),
                       data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert token.status_code == 401
    assert token.json()["error"] == "invalid_client"


def test_pkce_is_required_and_only_s256(live: str, cast: Cast, person: Person) -> None:
    app = cast.register()
    person.sign_in()
    base = {"response_type": "code", "client_id": app.client_id, "redirect_uri": CALLBACK,
            "scope": "openid", "state": "s1"}
    # No challenge at all: an error sent back to the (registered) redirect URI.
    missing = person.http.get(f"{live}/oauth2/authorize", params=base)
    assert missing.status_code == 302
    assert query_of(missing.headers["Location"])["error"] == "invalid_request"
    assert query_of(missing.headers["Location"])["state"] == "s1"
    # plain, or a challenge without its method (which RFC 7636 reads as plain).
    for extra in ({"code_challenge": "a" * 43, "code_challenge_method": "plain"},
                  {"code_challenge": "a" * 43}):
        refused = person.http.get(f"{live}/oauth2/authorize", params={**base, **extra})
        assert query_of(refused.headers["Location"])["error"] == "invalid_request"


def test_a_wrong_or_missing_code_verifier_is_refused(
    live: str, cast: Cast, person: Person
) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret)
    for verifier in ("wrong" * 10, None):
        url, _right, _nonce = start(rp, live)
        code = query_of(person.visit(url))["code"]
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
        if verifier:
            data["code_verifier"] = verifier
        answer = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret), data=data)
        assert answer.status_code == 400
        assert answer.json()["error"] == ("invalid_grant" if verifier else "invalid_request")


def test_a_wrong_client_secret_is_refused_and_audited(
    live: str, cast: Cast, person: Person, container: Container
) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, "not-the-secret")
    url, verifier, _nonce = start(rp, live)
    callback = person.visit(url)
    with pytest.raises(OAuthError) as refused:
        rp.fetch_token(f"{live}/oauth2/token", authorization_response=callback,
                       code_verifier=verifier)
    assert refused.value.error == "invalid_client"
    assert "oidc:client:authentication" in _tags(container)
    # The right secret still works with that code: the failure consumed nothing.
    good = relying_party(live, app.client_id, app.secret)
    assert "access_token" in good.fetch_token(f"{live}/oauth2/token",
                                              authorization_response=callback,
                                              code_verifier=verifier)


def test_a_suspended_person_gets_no_refresh_no_userinfo_and_inactive_introspection(
    live: str, cast: Cast, person: Person, container: Container
) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret)
    token, _nonce = tokens_for(rp, live, person)
    with container.unit() as unit:
        someone = unit.directory.person(cast.person.person.id)
        from directory.models import PersonStatus
        unit.directory.set_status(someone, PersonStatus.SUSPENDED, "investigation",
                                  tag="person:suspended")
        unit.commit()
    refresh = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret), data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"
    assert httpx.get(f"{live}/oauth2/userinfo", headers={
        "Authorization": f"Bearer {token['access_token']}"}).status_code == 401
    assert httpx.post(f"{live}/oauth2/introspect", auth=(app.client_id, app.secret),
                      data={"token": token["access_token"]}).json() == {"active": False}


def test_a_lapsed_clearance_ends_tokens_from_that_moment(
    live: str, cast: Cast, person: Person, clock: FrozenClock
) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret)
    token, _nonce = tokens_for(rp, live, person)
    with cast.world.container.unit() as unit:
        someone = unit.directory.person(cast.person.person.id)
        someone.clearance_expires_on = clock.today().replace(year=clock.today().year - 1)
        unit.commit()
    refresh = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret), data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"
    assert httpx.post(f"{live}/oauth2/introspect", auth=(app.client_id, app.secret),
                      data={"token": token["refresh_token"]}).json() == {"active": False}


def test_consent_is_asked_once_per_scope_set_and_can_be_withdrawn(
    live: str, cast: Cast, person: Person, container: Container
) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret, scope="openid profile")
    token, _nonce = tokens_for(rp, live, person)
    wider = relying_party(live, app.client_id, app.secret, scope="openid profile email")
    url, _verifier, _nonce = start(wider, live)
    with pytest.raises(AssertionError, match="consent page was not expected"):
        person.visit(url, consent=None)
    # Withdrawn from the person's own page: the grant ends with it.
    page = person.http.get("/account/applications")
    assert "Case system" in page.text
    with container.unit() as unit:
        from idp.oidc.models import Consent
        consent_id = unit.session.scalars(select(Consent.id)).first()
        assert consent_id is not None
    import re
    token_field = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token_field
    withdrawn = person.http.post(f"/account/applications/{consent_id}/revoke",
                                 data={"csrf_token": token_field.group(1)})
    assert withdrawn.status_code == 302
    refresh = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret), data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"


def test_first_party_applications_skip_consent(
    live: str, cast: Cast, person: Person
) -> None:
    app = cast.register(first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    url, _verifier, _nonce = start(rp, live)
    assert person.visit(url, consent=None).startswith(CALLBACK)


def test_denying_consent_returns_access_denied(live: str, cast: Cast, person: Person) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret)
    url, _verifier, _nonce = start(rp, live)
    answer = query_of(person.visit(url, consent="deny"))
    assert answer["error"] == "access_denied"
    assert answer["iss"] == live


def test_prompt_none_without_a_session_answers_login_required(
    live: str, cast: Cast, person: Person
) -> None:
    app = cast.register(first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    url, _verifier, _nonce = start(rp, live, prompt="none")
    response = person.http.get(url)
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "login_required"


def test_prompt_login_and_max_age_make_the_person_sign_in_again(
    live: str, cast: Cast, person: Person, clock: FrozenClock, container: Container
) -> None:
    app = cast.register(first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    person.sign_in()
    url, _verifier, _nonce = start(rp, live, prompt="login")
    first = person.http.get(url)
    assert first.status_code == 302 and "/sign-in" in first.headers["Location"]
    assert "prompt" not in first.headers["Location"]
    clock.advance(seconds=30)  # a new TOTP step: the first code was used, once
    assert person.visit(url).startswith(CALLBACK)
    clock.advance(minutes=10)
    url, verifier, nonce = start(rp, live, max_age="300")
    assert "/sign-in" in person.http.get(url).headers["Location"]
    callback = person.visit(url)
    token = rp.fetch_token(f"{live}/oauth2/token", authorization_response=callback,
                           code_verifier=verifier)
    # The provider's clock ran ten minutes ahead of the real one: read, don't validate.
    claims = jwt.decode(token["id_token"], jwks(live)).claims
    assert claims["nonce"] == nonce
    assert claims["auth_time"] >= int(clock.now().timestamp()) - 1


def test_acr_values_above_the_session_send_the_person_to_step_up(
    live: str, cast: Cast, person: Person
) -> None:
    app = cast.register(first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    person.sign_in()
    url, _verifier, _nonce = start(rp, live, acr_values="AAL3")
    response = person.http.get(url)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/security-keys/step-up") or \
        "step-up" in response.headers["Location"]
    url, _verifier, _nonce = start(rp, live, acr_values="AAL3", prompt="none")
    refused = person.http.get(url)
    assert query_of(refused.headers["Location"])["error"] == "interaction_required"


def test_login_hint_fills_in_the_username(live: str, cast: Cast, person: Person) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret)
    url, _verifier, _nonce = start(rp, live, login_hint=cast.person.username)
    to_sign_in = person.http.get(url).headers["Location"]
    page = person.http.get(to_sign_in)
    assert f'value="{cast.person.username}"' in page.text


def test_pairwise_subjects_differ_between_sectors_and_stay_stable(
    live: str, cast: Cast, person: Person
) -> None:
    one = cast.register(subject_type="pairwise", redirect_uris=[CALLBACK], first_party=True)
    other = cast.register(subject_type="pairwise", first_party=True,
                          redirect_uris=["https://other.example.com/cb"])
    subs = []
    for app, callback_uri in ((one, CALLBACK), (other, "https://other.example.com/cb"),
                              (one, CALLBACK)):
        rp = relying_party(live, app.client_id, app.secret)
        rp.redirect_uri = callback_uri
        url, verifier, nonce = start(rp, live)
        token = rp.fetch_token(f"{live}/oauth2/token", authorization_response=person.visit(url),
                               code_verifier=verifier)
        subs.append(verify_id_token(live, token["id_token"], app.client_id, nonce)["sub"])
    assert subs[0] == subs[2]
    assert subs[0] != subs[1]
    assert cast.person.person.public_id not in subs


def test_rs256_for_clients_that_ask(live: str, cast: Cast, person: Person) -> None:
    app = cast.register(id_token_alg="RS256", first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    token, nonce = tokens_for(rp, live, person)
    from joserfc import jws
    assert jws.extract_compact(token["id_token"].encode()).headers()["alg"] == "RS256"
    verify_id_token(live, token["id_token"], app.client_id, nonce)


def test_grants_record_the_sign_in_they_came_from(
    live: str, cast: Cast, person: Person, container: Container
) -> None:
    app = cast.register(first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    url, _verifier, _nonce = start(rp, live)
    person.visit(url)
    with container.unit() as unit:
        grant = unit.session.scalars(select(Grant)).one()
        assert grant.person_id == cast.person.person.id
        assert grant.acr == "AAL2"
        assert grant.auth_session_id is not None


def test_a_refresh_token_family_ends_when_the_sign_in_s_lifetime_does(
    live: str, cast: Cast, person: Person, clock: FrozenClock
) -> None:
    app = cast.register(first_party=True)
    rp = relying_party(live, app.client_id, app.secret)
    token, _nonce = tokens_for(rp, live, person)
    clock.advance(hours=12, seconds=1)
    refresh = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret or ""), data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_prompt_consent_asks_again_even_when_consent_was_given(
    live: str, cast: Cast, person: Person
) -> None:
    app = cast.register()
    rp = relying_party(live, app.client_id, app.secret)
    url, _verifier, _nonce = start(rp, live)
    person.visit(url)
    url, _verifier, _nonce = start(rp, live, prompt="consent")
    with pytest.raises(AssertionError, match="consent page was not expected"):
        person.visit(url, consent=None)
    url, _verifier, _nonce = start(rp, live, prompt="none")
    assert "code" in query_of(person.visit(url, consent=None))
