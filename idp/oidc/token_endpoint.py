"""The token endpoint, served in front of Flask.

It is the busiest endpoint of the service (every relying application, every
few minutes, for every person), it reads no cookie and renders no page, so it
skips Flask's request context, Flask-Login and the page hooks: a WSGI layer
answers POST /oauth2/token with Authlib's grants directly and hands every other
request to the Flask app. It still opens its own unit of work, audits client
authentication failures, and sends the same security headers.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error, OAuth2Payload, OAuth2Request
from sqlalchemy.exc import DBAPIError
from werkzeug.wrappers import Request, Response

from core.audit import AuditContext
from idp import logs, metrics
from idp.container import Container, Unit
from idp.oidc.clients import GRANT_TYPES

log = logging.getLogger(__name__)
request_log = logs.get_logger("contactpoint.request")

# The unit of work of the token request being answered (None inside Flask views).
TOKEN_UNIT: ContextVar[Unit | None] = ContextVar("token_unit", default=None)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def audit_client_failure(unit: Unit, request: Request, error: OAuth2Error) -> None:
    """A failed client authentication is worth an audit entry; the request's own
    transaction is rolled back first, so only the entry is committed."""
    if error.error != "invalid_client":
        return
    unit.session.rollback()
    who = request.authorization.username if request.authorization else request.form.get(
        "client_id")
    unit.audit.record("oidc:client:authentication", "failure", subject_type="oauth_client",
                      subject_id=(who or "")[:64] or None, detail={"endpoint": request.path})
    unit.commit()


class _FormPayload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, form: Any) -> None:
        self._data: dict[str, str] = form.to_dict(flat=True)
        self._datalist = {key: form.getlist(key) for key in form}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class TokenRequest(OAuth2Request):  # type: ignore[misc]
    """Authlib's request, read once from the form body: the endpoint's own URL
    is known, and the token endpoint takes no query parameters (RFC 6749 3.2)."""

    def __init__(self, request: Request, uri: str) -> None:
        super().__init__(request.method, uri, headers=request.headers)
        self._form = request.form
        self.payload = _FormPayload(self._form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> Any:
        return self._form


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


class TokenEndpoint:
    def __init__(self, app: WSGIApp, container: Container, provider_for: Callable[[], Any]) -> None:
        self.app = app
        self.container = container
        self.provider_for = provider_for
        self.secure = not container.settings.on_loopback

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/oauth2/token" or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        started = time.perf_counter()
        request = Request(environ)
        request_id = secrets.token_hex(16)
        unit = self.container.unit(AuditContext(client_address=request.remote_addr,
                                                request_id=request_id))
        marker = TOKEN_UNIT.set(unit)
        try:
            response = self.answer(unit, request)
        except DBAPIError:
            log.exception("database unavailable in token request %s", request_id)
            response = _json({"error": "temporarily_unavailable",
                              "error_description": "try again shortly"}, 503)
            response.headers["Retry-After"] = "1"
        except Exception:
            log.exception("unhandled error in token request %s", request_id)
            response = _json({"error": "server_error",
                              "error_description": f"quote reference {request_id}"}, 500)
        finally:
            TOKEN_UNIT.reset(marker)
            unit.close()
        self._observe(request, response, request_id, time.perf_counter() - started)
        headers = response.headers
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Request-Id"] = request_id
        headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
        if self.secure:
            headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        return response(environ, start_response)

    @staticmethod
    def _observe(request: Request, response: Response, request_id: str, seconds: float) -> None:
        """The metrics and the JSON request line that idp.ops gives Flask's routes."""
        grant = metrics.bounded(request.form.get("grant_type", ""), GRANT_TYPES)
        outcome = "issued" if response.status_code < 400 else (
            "refused" if response.status_code < 500 else "failed")
        metrics.TOKEN_REQUESTS.labels(grant, outcome).inc()
        metrics.REQUEST_LATENCY.labels("oidc.token").observe(seconds)
        metrics.RESPONSES.labels(f"{response.status_code // 100}xx").inc()
        request_log.info("request", method="POST", route="/oauth2/token",
                         endpoint="oidc.token", status=response.status_code,
                         duration_ms=round(seconds * 1000, 1), request_id=request_id)

    def answer(self, unit: Unit, request: Request) -> Response:
        provider = self.provider_for()
        provider.keys.prepare(lambda: unit.session, unit.clock)
        server = provider.server
        oauth_request = TokenRequest(request, provider.url("/oauth2/token"))
        try:
            grant = server.get_token_grant(oauth_request)
            grant.validate_token_request()
            status, body, headers = grant.create_token_response()
        except OAuth2Error as error:
            audit_client_failure(unit, request, error)
            refused: Response = server.handle_error_response(oauth_request, error)
            return refused
        if unit.has_session:  # a warm client-credentials answer opens none
            unit.commit()
        return _json(body, status) if not headers else Response(
            json.dumps(body), status=status, headers=headers)
