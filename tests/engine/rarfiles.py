"""RAR archives written byte by byte, as the format's documentation lays them out (no
free tool writes RAR): stored files, RAR 5 and RAR 4, for the tests of the reader and of
the attachment check. tests/engine/test_rar.py has readers that are not ours judge them."""

from __future__ import annotations

import struct
import zlib

from spamkit.message.rar import RAR4, RAR5


def vint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def rar5_block(fields: bytes, data: bytes = b"") -> bytes:
    """A RAR 5 header (CRC32, size, then `fields`: type, flags, ...) and its data area."""
    sized = vint(len(fields)) + fields
    return struct.pack("<I", zlib.crc32(sized)) + sized + data


def rar5(files: dict[str, bytes], encrypted: tuple[str, ...] = (), folders: tuple[str, ...] = ()) -> bytes:
    """A RAR 5 archive of stored files (and folders); the files in `encrypted` carry an
    encryption record, as `rar -p` writes one (their data is not really encrypted)."""
    out = RAR5 + rar5_block(vint(1) + vint(0) + vint(0))  # the main header
    for name in folders:
        # (a data area of no bytes, as RAR writes for a folder: libarchive wants one)
        fields = vint(2) + vint(0x02) + vint(0) + vint(0x01) + vint(0) + vint(0x10) + vint(0) + vint(0)
        out += rar5_block(fields + vint(len(name.encode())) + name.encode())
    for name, data in files.items():
        extra = b""
        if name in encrypted:
            record = vint(1) + vint(0) + vint(0) + bytes([15]) + bytes(range(16)) + bytes(range(16, 32))
            extra = vint(len(record)) + record
        flags = 0x02 | (0x01 if extra else 0)
        fields = vint(2) + vint(flags) + (vint(len(extra)) if extra else b"") + vint(len(data))
        fields += vint(0x04) + vint(len(data)) + vint(0x20) + struct.pack("<I", zlib.crc32(data))
        fields += vint(0) + vint(0) + vint(len(name.encode())) + name.encode() + extra
        out += rar5_block(fields, data)
    return out + rar5_block(vint(5) + vint(0) + vint(0))


def rar4_block(kind: int, flags: int, fields: bytes, data: bytes = b"") -> bytes:
    header = struct.pack("<BHH", kind, flags, 7 + len(fields)) + fields
    return struct.pack("<H", zlib.crc32(header) & 0xFFFF) + header + data


def packed_name(name: str) -> bytes:
    """RAR 4's Unicode name in its plainest packing: each character two bytes (mode 2)."""
    out = bytearray([0])  # the high byte, unused by mode 2
    for start in range(0, len(name), 4):
        out.append(0xAA)
        for character in name[start:start + 4]:
            out += struct.pack("<H", ord(character))
    return bytes(out)


def rar4(files: dict[str, bytes], encrypted: tuple[str, ...] = (), headers_encrypted: bool = False) -> bytes:
    """A RAR 4 archive of stored files; a name that is not ASCII is written as the DOS
    name, a NUL and the packed Unicode name."""
    out = RAR4 + rar4_block(0x73, 0x0080 if headers_encrypted else 0, bytes(6))
    if headers_encrypted:
        return out + bytes(range(256)) * 4  # (what follows is encrypted)
    for name, data in files.items():
        flags = 0x8000 | (0x0004 if name in encrypted else 0)
        raw = name.encode("ascii", "replace")
        if not name.isascii():
            flags |= 0x0200
            raw += b"\0" + packed_name(name)
        fields = struct.pack("<IIBIIBBHI", len(data), len(data), 2, zlib.crc32(data), 0x5B6B4000, 29, 0x30,
                             len(raw), 0x20) + raw
        out += rar4_block(0x74, flags, fields, data)
    return out + rar4_block(0x7B, 0x4000, b"")
