"""Single logout: a participation is marked ended once its logout messages are queued, and each
queued message carries where it goes and for whom (gateway/sso/logout.py); a CAS ticket records
whether it was issued right after a login made for it (renew=true, gateway/sso/cas.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.storage.types import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sso_participations") as batch:
        batch.add_column(sa.Column("ended_at", UtcDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("logout_deliveries") as batch:
        batch.add_column(sa.Column("url", sa.String(length=2048), nullable=True))
        batch.add_column(sa.Column("account_public_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("reason", sa.String(length=32), nullable=True))
    with op.batch_alter_table("cas_tickets") as batch:
        batch.add_column(
            sa.Column("from_new_login", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("cas_tickets") as batch:
        batch.drop_column("from_new_login")
    with op.batch_alter_table("logout_deliveries") as batch:
        batch.drop_column("reason")
        batch.drop_column("account_public_id")
        batch.drop_column("url")
    with op.batch_alter_table("sso_participations") as batch:
        batch.drop_column("ended_at")
