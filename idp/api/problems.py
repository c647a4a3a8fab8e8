"""RFC 9457 problem details: the one shape of every API error.

`type` is a stable URI built from the domain error's `error_id`, so clients
match on it rather than on the wording of `title` or `detail`.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request
from werkzeug.wrappers import Response

from core.errors import DomainError, InvalidInput

PROBLEM_TYPE_BASE = "https://contactpoint.example/problems/"
MEDIA_TYPE = "application/problem+json"


def problem(
    status: int,
    error_id: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error_id,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        **extra,
    }
    response = Response(json.dumps(body), status=status, mimetype=MEDIA_TYPE)
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def domain_problem(error: DomainError, status: int) -> Response:
    extra: dict[str, Any] = {}
    if isinstance(error, InvalidInput):
        extra["errors"] = [{"field": p.field, "message": p.message} for p in error.problems]
    return problem(status, error.error_id, error.title, error.message, **extra)
