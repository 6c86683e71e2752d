"""Persistence: SQLAlchemy models, the engine of this process, repositories."""
