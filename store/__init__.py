"""Persistence: SQLAlchemy models, the repository the service uses, and Alembic migrations."""
