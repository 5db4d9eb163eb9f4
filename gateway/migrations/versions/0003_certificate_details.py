"""Certificate details (subject sealed, issuer, expiry) for bound and used certificates.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.storage.types import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate_details",
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("issuer_serial", sa.String(length=1024), nullable=False),
        sa.Column("subject_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("not_after", UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("thumbprint", name=op.f("pk_certificate_details")),
    )
    op.create_index(
        op.f("ix_certificate_details_issuer_serial"),
        "certificate_details",
        ["issuer_serial"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_certificate_details_issuer_serial"), table_name="certificate_details")
    op.drop_table("certificate_details")
