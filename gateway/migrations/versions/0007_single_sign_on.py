"""Single sign-on: clients (OpenID Connect and CAS), authorization codes, access and refresh
tokens, consents, signing keys (private keys sealed with the data key), the clients that took
part in each gateway session, CAS service tickets and the single-logout delivery queue
(gateway/sso/models.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.storage.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sso_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("client_secret_hash", sa.String(length=64), nullable=True),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("post_logout_redirect_uris", sa.Text(), nullable=False),
        sa.Column("backchannel_logout_uri", sa.String(length=2048), nullable=True),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("consent", sa.String(length=8), nullable=False),
        sa.Column("cas_service_prefixes", sa.Text(), nullable=False),
        sa.Column("id_token_signed_response_alg", sa.String(length=8), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_clients")),
        sa.UniqueConstraint("client_id", name=op.f("uq_sso_clients_client_id")),
    )
    op.create_table(
        "sso_signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=8), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("private_key_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("retired_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("not_after", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_sso_signing_keys")),
    )
    op.create_table(
        "cas_tickets",
        sa.Column("ticket_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("gateway_session_id", sa.String(length=64), nullable=False),
        sa.Column("acr", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_cas_tickets_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["sso_clients.client_id"],
            name=op.f("fk_cas_tickets_client_id_sso_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ticket_hash", name=op.f("pk_cas_tickets")),
    )
    op.create_index(op.f("ix_cas_tickets_client_id"), "cas_tickets", ["client_id"], unique=False)
    op.create_index(op.f("ix_cas_tickets_expires_at"), "cas_tickets", ["expires_at"], unique=False)
    op.create_table(
        "logout_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["sso_clients.client_id"],
            name=op.f("fk_logout_deliveries_client_id_sso_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logout_deliveries")),
    )
    op.create_index(
        op.f("ix_logout_deliveries_client_id"), "logout_deliveries", ["client_id"], unique=False
    )
    op.create_index(
        op.f("ix_logout_deliveries_next_attempt_at"),
        "logout_deliveries",
        ["next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "sso_access_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("acr", sa.String(length=64), nullable=False),
        sa.Column("amr", sa.String(length=64), nullable=False),
        sa.Column("auth_time", UtcDateTime(timezone=True), nullable=False),
        sa.Column("gateway_session_id", sa.String(length=64), nullable=False),
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("issued_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_sso_access_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["sso_clients.client_id"],
            name=op.f("fk_sso_access_tokens_client_id_sso_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_sso_access_tokens")),
    )
    op.create_index(
        op.f("ix_sso_access_tokens_account_id"), "sso_access_tokens", ["account_id"], unique=False
    )
    op.create_index(
        op.f("ix_sso_access_tokens_client_id"), "sso_access_tokens", ["client_id"], unique=False
    )
    op.create_index(
        op.f("ix_sso_access_tokens_expires_at"), "sso_access_tokens", ["expires_at"], unique=False
    )
    op.create_index(
        op.f("ix_sso_access_tokens_gateway_session_id"),
        "sso_access_tokens",
        ["gateway_session_id"],
        unique=False,
    )
    op.create_table(
        "sso_authorization_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("nonce", sa.String(length=512), nullable=True),
        sa.Column("code_challenge", sa.String(length=128), nullable=True),
        sa.Column("code_challenge_method", sa.String(length=8), nullable=True),
        sa.Column("acr", sa.String(length=64), nullable=False),
        sa.Column("amr", sa.String(length=64), nullable=False),
        sa.Column("auth_time", UtcDateTime(timezone=True), nullable=False),
        sa.Column("gateway_session_id", sa.String(length=64), nullable=False),
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_sso_authorization_codes_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["sso_clients.client_id"],
            name=op.f("fk_sso_authorization_codes_client_id_sso_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_sso_authorization_codes")),
    )
    op.create_index(
        op.f("ix_sso_authorization_codes_client_id"),
        "sso_authorization_codes",
        ["client_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_sso_authorization_codes_expires_at"),
        "sso_authorization_codes",
        ["expires_at"],
        unique=False,
    )
    op.create_table(
        "sso_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("granted_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_sso_consents_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["sso_clients.client_id"],
            name=op.f("fk_sso_consents_client_id_sso_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_consents")),
        sa.UniqueConstraint("account_id", "client_id", name="uq_sso_consents_account_id_client_id"),
    )
    op.create_index(op.f("ix_sso_consents_client_id"), "sso_consents", ["client_id"], unique=False)
    op.create_table(
        "sso_participations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway_session_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("account_public_id", sa.String(length=36), nullable=False),
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("cas_ticket", sa.String(length=256), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["sso_clients.client_id"],
            name=op.f("fk_sso_participations_client_id_sso_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_participations")),
    )
    op.create_index(
        op.f("ix_sso_participations_client_id"), "sso_participations", ["client_id"], unique=False
    )
    op.create_index(
        op.f("ix_sso_participations_gateway_session_id"),
        "sso_participations",
        ["gateway_session_id"],
        unique=False,
    )
    op.create_table(
        "sso_refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=64), nullable=False),
        sa.Column("used_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("acr", sa.String(length=64), nullable=False),
        sa.Column("amr", sa.String(length=64), nullable=False),
        sa.Column("auth_time", UtcDateTime(timezone=True), nullable=False),
        sa.Column("gateway_session_id", sa.String(length=64), nullable=False),
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("issued_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_sso_refresh_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["sso_clients.client_id"],
            name=op.f("fk_sso_refresh_tokens_client_id_sso_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_sso_refresh_tokens")),
    )
    op.create_index(
        op.f("ix_sso_refresh_tokens_account_id"), "sso_refresh_tokens", ["account_id"], unique=False
    )
    op.create_index(
        op.f("ix_sso_refresh_tokens_client_id"), "sso_refresh_tokens", ["client_id"], unique=False
    )
    op.create_index(
        op.f("ix_sso_refresh_tokens_expires_at"), "sso_refresh_tokens", ["expires_at"], unique=False
    )
    op.create_index(
        op.f("ix_sso_refresh_tokens_family_id"), "sso_refresh_tokens", ["family_id"], unique=False
    )
    op.create_index(
        op.f("ix_sso_refresh_tokens_gateway_session_id"),
        "sso_refresh_tokens",
        ["gateway_session_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sso_refresh_tokens_gateway_session_id"), table_name="sso_refresh_tokens")
    op.drop_index(op.f("ix_sso_refresh_tokens_family_id"), table_name="sso_refresh_tokens")
    op.drop_index(op.f("ix_sso_refresh_tokens_expires_at"), table_name="sso_refresh_tokens")
    op.drop_index(op.f("ix_sso_refresh_tokens_client_id"), table_name="sso_refresh_tokens")
    op.drop_index(op.f("ix_sso_refresh_tokens_account_id"), table_name="sso_refresh_tokens")
    op.drop_table("sso_refresh_tokens")
    op.drop_index(op.f("ix_sso_participations_gateway_session_id"), table_name="sso_participations")
    op.drop_index(op.f("ix_sso_participations_client_id"), table_name="sso_participations")
    op.drop_table("sso_participations")
    op.drop_index(op.f("ix_sso_consents_client_id"), table_name="sso_consents")
    op.drop_table("sso_consents")
    op.drop_index(
        op.f("ix_sso_authorization_codes_expires_at"), table_name="sso_authorization_codes"
    )
    op.drop_index(
        op.f("ix_sso_authorization_codes_client_id"), table_name="sso_authorization_codes"
    )
    op.drop_table("sso_authorization_codes")
    op.drop_index(op.f("ix_sso_access_tokens_gateway_session_id"), table_name="sso_access_tokens")
    op.drop_index(op.f("ix_sso_access_tokens_expires_at"), table_name="sso_access_tokens")
    op.drop_index(op.f("ix_sso_access_tokens_client_id"), table_name="sso_access_tokens")
    op.drop_index(op.f("ix_sso_access_tokens_account_id"), table_name="sso_access_tokens")
    op.drop_table("sso_access_tokens")
    op.drop_index(op.f("ix_logout_deliveries_next_attempt_at"), table_name="logout_deliveries")
    op.drop_index(op.f("ix_logout_deliveries_client_id"), table_name="logout_deliveries")
    op.drop_table("logout_deliveries")
    op.drop_index(op.f("ix_cas_tickets_expires_at"), table_name="cas_tickets")
    op.drop_index(op.f("ix_cas_tickets_client_id"), table_name="cas_tickets")
    op.drop_table("cas_tickets")
    op.drop_table("sso_signing_keys")
    op.drop_table("sso_clients")
