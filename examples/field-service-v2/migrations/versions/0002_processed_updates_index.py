"""v2: index processed updates by chat, and remember who answered

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("processed_updates", sa.Column("answered_by", sa.Text(), nullable=True))
    op.create_index("ix_processed_updates_chat", "processed_updates", ["chat_id", "processed_at"])


def downgrade() -> None:
    op.drop_index("ix_processed_updates_chat", table_name="processed_updates")
    op.drop_column("processed_updates", "answered_by")
