"""Alembic migrations; run them through shared.db (see README)."""
