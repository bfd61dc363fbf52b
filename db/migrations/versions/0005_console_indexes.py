"""Indexes for the operators' console: recent transitions, unapplied and troubling webhooks.

The overview reads the last hour of booking transitions (settle latency), the ledger rows not yet
applied and the count of webhook events that need an operator (unmatched, mismatch, rejected);
each stays an index scan however many bookings and events the tables hold.

Revision ID: 0005_console_indexes
Revises: 0004_operator
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005_console_indexes'
down_revision: str | Sequence[str] | None = '0004_operator'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('booking_transitions_by_time', 'booking_transitions', ['at'])
    op.create_index('webhook_events_unapplied', 'webhook_events', ['received_at'],
                    postgresql_where=sa.text('processed_at IS NULL'))
    op.create_index('webhook_events_needing_attention', 'webhook_events', ['outcome', 'received_at'],
                    postgresql_where=sa.text("outcome IN ('unmatched', 'mismatch', 'rejected')"))


def downgrade() -> None:
    op.drop_index('webhook_events_needing_attention', table_name='webhook_events')
    op.drop_index('webhook_events_unapplied', table_name='webhook_events')
    op.drop_index('booking_transitions_by_time', table_name='booking_transitions')
