"""The end-to-end tests use the SOAR tests' stores (SQLite and PostgreSQL) and local recording servers."""

from tests.soar.conftest import db_url, http_server

__all__ = ["db_url", "http_server"]
