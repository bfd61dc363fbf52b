"""Schema (SQLAlchemy 2 models, Alembic migrations), engine and transactions, and queries."""
