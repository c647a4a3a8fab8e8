"""The least a Flask sign-in of four requests can cost, for bench/signin.py's ceiling.

The same pages and redirects as the service's sign-in (GET and POST /sign-in,
GET and POST /sign-in/token), served by the same server command line, with
the same two argon2id verifications (the people's own hashes) and a TOTP
check, a CSRF field and a signed session cookie; nothing else: no database,
forms library, GOV.UK templates, lockout, throttling, replay marks, audit
entries, server-side sessions, metrics or log lines. What it costs beyond its
two verifications is the floor under any Flask sign-in on that server, so the
service's figure can be read against it rather than against zero.

The people come from a JSON file the benchmark writes, named in BARE_PEOPLE:
{username: [password hash, PIN hash, TOTP secret]}; the cookies' signing key
from BARE_SECRET_KEY.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pyotp
from flask import Flask, redirect, render_template_string, request, session
from werkzeug.wrappers import Response

from core.settings import load_settings
from tokens.passwords import SecretHasher

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} - ContactPoint</title></head>
<body><main><h1>{{ title }}</h1>
{% if error %}<p role="alert">{{ error }}</p>{% endif %}
<form method="post" novalidate>
<input type="hidden" name="csrf_token" value="{{ csrf }}">
{% for name, label, kind in fields %}
<label for="{{ name }}">{{ label }}</label>
<input id="{{ name }}" name="{{ name }}" type="{{ kind }}" autocomplete="off">
{% endfor %}
<button type="submit">Continue</button>
</form></main></body></html>"""
FIRST = [("username", "Username", "text"), ("password", "Password", "password")]
SECOND = [("code", "Code from your token", "text"), ("pin", "PIN", "password")]
REFUSED = "The details you entered are not right"

# The service's own verifier (decoy hash for unknown people included).
_hasher = SecretHasher(load_settings(environ={}).argon2)
_people: dict[str, list[str]] = json.loads(
    Path(os.environ["BARE_PEOPLE"]).read_text(encoding="utf-8")
) if os.environ.get("BARE_PEOPLE") else {}

app = Flask(__name__)
# One key for all the workers (each loads this module), or a cookie signed by
# one would be refused by the next.
app.secret_key = os.environ.get("BARE_SECRET_KEY") or secrets.token_hex(32)


def _csrf() -> str:
    token: str = session.setdefault("csrf", secrets.token_urlsafe(32))
    return token


def _csrf_ok() -> bool:
    return secrets.compare_digest(request.form.get("csrf_token", ""), session.get("csrf", "?"))


def _page(title: str, fields: list[tuple[str, str, str]], error: str = "") -> str:
    return render_template_string(PAGE, title=title, fields=fields, error=error, csrf=_csrf())


@app.get("/sign-in")
def first_page() -> str:
    return _page("Sign in", FIRST)


@app.post("/sign-in")
def first_step() -> Any:
    if not _csrf_ok():
        return Response("The form has expired", status=400)
    person = _people.get(request.form.get("username", "").strip().lower())
    if not _hasher.verify(person[0] if person else None, request.form.get("password", "")):
        return _page("Sign in", FIRST, REFUSED)
    session["pending"] = request.form["username"].strip().lower()
    return redirect("/sign-in/token")


@app.get("/sign-in/token")
def second_page() -> Any:
    if "pending" not in session:
        return redirect("/sign-in")
    return _page("Your token and PIN", SECOND)


@app.post("/sign-in/token")
def second_step() -> Any:
    if not _csrf_ok() or "pending" not in session:
        return Response("The form has expired", status=400)
    person = _people.get(session["pending"])
    code_ok = person is not None and pyotp.TOTP(person[2]).verify(
        request.form.get("code", ""), valid_window=1)
    pin_ok = _hasher.verify(person[1] if person else None, request.form.get("pin", ""))
    if not (code_ok and pin_ok):
        return _page("Your token and PIN", SECOND, REFUSED)
    username = session.pop("pending")
    session.clear()
    session["user"] = username
    session["csrf"] = secrets.token_urlsafe(32)
    return redirect("/")


@app.get("/")
def home() -> Any:
    return "signed in" if "user" in session else redirect("/sign-in")
