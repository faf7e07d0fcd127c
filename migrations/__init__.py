"""Alembic migrations for pgrecall (shipped in the wheel as ``pgrecall.migrations``)."""
