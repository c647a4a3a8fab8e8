"""The WSGI entry point for production servers: `gunicorn idp.wsgi:app`."""

from __future__ import annotations

from idp.app import create_app

app = create_app()
