"""Short-lived state in Redis (``state_store = "redis"``): challenges, attempt counters, the idle
timers of sessions, and verified OCSP answers, shared by every gateway process.

Each store implements its interface in gateway/stores.py with the same atomicity, now across
processes: a challenge's single use and each limit's check-and-count are one Lua script, which
Redis runs alone (no other command interleaves), so two processes cannot both win a challenge or
both pass the last free slot of a limit. Times come from the app's clock as arguments (like the
SQL stores), never from Redis's own clock; keys expire by themselves, so ``purge`` has nothing
to do.

Sessions stay rows in the database (the account page lists them, a password change deletes them
there, single logout reads them): Redis holds only their hot part, the idle timer that every
authenticated request moves, so a page view no longer writes a database row. The row's
``last_seen_at`` is written through at most every ``SESSION_WRITE_THROUGH``, so what reads the
table directly is never further behind than that.

Redis unreachable: every call raises ``StateStoreUnavailable`` within ``REDIS_TIMEOUT`` (the
request answers ``503 unavailable``); each call opens a connection again when Redis is back, so
the gateway recovers without a restart.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.exceptions import NoScriptError, RedisError

from certs.revocation.ocsp import OcspCache, OcspCertId, _is_final_revocation
from certs.revocation.status import RevocationState, RevocationStatus
from gateway.errors import Unavailable
from gateway.stores import Admission, ChallengeRecord, SessionRecord, SqlSessionStore

log = logging.getLogger("certgate.gateway")

# Connect and answer deadline of one Redis command, seconds: a stopped Redis refuses at once, a
# hung one costs at most this before the request answers 503.
REDIS_TIMEOUT = 0.5
SESSION_WRITE_THROUGH = timedelta(seconds=60)
# An idle timer outlives any session (the row's absolute expiry decides; see RedisSessionStore).
SESSION_TIMER_KEEP_MS = 24 * 60 * 60 * 1000
# A used challenge is kept until it expires, so a replay answers challenge_used, not unknown.
CHALLENGE_PREFIX = "certgate:challenge:"
ATTEMPT_PREFIX = "certgate:attempts:"
SESSION_PREFIX = "certgate:session:"
OCSP_PREFIX = "certgate:ocsp:"
# A final REVOKED answer is shared this long past its nextUpdate (revocation does not end).
OCSP_REVOKED_KEEP = timedelta(days=7)


class StateStoreUnavailable(Unavailable):
    """Redis did not answer; the request answers ``unavailable`` (503)."""


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        health_check_interval=30,
        # One try: a retry loop would hold the request past the deadline a person notices.
        retry=None,
        retry_on_timeout=False,
    )


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(value: Any) -> datetime:
    return datetime.fromtimestamp(int(float(value)) / 1000, UTC)


class _RedisStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except RedisError as exc:
            raise StateStoreUnavailable(f"state store unreachable ({what}: {exc})") from None


# consume: KEYS[1] the challenge; ARGV binding hash, moment (ms). Returns the record as it was
# before (JSON) and marks it used, only when the binding matches; nil when unknown or bound to
# another pre-login cookie (then it stays unused).
_CONSUME = """
local stored = redis.call('GET', KEYS[1])
if not stored then return nil end
local record = cjson.decode(stored)
if record.b ~= ARGV[1] then return nil end
if record.u == nil or record.u == cjson.null then
  record.u = tonumber(ARGV[2])
  redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
end
return stored
"""


class RedisChallengeStore(_RedisStore):
    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self._consume = client.register_script(_CONSUME)

    def put(self, challenge: ChallengeRecord, *, created_at: datetime) -> None:
        record = {
            "n": challenge.nonce,
            "b": challenge.binding_hash,
            "e": _ms(challenge.expires_at),
            "u": None,
        }
        # Kept a little past expiry: an answer that arrives late says challenge_expired.
        keep = max(1000, _ms(challenge.expires_at) - _ms(created_at) + 60_000)
        self._call(
            "challenge",
            self.redis.set,
            CHALLENGE_PREFIX + challenge.id,
            json.dumps(record),
            px=keep,
        )

    def consume(
        self, challenge_id: str, *, binding_hash: str, at: datetime
    ) -> ChallengeRecord | None:
        if not challenge_id or len(challenge_id) > 128:
            return None
        stored = self._call(
            "challenge",
            self._consume,
            keys=[CHALLENGE_PREFIX + challenge_id],
            args=[binding_hash, _ms(at)],
        )
        if stored is None:
            return None
        record = json.loads(stored)
        # The script compared already; compare_digest keeps this side constant-time too.
        if not hmac.compare_digest(record["b"], binding_hash):
            return None
        used = record.get("u")
        return ChallengeRecord(
            challenge_id,
            record["n"],
            record["b"],
            _from_ms(record["e"]),
            None if used is None else _from_ms(used),
        )

    def purge(self, *, before: datetime) -> int:
        return 0  # keys expire by themselves


# Attempt counters: one hash per key with start (window start, ms), attempts, failures,
# first (first failure of the streak, ms), locked (lock end, ms) and live (until when any of
# them matters, ms); the key expires then.
_ADMIT = """
local at, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start = tonumber(redis.call('HGET', KEYS[1], 'start'))
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if start == nil or start + window <= at then start = at; attempts = 0 end
if attempts >= limit then return {0, start + window} end
local live = math.max(tonumber(redis.call('HGET', KEYS[1], 'live') or '0'), start + window)
redis.call('HSET', KEYS[1], 'start', start, 'attempts', attempts + 1, 'live', live)
redis.call('PEXPIRE', KEYS[1], math.max(1000, live - at + 1000))
return {1, start}
"""

_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local start = tonumber(redis.call('HGET', KEYS[1], 'start'))
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if start == tonumber(ARGV[1]) and attempts > 0 then
  redis.call('HSET', KEYS[1], 'attempts', attempts - 1)
end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'failures', 0)
  redis.call('HDEL', KEYS[1], 'first')
end
return 1
"""

_FAILED = """
local at, threshold = tonumber(ARGV[1]), tonumber(ARGV[2])
local window, duration = tonumber(ARGV[3]), tonumber(ARGV[4])
local first = tonumber(redis.call('HGET', KEYS[1], 'first'))
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if first == nil or first <= at - window then
  failures = 1; first = at
else
  failures = failures + 1
end
local live = math.max(tonumber(redis.call('HGET', KEYS[1], 'live') or '0'), at + window)
local locked = false
if failures >= threshold then
  locked = at + duration
  live = math.max(live, locked)
  redis.call('HSET', KEYS[1], 'failures', 0, 'locked', locked, 'live', live)
  redis.call('HDEL', KEYS[1], 'first')
else
  redis.call('HSET', KEYS[1], 'failures', failures, 'first', first, 'live', live)
end
if redis.call('HEXISTS', KEYS[1], 'start') == 0 then
  redis.call('HSET', KEYS[1], 'start', at, 'attempts', 0)
end
redis.call('PEXPIRE', KEYS[1], math.max(1000, live - at + 1000))
return locked
"""


class RedisAttemptStore(_RedisStore):
    """``AttemptStore`` in Redis: admit, give back and failed are each one script, so the
    check and the count are one step across every process (gateway/limits.py)."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self._admit = client.register_script(_ADMIT)
        self._give_back = client.register_script(_GIVE_BACK)
        self._failed = client.register_script(_FAILED)

    def admit(self, key: str, *, limit: int, window: timedelta, at: datetime) -> Admission:
        admitted, moment = self._call(
            "limits",
            self._admit,
            keys=[ATTEMPT_PREFIX + key],
            args=[_ms(at), int(window.total_seconds() * 1000), limit],
        )
        if admitted:
            return Admission(key, True, window_start=_from_ms(moment))
        return Admission(key, False, retry_at=max(_from_ms(moment), at))

    def give_back(self, admission: Admission, *, end_streak: bool) -> None:
        self.give_back_all([admission], end_streak=end_streak)

    def give_back_all(self, admissions: Sequence[Admission], *, end_streak: bool) -> None:
        """Each admission given back by its own script run (one key each, atomic each as
        ``give_back``), all of them sent in one pipeline: one round trip for a login's address
        and certificate instead of one per admission."""
        calls = [
            ([ATTEMPT_PREFIX + a.key], [_ms(a.window_start), "1" if end_streak else "0"])
            for a in admissions
            if a.window_start is not None
        ]
        if not calls:
            return
        if len(calls) == 1:
            keys, args = calls[0]
            self._call("limits", self._give_back, keys=keys, args=args)
            return
        try:
            with self.redis.pipeline(transaction=False) as pipeline:
                # EVALSHA directly: a pipeline running a Script object first asks SCRIPT EXISTS,
                # a round trip of its own on every execute.
                for keys, args in calls:
                    pipeline.evalsha(self._give_back.sha, len(keys), *keys, *args)
                answers = pipeline.execute(raise_on_error=False)
        except RedisError as exc:
            raise StateStoreUnavailable(f"state store unreachable (limits: {exc})") from None
        for (keys, args), answer in zip(calls, answers, strict=True):
            if isinstance(answer, NoScriptError):
                # Redis lost its scripts (a restart): this one ran nowhere, so it is run (and
                # the script loaded) now; the others already ran.
                self._call("limits", self._give_back, keys=keys, args=args)
            elif isinstance(answer, RedisError):
                raise StateStoreUnavailable(f"state store unreachable (limits: {answer})")

    def failed(
        self,
        key: str,
        *,
        at: datetime,
        threshold: int,
        window: timedelta,
        duration: timedelta,
    ) -> datetime | None:
        locked = self._call(
            "limits",
            self._failed,
            keys=[ATTEMPT_PREFIX + key],
            args=[
                _ms(at),
                threshold,
                int(window.total_seconds() * 1000),
                int(duration.total_seconds() * 1000),
            ],
        )
        return _from_ms(locked) if locked else None

    def locked_until(self, key: str, *, at: datetime) -> datetime | None:
        locked = self._call("limits", self.redis.hget, ATTEMPT_PREFIX + key, "locked")
        if locked is None or int(locked) <= _ms(at):
            return None
        return _from_ms(locked)

    def purge(self, *, before: datetime) -> int:
        return 0  # keys expire by themselves


class RedisSessionStore(_RedisStore):
    """Sessions as rows in the database (``SqlSessionStore``), with their idle timer in Redis:
    ``touch`` writes Redis and writes the row only when its ``last_seen_at`` is older than
    ``SESSION_WRITE_THROUGH``; ``get`` reads the row and the newer of the two timers."""

    def __init__(self, client: redis.Redis, rows: SqlSessionStore) -> None:
        super().__init__(client)
        self.rows = rows

    def create(self, session: SessionRecord) -> None:
        self.rows.create(session)
        seen = _ms(session.last_seen_at)
        key = SESSION_PREFIX + session.id_hash
        keep = max(1000, _ms(session.expires_at) - seen + 1000)
        try:
            # The timer and its expiry in one round trip, applied together (MULTI/EXEC), so
            # no timer is left without an expiry.
            with self.redis.pipeline(transaction=True) as pipeline:
                pipeline.hset(key, mapping={"seen": seen, "saved": seen})
                pipeline.pexpire(key, keep)
                pipeline.execute()
        except RedisError as exc:
            raise StateStoreUnavailable(f"state store unreachable (sessions: {exc})") from None

    def get(self, id_hash: str) -> SessionRecord | None:
        record = self.rows.get(id_hash)
        if record is None:
            return None
        seen = self._call("sessions", self.redis.hget, SESSION_PREFIX + id_hash, "seen")
        if seen is not None:
            hot = _from_ms(seen)
            if hot > record.last_seen_at:
                record = replace(record, last_seen_at=hot)
        return record

    def touch(self, id_hash: str, *, at: datetime) -> None:
        key = SESSION_PREFIX + id_hash
        try:
            with self.redis.pipeline(transaction=True) as pipeline:
                pipeline.hget(key, "saved")
                pipeline.hset(key, "seen", _ms(at))
                pipeline.pexpire(key, SESSION_TIMER_KEEP_MS)
                saved, _set, _expire = pipeline.execute()
        except RedisError as exc:
            raise StateStoreUnavailable(f"state store unreachable (sessions: {exc})") from None
        if saved is None or _from_ms(saved) + SESSION_WRITE_THROUGH <= at:
            self.rows.touch(id_hash, at=at)
            self._call("sessions", self.redis.hset, key, "saved", _ms(at))

    def delete(self, id_hash: str) -> None:
        self.rows.delete(id_hash)
        self._call("sessions", self.redis.delete, SESSION_PREFIX + id_hash)

    def delete_for_account(self, account_id: int) -> int:
        # The rows decide; a timer left behind belongs to no row and expires by itself.
        return self.rows.delete_for_account(account_id)

    def purge(self, *, before: datetime) -> int:
        return self.rows.purge(before=before)


def _cert_id_key(cert_id: OcspCertId) -> str:
    return (
        f"{OCSP_PREFIX}{cert_id.hash_algorithm}:{cert_id.issuer_name_hash.hex()}:"
        f"{cert_id.issuer_key_hash.hex()}:{cert_id.serial_number:x}"
    )


def _when(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _moment(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class RedisOcspCache(OcspCache):
    """Verified OCSP answers shared by every process: this process's cache first, then Redis.
    Only answers this gateway verified itself are stored (by ``OcspClient``), each for its own
    validity interval. Redis unreachable is a cache miss (the responder is asked), never a
    refusal: the cache saves responder round trips, it decides nothing."""

    def __init__(self, client: redis.Redis, *, max_entries: int = 10_000) -> None:
        super().__init__(max_entries=max_entries)
        self.redis = client

    def get(self, cert_id: OcspCertId, *, at: datetime) -> RevocationStatus | None:
        local = super().get(cert_id, at=at)
        if local is not None:
            return local
        try:
            stored = self.redis.get(_cert_id_key(cert_id))
        except RedisError as exc:
            log.warning("shared OCSP cache unreachable: %s", exc)
            return None
        if stored is None:
            return None
        entry = json.loads(stored)
        status = RevocationStatus(
            state=RevocationState(entry["state"]),
            source=entry["source"],
            reason=entry["reason"],
            revoked_at=_moment(entry["revoked_at"]),
            this_update=_moment(entry["this_update"]),
            next_update=_moment(entry["next_update"]),
            detail=entry["detail"],
        )
        valid_from = _moment(entry["valid_from"])
        valid_until = _moment(entry["valid_until"])
        assert valid_from is not None
        super().put(cert_id, status, valid_from=valid_from, valid_until=valid_until)
        return super().get(cert_id, at=at)

    def put(
        self,
        cert_id: OcspCertId,
        status: RevocationStatus,
        *,
        valid_from: datetime,
        valid_until: datetime | None,
    ) -> None:
        super().put(cert_id, status, valid_from=valid_from, valid_until=valid_until)
        entry = {
            "state": status.state.value,
            "source": status.source,
            "reason": status.reason,
            "revoked_at": _when(status.revoked_at),
            "this_update": _when(status.this_update),
            "next_update": _when(status.next_update),
            "detail": status.detail,
            "valid_from": _when(valid_from),
            "valid_until": _when(valid_until),
        }
        final = _is_final_revocation(status)
        end = valid_until or valid_from + timedelta(hours=1)
        if final:
            end = max(end, valid_from + OCSP_REVOKED_KEEP)
        keep = max(60, int((end - valid_from).total_seconds()) + 1)
        key = _cert_id_key(cert_id)
        try:
            if final:
                self.redis.set(key, json.dumps(entry), ex=keep)
                return
            # Never let a later GOOD (a lagging responder replica) replace a final REVOKED
            # another process stored: only a key still free, or not final, is written.
            current = self.redis.get(key)
            if current is not None:
                known = json.loads(current)
                if known["state"] == "revoked" and known["reason"] != "certificate_hold":
                    return
            self.redis.set(key, json.dumps(entry), ex=keep)
        except RedisError as exc:
            log.warning("shared OCSP cache unreachable: %s", exc)
