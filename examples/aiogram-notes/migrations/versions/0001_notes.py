"""The notes table.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE notes (
            id bigserial PRIMARY KEY,
            update_id bigint NOT NULL,
            chat_id bigint NOT NULL,
            body text NOT NULL,
            bot text NOT NULL,
            release text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now()
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE notes")
