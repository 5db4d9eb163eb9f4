"""Enterprise roles: staff (经办人) invitations, staff roles with their periods, and the
sessions acting for an enterprise (gateway/roles/models.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-09 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.storage.types import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _account_fk(table: str, column: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        ["accounts.id"],
        name=op.f(f"fk_{table}_{column}_accounts"),
        ondelete=ondelete,
    )


def upgrade() -> None:
    op.create_table(
        "staff_invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=True),
        sa.Column("invitee_kind", sa.String(length=16), nullable=False),
        sa.Column("invitee_hash", sa.String(length=64), nullable=False),
        sa.Column("invitee_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("valid_until", UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("answered_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("answered_by_id", sa.Integer(), nullable=True),
        _account_fk("staff_invitations", "enterprise_id"),
        _account_fk("staff_invitations", "invited_by_id", "SET NULL"),
        _account_fk("staff_invitations", "answered_by_id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_invitations")),
        sa.UniqueConstraint("public_id", name=op.f("uq_staff_invitations_public_id")),
    )
    op.create_index("ix_staff_invitations_invitee", "staff_invitations", ["invitee_hash", "state"])
    op.create_index(
        "ix_staff_invitations_enterprise", "staff_invitations", ["enterprise_id", "state"]
    )
    op.create_table(
        "staff_roles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("valid_until", UtcDateTime(timezone=True), nullable=False),
        sa.Column("granted_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_how", sa.String(length=16), nullable=True),
        _account_fk("staff_roles", "enterprise_id"),
        _account_fk("staff_roles", "person_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_roles")),
        sa.UniqueConstraint(
            "enterprise_id", "person_id", name=op.f("uq_staff_roles_enterprise_person")
        ),
    )
    op.create_index(op.f("ix_staff_roles_person_id"), "staff_roles", ["person_id"])
    op.create_table(
        "acting_sessions",
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("started_at", UtcDateTime(timezone=True), nullable=False),
        _account_fk("acting_sessions", "person_id"),
        _account_fk("acting_sessions", "enterprise_id"),
        sa.PrimaryKeyConstraint("session_hash", name=op.f("pk_acting_sessions")),
    )
    op.create_index(op.f("ix_acting_sessions_person_id"), "acting_sessions", ["person_id"])
    op.create_index(op.f("ix_acting_sessions_started_at"), "acting_sessions", ["started_at"])


def downgrade() -> None:
    op.drop_table("acting_sessions")
    op.drop_table("staff_roles")
    op.drop_table("staff_invitations")
