"""Single sign-on housekeeping: the participations are found by account (the account page's
applications, signing an account out everywhere, and the purge of the older participations of
an account in an application) and by when they ended (gateway/sso/housekeeping.py).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_sso_participations_account_public_id"),
        "sso_participations",
        ["account_public_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_sso_participations_ended_at"), "sso_participations", ["ended_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sso_participations_ended_at"), table_name="sso_participations")
    op.drop_index(op.f("ix_sso_participations_account_public_id"), table_name="sso_participations")
