"""Alembic migrations of the gateway database; they ship inside the package."""
