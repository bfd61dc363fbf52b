"""Operator cancels and partial refunds, 3-D Secure's next action, disputes.

A cancel records who asked and which refund they chose; a payment records the refund total asked
for (never above what was captured: the database checks it too), the number of refunds made (each
has its own idempotency key), the amount of the claimed call (a retry repeats it exactly), what the
customer must do next, the dispute, if any, and when the payment audit last compared it with Stripe.

Revision ID: 0004_operator
Revises: 0003
Create Date: 2026-12-06
"""
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = '0004_operator'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BOOKING_COLUMNS: tuple[tuple[str, Any], ...] = (
    ('cancel_refund', sa.String(10)),
    ('cancel_reason', sa.String(60)),
)
PAYMENT_COLUMNS: tuple[tuple[str, Any, Any], ...] = (
    ('refund_requested', sa.Integer(), sa.text('0')),
    ('refund_number', sa.Integer(), sa.text('0')),
    ('step_amount', sa.Integer(), None),
    ('next_action', JSONB(), None),
    ('dispute', JSONB(), None),
    ('audited_at', sa.DateTime(timezone=True), None),
)


def upgrade() -> None:
    for prefix in ('', 'archived_'):
        for name, kind in BOOKING_COLUMNS:
            op.add_column(f'{prefix}bookings', sa.Column(name, kind, nullable=True))
        for name, column_type, default in PAYMENT_COLUMNS:
            op.add_column(f'{prefix}payments', sa.Column(
                name, column_type, nullable=default is None, server_default=default,
            ))
    # A refund claimed before this revision keeps its idempotency key (it named attempt 1).
    op.execute("UPDATE payments SET refund_number = 1 WHERE step = 'refund' OR amount_refunded > 0")
    op.create_check_constraint(
        'refund_requested_within_captured', 'payments', 'refund_requested <= amount_captured'
    )
    op.create_index('bookings_by_email', 'bookings', [sa.text('lower(customer_email)'), sa.text('created_at DESC')])
    op.create_index('bookings_by_event', 'bookings', ['event_id', sa.text('created_at DESC')],
                    postgresql_where=sa.text('event_id IS NOT NULL'))
    op.create_index('bookings_by_resource', 'bookings', ['resource_id', sa.text('created_at DESC')],
                    postgresql_where=sa.text('resource_id IS NOT NULL'))
    op.create_index('bookings_newest_first', 'bookings', [sa.text('created_at DESC'), sa.text('id DESC')])
    op.create_index(
        'payments_to_audit', 'payments', [sa.text('audited_at NULLS FIRST'), 'booking_id'],
        postgresql_where=sa.text("intent_id IS NOT NULL AND status IN ('authorized', 'captured', 'refunded')"),
    )


def downgrade() -> None:
    op.drop_index('payments_to_audit', table_name='payments')
    for index in ('bookings_newest_first', 'bookings_by_resource', 'bookings_by_event', 'bookings_by_email'):
        op.drop_index(index, table_name='bookings')
    op.drop_constraint('refund_requested_within_captured', 'payments', type_='check')
    for prefix in ('', 'archived_'):
        for name, *_ in PAYMENT_COLUMNS:
            op.drop_column(f'{prefix}payments', name)
        for name, _ in BOOKING_COLUMNS:
            op.drop_column(f'{prefix}bookings', name)
