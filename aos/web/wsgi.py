"""WSGI entry point for gunicorn: ``gunicorn aos.web.wsgi:app``."""

from aos.web.app import create_app

app = create_app()
