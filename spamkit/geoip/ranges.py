"""Country ranges as text, one `FIRST,LAST,CC` a line: the files of Debian's
tor-geoipdb (/usr/share/tor/geoip with IPv4 ranges as integers, geoip6 with IPv6
ranges as addresses), made from IPFire's location database and updated with Tor's
releases. Lines starting with # are comments; "??" is a range of no known country.

The ranges are kept in sorted arrays (4 bytes an IPv4 bound, two 8-byte halves an IPv6
one: 13 MB for both of tor's files) and searched by bisection.
"""

from __future__ import annotations

import bisect
import datetime
import email.utils
import socket
from array import array
from pathlib import Path

from spamkit.geoip import Address, GeoIPError, normal_code


class RangeDatabase:
    """One tor-geoipdb file (either family, or both), read whole into arrays."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._built: float | None = None
        self._v4 = _Table("I", 1)
        self._v6 = _Table("Q", 2)
        with open(path, "rb") as file:
            for number, line in enumerate(file, 1):
                line = line.strip()
                if not line or line.startswith(b"#"):
                    if line.startswith(b"# Generated:") and self._built is None:
                        self._built = _date(line[len(b"# Generated:"):])
                    continue
                first, last, code = _parse(line, path, number)
                (self._v6 if b":" in line else self._v4).append(first, last, code)
        self.ranges = len(self._v4) + len(self._v6)
        if not self.ranges:
            raise GeoIPError(f"{path}: no address ranges: neither a MaxMind DB file nor "
                             "lines of FIRST,LAST,COUNTRY (tor-geoipdb's format)")
        self._v4.sort()
        self._v6.sort()

    @property
    def built(self) -> float | None:
        return self._built

    def country(self, address: Address) -> str | None:
        return (self._v4 if address.version == 4 else self._v6).find(int(address))

    def describe(self) -> str:
        built = "" if self._built is None else \
            f", made {datetime.datetime.fromtimestamp(self._built, datetime.timezone.utc):%Y-%m-%d}"
        return f"{self.path}: {self.ranges:,} address ranges (tor-geoipdb's format){built}"


_LOW_64 = (1 << 64) - 1


class _Table:
    """Ranges of one address family in arrays: each bound as `words` unsigned integers
    of the array's type, most significant first (one 4-byte word for IPv4, two 8-byte
    ones for IPv6), and two bytes of country code a range."""

    def __init__(self, typecode: str, words: int) -> None:
        self.words = words
        self.bits = 64 if words > 1 else 32  # (of a word)
        self.first = [array(typecode) for _ in range(words)]
        self.last = [array(typecode) for _ in range(words)]
        self.codes = bytearray()

    def __len__(self) -> int:
        return len(self.codes) // 2

    def append(self, first: int, last: int, code: bytes) -> None:
        if self.words == 1:
            self.first[0].append(first)
            self.last[0].append(last)
        else:
            self.first[0].append(first >> 64)
            self.first[1].append(first & _LOW_64)
            self.last[0].append(last >> 64)
            self.last[1].append(last & _LOW_64)
        self.codes += code

    def _bound(self, bounds: list[array[int]], index: int) -> int:
        value = 0
        for word in bounds:
            value = value << self.bits | word[index]
        return value

    def sort(self) -> None:
        """In order of first address (tor's files are already: nothing to do)."""
        keys = list(zip(*self.first))
        if all(a < b for a, b in zip(keys, keys[1:])):
            return
        order = sorted(range(len(keys)), key=keys.__getitem__)
        for bounds in (self.first, self.last):
            for word, values in enumerate(bounds):
                bounds[word] = array(values.typecode, (values[i] for i in order))
        self.codes = bytearray(b"".join(bytes(self.codes[2 * i:2 * i + 2]) for i in order))

    def find(self, value: int) -> str | None:
        if self.words == 1:
            index = bisect.bisect_right(self.first[0], value) - 1
        else:
            index = bisect.bisect_right(range(len(self)), value, key=lambda i: self._bound(self.first, i)) - 1
        if index < 0 or value > self._bound(self.last, index):
            return None
        return normal_code(self.codes[2 * index:2 * index + 2].decode("ascii"))


def _parse(line: bytes, path: Path, number: int) -> tuple[int, int, bytes]:
    """One line's range and code; GeoIPError naming the line when it is not one."""
    parts = line.split(b",")
    if len(parts) == 3 and len(parts[2]) == 2 and parts[2].isascii():
        try:
            if b":" in line:
                first = int.from_bytes(socket.inet_pton(socket.AF_INET6, parts[0].decode("ascii")), "big")
                last = int.from_bytes(socket.inet_pton(socket.AF_INET6, parts[1].decode("ascii")), "big")
            else:
                first, last = int(parts[0]), int(parts[1])
                if last > 0xFFFFFFFF:
                    raise ValueError
            if first <= last:
                return first, last, parts[2].upper()
        except (OSError, ValueError, UnicodeDecodeError):
            pass
    shown = "".join(c if c.isprintable() else "?" for c in line[:80].decode("ascii", "replace"))
    raise GeoIPError(f"{path}:{number}: not a range (FIRST,LAST,COUNTRY, e.g. "
                     f"16777216,16777471,AU or 2001:2::,2001:2:0:ffff:ffff:ffff:ffff:ffff,JP): {shown}")


def _date(text: bytes) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(text.decode("ascii", "replace").strip()).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
