"""indexes for counting open disputes: (partnership_id, status) and (status, stage)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 11:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_disputes_partnership_status", "disputes", ["partnership_id", "status"], unique=False
    )
    op.create_index("ix_disputes_status_stage", "disputes", ["status", "stage"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_disputes_status_stage", table_name="disputes")
    op.drop_index("ix_disputes_partnership_status", table_name="disputes")
