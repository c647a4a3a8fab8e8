"""Request-scoped helpers shared by the blueprints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, request, url_for
from flask_login import UserMixin, current_user
from flask_login import login_required as _login_required

from directory.models import Person, Role
from directory.service import Principal, principal_for
from idp.container import Container, Unit
from tokens.assurance import meets
from tokens.attempts import Client
from tokens.models import AuthSession

P = ParamSpec("P")
R = TypeVar("R")


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """Flask-Login's decorator, typed: anonymous visitors go to sign-in."""
    return cast(Callable[P, R], _login_required(view))


def requires_level(level: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Pages that need assurance `level` (3: a security key) send a session below
    it to the step-up page, which comes back here once the session is raised.
    Anonymous visitors go to sign-in first. A refused POST is not replayed: the
    person comes back to the page (the GET of the same path) and confirms again.
    """

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            signed_in = user()
            if not meets(signed_in.record.acr, level, container().settings.assurance):
                target = request.full_path if request.method == "GET" else request.path
                step_up = url_for("keys.step_up", next=safe_next(target.rstrip("?")))
                return cast(R, redirect(step_up))
            return view(*args, **kwargs)

        return login_required(guarded)

    return decorate


@dataclass
class SignedInUser(UserMixin):  # type: ignore[misc]
    """What Flask-Login knows of the person: the session token is the id, so a
    session ended on the server ends here on the next request."""

    token: str
    person: Person
    record: AuthSession
    principal: Principal

    def get_id(self) -> str:
        return self.token


@dataclass
class NewSession(UserMixin):  # type: ignore[misc]
    """A session the sign-in service has just started and checked, for
    Flask-Login to write into the cookie. It is not a `SignedInUser`: the
    response that logs it in is a redirect, which shows no one."""

    token: str

    def get_id(self) -> str:
        return self.token


def container() -> Container:
    built: Container = current_app.extensions["contactpoint"]
    return built


def unit() -> Unit:
    work: Unit = g.unit
    return work


def client() -> Client:
    return Client(request.remote_addr or "unknown", request.headers.get("User-Agent"))


def user() -> SignedInUser:
    signed_in = current_user._get_current_object()
    if not isinstance(signed_in, SignedInUser):
        abort(401)
    return signed_in


def current_user_or_none() -> SignedInUser | None:
    signed_in = current_user._get_current_object()
    return signed_in if isinstance(signed_in, SignedInUser) else None


def principal() -> Principal:
    return user().principal


def safe_next(target: str | None, default: str = "/") -> str:
    """Only same-site paths: an open redirect would turn sign-in into a phishing aid."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


def load_user(token: str) -> SignedInUser | None:
    live = unit().sessions.resume(token)
    if live is None:
        return None
    return user_for(token, live.person, live.record)


def user_for(token: str, person: Person, record: AuthSession) -> SignedInUser:
    today = container().clock.today()
    return SignedInUser(token, person, record, principal_for(person, today))


def template_context() -> dict[str, Any]:
    signed_in = current_user._get_current_object()
    return {
        "Role": Role,
        "service_name": container().settings.service.name,
        "signed_in": signed_in if isinstance(signed_in, SignedInUser) else None,
    }
