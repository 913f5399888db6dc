"""A BRIN index on pings.received_at (PostGIS only): the pings received since a moment.

The scheduler keeps the QGIS coverage layer up to date from the pings received since its last
refresh (service/analytics/qgis.py). Pings are stored in the order they arrive, so a BRIN index
(a few kilobytes per gigabyte, next to nothing to maintain on insert) finds the recent ones
without reading the shift's other rows. On a partitioned table it is made on every partition,
present and future. Nothing is created on SQLite, where there is no QGIS layer.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_pings_received_brin ON pings USING brin (received_at)"
        " WITH (autosummarize = on)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_pings_received_brin")
