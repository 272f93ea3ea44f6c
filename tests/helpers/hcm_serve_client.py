"""A TestClient of ``hcm serve``'s app, as the browser's address would reach it (the serve tests)."""

from __future__ import annotations

BASE = "http://127.0.0.1:8765"
ORIGIN = {"origin": BASE}  # what a browser sends with a form posted from the server's own page


def make_client(settings, base_url: str = BASE):
    """A FastAPI TestClient of the app for ``settings``; use it as a context manager (startup, shutdown)."""
    from fastapi.testclient import TestClient

    from hcm.apps.serve.app import create_app

    return TestClient(create_app(settings), base_url=base_url)
