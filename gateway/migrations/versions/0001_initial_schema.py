"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 20:01:27.420880
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.storage.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("login_name", sa.String(length=64), nullable=True),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("real_name", sa.String(length=100), nullable=True),
        sa.Column("id_card_number_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("id_card_number_hash", sa.String(length=64), nullable=True),
        sa.Column("phone_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("phone_hash", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("unified_social_credit_code", sa.String(length=18), nullable=True),
        sa.Column("legal_representative", sa.String(length=100), nullable=True),
        sa.Column("real_name_level", sa.Integer(), nullable=False),
        sa.Column("agreement_version", sa.String(length=32), nullable=True),
        sa.Column(
            "agreement_consented_at",
            gateway.storage.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("locked_until", gateway.storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("id_card_number_hash", name=op.f("uq_accounts_id_card_number_hash")),
        sa.UniqueConstraint("login_name", name=op.f("uq_accounts_login_name")),
        sa.UniqueConstraint("phone_hash", name=op.f("uq_accounts_phone_hash")),
        sa.UniqueConstraint("public_id", name=op.f("uq_accounts_public_id")),
        sa.UniqueConstraint(
            "unified_social_credit_code", name=op.f("uq_accounts_unified_social_credit_code")
        ),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("account_public_id", sa.String(length=36), nullable=True),
        sa.Column("certificate_thumbprint", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("previous_hash", sa.String(length=64), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_records")),
    )
    op.create_table(
        "challenges",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("binding_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_challenges")),
    )
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_challenges_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "login_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_login_attempts_key_at", ["key", "at"], unique=False)

    op.create_table(
        "trust_anchors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=1024), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("revocation_mode", sa.String(length=16), nullable=False),
        sa.Column("crl_sources", sa.Text(), nullable=False),
        sa.Column("ocsp_responder", sa.String(length=1024), nullable=True),
        sa.Column("mapping_rule", sa.Text(), nullable=True),
        sa.Column("created_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trust_anchors")),
        sa.UniqueConstraint("name", name=op.f("uq_trust_anchors_name")),
        sa.UniqueConstraint("thumbprint", name=op.f("uq_trust_anchors_thumbprint")),
    )
    op.create_table(
        "certificate_bindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=1024), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("created_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_certificate_bindings_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_bindings")),
        sa.UniqueConstraint("kind", "value", name="uq_certificate_bindings_kind_value"),
    )
    with op.batch_alter_table("certificate_bindings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_certificate_bindings_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amr", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", gateway.storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_sessions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_sessions")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_account_id"), ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_account_id"))

    op.drop_table("sessions")
    with op.batch_alter_table("certificate_bindings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificate_bindings_account_id"))

    op.drop_table("certificate_bindings")
    op.drop_table("trust_anchors")
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempts_key_at")

    op.drop_table("login_attempts")
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_challenges_expires_at"))

    op.drop_table("challenges")
    op.drop_table("audit_records")
    op.drop_table("audit_head")
    op.drop_table("accounts")
