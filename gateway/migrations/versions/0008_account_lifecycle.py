"""The account's life: verification codes (hashed), published agreement versions and every
consent an account gave, and the sealed ID-card number of an enterprise's legal
representative (gateway/lifecycle/models.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.storage.types import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verification_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("destination_hash", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("failed_tries", sa.Integer(), nullable=False),
        sa.Column("spent_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_codes")),
    )
    op.create_index(
        "ix_verification_codes_destination",
        "verification_codes",
        ["destination_hash", "created_at"],
        unique=False,
    )
    op.create_table(
        "agreement_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("published_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreement_versions")),
        sa.UniqueConstraint("version", name=op.f("uq_agreement_versions_version")),
    )
    op.create_table(
        "agreement_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("consented_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("how", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_agreement_consents_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreement_consents")),
    )
    op.create_index(
        op.f("ix_agreement_consents_account_id"),
        "agreement_consents",
        ["account_id"],
        unique=False,
    )
    op.create_table(
        "legal_representative_ids",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("id_card_number_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("id_card_number_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_legal_representative_ids_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_legal_representative_ids")),
    )
    op.create_index(
        op.f("ix_legal_representative_ids_id_card_number_hash"),
        "legal_representative_ids",
        ["id_card_number_hash"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_legal_representative_ids_id_card_number_hash"),
        table_name="legal_representative_ids",
    )
    op.drop_table("legal_representative_ids")
    op.drop_index(op.f("ix_agreement_consents_account_id"), table_name="agreement_consents")
    op.drop_table("agreement_consents")
    op.drop_table("agreement_versions")
    op.drop_index("ix_verification_codes_destination", table_name="verification_codes")
    op.drop_table("verification_codes")
