"""Webhook ledger (one row per Stripe event id, payload kept) and Checkout Session ids on payments.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('webhook_events',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('booking_id', sa.UUID(), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_webhook_events_booking_id'), 'webhook_events', ['booking_id'], unique=False)
    op.add_column('payments', sa.Column('checkout_session_id', sa.String(length=255), nullable=True))
    op.create_unique_constraint('payments_checkout_session_id_key', 'payments', ['checkout_session_id'])


def downgrade() -> None:
    op.drop_constraint('payments_checkout_session_id_key', 'payments', type_='unique')
    op.drop_column('payments', 'checkout_session_id')
    op.drop_index(op.f('ix_webhook_events_booking_id'), table_name='webhook_events')
    op.drop_table('webhook_events')
