"""Which clients took part in which gateway session: what single logout reads when a session
ends (the gateway session id is the session row's ``id_hash``).

``sid`` is the OpenID Connect session id a client sees (in ID tokens and, later, logout
tokens): derived from the gateway session id, so it names the session without being anything
that could open it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import bindparam, insert, select

from gateway.sso.models import SsoParticipation
from gateway.storage.database import Database
from gateway.storage.prepared import Prepared

# Every token request records its client's participation (once per session for OpenID Connect):
# built once, run on the gateway's Core connection (gateway/storage/prepared.py).
_KNOWN_OIDC = Prepared(
    select(SsoParticipation.id)
    .where(
        SsoParticipation.gateway_session_id == bindparam("gateway_session_id"),
        SsoParticipation.client_id == bindparam("client_id"),
        SsoParticipation.cas_ticket.is_(None),
    )
    .limit(1)
)
_INSERT = Prepared(
    insert(SsoParticipation).values(
        {
            name: bindparam(name)
            for name in (
                "gateway_session_id",
                "client_id",
                "protocol",
                "account_public_id",
                "sid",
                "cas_ticket",
                "created_at",
            )
        }
    )
)


def session_sid(gateway_session_id: str) -> str:
    return hashlib.sha256(b"certgate sid\x00" + gateway_session_id.encode("ascii")).hexdigest()[:32]


def record_participation(
    database: Database,
    *,
    gateway_session_id: str,
    client_id: str,
    protocol: str,
    account_public_id: str,
    at: datetime,
    cas_ticket: str | None = None,
) -> None:
    """Note that ``client_id`` received tokens (OIDC) or a ticket (CAS, with the ticket, which
    a CAS LogoutRequest names) in this gateway session. An OIDC client is recorded once per
    session; each CAS ticket is its own row."""
    parameters = {"gateway_session_id": gateway_session_id, "client_id": client_id}
    with database.connection() as connection:
        if cas_ticket is None and _KNOWN_OIDC.execute(connection, parameters).rows:
            return
        _INSERT.execute(
            connection,
            {
                **parameters,
                "protocol": protocol,
                "account_public_id": account_public_id,
                "sid": session_sid(gateway_session_id),
                "cas_ticket": cas_ticket,
                "created_at": at,
            },
        )


def participations(database: Database, gateway_session_id: str) -> list[SsoParticipation]:
    """Every client told of this session, oldest first."""
    with database.session() as session:
        return list(
            session.scalars(
                select(SsoParticipation)
                .where(SsoParticipation.gateway_session_id == gateway_session_id)
                .order_by(SsoParticipation.id)
            ).all()
        )
