"""Archive tables for terminal bookings, and when each authorization was obtained.

Archived bookings leave the hot tables (and their indexes) but keep every column, item,
payment and transition, so a client can still read them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ARCHIVED = ("bookings", "booking_items", "booking_transitions", "payments")


def upgrade() -> None:
    op.add_column('payments', sa.Column('authorized_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        'payments_authorized_since', 'payments', ['authorized_at'],
        postgresql_where=sa.text("status = 'authorized'"),
    )
    op.create_index(
        'bookings_terminal_by_age', 'bookings', ['updated_at'],
        postgresql_where=sa.text("status IN ('rejected', 'expired', 'cancelled', 'refunded')"),
    )
    for table in ARCHIVED:
        # Same columns, no constraints: archived rows are history, not claims.
        op.execute(f"CREATE TABLE archived_{table} (LIKE {table} INCLUDING DEFAULTS)")
    op.execute("ALTER TABLE archived_bookings ADD PRIMARY KEY (id)")
    op.execute("ALTER TABLE archived_bookings ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now()")
    op.create_index('archived_booking_items_by_booking', 'archived_booking_items', ['booking_id'])
    op.create_index('archived_booking_transitions_by_booking', 'archived_booking_transitions', ['booking_id'])
    op.create_index('archived_payments_by_booking', 'archived_payments', ['booking_id'], unique=True)


def downgrade() -> None:
    for table in reversed(ARCHIVED):
        op.drop_table(f"archived_{table}")
    op.drop_index('bookings_terminal_by_age', table_name='bookings')
    op.drop_index('payments_authorized_since', table_name='payments')
    op.drop_column('payments', 'authorized_at')
