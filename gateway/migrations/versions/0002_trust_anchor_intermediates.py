"""Trust anchors: CA certificates below the anchor, offered for path building.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 20:18:59.292071
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trust_anchors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("intermediates_pem", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trust_anchors", schema=None) as batch_op:
        batch_op.drop_column("intermediates_pem")
