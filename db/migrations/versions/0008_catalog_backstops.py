"""Backstops for the catalog: general admission never sells more places than its capacity,
and seats a re-imported layout drops are retired when bookings point at them (deleted when none
does; `booking_items_by_seat` finds out without reading every item).

`events.places_claimed` is the sum of the quantities of the event's general-admission items
that hold inventory. Triggers on booking_items keep it, in the statement that claims or frees
(so it cannot drift from the items, whatever code writes them; a TRUNCATE of the items sets it
to 0), and `event_places_within_capacity` refuses a claim past the capacity. The placement's
event row lock stays the path that gives the good answer; this holds even if that code is wrong.

Revision ID: 0008_catalog_backstops
Revises: 0007_catalog
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008_catalog_backstops'
down_revision: str | Sequence[str] | None = '0007_catalog'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Over OLD or NEW: the row is a general-admission claim.
CLAIM = "{row}.holds_inventory AND {row}.seat_id IS NULL AND {row}.event_id IS NOT NULL"

COUNT_CLAIMS = f"""
CREATE FUNCTION count_general_admission_claims() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND ({CLAIM.format(row='OLD')}) THEN
        UPDATE events SET places_claimed = places_claimed - OLD.quantity WHERE id = OLD.event_id;
    END IF;
    IF TG_OP <> 'DELETE' AND ({CLAIM.format(row='NEW')}) THEN
        UPDATE events SET places_claimed = places_claimed + NEW.quantity WHERE id = NEW.event_id;
    END IF;
    RETURN NULL;
END $$
"""

FORGET_CLAIMS = """
CREATE FUNCTION forget_general_admission_claims() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE events SET places_claimed = 0 WHERE places_claimed <> 0;
    RETURN NULL;
END $$
"""

TRIGGERS = {
    'booking_items_claim_places': f"AFTER INSERT ON booking_items FOR EACH ROW WHEN ({CLAIM.format(row='NEW')})",
    'booking_items_free_places': f"AFTER DELETE ON booking_items FOR EACH ROW WHEN ({CLAIM.format(row='OLD')})",
    # Only when the claim changes: the write-back sets holds_inventory again to what it was.
    'booking_items_change_places': (
        "AFTER UPDATE OF holds_inventory, quantity, event_id, seat_id ON booking_items FOR EACH ROW"
        f" WHEN ((({CLAIM.format(row='OLD')}) OR ({CLAIM.format(row='NEW')}))"
        " AND (OLD.holds_inventory, OLD.quantity, OLD.event_id, OLD.seat_id)"
        " IS DISTINCT FROM (NEW.holds_inventory, NEW.quantity, NEW.event_id, NEW.seat_id))"
    ),
}


def upgrade() -> None:
    op.add_column('seats', sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('booking_items_by_seat', 'booking_items', ['seat_id'],
                    postgresql_where=sa.text('seat_id IS NOT NULL'))
    op.add_column('events', sa.Column('places_claimed', sa.Integer(), server_default='0', nullable=False))
    op.execute("""
        UPDATE events SET places_claimed = claimed.places
        FROM (SELECT event_id, sum(quantity) AS places FROM booking_items
              WHERE holds_inventory AND seat_id IS NULL AND event_id IS NOT NULL GROUP BY event_id) AS claimed
        WHERE events.id = claimed.event_id
    """)
    op.create_check_constraint(
        'event_places_within_capacity', 'events', 'places_claimed BETWEEN 0 AND coalesce(capacity, 0)'
    )
    op.execute(COUNT_CLAIMS)
    op.execute(FORGET_CLAIMS)
    for name, when in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION count_general_admission_claims()")
    op.execute(
        "CREATE TRIGGER booking_items_truncated AFTER TRUNCATE ON booking_items"
        " FOR EACH STATEMENT EXECUTE FUNCTION forget_general_admission_claims()"
    )


def downgrade() -> None:
    for name in (*TRIGGERS, 'booking_items_truncated'):
        op.execute(f"DROP TRIGGER {name} ON booking_items")
    op.execute("DROP FUNCTION forget_general_admission_claims()")
    op.execute("DROP FUNCTION count_general_admission_claims()")
    op.drop_constraint('event_places_within_capacity', 'events', type_='check')
    op.drop_column('events', 'places_claimed')
    op.drop_index('booking_items_by_seat', table_name='booking_items')
    op.drop_column('seats', 'retired_at')
