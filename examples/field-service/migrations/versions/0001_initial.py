"""initial schema: heartbeats, bot_offsets, processed_updates

Revision ID: 0001
Revises:
Create Date: 2026-01-01 00:00:00

The deploy tool's health check reads
``SELECT service, release, EXTRACT(EPOCH FROM now()-beat_at) FROM heartbeats``:
keep these names.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "heartbeats",
        sa.Column("service", sa.Text(), primary_key=True),
        sa.Column("release", sa.Text(), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("now()")),
        sa.Column("pid", sa.Integer()),
        sa.Column("hostname", sa.Text()),
        sa.Column("state", sa.Text()),
    )
    op.create_table(
        "bot_offsets",
        sa.Column("service", sa.Text(), primary_key=True),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "processed_updates",
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger()),
        sa.Column("text", sa.Text()),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.text("now()")),
        sa.Column("release", sa.Text()),
        sa.PrimaryKeyConstraint("service", "update_id"),
    )


def downgrade() -> None:
    op.drop_table("processed_updates")
    op.drop_table("bot_offsets")
    op.drop_table("heartbeats")
