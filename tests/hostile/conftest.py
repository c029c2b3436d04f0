"""Fixtures of the hostile-input tests: the SOAR tests' local servers and stores; each test starts and ends
with no secret registered for redaction (the registry is per process)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.redact import REDACTOR
from tests.soar.conftest import db_url, http_server

__all__ = ["db_url", "http_server"]  # pg_base_url: tests/conftest.py


@pytest.fixture(autouse=True)
def no_secrets() -> Iterator[None]:
    REDACTOR.clear()
    yield
    REDACTOR.clear()
