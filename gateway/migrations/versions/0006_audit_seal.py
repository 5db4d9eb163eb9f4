"""Audit trail sealed: the head row carries the number of records and a MAC over its sequence
number, count and hash; a genesis marker records, with its own MAC, that the trail exists.

Both MACs need the data key: the gateway hands its ``PersonalDataCipher`` to the migration
(``Database.migrate(personal_data=...)``), and the trail is sealed here, in the migration's
transaction, so no state between "upgraded" and "sealed" is ever committed. An existing head is
sealed as it is found, counting its records as its sequence number (ids run 1, 2, 3 ... in an
intact trail): what `certgate audit verify` reported before the upgrade it reports after it. A
trail holding records and migrated without the key stops here. An empty trail migrated without
the key (``Database.migrate()`` by hand) gets its genesis marker without a MAC, which the
gateway's first start seals (``AuditLog.open``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from gateway.storage.types import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_head = sa.table(
    "audit_head",
    sa.column("id", sa.Integer),
    sa.column("last_id", sa.BigInteger),
    sa.column("last_hash", sa.String),
    sa.column("record_count", sa.BigInteger),
    sa.column("head_mac", sa.String),
)
_records = sa.table("audit_records", sa.column("id", sa.BigInteger))
_genesis = sa.table(
    "audit_genesis",
    sa.column("id", sa.Integer),
    sa.column("created_at", UtcDateTime(timezone=True)),
    sa.column("genesis_mac", sa.String),
)


def _cipher() -> Any:
    config = op.get_context().config
    return config.attributes.get("personal_data_cipher") if config is not None else None


def upgrade() -> None:
    from gateway.audit import GENESIS_HASH, GENESIS_ROW_ID, HEAD_ROW_ID, AuditSeal

    connection = op.get_bind()
    head = connection.execute(
        sa.select(_head.c.last_id, _head.c.last_hash).where(_head.c.id == HEAD_ROW_ID)
    ).one_or_none()
    has_records = connection.execute(sa.select(_records.c.id).limit(1)).first() is not None
    cipher = _cipher()
    if cipher is None and (head is not None or has_records):
        raise RuntimeError(
            "revision 0006 seals the audit trail and needs the data key: run `certgate serve` "
            "(or any certgate command) with the gateway's data_key"
        )
    seal = AuditSeal(cipher.audit_key) if cipher is not None else None

    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "record_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(sa.Column("head_mac", sa.String(length=64), nullable=True))
    op.create_table(
        "audit_genesis",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("genesis_mac", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_genesis")),
    )

    created_at = datetime.now(UTC).replace(microsecond=0)
    connection.execute(
        _genesis.insert().values(
            id=GENESIS_ROW_ID,
            created_at=created_at,
            genesis_mac=seal.genesis(created_at) if seal else None,
        )
    )
    if seal is not None and head is not None:
        connection.execute(
            _head.update()
            .where(_head.c.id == HEAD_ROW_ID)
            .values(
                record_count=head.last_id,
                head_mac=seal.head(head.last_id, head.last_id, head.last_hash),
            )
        )
    elif seal is not None and not has_records:
        connection.execute(
            _head.insert().values(
                id=HEAD_ROW_ID,
                last_id=0,
                last_hash=GENESIS_HASH,
                record_count=0,
                head_mac=seal.head(0, 0, GENESIS_HASH),
            )
        )
    # Records without a head row: left as found, for `certgate audit verify` to report.

    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.alter_column(
            "record_count",
            existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        )
        batch_op.alter_column("head_mac", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    op.drop_table("audit_genesis")
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("head_mac")
        batch_op.drop_column("record_count")
