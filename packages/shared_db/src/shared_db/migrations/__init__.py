"""The four services' Alembic histories, one folder each, plus the shared env logic."""
