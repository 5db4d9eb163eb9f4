"""Assurance and sealed names: trust anchors' ``hardware_keys``, sessions' ``acr``, and people's
real names (a person's name, an enterprise's legal representative) sealed like ID-card numbers.

Sealing existing names needs the data key: the gateway hands its ``PersonalDataCipher`` to the
migration (``Database.migrate(personal_data=...)``). A database holding names in clear and
migrated without it stops here rather than dropping or keeping them.

Sessions made before this revision claimed "hwk" for every USB-key login; no anchor was then
known to issue hardware keys, so they become "swk" at level 3 (DESIGN.md "Assurance").

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

REAL_NAME_COLUMN = "accounts.real_name"
LEGAL_REPRESENTATIVE_COLUMN = "accounts.legal_representative"

_accounts = sa.table(
    "accounts",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("display_name", sa.String),
    sa.column("real_name", sa.String),
    sa.column("real_name_sealed", sa.LargeBinary),
    sa.column("legal_representative", sa.String),
    sa.column("legal_representative_sealed", sa.LargeBinary),
)
_sessions = sa.table("sessions", sa.column("amr", sa.String), sa.column("acr", sa.String))


def _cipher() -> Any:
    config = op.get_context().config
    return config.attributes.get("personal_data_cipher") if config is not None else None


def _names_in_clear(connection: sa.Connection) -> list[Any]:
    return list(
        connection.execute(
            sa.select(
                _accounts.c.id, _accounts.c.real_name, _accounts.c.legal_representative
            ).where(
                sa.or_(
                    _accounts.c.real_name.is_not(None),
                    _accounts.c.legal_representative.is_not(None),
                )
            )
        ).all()
    )


def _seal_names(connection: sa.Connection, cipher: Any) -> None:
    for row in _names_in_clear(connection):
        connection.execute(
            _accounts.update()
            .where(_accounts.c.id == row.id)
            .values(
                real_name_sealed=cipher.seal(REAL_NAME_COLUMN, row.real_name)
                if row.real_name
                else None,
                legal_representative_sealed=cipher.seal(
                    LEGAL_REPRESENTATIVE_COLUMN, row.legal_representative
                )
                if row.legal_representative
                else None,
            )
        )
    # A person's display name was the real name; it is now opened from the sealed column.
    connection.execute(
        _accounts.update()
        .where(_accounts.c.kind == "person", _accounts.c.real_name.is_not(None))
        .values(display_name="")
    )


def upgrade() -> None:
    connection = op.get_bind()
    # Checked before any change: SQLite does not roll back schema changes made so far.
    cipher = _cipher()
    if cipher is None and _names_in_clear(connection):
        raise RuntimeError(
            "revision 0004 seals the accounts' names and needs the data key: run "
            "`certgate serve` (or any certgate command) with the gateway's data_key"
        )
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Pages freed by the rewrite below are zeroed, so the names in clear do not linger in
        # the file's free space.
        connection.exec_driver_sql("PRAGMA secure_delete = ON")

    with op.batch_alter_table("trust_anchors", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("hardware_keys", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acr", sa.String(length=64), nullable=True))
    connection.execute(_sessions.update().where(_sessions.c.amr == "hwk pin").values(amr="swk pin"))
    connection.execute(
        _sessions.update()
        .where(_sessions.c.acr.is_(None))
        .values(
            acr=sa.case(
                (_sessions.c.amr == "pwd", "urn:certgate:loa:1"),
                else_="urn:certgate:loa:3",
            )
        )
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.alter_column("acr", existing_type=sa.String(length=64), nullable=False)

    # Plain ALTER TABLE, not a batch copy: with foreign keys on, SQLite's DROP TABLE of the old
    # accounts table would cascade to sessions and certificate bindings. SQLite (3.35+) drops a
    # column with no index or constraint in place.
    op.add_column("accounts", sa.Column("real_name_sealed", sa.LargeBinary(), nullable=True))
    op.add_column(
        "accounts", sa.Column("legal_representative_sealed", sa.LargeBinary(), nullable=True)
    )
    _seal_names(connection, cipher)
    op.drop_column("accounts", "real_name")
    op.drop_column("accounts", "legal_representative")


def downgrade() -> None:
    connection = op.get_bind()
    op.add_column("accounts", sa.Column("real_name", sa.String(length=100), nullable=True))
    op.add_column(
        "accounts", sa.Column("legal_representative", sa.String(length=100), nullable=True)
    )
    sealed = connection.execute(
        sa.select(
            _accounts.c.id,
            _accounts.c.kind,
            _accounts.c.real_name_sealed,
            _accounts.c.legal_representative_sealed,
        ).where(
            sa.or_(
                _accounts.c.real_name_sealed.is_not(None),
                _accounts.c.legal_representative_sealed.is_not(None),
            )
        )
    ).all()
    cipher = _cipher()
    if sealed and cipher is None:
        raise RuntimeError("downgrading past revision 0004 opens sealed names: give the data key")
    for row in sealed:
        real_name = (
            cipher.open(REAL_NAME_COLUMN, row.real_name_sealed) if row.real_name_sealed else None
        )
        values: dict[str, Any] = {
            "real_name": real_name,
            "legal_representative": cipher.open(
                LEGAL_REPRESENTATIVE_COLUMN, row.legal_representative_sealed
            )
            if row.legal_representative_sealed
            else None,
        }
        if row.kind == "person" and real_name:
            values["display_name"] = real_name
        connection.execute(_accounts.update().where(_accounts.c.id == row.id).values(**values))
    op.drop_column("accounts", "legal_representative_sealed")
    op.drop_column("accounts", "real_name_sealed")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("acr")
    with op.batch_alter_table("trust_anchors", schema=None) as batch_op:
        batch_op.drop_column("hardware_keys")
