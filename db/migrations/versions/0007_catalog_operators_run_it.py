"""The catalog as operators run it: refs, sections, sale windows, general admission, blocked
seats, and resources with weekly hours in their own time zone instead of dated windows.

Existing events go on sale at once until they start (they had no window); existing resources
lose their dated windows and are closed until an operator gives them weekly hours.

Revision ID: 0007_catalog
Revises: 0006_notifications
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007_catalog'
down_revision: str | Sequence[str] | None = '0006_notifications'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEAT_OR_SLOT_BEFORE = (
    "(seat_id IS NOT NULL AND event_id IS NOT NULL AND resource_id IS NULL AND period IS NULL)"
    " OR (seat_id IS NULL AND event_id IS NULL AND resource_id IS NOT NULL AND period IS NOT NULL)"
)
SEAT_PLACES_OR_SLOT = (
    "(event_id IS NOT NULL AND resource_id IS NULL AND period IS NULL)"
    " OR (seat_id IS NULL AND event_id IS NULL AND resource_id IS NOT NULL AND period IS NOT NULL)"
)


def upgrade() -> None:
    _venues_and_seats()
    _events()
    _resources()
    _booking_items()


def _venues_and_seats() -> None:
    op.add_column('venues', sa.Column('ref', sa.String(length=200), nullable=True))
    op.add_column('venues', sa.Column('timezone', sa.String(length=64), server_default='UTC', nullable=False))
    op.create_unique_constraint('venues_ref_key', 'venues', ['ref'])
    op.drop_constraint('venues_name_key', 'venues', type_='unique')
    op.add_column('seats', sa.Column('section', sa.String(length=40), server_default='', nullable=False))
    op.drop_constraint('seats_venue_id_row_number_key', 'seats', type_='unique')
    op.create_unique_constraint(
        'seats_venue_id_section_row_number_key', 'seats', ['venue_id', 'section', 'row', 'number']
    )


def _events() -> None:
    op.add_column('events', sa.Column('ref', sa.String(length=200), nullable=True))
    op.add_column('events', sa.Column('capacity', sa.Integer(), nullable=True))
    op.add_column('events', sa.Column('sales_start_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('events', sa.Column('sales_end_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('events', sa.Column('status', sa.String(length=20), server_default='active', nullable=False))
    op.execute(
        "UPDATE events SET sales_start_at = LEAST(now(), starts_at - interval '1 second'), sales_end_at = starts_at"
    )
    op.alter_column('events', 'sales_start_at', nullable=False)
    op.alter_column('events', 'sales_end_at', nullable=False)
    op.alter_column('events', 'venue_id', nullable=True)
    op.create_unique_constraint('events_ref_key', 'events', ['ref'])
    op.create_check_constraint('event_seated_or_general', 'events', '(venue_id IS NULL) <> (capacity IS NULL)')
    op.create_check_constraint('event_capacity_positive', 'events', 'capacity > 0')
    op.create_check_constraint('event_sale_window_valid', 'events', 'sales_end_at > sales_start_at')
    op.create_check_constraint('event_status_known', 'events', "status IN ('active', 'cancelled')")
    op.create_table(
        'event_blocked_seats',
        sa.Column('event_id', sa.UUID(), nullable=False),
        sa.Column('seat_id', sa.UUID(), nullable=False),
        sa.Column('blocked_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['event_id'], ['events.id']),
        sa.ForeignKeyConstraint(['seat_id'], ['seats.id']),
        sa.PrimaryKeyConstraint('event_id', 'seat_id'),
    )


def _resources() -> None:
    op.drop_table('availability_windows')
    op.drop_constraint('resources_name_key', 'resources', type_='unique')
    op.add_column('resources', sa.Column('ref', sa.String(length=200), nullable=True))
    op.create_unique_constraint('resources_ref_key', 'resources', ['ref'])
    jsonb = postgresql.JSONB(astext_type=sa.Text())
    op.add_column('resources', sa.Column('timezone', sa.String(length=64), server_default='UTC', nullable=False))
    op.add_column('resources', sa.Column('weekly_hours', jsonb, server_default=sa.text("'{}'::jsonb"), nullable=False))
    op.add_column('resources', sa.Column('exceptions', jsonb, server_default=sa.text("'[]'::jsonb"), nullable=False))
    for name, default in (('buffer_minutes', '0'), ('min_notice_minutes', '0'), ('max_advance_days', '365'),
                          ('granularity_minutes', '1')):
        op.add_column('resources', sa.Column(name, sa.Integer(), server_default=default, nullable=False))
    op.create_check_constraint(
        'resource_rules_valid', 'resources',
        'buffer_minutes >= 0 AND min_notice_minutes >= 0 AND max_advance_days > 0 AND granularity_minutes > 0',
    )


def _booking_items() -> None:
    for table in ('booking_items', 'archived_booking_items'):
        op.add_column(table, sa.Column('quantity', sa.Integer(), server_default='1', nullable=False))
    op.drop_constraint('booking_item_is_seat_or_slot', 'booking_items', type_='check')
    op.create_check_constraint('booking_item_is_seat_or_slot', 'booking_items', SEAT_PLACES_OR_SLOT)
    op.create_check_constraint(
        'booking_item_quantity_valid', 'booking_items', 'quantity > 0 AND (seat_id IS NULL OR quantity = 1)'
    )
    op.create_index(
        'booking_items_general_claims', 'booking_items', ['event_id'],
        postgresql_where=sa.text('holds_inventory AND seat_id IS NULL AND event_id IS NOT NULL'),
    )


def downgrade() -> None:
    op.drop_index('booking_items_general_claims', table_name='booking_items')
    op.drop_constraint('booking_item_quantity_valid', 'booking_items', type_='check')
    op.drop_constraint('booking_item_is_seat_or_slot', 'booking_items', type_='check')
    op.create_check_constraint('booking_item_is_seat_or_slot', 'booking_items', SEAT_OR_SLOT_BEFORE)
    for table in ('booking_items', 'archived_booking_items'):
        op.drop_column(table, 'quantity')
    op.drop_constraint('resource_rules_valid', 'resources', type_='check')
    for name in ('granularity_minutes', 'max_advance_days', 'min_notice_minutes', 'buffer_minutes',
                 'exceptions', 'weekly_hours', 'timezone'):
        op.drop_column('resources', name)
    op.drop_constraint('resources_ref_key', 'resources', type_='unique')
    op.drop_column('resources', 'ref')
    op.create_unique_constraint('resources_name_key', 'resources', ['name'])
    op.create_table(
        'availability_windows',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('resource_id', sa.UUID(), nullable=False),
        sa.Column('period', postgresql.TSTZRANGE(), nullable=False),
        postgresql.ExcludeConstraint((sa.column('resource_id'), '='), (sa.column('period'), '&&'), using='gist',
                                     name='availability_windows_disjoint'),
        sa.ForeignKeyConstraint(['resource_id'], ['resources.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.drop_table('event_blocked_seats')
    for name in ('event_status_known', 'event_sale_window_valid', 'event_capacity_positive', 'event_seated_or_general'):
        op.drop_constraint(name, 'events', type_='check')
    op.drop_constraint('events_ref_key', 'events', type_='unique')
    op.execute("DELETE FROM events WHERE venue_id IS NULL")  # general admission cannot go back
    op.alter_column('events', 'venue_id', nullable=False)
    for name in ('status', 'sales_end_at', 'sales_start_at', 'capacity', 'ref'):
        op.drop_column('events', name)
    op.drop_constraint('seats_venue_id_section_row_number_key', 'seats', type_='unique')
    op.create_unique_constraint('seats_venue_id_row_number_key', 'seats', ['venue_id', 'row', 'number'])
    op.drop_column('seats', 'section')
    op.create_unique_constraint('venues_name_key', 'venues', ['name'])
    op.drop_constraint('venues_ref_key', 'venues', type_='unique')
    op.drop_column('venues', 'timezone')
    op.drop_column('venues', 'ref')
