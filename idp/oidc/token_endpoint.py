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
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import OAuth2Error, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InsecureTransportError
from sqlalchemy.exc import DBAPIError
from werkzeug.datastructures import MultiDict
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

from core.audit import AuditContext
from idp import logs, metrics
from idp.container import Container, Unit
from idp.oidc.clients import GRANT_TYPES

log = logging.getLogger(__name__)
request_log = logs.get_logger("contactpoint.request")

# The unit of work of the token request being answered (None inside Flask views).
TOKEN_UNIT: ContextVar[Unit | None] = ContextVar("token_unit", default=None)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


# A token request is a few hundred bytes (a client assertion a few thousand);
# anything near this is not one. The same bound as Flask's MAX_CONTENT_LENGTH.
FORM_LIMIT = 1024 * 1024
# More fields than any grant has; parse_qsl refuses beyond it.
FORM_FIELDS = 64

Answer = tuple[int, dict[str, Any], list[tuple[str, str]]]


class UnreadableForm(Exception):
    """The body is not a token request's form; answered with `status`."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def read_form(environ: dict[str, Any]) -> MultiDict[str, str]:
    """The urlencoded body (RFC 6749 3.2) as a multidict, read straight from
    the WSGI environ: werkzeug's general form parser (streams, multipart, file
    limits) cost more than the rest of reading the request. Any other content
    type is an empty form, as werkzeug gives, and the grant then says what is
    missing."""
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if mimetype != "application/x-www-form-urlencoded":
        return MultiDict()
    declared = environ.get("CONTENT_LENGTH", "")
    if declared:
        length = int(declared) if declared.isascii() and declared.isdigit() else -1
        if length < 0:
            raise UnreadableForm(400, "the Content-Length header is not a length in bytes")
        if length > FORM_LIMIT:
            raise UnreadableForm(413, "the request body is too large")
        body = environ["wsgi.input"].read(length) if length else b""
    elif environ.get("wsgi.input_terminated"):  # chunked, and the server marks its end
        body = environ["wsgi.input"].read(FORM_LIMIT + 1)
        if len(body) > FORM_LIMIT:
            raise UnreadableForm(413, "the request body is too large")
    else:  # no length and no end: werkzeug reads nothing either
        body = b""
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                          max_num_fields=FORM_FIELDS)
    except ValueError:
        raise UnreadableForm(400, "the request has too many fields") from None
    return MultiDict(pairs)


def audit_client_failure(unit: Unit, request: Request, error: OAuth2Error,
                         form: MultiDict[str, str] | None = None) -> None:
    """A failed client authentication is worth an audit entry; the request's own
    transaction is rolled back first, so only the entry is committed."""
    if error.error != "invalid_client":
        return
    unit.session.rollback()
    fields = request.form if form is None else form
    who = request.authorization.username if request.authorization else fields.get(
        "client_id")
    unit.audit.record("oidc:client:authentication", "failure", subject_type="oauth_client",
                      subject_id=(who or "")[:64] or None, detail={"endpoint": request.path})
    unit.commit()


class _FormPayload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, form: MultiDict[str, str]) -> None:
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
    is known, and the token endpoint takes no query parameters (RFC 6749 3.2).

    It sets what OAuth2Request.__init__ sets (a test holds the two alike) but
    skips that method's two costs: re-parsing the endpoint's URL to refuse
    plain HTTP, which the endpoint checks once per URL, and `headers or {}`,
    which on werkzeug's headers walks the whole WSGI environ to take its length."""

    def __init__(self, request: Request, uri: str, form: MultiDict[str, str]) -> None:
        self.method = request.method
        self.uri = uri
        self.headers = request.headers
        self._body = None
        self.payload = _FormPayload(form)
        self.client = None
        self.auth_method = None
        self.user = None
        self.authorization_code = None
        self.refresh_token = None
        self.credential = None
        self._scope = None
        self._form = form

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> Any:
        return self._form


def _headers(headers: Any) -> list[tuple[str, str]]:
    if not headers:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    return [(str(name), str(value)) for name, value in items]


_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_LATENCY = metrics.REQUEST_LATENCY.labels("oidc.token")


class TokenEndpoint:
    def __init__(self, app: WSGIApp, container: Container, provider_for: Callable[[], Any]) -> None:
        self.app = app
        self.container = container
        self.provider_for = provider_for
        self.secure = not container.settings.on_loopback
        self._transport_checked: set[str] = set()
        self._fixed_headers = [
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
        ]
        if self.secure:
            self._fixed_headers.append(
                ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
        # Authlib's grants send Cache-Control and Pragma too: ours win, once each.
        self._ours = frozenset(name.lower() for name, _ in self._fixed_headers) | {
            "content-type", "content-length", "x-request-id"}

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
        form: MultiDict[str, str] = MultiDict()
        try:
            form = read_form(environ)
            status, body, extra = self.answer(unit, request, form)
        except UnreadableForm as unreadable:
            status, body, extra = unreadable.status, {
                "error": "invalid_request", "error_description": unreadable.description}, []
        except DBAPIError:
            log.exception("database unavailable in token request %s", request_id)
            status, body, extra = 503, {"error": "temporarily_unavailable",
                                        "error_description": "try again shortly"}, [
                ("Retry-After", "1")]
        except Exception:
            log.exception("unhandled error in token request %s", request_id)
            status, body, extra = 500, {"error": "server_error",
                                        "error_description": f"quote reference {request_id}"}, []
        finally:
            TOKEN_UNIT.reset(marker)
            unit.close()
        self._observe(form, status, request_id, time.perf_counter() - started)
        # Written out directly: a list body is the WSGI servers' fast path
        # (granian sends it in one call instead of iterating a response).
        payload = json.dumps(body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        headers.extend(pair for pair in extra if pair[0].lower() not in self._ours)
        headers.extend(self._fixed_headers)
        headers.append(("X-Request-Id", request_id))
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown')}", headers)
        return [payload]

    @staticmethod
    def _observe(form: MultiDict[str, str], status: int, request_id: str,
                 seconds: float) -> None:
        """The metrics and the JSON request line that idp.ops gives Flask's routes."""
        grant = metrics.bounded(form.get("grant_type", ""), GRANT_TYPES)
        outcome = "issued" if status < 400 else ("refused" if status < 500 else "failed")
        key = (grant, outcome, status // 100)
        series = _SERIES.get(key)
        if series is None:  # a handful of label sets: prometheus's labels() locks each time
            series = _SERIES[key] = (metrics.TOKEN_REQUESTS.labels(grant, outcome),
                                     metrics.RESPONSES.labels(f"{status // 100}xx"))
        series[0].inc()
        series[1].inc()
        _LATENCY.observe(seconds)
        request_log.info("request", method="POST", route="/oauth2/token",
                         endpoint="oidc.token", status=status,
                         duration_ms=round(seconds * 1000, 1), request_id=request_id)

    def _checked(self, uri: str) -> str:
        """Authlib refuses a token endpoint on plain HTTP (but loopback); the
        URL comes from settings, so it is checked once rather than per request."""
        if uri not in self._transport_checked:
            InsecureTransportError.check(uri)
            self._transport_checked.add(uri)
        return uri

    def answer(self, unit: Unit, request: Request, form: MultiDict[str, str]) -> Answer:
        provider = self.provider_for()
        provider.keys.prepare(lambda: unit.session, unit.clock)
        server = provider.server
        oauth_request = TokenRequest(request, self._checked(provider.url("/oauth2/token")), form)
        try:
            grant = server.get_token_grant(oauth_request)
            grant.validate_token_request()
            status, body, headers = grant.create_token_response()
        except OAuth2Error as error:
            audit_client_failure(unit, request, error, form)
            status, body, headers = error(server.get_error_uri(oauth_request, error))
            return status, body, _headers(headers)
        if unit.touched_database:  # a warm client-credentials answer opens none
            unit.commit()
        return status, body, _headers(headers)
