"""QR-code login tickets: asked for by a browser, scanned and confirmed by a signed-in phone
(gateway/qr/models.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.storage.types import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qr_login_tickets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("scan_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("browser", sa.String(length=120), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("scanner_hash", sa.String(length=64), nullable=True),
        sa.Column("scanned_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("decided_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("redeemed_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_qr_login_tickets_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qr_login_tickets")),
        sa.UniqueConstraint("scan_hash", name=op.f("uq_qr_login_tickets_scan_hash")),
    )
    op.create_index(
        "ix_qr_login_tickets_expires_at", "qr_login_tickets", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_qr_login_tickets_expires_at", table_name="qr_login_tickets")
    op.drop_table("qr_login_tickets")
