"""The application factory: settings, container, extensions, blueprints.

Views call services and never touch the database session, pyotp or argon2
themselves; domain errors are turned into pages here, in one place.
"""

from __future__ import annotations

import secrets
import uuid
from importlib import import_module
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    Response,
    g,
    make_response,
    render_template,
    request,
    send_from_directory,
)
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect
from govuk_frontend_wtf.main import WTFormsHelpers
from jinja2 import ChoiceLoader, PackageLoader, PrefixLoader
from markupsafe import Markup
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.middleware.proxy_fix import ProxyFix

from core.audit import AuditContext
from core.errors import Conflict, DomainError, InvalidInput, NotAllowed, ServiceUnavailable
from core.errors import NotFound as DomainNotFound
from core.settings import PACKAGE_ROOT, Settings, load_settings
from idp import web
from idp.container import Container, Unit
from idp.cookies import CachedSerializerSessionInterface
from idp.oidc.token_endpoint import TOKEN_UNIT, TokenEndpoint
from tokens.errors import TooManyAttempts

ASSETS = PACKAGE_ROOT / "node_modules" / "govuk-frontend" / "dist" / "govuk"

STATUS_FOR: list[tuple[type[DomainError], int]] = [
    (InvalidInput, 400),
    (NotAllowed, 403),
    (DomainNotFound, 404),
    (Conflict, 409),
    (TooManyAttempts, 429),
    (ServiceUnavailable, 503),
]


def status_for(error: DomainError) -> int:
    for kind, status in STATUS_FOR:
        if isinstance(error, kind):
            return status
    return 400


def create_app(settings: Settings | None = None, container: Container | None = None) -> Flask:
    settings = settings or (container.settings if container else load_settings())
    built = container or Container(settings)
    # No default /static route: idp/static is served at /assets-local, and every
    # public path is one the anonymous-access test lists on purpose.
    app = Flask(__name__, static_folder=None)
    app.extensions["contactpoint"] = built
    app.config.update(
        SECRET_KEY=built.secrets.session_key,
        SESSION_COOKIE_NAME=settings.sessions.cookie_name,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.on_loopback,
        REMEMBER_COOKIE_DURATION=0,
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.session_interface = CachedSerializerSessionInterface()
    app.jinja_loader = ChoiceLoader(
        [
            PackageLoader("idp", "templates"),
            PrefixLoader(
                {
                    "govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja"),
                    "govuk_frontend_wtf": PackageLoader("govuk_frontend_wtf"),
                }
            ),
        ]
    )
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.jinja_env.globals["govuk_static"] = _static_fragments(app, settings.service.name)
    WTFormsHelpers(app)

    login = LoginManager(app)
    login.login_view = "signin.start"
    login.login_message = ""
    login.session_protection = "basic"
    login.user_loader(web.load_user)

    from idp import ops

    # First: its hooks time the request and choose its id before the others run.
    ops.register(app, built)
    _register_request_hooks(app, built)
    # After the hooks: the unit must be open before a CSRF refusal renders its page,
    # which loads the signed-in person (before_request hooks run in this order).
    csrf = CSRFProtect(app)
    _register_errors(app)
    _register_assets(app)

    from idp.activation.views import blueprint as activation
    from idp.home.views import blueprint as home
    from idp.people.views import blueprint as people
    from idp.signin.views import blueprint as signin
    from idp.vetting.views import blueprint as vetting

    for blueprint in (home, signin, activation, vetting, people):
        app.register_blueprint(blueprint)
    from idp.resets.views import blueprint as resets

    app.register_blueprint(resets)
    from idp.keys.views import blueprint as keys

    app.register_blueprint(keys)
    from idp.tokens.views import blueprint as tokens

    app.register_blueprint(tokens)
    from idp.services.views import blueprint as services

    app.register_blueprint(services)
    from idp.oidc.provider import Provider
    from idp.oidc.views import blueprint as oidc

    oidc_provider = Provider(_current_unit, settings, built.oidc_keys)
    app.extensions["contactpoint_oidc"] = oidc_provider
    app.wsgi_app = TokenEndpoint(  # type: ignore[method-assign]
        app.wsgi_app, built, lambda: oidc_provider)
    app.register_blueprint(oidc)
    from idp.oidc.pages import blueprint as applications

    app.register_blueprint(applications)
    # Protocol endpoints: clients authenticate themselves; there is no form to forge.
    for endpoint in ("par", "userinfo", "introspect", "revoke"):
        csrf.exempt(f"idp.oidc.views.{endpoint}")
    from idp.federation.views import blueprint as federation

    app.register_blueprint(federation)
    from idp.admin import staff_alerts as _staff_alerts  # noqa: F401  (its routes)
    from idp.admin.views import blueprint as admin

    app.register_blueprint(admin)
    from idp.federation.admin_views import blueprint as identity_provider

    app.register_blueprint(identity_provider)
    from idp.children.views import blueprint as children

    app.register_blueprint(children)
    from idp.api.views import blueprint as api

    import_module("idp.api.children")  # its operations join the API blueprint
    import_module("idp.api.manage")  # and so do these
    app.register_blueprint(api)
    # Bearer tokens, never cookies, authorise the API: there is no ambient authority to forge.
    csrf.exempt(api)
    app.context_processor(web.template_context)
    if settings.service.trusted_proxies > 0:
        # Outermost, so every layer (the token endpoint's too) sees the client's address.
        hops = settings.service.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app


def _current_unit() -> Unit:
    """The unit of the token request being answered, else the Flask request's."""
    return TOKEN_UNIT.get() or web.unit()


def _static_fragments(app: Flask, service_name: str) -> dict[str, Markup]:
    """Parts of every page that never change, rendered once at start-up: the
    GOV.UK component macros are the costliest part of rendering a page."""

    def component(name: str, macro: str, params: dict[str, Any]) -> Markup:
        module = app.jinja_env.get_template(f"govuk_frontend_jinja/components/{name}/macro.html")
        return Markup(getattr(module.module, macro)(params))  # noqa: S704 - the macro's own output

    return {
        "skip_link": component(
            "skip-link", "govukSkipLink", {"href": "#main-content", "text": "Skip to main content"}
        ),
        "header": component("header", "govukHeader", {}),
        "anonymous_navigation": component(
            "service-navigation",
            "govukServiceNavigation",
            {"serviceName": service_name, "serviceUrl": "/", "navigation": []},
        ),
        "footer": component("footer", "govukFooter", {}),
    }


def _register_request_hooks(app: Flask, built: Container) -> None:
    from idp import ops

    @app.before_request
    def open_unit() -> None:
        g.request_id = g.get("request_id") or uuid.uuid4().hex
        g.csp_nonce = secrets.token_urlsafe(16)
        g.unit = built.unit(
            AuditContext(client_address=request.remote_addr, request_id=g.request_id)
        )
        signed_in = web.current_user_or_none()
        if signed_in is not None:
            g.unit.context = g.unit.context.as_actor(signed_in.person.id, signed_in.person.username)

    @app.after_request
    def finish(response: Response) -> Response:
        unit = g.get("unit")
        if unit is not None and response.status_code < 400 and unit.touched_database:
            try:
                unit.commit()
            except ops.BACKEND_ERRORS as error:
                response = make_response(ops.backend_down(error))
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if not request.path.startswith(("/assets/", "/assets-local/")):
            response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        nonce = g.get("csp_nonce", "")
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; "
            "style-src 'self'; img-src 'self' data:; font-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        if not built.settings.on_loopback:
            response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        return response

    @app.teardown_request
    def close_unit(_error: BaseException | None) -> None:
        unit = g.pop("unit", None)
        if unit is not None:
            unit.close()


def _register_errors(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(error: DomainError) -> tuple[str, int, dict[str, str]]:
        status = status_for(error)
        headers = {}
        if isinstance(error, TooManyAttempts):
            headers["Retry-After"] = str(error.retry_after)
        return (
            render_template(
                "error.html", title=error.title, message=error.message, error_id=error.error_id
            ),
            status,
            headers,
        )

    @app.errorhandler(CSRFError)
    def csrf_error(_error: CSRFError) -> tuple[str, int]:
        return render_template(
            "error.html",
            title="The form has expired",
            message="For your security the form expired. Go back, reload the page and try again.",
            error_id="csrf",
        ), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        return render_template(
            "error.html",
            title=error.name,
            message=error.description or "",
            error_id=f"http.{error.code}",
        ), error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[str, int]:
        app.logger.exception("unhandled error in request %s", g.get("request_id"))
        return render_template(
            "error.html",
            title="Sorry, there is a problem with the service",
            message=(
                "Try again later. If you contact support, quote reference "
                f"{g.get('request_id', '')}."
            ),
            error_id="internal",
        ), 500


def _register_assets(app: Flask) -> None:
    @app.get("/assets/<path:name>")
    def assets(name: str) -> Any:
        folder = ASSETS / "assets" if name.startswith(("fonts/", "images/", "manifest")) else ASSETS
        if not folder.exists():
            raise NotFound()
        return send_from_directory(Path(folder), name, max_age=86400)

    @app.get("/assets-local/<path:name>")
    def local_assets(name: str) -> Any:
        return send_from_directory(Path(__file__).parent / "static", name, max_age=3600)
