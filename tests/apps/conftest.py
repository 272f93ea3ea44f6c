"""Fixtures of the apps tests: a real PostgreSQL server (hcm tune --storage)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import hcm_postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL server started for the session; skipped with the reason where none
    can be started, failed instead where $HCM_REQUIRE_POSTGRES=1 (CI)."""
    try:
        server = hcm_postgres.start_server()
    except hcm_postgres.Unavailable as reason:
        if os.environ.get("HCM_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (HCM_REQUIRE_POSTGRES=1)")
        pytest.skip(str(reason))
    try:
        yield server.url
    finally:
        server.stop()
