"""The names of the files in a disk image attachment (.iso, .img), for the blocked-
extensions check: ISO 9660 with its Rock Ridge and Joliet names, and UDF.

Windows mounts such an image with a double click (since Windows 8), and in 2022 malware
moved into them when macros from the internet stopped running: an .iso holding a .lnk
and a .dll, none of them named in the mail. An image may carry two or three file systems
at once over the same files ("UDF bridge"), and each program reads the one it prefers,
so the names of all of them count: a harmless ISO 9660 tree cannot hide a UDF one.

Only directories are read, at the places the image's descriptors give, each directory
once, MAX_DIRECTORY_BYTES of them in all, at most MAX_RECORDS file records, MAX_MEMBERS
names and MAX_DEPTH levels down (past a cap, cap-archive-members). Nothing here raises: an
image that cannot be read as far as its names gives the fact archive-unreadable, and
what was read before the damage still counts. Not read: UDF's metadata partition (UDF
2.50 and later), a second session, HFS and El Torito boot images.
"""

from __future__ import annotations

import struct

SECTOR = 2048
MAX_MEMBERS = 10_000  # as for the other archives (spamkit.message.archives)
# file names read, in all trees: a file has up to four (ISO 9660, Rock Ridge, Joliet, UDF)
MAX_RECORDS = 5 * MAX_MEMBERS
MAX_DEPTH = 64
MAX_DIRECTORY_BYTES = 10 << 20  # all of an image's directories (and Rock Ridge's continuations)
_VOLUME_AREA = 16 * SECTOR  # where the volume descriptors, ISO 9660's and UDF's, start
_ISO_MARK = b"CD001"
_UDF_MARKS = (b"BEA01", b"NSR02", b"NSR03", b"TEA01")
_ANCHOR = 256 * SECTOR  # UDF's anchor volume descriptor pointer
_JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")  # UCS-2 levels 1 to 3


def is_disk_image(data: bytes) -> bool:
    """Whether `data` starts as an ISO 9660 or UDF image does (the first descriptor
    after the 32 KB system area)."""
    mark = data[_VOLUME_AREA + 1:_VOLUME_AREA + 6]
    return mark == _ISO_MARK or mark in _UDF_MARKS


class _Listing:
    """What one image's reading has found so far, and may still read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.facts: set[str] = set()
        self.names: dict[str, None] = {}  # (in order, once: most files are in each file system)
        self.file_systems = 0  # trees found (a primary volume, a Joliet one, a UDF file set)
        self.records_left = MAX_RECORDS
        self.directory_bytes_left = MAX_DIRECTORY_BYTES

    def directory(self, offset: int, length: int) -> bytes:
        """The bytes of a directory's extent, as far as the image and the budget for all
        its directories go (past that, the fact cap-archive-members: what was not read
        could hold anything)."""
        if length > self.directory_bytes_left:
            self.facts.add("cap-archive-members")
            length = max(self.directory_bytes_left, 0)
        self.directory_bytes_left -= length
        extent = self.data[offset:offset + length]
        if len(extent) < length:
            self.facts.add("archive-unreadable")  # (cut short: the image ends before it)
        return extent

    def add(self, name: str) -> bool:
        """Adds a file's path; whether there is room for more (names, and records, which
        a hostile image could repeat one name in by the hundred thousand)."""
        self.names[name] = None
        self.records_left -= 1
        if len(self.names) > MAX_MEMBERS or self.records_left < 0:
            self.facts.add("cap-archive-members")
            return False
        return True


def image_names(data: bytes) -> tuple[list[str], set[str]]:
    """(the paths of the files in every file system of the image, facts): "dir/file.exe"."""
    listing = _Listing(data)
    readers = [_iso9660_names]
    if any(mark in _UDF_MARKS for mark in _volume_marks(data)):
        readers.append(_udf_names)
    for read in readers:
        try:
            read(listing)
        except Exception:  # (struct.error, IndexError: a hostile image; what was read counts)
            listing.facts.add("archive-unreadable")
    if not listing.file_systems:
        listing.facts.add("archive-unreadable")
    return list(listing.names)[:MAX_MEMBERS], listing.facts


def _volume_marks(data: bytes) -> list[bytes]:
    """The standard identifiers of the descriptors in the volume recognition area."""
    marks = []
    for offset in range(_VOLUME_AREA, _VOLUME_AREA + 64 * SECTOR, SECTOR):
        mark = data[offset + 1:offset + 6]
        if len(mark) < 5 or not mark.isalnum():
            break
        marks.append(mark)
    return marks


# ---- ISO 9660 and Joliet (ECMA-119) ----

def _iso9660_names(listing: _Listing) -> None:
    """The names in the primary volume's tree and in a Joliet supplementary volume's."""
    data = listing.data
    for offset in range(_VOLUME_AREA, _VOLUME_AREA + 64 * SECTOR, SECTOR):
        descriptor = data[offset:offset + SECTOR]
        if len(descriptor) < SECTOR or descriptor[1:6] != _ISO_MARK or descriptor[0] == 255:
            break  # (255: the set's terminator)
        joliet = descriptor[0] == 2 and descriptor[88:91] in _JOLIET_ESCAPES
        if descriptor[0] == 1 or joliet:
            block, = struct.unpack_from("<H", descriptor, 128)
            if not _iso_tree(listing, descriptor[156:190], block or SECTOR, joliet):
                return


def _iso_tree(listing: _Listing, root: bytes, block: int, joliet: bool) -> bool:
    """Reads one volume's tree; whether there is room for more names. In the primary
    volume, a file's Rock Ridge name (which 7-Zip and Linux show, Windows not) is a path
    of its own, beside the ISO 9660 one."""
    listing.file_systems += 1
    pending = [(*_extent(root), ("", ""), 0)]  # a folder's (ISO 9660 path, Rock Ridge path)
    seen: set[int] = set()
    while pending:
        location, length, paths, depth = pending.pop()
        if location in seen:
            continue  # (a directory that contains itself, or an ancestor)
        seen.add(location)
        directory = listing.directory(location * block, length)
        position = 0
        while position < len(directory):
            size = directory[position]
            if size == 0:  # no record crosses a sector's end: the rest of this one is padding
                position = (position // SECTOR + 1) * SECTOR
                continue
            record = directory[position:position + size]
            position += size
            if size < 34 or len(record) < size or 33 + record[32] > size:
                listing.facts.add("archive-unreadable")
                break
            identifier = record[33:33 + record[32]]
            if identifier in (b"\0", b"\1"):
                continue  # "." and ".."
            name = identifier.decode("utf-16-be" if joliet else "latin-1", "replace").split(";")[0]
            long_name = ("" if joliet else _rock_ridge_name(listing, record, block)) or name
            named = (paths[0] + name, paths[1] + long_name)
            if record[25] & 0x02:  # a directory
                if depth < MAX_DEPTH:
                    pending.append((*_extent(record), (f"{named[0]}/", f"{named[1]}/"), depth + 1))
                else:
                    listing.facts.add("archive-unreadable")
            elif not (listing.add(named[0]) and (named[1] == named[0] or listing.add(named[1]))):
                return False
    return True


def _rock_ridge_name(listing: _Listing, record: bytes, block: int) -> str:
    """The name a record's Rock Ridge NM entries give (IEEE P1281 and P1282), following its
    continuation areas (CE), a few at most; "" if none."""
    area = record[34 + record[32] - (record[32] & 1):]  # (after the name, padded to even)
    parts: list[bytes] = []
    for _ in range(8):  # an area, then up to seven continuations
        continuation = None
        position = 0
        while position + 4 <= len(area):
            signature, length = area[position:position + 2], area[position + 2]
            if length < 4:
                break
            if signature == b"NM" and length > 5 and not area[position + 4] & 0x06:  # (not "." or "..")
                parts.append(area[position + 5:position + length])
            elif signature == b"CE" and length >= 28:
                where, offset, size = struct.unpack_from("<I4xI4xI", area, position + 4)
                continuation = (where * block + offset, size)
            elif signature == b"ST":
                break  # (the end of the entries)
            position += length
        if continuation is None:
            break
        area = listing.directory(*continuation)
    return b"".join(parts).decode("utf-8", "replace")


def _extent(record: bytes) -> tuple[int, int]:
    """(location, length) of a directory record's extent, from its little-endian halves."""
    return struct.unpack_from("<I", record, 2)[0], struct.unpack_from("<I", record, 10)[0]


# ---- UDF (ECMA-167, as OSTA's UDF profile uses it) ----

_PARTITION, _LOGICAL_VOLUME, _TERMINATING = 5, 6, 8
_FILE_SET, _FILE_IDENTIFIER, _FILE_ENTRY, _EXTENDED_FILE_ENTRY = 256, 257, 261, 266


def _tag(data: bytes, offset: int) -> int | None:
    """The identifier of the descriptor tag at `offset`, when its checksum holds."""
    tag = data[offset:offset + 16]
    if len(tag) < 16 or (sum(tag[:4]) + sum(tag[5:])) & 0xFF != tag[4]:
        return None
    return int(struct.unpack_from("<H", tag, 0)[0])


class _Udf:
    """A UDF volume's partition: where its logical blocks are in the image."""

    def __init__(self, listing: _Listing, partition_start: int, block: int) -> None:
        self.listing = listing
        self.partition_start = partition_start
        self.block = block

    def at(self, logical_block: int) -> int:
        return (self.partition_start + logical_block) * self.block

    def directory(self, entry_at: int) -> bytes | None:
        """The contents of the directory whose file entry is at byte `entry_at`; None for
        a file, or an entry that is not one."""
        data, facts = self.listing.data, self.listing.facts
        kind = _tag(data, entry_at)
        if kind not in (_FILE_ENTRY, _EXTENDED_FILE_ENTRY):
            facts.add("archive-unreadable")
            return None
        entry = data[entry_at:entry_at + self.block]
        if entry[16 + 11] != 4:  # the ICB tag's file type: 4 is a directory
            return None
        kind_of_descriptors = struct.unpack_from("<H", entry, 16 + 18)[0] & 0x7
        attributes_length, descriptors_length = struct.unpack_from("<II", entry, 168 if kind == _FILE_ENTRY else 208)
        start = (176 if kind == _FILE_ENTRY else 216) + attributes_length
        descriptors = entry[start:start + descriptors_length]
        if kind_of_descriptors == 3:  # the contents inside the entry itself
            return descriptors
        step = {0: 8, 1: 16}.get(kind_of_descriptors)  # short_ad, long_ad
        if step is None:
            facts.add("archive-unreadable")
            return b""
        pieces = []
        for offset in range(0, len(descriptors) - step + 1, step):
            length, location = struct.unpack_from("<II", descriptors, offset)
            if length >> 30 == 3:  # (a continuation of the descriptors elsewhere: not followed)
                facts.add("archive-unreadable")
                break
            pieces.append(self.listing.directory(self.at(location), length & 0x3FFFFFFF))
        return b"".join(pieces)


def _udf_names(listing: _Listing) -> None:
    """The names in the UDF file set's tree."""
    volume = _udf_volume(listing)
    if volume is None:
        listing.facts.add("archive-unreadable")
        return
    udf, root_at = volume
    listing.file_systems += 1
    pending = [(root_at, "", 0)]
    seen: set[int] = set()
    while pending:
        entry_at, path, depth = pending.pop()
        if entry_at in seen:
            continue
        seen.add(entry_at)
        directory = udf.directory(entry_at)
        position = 0
        while directory is not None and position + 38 <= len(directory):
            if _tag(directory, position) != _FILE_IDENTIFIER:
                listing.facts.add("archive-unreadable")
                break
            characteristics, name_length = directory[position + 18], directory[position + 19]
            location, = struct.unpack_from("<I", directory, position + 24)
            use_length, = struct.unpack_from("<H", directory, position + 36)
            start = position + 38 + use_length
            identifier = directory[start:start + name_length]
            position += (38 + use_length + name_length + 3) & ~3
            if characteristics & 0x0C:  # the parent, or a deleted file
                continue
            name = _d_string(identifier)
            if characteristics & 0x02:  # a directory
                if depth < MAX_DEPTH:
                    pending.append((udf.at(location), f"{path}{name}/", depth + 1))
                else:
                    listing.facts.add("archive-unreadable")
            elif not listing.add(path + name):
                return


def _udf_volume(listing: _Listing) -> tuple[_Udf, int] | None:
    """The partition and the byte offset of the root directory's file entry, found from
    the anchor through the volume descriptors and the file set descriptor; None when
    any of them is missing or damaged."""
    data = listing.data
    if _tag(data, _ANCHOR) != 2:
        return None
    length, location = struct.unpack_from("<II", data, _ANCHOR + 16)
    partition_start = block = file_set = None
    for index in range(min(length // SECTOR, 64)):
        offset = (location + index) * SECTOR
        kind = _tag(data, offset)
        if kind == _PARTITION:
            partition_start, = struct.unpack_from("<I", data, offset + 188)
        elif kind == _LOGICAL_VOLUME:
            block, = struct.unpack_from("<I", data, offset + 212)
            file_set, = struct.unpack_from("<I", data, offset + 248 + 4)  # a long_ad's block
        elif kind == _TERMINATING or kind is None:
            break
    if partition_start is None or block is None or file_set is None or not 512 <= block <= 1 << 16:
        return None
    udf = _Udf(listing, partition_start, block)
    if _tag(data, udf.at(file_set)) != _FILE_SET:
        return None
    root, = struct.unpack_from("<I", data, udf.at(file_set) + 400 + 4)
    return udf, udf.at(root)


def _d_string(identifier: bytes) -> str:
    """A UDF file identifier: its first byte says 8 or 16 bits a character."""
    if not identifier:
        return ""
    wide = identifier[0] in (16, 255)
    return identifier[1:].decode("utf-16-be" if wide else "latin-1", "replace")
