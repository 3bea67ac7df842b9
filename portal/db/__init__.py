"""Database runtime: the declarative base, the engine's extension, RLS and audit plumbing."""

from portal.db.base import Base, Model, TimestampedModel, db

__all__ = ["Base", "Model", "TimestampedModel", "db"]
