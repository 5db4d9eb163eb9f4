"""CRLs: parsed and indexed once, looked up in O(1), refreshed in the background, swapped whole.

A CRL enters the store through ``CrlStore.add`` (bytes, DER or PEM), from files, from http(s)
URLs, or from a certificate's CRL distribution point (``fetch_distribution_point``). On entry it is
parsed by pyca/cryptography (outer structure, extensions), its extensions are checked (RFC 5280
§5.2: unknown critical CRL or entry extensions make it unusable, crlNumber must be present and not
critical, delta CRLs are not supported) and its entries are indexed ``serial -> offset`` by a
DER walk (``certs.der``; why not pyca/cryptography's entry objects is explained there).

What depends on the certificate being checked is decided per lookup, cheaply: freshness against
the caller's ``at`` (no clock is read here), the scope given by the issuing distribution point, and
whether the CRL's signature was made by a given signer — computed once per (CRL, signer key) and
remembered, so a login never re-verifies or re-parses a CRL.

Readers never lock: the store's state is one immutable snapshot object, replaced by a new one on
every change (a single reference assignment is atomic in CPython), so a validation running while
the refresher swaps sees either the old CRLs or the new ones, never a mix.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from certs import sm2
from certs.der import (
    CERTIFICATE_ISSUER_OID,
    CRITICAL_FLAG,
    TAG_INTEGER,
    TAG_SEQUENCE,
    DerError,
    revoked_certificates_span,
    revoked_entry_fields,
    tbs_span,
)
from certs.extensions import extensions
from certs.fetch import CRL_MAX_BYTES, Fetcher, FetchError
from certs.names import NameKey, name_key, prepare_value
from certs.path import Signed, verify_signed

logger = logging.getLogger("certs.revocation")

# All CRLReason values a CRL can cover (RFC 5280 §5.3.1 ReasonFlags, unspecified excluded).
ALL_REASONS = frozenset(
    {
        "key_compromise",
        "ca_compromise",
        "affiliation_changed",
        "superseded",
        "cessation_of_operation",
        "certificate_hold",
        "privilege_withdrawn",
        "aa_compromise",
    }
)

# cryptography's ReasonFlags -> the engine's reason names (errors.REVOCATION_REASON_TEXT keys).
REASON_NAMES: Mapping[x509.ReasonFlags, str] = {flag: flag.name for flag in x509.ReasonFlags}

# CRL extensions this store processes; any other critical one makes the CRL unusable (§5.2).
KNOWN_CRL_EXTENSIONS = frozenset(
    {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.FRESHEST_CRL,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
)
# Entry extensions understood when critical (§5.3), as asn1crypto names them: reasonCode
# 2.5.29.21, invalidityDate 2.5.29.24, certificateIssuer 2.5.29.29, holdInstructionCode 2.5.29.23.
KNOWN_ENTRY_EXTENSIONS = frozenset(
    {"crl_reason", "invalidity_date", "certificate_issuer", "hold_instruction_code"}
)


class CrlInvalid(ValueError):
    """The CRL cannot be used (malformed, unsupported, or breaks RFC 5280 §5)."""


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason: str  # CRLReason name, "unspecified" when the entry gives none
    invalidity_date: datetime | None = None


def general_name_key(general_name: x509.GeneralName) -> tuple[str, object]:
    """A hashable, normalised form of a GeneralName, for matching distribution point names."""
    if isinstance(general_name, x509.DirectoryName):
        return ("directory", name_key(general_name.value))
    if isinstance(general_name, x509.UniformResourceIdentifier):
        return ("uri", general_name.value)
    return (type(general_name).__name__, repr(general_name.value))


def _rdn_key(rdn: x509.RelativeDistinguishedName) -> frozenset[tuple[str, str]]:
    return frozenset((a.oid.dotted_string, prepare_value(a.value)) for a in rdn)


def distribution_point_names(
    full_name: Iterable[x509.GeneralName] | None,
    relative_name: x509.RelativeDistinguishedName | None,
    base: x509.Name,
) -> frozenset[tuple[str, object]]:
    """Names of a distribution point; a relative name extends ``base`` (RFC 5280 §4.2.1.13)."""
    if full_name is not None:
        return frozenset(general_name_key(n) for n in full_name)
    if relative_name is not None:
        return frozenset({("directory", (*name_key(base), _rdn_key(relative_name)))})
    return frozenset()


@dataclass(frozen=True)
class CrlScope:
    """What the issuingDistributionPoint extension says the CRL covers (§5.2.5)."""

    names: frozenset[tuple[str, object]] = frozenset()  # empty: no distributionPoint name
    only_user: bool = False
    only_ca: bool = False
    only_attribute: bool = False
    reasons: frozenset[str] = ALL_REASONS
    indirect: bool = False


def _asn1_name_key(name: asn1_x509.Name) -> NameKey:
    return tuple(
        frozenset(
            (attribute["type"].dotted, prepare_value(attribute["value"].native))
            for attribute in rdn
        )
        for rdn in name.chosen
    )


class IndexedCrl:
    """One parsed, checked and indexed CRL. Immutable apart from its signature-check memo."""

    def __init__(
        self,
        der: bytes,
        *,
        source: str = "",
        require_crl_number: bool = True,
        signers: Sequence[x509.Certificate] = (),
    ) -> None:
        try:
            crl = x509.load_der_x509_crl(der)
            extensions = crl.extensions
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            raise CrlInvalid(f"{source}: not a CRL: {exc}") from exc
        self.der = der
        self.source = source
        self.crl = crl
        self.issuer = crl.issuer
        self.issuer_key = name_key(crl.issuer)
        self.this_update: datetime = crl.last_update_utc
        self.next_update: datetime | None = crl.next_update_utc
        for extension in extensions:
            if extension.oid == ExtensionOID.DELTA_CRL_INDICATOR:
                raise CrlInvalid(f"{source}: delta CRLs are not supported")
            if extension.critical and extension.oid not in KNOWN_CRL_EXTENSIONS:
                raise CrlInvalid(
                    f"{source}: unknown critical CRL extension {extension.oid.dotted_string}"
                )
        try:
            number = extensions.get_extension_for_oid(ExtensionOID.CRL_NUMBER)
        except x509.ExtensionNotFound:
            number = None
        if number is not None and number.critical:
            raise CrlInvalid(f"{source}: crlNumber must not be critical (RFC 5280 §5.2.3)")
        if number is None and require_crl_number:
            raise CrlInvalid(f"{source}: crlNumber is missing (RFC 5280 §5.2.3)")
        number_value = number.value if number is not None else None
        self.number: int | None = (
            number_value.crl_number if isinstance(number_value, x509.CRLNumber) else None
        )
        self.scope = self._scope(extensions)
        self._verified: dict[tuple[x509.Certificate, bytes], bool] = {}
        self._entries: dict[NameKey, dict[int, int]] = {}
        self.entry_count = 0
        # With the signer's certificate at hand, the signature is checked before the entries
        # are walked, so a forged or corrupted CRL is refused at load and never indexed. The
        # signer is the known certificate with the CRL issuer's name and, when both carry key
        # identifiers, the key the CRL's AKI names (a separate CRL-signing key is left to the
        # check at first use, where its own path is validated).
        self.key_identifier = self._authority_key_identifier(extensions)
        named = [c for c in signers if self._may_have_signed(c)]
        # An SM2-with-SM3 CRL is checked at first use instead: its signature depends on the SM2
        # signer ID of the trust anchor it is used under, which a shared CRL store does not know.
        self.sm2_signed = crl.signature_algorithm_oid.dotted_string == sm2.SM2_WITH_SM3_OID
        if named and not self.sm2_signed and not any(self.signed_by(c) for c in named):
            raise CrlInvalid(f"{source}: signature does not verify with the issuer's key")
        self._index()

    @staticmethod
    def _authority_key_identifier(extensions: x509.Extensions) -> bytes | None:
        try:
            value = extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
        except x509.ExtensionNotFound:
            return None
        return value.key_identifier if isinstance(value, x509.AuthorityKeyIdentifier) else None

    def _may_have_signed(self, certificate: x509.Certificate) -> bool:
        if name_key(certificate.subject) != self.issuer_key:
            return False
        if self.key_identifier is None:
            return True
        try:
            ski = (
                extensions(certificate)
                .get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
                .value
            )
        except x509.ExtensionNotFound:
            return True
        return not isinstance(ski, x509.SubjectKeyIdentifier) or ski.digest == self.key_identifier

    def _scope(self, extensions: x509.Extensions) -> CrlScope:
        try:
            idp: x509.IssuingDistributionPoint = extensions.get_extension_for_oid(
                ExtensionOID.ISSUING_DISTRIBUTION_POINT
            ).value  # type: ignore[assignment]
        except x509.ExtensionNotFound:
            return CrlScope()
        reasons = (
            frozenset(REASON_NAMES[r] for r in idp.only_some_reasons)
            if idp.only_some_reasons
            else ALL_REASONS
        )
        return CrlScope(
            names=distribution_point_names(idp.full_name, idp.relative_name, self.issuer),
            only_user=idp.only_contains_user_certs,
            only_ca=idp.only_contains_ca_certs,
            only_attribute=idp.only_contains_attribute_certs,
            reasons=reasons,
            indirect=idp.indirect_crl,
        )

    def _index(self) -> None:
        """Walk revokedCertificates once: ``serial -> entry offset`` per certificate issuer.

        The hot loop of loading a large CRL, so it is written out inline (see ``certs.der``
        for why a DER walk). Entries are decoded only where a critical flag or the
        certificateIssuer OID occurs in the bytes (``der.find`` locates those in C); every
        other entry costs a few byte reads and one dict insertion.
        """
        der = self.der
        try:
            span = revoked_certificates_span(der)
        except DerError as exc:
            raise CrlInvalid(f"{self.source}: {exc}") from exc
        if span is None:
            return
        pos, end = span
        entries = self._entries.setdefault(self.issuer_key, {})
        next_mark = _next_mark(der, pos, end)
        from_bytes = int.from_bytes
        count = 0
        try:
            while pos < end:
                length = der[pos + 1]
                if length < 0x80:
                    body = pos + 2
                elif length == 0x81:
                    length = der[pos + 2]
                    body = pos + 3
                elif length == 0x82:
                    length = (der[pos + 2] << 8) | der[pos + 3]
                    body = pos + 4
                else:
                    raise DerError("revoked entry too long")
                entry_end = body + length
                serial_length = der[body + 1]
                if (
                    der[pos] != TAG_SEQUENCE
                    or der[body] != TAG_INTEGER
                    or serial_length >= 0x80
                    or entry_end > end
                ):
                    raise DerError("malformed revoked entry")
                if next_mark < entry_end:
                    entries = self._decode_marked(pos, entry_end, entries)
                    next_mark = _next_mark(der, entry_end, end)
                entries[
                    from_bytes(der[body + 2 : body + 2 + serial_length], "big", signed=True)
                ] = pos
                count += 1
                pos = entry_end
            if pos != end:
                raise DerError("revoked entries overrun their SEQUENCE")
        except (DerError, IndexError) as exc:
            raise CrlInvalid(f"{self.source}: malformed revoked entries: {exc}") from exc
        self.entry_count = count

    def _decode_marked(self, start: int, end: int, entries: dict[int, int]) -> dict[int, int]:
        """Decode an entry that may carry critical or certificateIssuer entry extensions.

        Returns the index the entry (and those after it) belongs to: an indirect CRL's
        certificateIssuer names the issuer of this and the following entries (§5.3.3).
        """
        try:
            entry = asn1_crl.RevokedCertificate.load(self.der[start:end])
            critical = set(entry.critical_extensions)
            issuer = entry.certificate_issuer_value
        except ValueError as exc:
            raise CrlInvalid(f"{self.source}: malformed CRL entry: {exc}") from exc
        if critical - KNOWN_ENTRY_EXTENSIONS:
            # §5.3: a critical entry extension we cannot process makes the whole CRL unusable.
            raise CrlInvalid(f"{self.source}: unknown critical CRL entry extension")
        if issuer is not None and self.scope.indirect:
            names = [n.chosen for n in issuer if n.name == "directory_name"]
            if names:
                return self._entries.setdefault(_asn1_name_key(names[0]), {})
        return entries

    # --- per-lookup checks --------------------------------------------------------------------

    def is_fresh(self, at: datetime) -> bool:
        """thisUpdate <= at < nextUpdate. A CRL without nextUpdate is never fresh (§5.1.2.5)."""
        return self.next_update is not None and self.this_update <= at < self.next_update

    def signed_by(
        self, signer: x509.Certificate, sm2_signer_id: bytes = sm2.DEFAULT_SIGNER_ID
    ) -> bool:
        """The CRL's signature verifies with ``signer``'s key (remembered per key and SM2 signer
        ID, the ID mattering only to an SM2-with-SM3 CRL)."""
        memo = (signer, sm2_signer_id if self.sm2_signed else b"")
        known = self._verified.get(memo)
        if known is None:
            known = verify_signed(self._signed(), signer, sm2_signer_id)
            self._verified[memo] = known
        return known

    def _signed(self) -> Signed:
        # The TBS sliced from the received bytes: pyca/cryptography's tbs_certlist_bytes
        # re-encodes it, which costs more than the hash and signature check together.
        start, end = tbs_span(self.der)
        crl = self.crl
        if self.sm2_signed:
            return Signed(self.der[start:end], crl.signature, None, None, sm2.SM2_WITH_SM3_OID)
        return Signed(
            self.der[start:end],
            crl.signature,
            crl.signature_algorithm_parameters,
            crl.signature_hash_algorithm,
        )

    def lookup(self, issuer: NameKey, serial: int) -> RevokedEntry | None:
        """The entry for (certificate issuer, serial), or None — one dict probe."""
        entries = self._entries.get(issuer)
        if entries is None:
            return None
        start = entries.get(serial)
        if start is None:
            return None
        return self._decode_entry(start, serial)

    def _decode_entry(self, start: int, serial: int) -> RevokedEntry:
        """Date, reason and invalidity date of a hit, read straight from the DER."""
        try:
            revoked_at, reason, invalidity = revoked_entry_fields(self.der, start)
        except (DerError, IndexError, ValueError) as exc:
            # The entry was walked at load, so this is a CRL the walk misjudged: refuse to
            # answer "good" for a listed serial — report it revoked, reason unknown.
            logger.warning("%s: undecodable CRL entry for serial %x: %s", self.source, serial, exc)
            return RevokedEntry(serial=serial, revoked_at=self.this_update, reason="unspecified")
        return RevokedEntry(
            serial=serial, revoked_at=revoked_at, reason=reason, invalidity_date=invalidity
        )

    def __repr__(self) -> str:
        return (
            f"<IndexedCrl {self.issuer.rfc4514_string()!r} #{self.number} "
            f"{self.entry_count} entries from {self.source!r}>"
        )


def _crl_order(crl: IndexedCrl) -> tuple[int, datetime]:
    return (crl.number if crl.number is not None else -1, crl.this_update)


def _newest(
    current: tuple[IndexedCrl, ...], incoming: tuple[IndexedCrl, ...], source: str
) -> tuple[IndexedCrl, ...]:
    """``incoming`` replaces ``current``, except that a CRL never goes back in time.

    CRLs travel over plain HTTP: an attacker who replays an older CRL that is still inside its
    own nextUpdate window could otherwise "unrevoke" certificates. For each issuer, a CRL with a
    lower crlNumber (or thisUpdate) than the one held is refused and the held one kept.
    """
    held = {crl.issuer_key: crl for crl in current}
    result = []
    for crl in incoming:
        previous = held.get(crl.issuer_key)
        if previous is not None and _crl_order(crl) < _crl_order(previous):
            logger.warning(
                "CRL from %s is older than the one held (#%s < #%s); keeping the held one",
                source,
                crl.number,
                previous.number,
            )
            result.append(previous)
        else:
            result.append(crl)
    return tuple(result)


def _next_mark(der: bytes, start: int, end: int) -> int:
    """Offset of the next byte pattern that may need an entry decoded (``end`` if none)."""
    marks = [der.find(p, start, end) for p in (CRITICAL_FLAG, CERTIFICATE_ISSUER_OID)]
    return min((m for m in marks if m >= 0), default=end)


def split_crls(data: bytes) -> list[bytes]:
    """DER CRLs in ``data``: one DER CRL, or any number of PEM ``X509 CRL`` blocks."""
    if b"-----BEGIN" not in data:
        return [data]
    crls = []
    for block in data.split(b"-----BEGIN X509 CRL-----")[1:]:
        pem = b"-----BEGIN X509 CRL-----" + block.split(b"-----END X509 CRL-----")[0]
        pem += b"-----END X509 CRL-----\n"
        try:
            crls.append(x509.load_pem_x509_crl(pem).public_bytes(Encoding.DER))
        except ValueError as exc:
            raise CrlInvalid(f"bad PEM CRL: {exc}") from exc
    if not crls:
        raise CrlInvalid("no X509 CRL PEM block found")
    return crls


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


@dataclass(frozen=True)
class _Snapshot:
    by_source: Mapping[str, tuple[IndexedCrl, ...]] = field(default_factory=dict)
    by_issuer: Mapping[NameKey, tuple[IndexedCrl, ...]] = field(default_factory=dict)
    indirect: tuple[IndexedCrl, ...] = ()

    @classmethod
    def build(cls, by_source: Mapping[str, tuple[IndexedCrl, ...]]) -> _Snapshot:
        by_issuer: dict[NameKey, list[IndexedCrl]] = {}
        indirect: list[IndexedCrl] = []
        for crls in by_source.values():
            for crl in crls:
                by_issuer.setdefault(crl.issuer_key, []).append(crl)
                if crl.scope.indirect:
                    indirect.append(crl)
        return cls(dict(by_source), {k: tuple(v) for k, v in by_issuer.items()}, tuple(indirect))


class CrlStore:
    """Validated, indexed CRLs keyed by issuer, with sources refreshed in the background.

    ``sources`` are file paths or http(s) URLs; each is (re)loaded by ``refresh()``, which the
    background thread (``start()``/``stop()``) calls every ``refresh_interval`` seconds. A source
    that fails to load keeps its previous CRLs (they go stale by their own nextUpdate, and
    hard-fail anchors then refuse logins rather than trust an old list).
    """

    def __init__(
        self,
        *,
        fetcher: Fetcher | None = None,
        sources: Iterable[str] = (),
        refresh_interval: float = 3600.0,
        fetch_timeout: float = 10.0,
        require_crl_number: bool = True,
        issuers: Iterable[x509.Certificate] = (),
        max_bytes: int = CRL_MAX_BYTES,
    ) -> None:
        self.fetcher = fetcher
        # CA certificates known in advance (anchors, configured intermediates): a CRL from one
        # of them has its signature checked at load. Others are checked at first use.
        self._issuers: tuple[x509.Certificate, ...] = tuple(issuers)
        self.refresh_interval = refresh_interval
        # One deadline (seconds) for each download, and the largest CRL accepted from a URL.
        # The fetcher should carry the same size limit, so an endless body is cut off while it
        # arrives (``HttpFetcher(max_bytes=...)``); the check here holds for any fetcher.
        self.fetch_timeout = fetch_timeout
        self.max_bytes = max_bytes
        self.require_crl_number = require_crl_number
        self._sources: list[str] = []
        self._snapshot = _Snapshot()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Distribution points that failed: not fetched again on the login path until the next
        # refresh() retries them, so an outage costs one timeout, not one per login.
        self._failed_urls: dict[str, str] = {}  # url -> why it failed
        for source in sources:
            self.add_source(source)

    # --- loading ------------------------------------------------------------------------------

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], **kwargs: object) -> CrlStore:
        """A store holding the CRLs in ``paths`` (each re-read by ``refresh()``)."""
        store = cls(**kwargs)  # type: ignore[arg-type]
        for path in paths:
            store.add_source(str(path), load=True)
        return store

    def add(self, data: bytes, *, source: str = "") -> tuple[IndexedCrl, ...]:
        """Parse, check and index the CRL(s) in ``data`` (DER or PEM); raises ``CrlInvalid``.

        CRLs added under the same ``source`` replace the previous ones from it.
        """
        crls = self._parse(data, source)
        key = source or f"memory:{id(crls)}"
        self._replace({key: crls})
        return crls

    def add_source(self, source: str, *, load: bool = False) -> None:
        """Remember ``source`` for ``refresh()``; ``load=True`` loads it now (raising on error)."""
        with self._write_lock:
            if source not in self._sources:
                self._sources.append(source)
        if load:
            self.add(self._read(source), source=source)

    def add_issuers(self, certificates: Iterable[x509.Certificate]) -> None:
        """Remember CA certificates whose CRLs get their signature checked at load."""
        with self._write_lock:
            known = set(self._issuers)
            self._issuers += tuple(c for c in certificates if c not in known)

    def _parse(self, data: bytes, source: str) -> tuple[IndexedCrl, ...]:
        return tuple(
            IndexedCrl(
                der,
                source=source,
                require_crl_number=self.require_crl_number,
                signers=self._issuers,
            )
            for der in split_crls(data)
        )

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self._sources)

    def _read(self, source: str) -> bytes:
        if _is_url(source):
            if self.fetcher is None:
                raise FetchError(f"{source}: no fetcher configured")
            return self._download(source)
        try:
            return Path(source.removeprefix("file://")).read_bytes()
        except OSError as exc:
            raise FetchError(f"{source}: {exc}") from exc

    def _download(self, url: str) -> bytes:
        assert self.fetcher is not None
        data = self.fetcher.get(url, timeout=self.fetch_timeout)
        if len(data) > self.max_bytes:
            raise FetchError(f"{url}: response larger than {self.max_bytes} bytes")
        return data

    def _replace(self, changes: Mapping[str, tuple[IndexedCrl, ...]]) -> None:
        with self._write_lock:
            by_source = dict(self._snapshot.by_source)
            for source, crls in changes.items():
                by_source[source] = _newest(by_source.get(source, ()), crls, source)
            self._snapshot = _Snapshot.build(by_source)  # the atomic swap

    def loaded(self) -> Mapping[str, tuple[IndexedCrl, ...]]:
        """The CRLs held now, by source (what an operator's console shows: issuer, thisUpdate,
        nextUpdate)."""
        return self._snapshot.by_source

    def refresh(self) -> dict[str, Exception]:
        """Reload every source; returns the failures (source -> error), already logged."""
        loaded: dict[str, tuple[IndexedCrl, ...]] = {}
        failures: dict[str, Exception] = {}
        for source in self.sources:
            try:
                loaded[source] = self._parse(self._read(source), source)
            except (FetchError, CrlInvalid) as exc:
                failures[source] = exc
                logger.warning("CRL refresh failed for %s: %s", source, exc)
        if loaded:
            self._replace(loaded)
        with self._write_lock:
            for source in loaded:
                self._failed_urls.pop(source, None)
        return failures

    def fetch_distribution_point(self, url: str) -> tuple[IndexedCrl, ...]:
        """Fetch a CRL distribution point now (once; then it is refreshed with the rest).

        Returns () when there is no fetcher, the URL is not http(s), or the fetch failed.
        """
        if self.fetcher is None or not _is_url(url):
            return ()
        known = self._snapshot.by_source.get(url)
        if known is not None or url in self._failed_urls:
            return known or ()
        try:
            crls = self._parse(self._download(url), url)
        except (FetchError, CrlInvalid) as exc:
            logger.warning("CRL distribution point %s unavailable: %s", url, exc)
            with self._write_lock:
                why = str(exc).removeprefix(f"{url}: ")
                self._failed_urls[url] = f"CRL distribution point {url}: {why}"
                if url not in self._sources:
                    self._sources.append(url)  # the background refresh retries it
            return ()
        with self._write_lock:
            if url not in self._sources:
                self._sources.append(url)
        self._replace({url: crls})
        return crls

    def failure(self, url: str) -> str | None:
        """Why the distribution point ``url`` failed, until a refresh loads it."""
        return self._failed_urls.get(url)

    # --- background refresh -------------------------------------------------------------------

    def start(self) -> None:
        """Refresh every ``refresh_interval`` seconds in a daemon thread until ``stop()``."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="crl-refresh", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the refresher must outlive any one bad source
                logger.exception("CRL refresh failed")

    # --- queries ------------------------------------------------------------------------------

    def crls_for(
        self, issuer: NameKey, extra_issuers: Sequence[NameKey] = ()
    ) -> tuple[IndexedCrl, ...]:
        """CRLs issued by ``issuer`` or by any of ``extra_issuers``, plus every indirect CRL."""
        snapshot = self._snapshot
        found = list(snapshot.by_issuer.get(issuer, ()))
        for other in extra_issuers:
            found.extend(snapshot.by_issuer.get(other, ()))
        for crl in snapshot.indirect:
            if crl not in found:
                found.append(crl)
        return tuple(found)

    def all(self) -> tuple[IndexedCrl, ...]:
        return tuple(crl for crls in self._snapshot.by_source.values() for crl in crls)

    def __len__(self) -> int:
        return sum(len(crls) for crls in self._snapshot.by_source.values())
