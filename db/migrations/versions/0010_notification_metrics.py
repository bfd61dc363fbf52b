"""An index of the webhook deliveries not yet delivered, for the console's failing endpoints.

Revision ID: 0010_notification_metrics
Revises: 0008_catalog_backstops
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010_notification_metrics'
down_revision: str | Sequence[str] | None = '0008_catalog_backstops'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('webhook_deliveries_undelivered', 'webhook_deliveries', ['endpoint_id', 'created_at'],
                    postgresql_where=sa.text("status <> 'succeeded'"))


def downgrade() -> None:
    op.drop_index('webhook_deliveries_undelivered', table_name='webhook_deliveries')
