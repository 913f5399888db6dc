"""Acknowledgement of events: who acknowledged an alert, when, and the note.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("acked_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("acked_by", sa.String(200)))
        batch.add_column(sa.Column("ack_note", sa.String(500)))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("ack_note")
        batch.drop_column("acked_by")
        batch.drop_column("acked_at")
