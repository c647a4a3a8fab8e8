"""What the token endpoint reads and writes on the wire, over real HTTP: it
reads the form and writes its answers itself, in front of Flask, so the
refusals of a malformed request and the headers of every answer are its own."""

from __future__ import annotations

import base64
import io
import socket
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.rfc6749 import OAuth2Request
from sqlalchemy import select
from werkzeug.datastructures import MultiDict
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from core.audit import AuditEntry
from idp.container import Container
from idp.oidc.token_endpoint import FORM_FIELDS, FORM_LIMIT, TokenRequest, read_form
from tests.idp.oidc.conftest import Cast


def _raw(live: str, head: str, body: bytes = b"") -> tuple[int, dict[str, list[str]], bytes]:
    """One request written by hand: for bodies httpx would not send as they are."""
    url = urlsplit(live)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    header_block, _, content = reply.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, content


def _entries(container: Container) -> int:
    with container.unit() as unit:
        return len(unit.session.scalars(select(AuditEntry.seq)).all())


def test_every_answer_carries_the_endpoint_s_headers_once(live: str, cast: Cast) -> None:
    app = cast.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["admin"])
    issued = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret or ""),
                        data={"grant_type": "client_credentials", "scope": "admin"})
    refused = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, "wrong"),
                         data={"grant_type": "client_credentials"})
    assert issued.status_code == 200 and refused.status_code == 401
    for answer in (issued, refused):
        # Authlib's grants send Cache-Control and Pragma too: each comes once.
        assert answer.headers.get_list("cache-control") == ["no-store"]
        assert answer.headers.get_list("pragma") == ["no-cache"]
        assert answer.headers.get_list("content-type") == ["application/json"]
        assert int(answer.headers["content-length"]) == len(answer.content)
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert len(answer.headers["x-request-id"]) == 32
    assert issued.json()["token_type"] == "Bearer"
    # RFC 6749 5.2: a client that used the Authorization header is told how to.
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert refused.json()["error"] == "invalid_client"


def test_a_body_larger_than_any_token_request_is_refused_without_being_read(
    live: str, cast: Cast, container: Container
) -> None:
    app = cast.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["admin"])
    basic = base64.b64encode(f"{app.client_id}:{app.secret}".encode()).decode()
    head = (f"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Authorization: Basic {basic}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {FORM_LIMIT + 1}\r\n\r\n")
    before = _entries(container)
    status, headers, content = _raw(live, head)  # the body is never sent
    assert status == 413
    assert headers["content-type"] == ["application/json"]
    assert b'"invalid_request"' in content and b"too large" in content
    assert b"access_token" not in content
    assert _entries(container) == before  # nothing issued, nothing written


def test_a_form_with_more_fields_than_any_grant_is_refused(live: str, cast: Cast) -> None:
    app = cast.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["admin"])
    fields = {"grant_type": "client_credentials"} | {f"f{i}": "x" for i in range(FORM_FIELDS)}
    answer = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret or ""),
                        data=fields)
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_request",
                             "error_description": "the request has too many fields"}


def test_a_bad_content_length_is_a_clear_refusal(live: str) -> None:
    head = ("POST /oauth2/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: -5\r\n\r\n")
    status, _headers, content = _raw(live, head)
    assert status == 400
    assert b"Traceback" not in content
    assert b"not a length in bytes" in content


def test_a_json_body_is_not_a_token_request(live: str, cast: Cast) -> None:
    """RFC 6749 3.2 wants a form; a JSON body reads as an empty one, and the
    grant says what is missing rather than guessing."""
    app = cast.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["admin"])
    answer = httpx.post(f"{live}/oauth2/token", auth=(app.client_id, app.secret or ""),
                        json={"grant_type": "client_credentials"})
    assert answer.status_code == 400
    assert answer.json()["error"] in ("unsupported_grant_type", "invalid_request")
    assert "access_token" not in answer.json()


def _environ(body: bytes, **extra: str) -> dict[str, object]:
    environ = EnvironBuilder(method="POST", path="/oauth2/token", data=body,
                             content_type="application/x-www-form-urlencoded").get_environ()
    environ.update(extra)
    return environ


def test_the_form_reads_as_werkzeug_reads_it() -> None:
    """Read directly, the form must be what werkzeug's parser made of it:
    repeated fields, blanks, percent-escapes, UTF-8, plus signs."""
    body = (b"grant_type=refresh_token&scope=a+b&scope=c&empty=&name=%C3%89lodie"
            b"&odd=%zz&plus=%2B1")
    ours = read_form(_environ(body))
    theirs = Request(_environ(body)).form
    assert list(ours.items(multi=True)) == list(theirs.items(multi=True))
    # A server that marks the end of a chunked body sends no length.
    chunked = _environ(b"", **{"wsgi.input_terminated": True})
    del chunked["CONTENT_LENGTH"]
    chunked["wsgi.input"] = io.BytesIO(body)
    assert read_form(chunked) == ours


def test_the_token_request_sets_what_authlib_s_own_does() -> None:
    """TokenRequest skips OAuth2Request.__init__ for its cost; if a new Authlib
    sets another attribute there, this fails rather than a grant reading None."""
    theirs = OAuth2Request("POST", "https://id.example/oauth2/token")
    ours = TokenRequest(Request(_environ(b"grant_type=client_credentials")),
                        "https://id.example/oauth2/token",
                        MultiDict([("grant_type", "client_credentials")]))
    assert set(vars(theirs)) <= set(vars(ours))
    assert ours.payload.grant_type == "client_credentials"
    assert ours.headers["Content-Type"] == "application/x-www-form-urlencoded"
