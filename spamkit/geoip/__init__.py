"""Which country an IP address is in, read from a country database on disk.

Two users: the SMTP filter's `geoip` check (refuse or note a client by its country) and
the rules' X-Relay-Countries pseudo-headers (SpamAssassin's RelayCountry plugin), on
which an administrator's own rules score the countries a message came through.

Two formats are read (docs/decisions/0035): a MaxMind DB (.mmdb: GeoLite2, GeoIP2,
DB-IP's lite files, what `geoipupdate` keeps fresh) and the address ranges Debian's
tor-geoipdb package ships (IPFire's location data, updated with Tor, no account
needed). Nothing is bundled: the data changes weekly, and a stale copy in the package
would misplace addresses without saying so.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from spamkit.errors import GeoIPError

log = logging.getLogger("spamkit.geoip")

# Where SpamAssassin's GeoDB looks, in its order, then Debian's tor-geoipdb.
SEARCH_DIRECTORIES = ("/usr/share/GeoIP", "/var/lib/GeoIP")
MMDB_NAMES = ("GeoIP2-Country.mmdb", "GeoLite2-Country.mmdb", "dbip-country.mmdb",
              "dbip-country-lite.mmdb", "GeoIP2-City.mmdb", "GeoLite2-City.mmdb",
              "dbip-city.mmdb", "dbip-city-lite.mmdb")
TOR_FILES = ("/usr/share/tor/geoip", "/usr/share/tor/geoip6")
# how often a running service looks whether a file was replaced (geoipupdate renames a
# new one into place; a Debian upgrade rewrites tor's)
RECHECK_SECONDS = 60.0
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Stamp = tuple[int, int, int] | None
__all__ = ["Countries", "CountryDatabase", "GeoIPError", "find_databases", "open_database", "shared_countries"]


class CountryDatabase(Protocol):
    """One database file: an address's ISO 3166 country code, or None when it has none."""

    path: Path

    def country(self, address: Address) -> str | None: ...

    def describe(self) -> str:
        """What the file is, for `spamkit geoip` and lint: format, size, how old."""
        ...

    @property
    def built(self) -> float | None:
        """When the data was made (epoch seconds), if the file says."""
        ...


def open_database(path: Path) -> CountryDatabase:
    """The database in `path`, its format found from its content; GeoIPError if it is
    neither format or cannot be read."""
    from spamkit.geoip.mmdb import MaxMindDatabase, is_mmdb
    from spamkit.geoip.ranges import RangeDatabase

    try:
        if is_mmdb(path):
            return MaxMindDatabase(path)
        if _is_legacy_geoip(path):
            raise GeoIPError(f"{path}: a legacy GeoIP (version 1) database, which spamkit does "
                             "not read: use a MaxMind DB (.mmdb) or Debian's tor-geoipdb")
        return RangeDatabase(path)
    except OSError as error:
        raise GeoIPError(f"{path}: {error.strerror or error}") from None


def _is_legacy_geoip(path: Path) -> bool:
    """Legacy GeoIP.dat files end with three 0xFF bytes, then their edition, within
    their last 20 bytes (the GeoIP C library's structure info); text never does."""
    with open(path, "rb") as file:
        file.seek(0, 2)
        file.seek(max(0, file.tell() - 20))
        return b"\xff\xff\xff" in file.read()


def find_databases(configured: Sequence[str],
                   directories: Sequence[str] = SEARCH_DIRECTORIES) -> list[Path]:
    """The files to read: those configured (GeoIPDatabase), else the first MaxMind DB
    found where SpamAssassin looks (`directories`), else tor-geoipdb's files."""
    if configured:
        return [Path(path) for path in configured]
    for directory in directories:
        for name in MMDB_NAMES:
            candidate = Path(directory) / name
            if candidate.is_file():
                return [candidate]
    return [Path(path) for path in TOR_FILES if Path(path).is_file()]


def normal_code(code: object) -> str | None:
    """A two-letter country code in capitals, or None for anything else (tor's "??")."""
    if not isinstance(code, str) or len(code) != 2 or not code.isascii() or not code.isalpha():
        return None
    return code.upper()


class Countries:
    """The lookup the filter and the rules share: the configured files (or the ones
    found), opened on first use, asked in order, and read again when a file changes on
    disk. Safe to use from several threads."""

    def __init__(self, configured: Sequence[str] = (),
                 directories: Sequence[str] = SEARCH_DIRECTORIES) -> None:
        self.configured = list(configured)
        self.directories = list(directories)
        self._lock = threading.Lock()
        self._databases: list[CountryDatabase] | None = None
        self._stamps: list[Stamp] = []
        self._checked = 0.0
        self._reloading = False
        self._problem: str | None = None  # the last problem logged
        self._failure: str | None = None  # why the first reading failed, and when
        self._failed_at = 0.0

    def open(self) -> list[CountryDatabase]:
        """The databases, opened now if not yet; GeoIPError when none is configured or
        found, or one cannot be read (tried again, after that, at most every
        RECHECK_SECONDS: reading a damaged file for every message would cost each one)."""
        with self._lock:
            if self._databases is None:
                now = time.monotonic()
                if self._failure is not None and now - self._failed_at < RECHECK_SECONDS:
                    raise GeoIPError(self._failure)
                try:
                    self._databases, self._stamps = self._read()
                except GeoIPError as error:
                    self._failure, self._failed_at = str(error), now
                    raise
                self._failure, self._checked = None, now
            return self._databases

    def available(self) -> bool:
        """Whether a lookup can answer (the rules ask this: with no database their
        X-Relay-Countries headers are absent, as in SpamAssassin without one)."""
        try:
            return bool(self.open())
        except GeoIPError as error:
            self._log_once("country lookups are off: %s", error)
            return False

    def country(self, address: str | Address) -> str | None:
        """The address's country code; None for an address no database places (private
        ones among them) or that is not an IP address."""
        try:
            ip = address if not isinstance(address, str) else ipaddress.ip_address(
                address.strip("[]").removeprefix("IPv6:"))
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_global:
            return None
        for database in self._current():
            code = database.country(ip)
            if code is not None:
                return code
        return None

    def _current(self) -> list[CountryDatabase]:
        """The open databases. At most every RECHECK_SECONDS it looks whether a file was
        replaced, and reads the new one on a thread of its own: lookups go on with the old
        data meanwhile (tor's files take 1.5 s to read), and keep it if the new cannot be
        read."""
        try:
            databases = self.open()
        except GeoIPError:
            return []
        now = time.monotonic()
        if now - self._checked >= RECHECK_SECONDS:
            with self._lock:
                if now - self._checked >= RECHECK_SECONDS and not self._reloading:
                    self._checked = now
                    if [_stamp(d.path) for d in databases] != self._stamps:
                        self._reloading = True
                        threading.Thread(target=self._reload, name="geoip-reload", daemon=True).start()
        return databases

    def _reload(self) -> None:
        try:
            databases, stamps = self._read()
        except GeoIPError as error:
            self._log_once("a country database changed but cannot be read; the one read "
                           "before stays in use: %s", error)
            return
        finally:
            self._reloading = False
        with self._lock:
            self._databases, self._stamps, self._problem = databases, stamps, None
        log.info("country database read again: %s", "; ".join(d.describe() for d in databases))

    def _read(self) -> tuple[list[CountryDatabase], list[Stamp]]:
        paths = find_databases(self.configured, self.directories)
        if not paths:
            raise GeoIPError("no country database: install Debian's tor-geoipdb, or a MaxMind "
                             "DB (GeoLite2-Country.mmdb, dbip-country-lite.mmdb) in "
                             f"{' or '.join(self.directories)}, or name one in GeoIPDatabase")
        stamps = [_stamp(path) for path in paths]  # (before reading: a change meanwhile is seen)
        return [open_database(path) for path in paths], stamps

    def _log_once(self, message: str, error: GeoIPError) -> None:
        if self._problem != str(error):
            self._problem = str(error)
            log.warning(message, error)


@functools.cache
def shared_countries(configured: tuple[str, ...] = (),
                     directories: tuple[str, ...] = SEARCH_DIRECTORIES) -> Countries:
    """One Countries for each setting in a process, so that the SMTP filter and the rules
    (and the filters rebuilt at a SIGHUP) share the data they load: tor's two files take
    1.5 s to read and 13 MB to keep."""
    return Countries(configured, directories)


def _stamp(path: Path) -> Stamp:
    """What changes when a file is replaced or rewritten."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns)
