"""schemathesis against /api/v1/openapi.json, in-process over WSGI, with a valid
admin token: no 5xx, and every response (status, content type, headers, body)
matches the document. Inputs both valid (positive) and invalid (negative) by the
document are generated, a bounded number per operation, so this runs in seconds.

The tokens are an organisation admin's and a platform admin's, so generated ids
land on people and positions that exist, in and out of reach; and a
practitioner's with `children.read` from a case system, for the child-record
operations (the admin tokens lack that scope, the practitioner's the other).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from core.clock import FrozenClock
from idp.container import Container
from tests.idp.api.conftest import Cast
from tests.idp.api.tokens import bearer, person_token, register

EXAMPLES = 12

# Bodies naming what must exist (a username) or pass a check no schema can state
# (an email address's syntax, as email_validator reads it; a platform admin role
# only from a platform admin): a well-formed request may still be refused there
# with a 400, which must then name one of these fields, and no other.
BEYOND_THE_SCHEMA = {
    # A reason is owed by platform admins only.
    "POST /organisations/{organisation_id}/applications": {"work_email", "role", "reason"},
    "POST /organisations/{organisation_id}/position-requests": {"username", "role"},
    # The registry's own rules: https redirects, a code flow's redirect, a JWK set's keys.
    "POST /organisations/{organisation_id}/relying-applications": {
        "redirect_uris", "post_logout_redirect_uris", "backchannel_logout_uri", "jwks",
        "jwks_uri", "grant_types", "sector_identifier", "reason"},
    # A reason is owed by platform admins only.
    "POST /relying-applications/{client_id}/secret": {"reason"},
    "POST /organisations/{organisation_id}/identity-provider/accepted-acr": {"reason"},
    # The provider service's own rules: an https issuer, exactly one of a secret and a
    # key (named on client_secret), a key that parses; a platform admin's reason.
    "POST /organisations/{organisation_id}/identity-provider": {
        "issuer", "client_secret", "private_key", "reason"},
    # A token's reason is owed by platform admins only; its holder must exist.
    "POST /tokens/{token_id}/assignment": {"username", "reason"},
    "POST /tokens/{token_id}/loss": {"reason"},
    "POST /tokens/{token_id}/return": {"reason"},
}


def _checker(operation: Any, token: str, mode: GenerationMode,
             seen: dict[str, set[int]]) -> Any:
    beyond = BEYOND_THE_SCHEMA.get(operation.label)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        excluded = [positive_data_acceptance] if beyond is not None else []
        # A negative case may leave the token out on purpose: then it goes without
        # one (and must be refused), rather than with the token put back.
        negated = case.operation.schema.is_security_param_negated(case)
        response = case.call_and_validate(headers=None if negated else bearer(token),
                                          excluded_checks=excluded)
        if beyond is not None and mode is GenerationMode.POSITIVE:
            # A list's item is named with its index (redirect_uris[0]).
            assert response.status_code != 400 or {
                e["field"].split("[")[0] for e in response.json()["errors"]} <= beyond, \
                response.text
        assert response.status_code < 500
        headers = {name.lower(): value for name, value in response.headers.items()}
        assert headers["cache-control"] in ("no-store", ["no-store"])
        seen.setdefault(operation.label, set()).add(response.status_code)

    return check


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_response_matches_the_document_and_none_is_a_server_error(
    app: Flask, container: Container, clock: FrozenClock, cast: Cast, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    case_system = register(cast.world, cast.org, cast.admin, cast.platform, name="Case system",
                           scopes=["openid", "children.read"])
    tokens = {
        "admin": cast.token(app, container, clock, cast.admin),
        "platform": cast.token(app, container, clock, cast.platform),
        "practitioner": person_token(app, container, clock, cast.practitioner, case_system,
                                     "openid children.read"),
    }
    seen: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every operation but the document's own (schemathesis leaves that out).
    assert {o.label for o in operations} == {
        f"{m.upper()} {p}" for p, item in schema.raw_schema["paths"].items() for m in item
    } - {"GET /openapi.json"}
    for operation in operations:
        for who, token in tokens.items():

            check = _checker(operation, token, mode, seen)
            try:
                check()
            except Exception as error:
                raise AssertionError(f"{operation.label} as {who} ({mode.value})") from error
    # Something was answered for every operation.
    assert len(seen) == len(operations), seen
