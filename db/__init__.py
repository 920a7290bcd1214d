"""The database of record: SQLAlchemy models, sessions and data-access functions."""
