"""Persistent storage: SQLAlchemy models, the database extension and personal-data encryption."""
