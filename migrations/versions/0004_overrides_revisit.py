"""Per-route and per-geofence event overrides, revisit intervals, overdue marks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patrol_routes") as batch:
        batch.add_column(sa.Column("off_route_after_s", sa.Float()))
        batch.add_column(sa.Column("revisit_s", sa.Float()))
    with op.batch_alter_table("geofences") as batch:
        batch.add_column(sa.Column("hysteresis_m", sa.Float()))
        batch.add_column(sa.Column("revisit_s", sa.Float()))
    op.create_table(
        "overdue_marks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "patrol_route_id",
            sa.Integer(),
            sa.ForeignKey(
                "patrol_routes.id",
                ondelete="CASCADE",
                name="fk_overdue_marks_patrol_route_id_patrol_routes",
            ),
        ),
        sa.Column("segment", sa.Integer()),
        sa.Column(
            "geofence_id",
            sa.Integer(),
            sa.ForeignKey(
                "geofences.id", ondelete="CASCADE", name="fk_overdue_marks_geofence_id_geofences"
            ),
        ),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "patrol_route_id",
            "segment",
            "geofence_id",
            name="uq_overdue_marks_patrol_route_id_segment_geofence_id",
        ),
    )


def downgrade() -> None:
    op.drop_table("overdue_marks")
    with op.batch_alter_table("geofences") as batch:
        batch.drop_column("revisit_s")
        batch.drop_column("hysteresis_m")
    with op.batch_alter_table("patrol_routes") as batch:
        batch.drop_column("revisit_s")
        batch.drop_column("off_route_after_s")
