from __future__ import annotations

from idp.container import Container
from tests.factories import World
from tests.idp.conftest import Browser


def test_a_person_signs_in_through_both_pages_and_sees_their_account(
    container: Container, world: World, browser: Browser
) -> None:
    member = world.member(world.organisation())
    done = browser.sign_in(member, container)
    assert done.status_code == 302
    home = browser.client.get("/")
    assert home.status_code == 200
    assert member.person.display_name in home.get_data(as_text=True)
    assert "AAL2" in home.get_data(as_text=True)


def test_failures_at_either_step_look_the_same_whether_or_not_the_user_exists(
    container: Container, world: World, browser: Browser
) -> None:
    member = world.member(world.organisation())
    unknown = browser.submit(
        "/sign-in", {"username": "no.such.person", "password": "whatever it is 1"}
    )
    wrong_password = browser.submit(
        "/sign-in", {"username": member.username, "password": "wrong password 99"}
    )
    wrong_pin = browser.sign_in(member, container, pin="135791")

    def body(response) -> str:  # type: ignore[no-untyped-def]
        text = response.get_data(as_text=True)
        return text.split('<main', 1)[1].split('</main>', 1)[0].replace(
            text.split('name="csrf_token" type="hidden" value="', 1)[1].split('"', 1)[0], "")

    assert unknown.status_code == wrong_password.status_code == wrong_pin.status_code == 401
    assert body(unknown) == body(wrong_password) == body(wrong_pin)
