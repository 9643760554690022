"""Store tests run against SQLite and a real PostgreSQL (postgres_server.py)."""

from store.postgres_server import postgres_server, postgres_url  # noqa: F401 - fixtures
