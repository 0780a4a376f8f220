"""MaxMind DB files (.mmdb): GeoLite2 and GeoIP2 Country or City, DB-IP's country and
city files, read with MaxMind's own reader (the `maxminddb` package, its C extension
where built). The country is the record's `country.iso_code`, as SpamAssassin's GeoDB
takes it."""

from __future__ import annotations

import datetime
from pathlib import Path

import maxminddb

from spamkit.geoip import Address, GeoIPError, normal_code

# Every MaxMind DB file ends its data with this marker, then the metadata (the format's
# specification); it lies in the last 128 KiB.
METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
_METADATA_SPAN = 128 * 1024


def is_mmdb(path: Path) -> bool:
    with open(path, "rb") as file:
        file.seek(0, 2)
        size = file.tell()
        file.seek(max(0, size - _METADATA_SPAN))
        return METADATA_MARKER in file.read()


class MaxMindDatabase:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # MODE_MEMORY: the file is read whole, not mapped. A mapped file that an
            # administrator overwrites in place (cp, not geoipupdate's rename) changes
            # under the reader, and one cut shorter kills the process with SIGBUS at the
            # next lookup. The cost: 16 us a lookup against 2 us (decision 0035)
            self._reader = maxminddb.open_database(str(path), maxminddb.MODE_MEMORY)
        except OSError:
            raise
        except Exception as error:  # noqa: BLE001 - the reader raises TypeError, KeyError,
            # UnicodeDecodeError... on damaged metadata, not only InvalidDatabaseError
            raise GeoIPError(f"{path}: not a MaxMind DB file that can be read: {error}") from None
        metadata = self._reader.metadata()
        self.kind = str(metadata.database_type)
        self._built = float(metadata.build_epoch)

    @property
    def built(self) -> float | None:
        return self._built

    def country(self, address: Address) -> str | None:
        try:
            record = self._reader.get(address)
        except Exception:  # noqa: BLE001 - damage where the address leads (any error the
            return None  # reader meets there), or an address of the other family
        if not isinstance(record, dict):
            return None
        country = record.get("country")
        return normal_code(country.get("iso_code")) if isinstance(country, dict) else None

    def describe(self) -> str:
        built = datetime.datetime.fromtimestamp(self._built, datetime.timezone.utc)
        return f"{self.path}: MaxMind DB {self.kind}, built {built:%Y-%m-%d}"
