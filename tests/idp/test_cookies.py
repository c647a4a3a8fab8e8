"""The session cookie: signed as Flask signs it, written without zlib, and a
cookie written the old (compressed) way still read."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature
from werkzeug.wrappers import Response

from idp.cookies import CachedSerializerSessionInterface


def _cookie(app: Flask, interface: SecureCookieSessionInterface, data: dict[str, object]) -> str:
    with app.test_request_context("/"):
        session = interface.session_class(data)
        session.modified = True
        response = Response()
        interface.save_session(app, session, response)
        header = response.headers["Set-Cookie"]
    value = header.split(";", 1)[0].split("=", 1)[1]
    return value


def test_the_app_uses_the_cached_interface_and_one_serializer(app: Flask) -> None:
    interface = app.session_interface
    assert isinstance(interface, CachedSerializerSessionInterface)
    assert interface.get_signing_serializer(app) is interface.get_signing_serializer(app)


def test_a_cookie_round_trips_uncompressed_and_signed(app: Flask) -> None:
    data = {"signin_flow": "x" * 200, "csrf_token": "y" * 40}
    value = _cookie(app, app.session_interface, data)
    assert not value.startswith(".")  # not zlib-compressed, though it would shrink
    name = app.config["SESSION_COOKIE_NAME"]
    with app.test_request_context("/", headers={"Cookie": f"{name}={value}"}) as ctx:
        assert dict(app.session_interface.open_session(app, ctx.request) or {}) == data
    serializer = app.session_interface.get_signing_serializer(app)
    assert serializer is not None
    tampered = value.replace("eHh4", "eXh4", 1)
    assert tampered != value
    with pytest.raises(BadSignature):
        serializer.loads(tampered)
    with app.test_request_context("/", headers={"Cookie": f"{name}={tampered}"}) as ctx:
        assert dict(app.session_interface.open_session(app, ctx.request) or {}) == {}


def test_a_compressed_cookie_from_flask_still_reads(app: Flask) -> None:
    data = {"signin_flow": "x" * 200}
    old = _cookie(app, SecureCookieSessionInterface(), data)
    assert old.startswith(".")  # Flask compressed it
    name = app.config["SESSION_COOKIE_NAME"]
    with app.test_request_context("/", headers={"Cookie": f"{name}={old}"}) as ctx:
        assert dict(app.session_interface.open_session(app, ctx.request) or {}) == data


def test_a_new_secret_key_builds_a_new_serializer(app: Flask) -> None:
    data = {"a": "b"}
    value = _cookie(app, app.session_interface, data)
    app.secret_key = b"another key entirely, 32 bytes!!"
    name = app.config["SESSION_COOKIE_NAME"]
    with app.test_request_context("/", headers={"Cookie": f"{name}={value}"}) as ctx:
        assert dict(app.session_interface.open_session(app, ctx.request) or {}) == {}
