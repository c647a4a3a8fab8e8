"""What operators and their machines see: readiness, metrics, request logs,
and 503 answers (RFC 9457 problem documents) when a backing service is down.

`/healthz` (in home) says the process answers; `/readyz` says whether this
node can do its work now (database, Redis when shared state lives there,
LDAP when configured, schema not behind the code). Neither names versions,
hosts or error messages: a failing check is named, the reason is logged.
"""

from __future__ import annotations

import json
import re
import time
import uuid
import weakref
from functools import lru_cache
from typing import Any

import redis
import structlog
from flask import Blueprint, Flask, Response, abort, g, request
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from core.errors import ServiceUnavailable
from idp import logs, metrics
from idp.container import Container

blueprint = Blueprint("ops", __name__)
log = logs.get_logger("contactpoint.request")
ops_log = logs.get_logger("contactpoint.ops")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
QUIET_ENDPOINTS = frozenset({"home.healthz", "ops.readyz", "ops.metrics_page"})
RETRY_AFTER_SECONDS = "5"
# Engines whose pool and sessions are counted already (an app may be built twice
# on one container, as tests do).
_WATCHED: weakref.WeakSet[Any] = weakref.WeakSet()


def register(app: Flask, built: Container) -> None:
    """Hooks first (so the time taken covers every other hook), the blueprint,
    and the handlers that turn an unreachable backend into a 503."""
    logs.configure_once(built.settings)
    if built.engine not in _WATCHED:
        _WATCHED.add(built.engine)
        metrics.watch_pool(built.engine)
        metrics.watch_audit(built.session_factory)
    trust = built.settings.observability.trust_request_id
    networks = metrics.parse_allowed(built.settings.observability.metrics_allowed)
    allowed = metrics.allowed_by(networks)
    app.extensions["contactpoint.metrics_allowed"] = allowed

    @app.before_request
    def start() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "") if trust else ""
        g.request_id = given if given and REQUEST_ID.match(given) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.after_request
    def measure(response: Response) -> Response:
        started = g.get("started")
        if started is None:
            return response
        seconds = time.perf_counter() - started
        rule = request.url_rule
        endpoint = rule.endpoint if rule is not None else "unmatched"
        metrics.REQUEST_LATENCY.labels(endpoint).observe(seconds)
        metrics.RESPONSES.labels(f"{response.status_code // 100}xx").inc()
        (log.debug if endpoint in QUIET_ENDPOINTS else log.info)(
            "request",
            method=request.method,
            route=rule.rule if rule is not None else None,
            endpoint=endpoint,
            status=response.status_code,
            duration_ms=round(seconds * 1000, 1),
        )
        return response

    @app.teardown_request
    def forget(_error: BaseException | None) -> None:
        structlog.contextvars.clear_contextvars()

    app.register_blueprint(blueprint)
    _register_unavailable(app)


def wants_problem_json() -> bool:
    if request.path.startswith(("/api/", "/oauth", "/readyz", "/metrics")):
        return True
    best = request.accept_mimetypes.best_match(
        ["text/html", "application/problem+json", "application/json"]
    )
    return best not in (None, "text/html")


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    """An RFC 9457 problem document; `extra` members are extensions."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Response(_json(body), status=status, content_type="application/problem+json")


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


# What an unreachable backend raises: answered 503, at once, wherever it is met.
BACKEND_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def unavailable(title: str, message: str, error_id: str) -> Any:
    from flask import render_template

    headers = {"Retry-After": RETRY_AFTER_SECONDS}
    if wants_problem_json():
        response = problem(503, title, message, error_id=error_id)
        response.headers.update(headers)
        return response
    page = render_template("error.html", title=title, message=message, error_id=error_id)
    return page, 503, headers


def backend_down(error: Exception) -> Any:
    """The 503 for a backend that is down: also for a commit that fails after
    the view has answered (the database restarting mid-request), which Flask
    would otherwise turn into a 500."""
    # The class name only: a driver's message can carry hosts or values.
    ops_log.warning("backend unreachable", error=type(error).__name__)
    return unavailable(
        "Sorry, the service is unavailable",
        "The service is unavailable at the moment. Try again in a few minutes.",
        "unavailable",
    )


def _register_unavailable(app: Flask) -> None:
    @app.errorhandler(ServiceUnavailable)
    def service_unavailable(error: ServiceUnavailable) -> Any:
        ops_log.warning("unavailable", error_id=error.error_id)
        return unavailable(error.title, error.message, error.error_id)

    for kind in BACKEND_ERRORS:
        app.register_error_handler(kind, backend_down)


# -- readiness ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _revisions() -> tuple[str | None, frozenset[str]]:
    from alembic.script import ScriptDirectory

    from idp.database import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    return scripts.get_current_head(), frozenset(r.revision for r in scripts.walk_revisions())


def _check_database(built: Container) -> dict[str, bool]:
    """One connection from the pool: reachable, and the schema not behind the
    code. A revision this code does not know is a newer one (a rolling
    upgrade ran the migrations first, and they are additive): ready."""
    head, known = _revisions()
    try:
        with built.engine.connect() as connection:
            current = connection.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalar_one_or_none()
    except SQLAlchemyError as error:
        ops_log.warning("readiness: database", error=type(error).__name__)
        return {"database": False, "migrations": False}
    current_ok = current is not None and (current == head or current not in known)
    if not current_ok:
        ops_log.warning("readiness: migrations behind", current=current, head=head)
    return {"database": True, "migrations": current_ok}


def _check_redis(built: Container) -> bool:
    try:
        return bool(built.redis_client().ping())
    except redis.exceptions.RedisError as error:
        ops_log.warning("readiness: redis", error=type(error).__name__)
        return False


def _check_ldap(built: Container) -> bool:
    from dataclasses import replace

    from core.errors import ConfigurationError
    from directory.ldap_connect import LdapTarget, open_connection

    try:
        target = LdapTarget.from_settings(built.settings.ldap)
        quick = replace(target, timeout_seconds=min(3, target.timeout_seconds))
        connection = open_connection(quick)
    except (ServiceUnavailable, ConfigurationError) as error:
        ops_log.warning("readiness: ldap", error=type(error).__name__)
        return False
    connection.unbind()
    return True


def readiness(built: Container) -> dict[str, bool]:
    checks = _check_database(built)
    if built.settings.shared_state.backend == "redis":
        checks["redis"] = _check_redis(built)
    if built.settings.ldap.url.strip():
        checks["ldap"] = _check_ldap(built)
    return checks


@blueprint.get("/readyz")
def readyz() -> Response:
    from idp.web import container

    checks = readiness(container())
    failing = sorted(name for name, ok in checks.items() if not ok)
    if failing:
        return problem(
            503,
            "Service Unavailable",
            "Not ready: " + ", ".join(failing) + ".",
            checks={name: "ok" if ok else "failing" for name, ok in sorted(checks.items())},
        )
    return Response(_json({"status": "ready"}), status=200, content_type="application/json")


# -- metrics -----------------------------------------------------------------------------


@blueprint.get("/metrics")
def metrics_page() -> Response:
    """Only for the addresses in `observability.metrics_allowed`; everyone else
    sees the same 404 as for a page that does not exist. Behind trusted
    proxies the connecting peer must be allowed as well as the client."""
    from flask import current_app

    allowed = current_app.extensions["contactpoint.metrics_allowed"]
    peer = request.environ.get("werkzeug.proxy_fix.orig", {}).get(
        "REMOTE_ADDR", request.environ.get("REMOTE_ADDR")
    )
    if not (allowed(request.remote_addr) and allowed(peer)):
        abort(404)
    body, content_type = metrics.exposition()
    return Response(body, status=200, content_type=content_type)
