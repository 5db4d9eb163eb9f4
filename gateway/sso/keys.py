"""Signing keys of the identity provider: one active RS256 (RSA-2048) and one active ES256
(P-256) key, published as a JWKS.

Private keys are sealed with the data key (AES-256-GCM, like personal data), so a copy of the
database signs nothing. ``rotate`` makes new keys active and retires the old ones; a retired key
stays in the JWKS until ``not_after`` (its retirement plus the longest life of anything it
signed), so relying parties keep verifying tokens issued just before the rotation. The ``kid``
is the key's RFC 7638 thumbprint.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app, g, has_request_context
from joserfc.jwk import ECKey, KeyParameters, RSAKey
from sqlalchemy import bindparam, or_, select

from gateway.sso.models import KEY_ACTIVE, KEY_RETIRED, SsoSigningKey
from gateway.storage.database import Database, get_database
from gateway.storage.personal_data import PersonalDataCipher
from gateway.storage.prepared import Prepared

EXTENSION = "certgate.sso.keys"
PRIVATE_KEY_COLUMN = "sso_signing_keys.private_key"
RS256 = "RS256"
ES256 = "ES256"
ALGORITHMS = (RS256, ES256)
# A retired key stays published this long: the longest-lived token it signed (an ID token,
# one hour) with a margin for clocks and caches.
RETIRED_KEY_PUBLISHED = timedelta(hours=2)
_ACTIVE_KEY = Prepared(
    select(SsoSigningKey.kid, SsoSigningKey.private_key_sealed)
    .where(SsoSigningKey.status == KEY_ACTIVE, SsoSigningKey.algorithm == bindparam("algorithm"))
    .order_by(SsoSigningKey.created_at.desc())
    .limit(1)
)

SigningKey = RSAKey | ECKey


def _generate(algorithm: str) -> SigningKey:
    parameters: KeyParameters = {"alg": algorithm, "use": "sig"}
    if algorithm == RS256:
        return RSAKey.generate_key(2048, parameters=parameters, private=True)
    return ECKey.generate_key("P-256", parameters=parameters, private=True)


@dataclass(frozen=True)
class RotatedKeys:
    new: tuple[str, ...]  # kids made active
    retired: tuple[str, ...]  # kids retired, published until not_after
    not_after: datetime


class KeyRing:
    def __init__(self, database: Database, cipher: PersonalDataCipher) -> None:
        self.database = database
        self._cipher = cipher
        # Opened private keys by kid: a key never changes once made.
        self._opened: dict[str, SigningKey] = {}
        self._lock = threading.Lock()

    def _new_row(self, algorithm: str, at: datetime) -> SsoSigningKey:
        key = _generate(algorithm)
        kid = key.thumbprint()
        public = {**key.as_dict(private=False), "kid": kid, "alg": algorithm, "use": "sig"}
        pem = key.as_pem(private=True).decode("ascii")
        return SsoSigningKey(
            kid=kid,
            algorithm=algorithm,
            public_jwk=json.dumps(public, sort_keys=True),
            private_key_sealed=self._cipher.seal(PRIVATE_KEY_COLUMN, pem),
            status=KEY_ACTIVE,
            created_at=at,
        )

    def ensure(self, at: datetime) -> list[str]:
        """Make an active key for each algorithm that has none; the kids made."""
        made = []
        with self.database.session() as session:
            active = set(
                session.scalars(
                    select(SsoSigningKey.algorithm).where(SsoSigningKey.status == KEY_ACTIVE)
                )
            )
            for algorithm in ALGORITHMS:
                if algorithm not in active:
                    row = self._new_row(algorithm, at)
                    session.add(row)
                    made.append(row.kid)
        return made

    def rotate(self, at: datetime) -> RotatedKeys:
        not_after = at + RETIRED_KEY_PUBLISHED
        with self.database.session() as session:
            old = session.scalars(
                select(SsoSigningKey).where(SsoSigningKey.status == KEY_ACTIVE)
            ).all()
            for row in old:
                row.status = KEY_RETIRED
                row.retired_at = at
                row.not_after = not_after
            new = [self._new_row(algorithm, at) for algorithm in ALGORITHMS]
            session.add_all(new)
            return RotatedKeys(
                tuple(r.kid for r in new), tuple(r.kid for r in old), not_after=not_after
            )

    def published(self, at: datetime) -> list[SsoSigningKey]:
        with self.database.session() as session:
            return list(
                session.scalars(
                    select(SsoSigningKey)
                    .where(
                        or_(
                            SsoSigningKey.status == KEY_ACTIVE,
                            SsoSigningKey.not_after > at,
                        )
                    )
                    .order_by(SsoSigningKey.created_at.desc(), SsoSigningKey.algorithm)
                ).all()
            )

    def jwks(self, at: datetime) -> dict[str, Any]:
        return {"keys": [json.loads(row.public_jwk) for row in self.published(at)]}

    def signing_key(self, algorithm: str) -> SigningKey:
        """The active private key for ``algorithm`` (with its kid). Read once per request
        (an ID token's header and its signature both ask); opened keys are kept by kid, so a
        rotation made by another process is followed at the next request."""
        kept: dict[str, SigningKey] | None = None
        if has_request_context():
            kept = g.setdefault("certgate_signing_keys", {})
            if algorithm in kept:
                return kept[algorithm]
        with self.database.connection() as connection:
            row = _ACTIVE_KEY.execute(connection, {"algorithm": algorithm}).one_or_none()
        if row is None:
            raise LookupError(f"no active {algorithm} signing key")
        with self._lock:
            opened = self._opened.get(row.kid)
        if opened is None:
            pem = self._cipher.open(PRIVATE_KEY_COLUMN, row.private_key_sealed)
            parameters: KeyParameters = {"kid": row.kid, "alg": algorithm, "use": "sig"}
            key_type = RSAKey if algorithm == RS256 else ECKey
            opened = key_type.import_key(pem, parameters=parameters)
            with self._lock:
                self._opened[row.kid] = opened
        if kept is not None:
            kept[algorithm] = opened
        return opened


def init_app(app: Flask) -> KeyRing:
    from gateway.accounts import get_accounts
    from gateway.clock import EXTENSION as CLOCK

    ring = KeyRing(get_database(app), get_accounts(app).cipher)
    ring.ensure(app.extensions[CLOCK].now())
    app.extensions[EXTENSION] = ring
    return ring


def get_keys(app: Flask | None = None) -> KeyRing:
    return (app or current_app).extensions[EXTENSION]
