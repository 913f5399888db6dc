"""Live events: unit machine state, shift windows, webhooks with a durable delivery outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("unit_states") as batch:
        batch.add_column(sa.Column("machine", sa.JSON()))
    with op.batch_alter_table("unit_patrol_routes") as batch:
        batch.add_column(sa.Column("shift_start", sa.String(5)))
        batch.add_column(sa.Column("shift_end", sa.String(5)))
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column(
            "webhook_id",
            sa.Integer(),
            sa.ForeignKey(
                "webhooks.id", ondelete="CASCADE", name="fk_webhook_deliveries_webhook_id_webhooks"
            ),
            nullable=False,
        ),
        sa.Column(
            "event_id",
            _BIGID,
            sa.ForeignKey(
                "events.id", ondelete="CASCADE", name="fk_webhook_deliveries_event_id_events"
            ),
            nullable=False,
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _ts(), nullable=False),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.String(2000)),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("delivered_at", _ts()),
        sa.UniqueConstraint(
            "webhook_id", "event_id", name="uq_webhook_deliveries_webhook_id_event_id"
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_status_next_attempt_at",
        "webhook_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id",
            _BIGID,
            sa.ForeignKey(
                "webhook_deliveries.id",
                ondelete="CASCADE",
                name="fk_webhook_attempts_delivery_id_webhook_deliveries",
            ),
            nullable=False,
        ),
        sa.Column("attempted_at", _ts(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("error", sa.String(2000)),
        sa.Column("duration_ms", sa.Float()),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    with op.batch_alter_table("unit_patrol_routes") as batch:
        batch.drop_column("shift_end")
        batch.drop_column("shift_start")
    with op.batch_alter_table("unit_states") as batch:
        batch.drop_column("machine")
