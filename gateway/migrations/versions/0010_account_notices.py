"""The account's life, second part: in-site messages, certificates unbound from an account
(refused from then on), the devices and addresses an account signed in from (keyed hashes), and
operators' status decisions with their reasons (gateway/lifecycle/models.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.storage.types import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"],
        ["accounts.id"],
        name=op.f(f"fk_{table}_account_id_accounts"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "account_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("read_at", UtcDateTime(timezone=True), nullable=True),
        _account_fk("account_messages"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_messages")),
    )
    op.create_index("ix_account_messages_account", "account_messages", ["account_id", "created_at"])
    op.create_table(
        "refused_certificates",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("refused_at", UtcDateTime(timezone=True), nullable=False),
        _account_fk("refused_certificates"),
        sa.PrimaryKeyConstraint("account_id", "thumbprint", name=op.f("pk_refused_certificates")),
    )
    op.create_table(
        "known_sign_in_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value_hash", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", UtcDateTime(timezone=True), nullable=False),
        _account_fk("known_sign_in_sources"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_known_sign_in_sources")),
        sa.UniqueConstraint(
            "account_id", "kind", "value_hash", name=op.f("uq_known_sign_in_sources")
        ),
    )
    op.create_table(
        "account_status_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("changed_at", UtcDateTime(timezone=True), nullable=False),
        _account_fk("account_status_changes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_status_changes")),
    )
    op.create_index(
        op.f("ix_account_status_changes_account_id"),
        "account_status_changes",
        ["account_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_account_status_changes_account_id"), table_name="account_status_changes")
    op.drop_table("account_status_changes")
    op.drop_table("known_sign_in_sources")
    op.drop_table("refused_certificates")
    op.drop_index("ix_account_messages_account", table_name="account_messages")
    op.drop_table("account_messages")
