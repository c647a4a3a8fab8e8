from __future__ import annotations

import pytest

from idp.container import Container
from tests.factories import World
from tokens.attempts import Client
from tokens.errors import SignInFailed

CLIENT = Client("203.0.113.9", "pytest")


def test_four_factor_sign_in_starts_a_level_two_session(container: Container, world: World) -> None:
    org = world.organisation()
    member = world.member(org)
    with container.unit() as unit:
        flow = unit.signin.begin(member.username, member.password, CLIENT)
        signed = unit.signin.complete(flow, member.totp(container), member.pin, CLIENT)
        assert signed.record.acr == "AAL2"
        assert signed.record.amr == ["pwd", "otp", "swk", "pin"]
        assert unit.sessions.resume(signed.token) is not None


def test_unknown_username_and_wrong_password_fail_alike(container: Container, world: World) -> None:
    member = world.member(world.organisation())
    with container.unit() as unit:
        with pytest.raises(SignInFailed) as unknown:
            unit.signin.begin("nobody.here", member.password, CLIENT)
        with pytest.raises(SignInFailed) as wrong:
            unit.signin.begin(member.username, "not the password at all", CLIENT)
    assert str(unknown.value) == str(wrong.value)
