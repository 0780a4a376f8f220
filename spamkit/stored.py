"""Message files as Dovecot may store them: compressed (its zlib plugin, mail_compress in
2.4) or encrypted (mail_crypt).

Dovecot tells a compressed Maildir file by its first bytes, whatever its name, so one
folder may hold plain, gzip, bzip2, xz, zstd and Dovecot's own LZ4 files side by side
(mailcow, for one, saves every message compressed). Taken as they lie, such files were
learned as messages: the compressed bytes' garbage went into the token database, and the
trainer then deleted the mail. Each is now read as Dovecot reads it. An encrypted file
cannot be read here at all, and is reported, never learned.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from typing import Protocol

DOVECOT_LZ4 = b"Dovecot-LZ4\r\x2a\x9b\xc5"  # then the largest chunk, then (length, block)...
MAIL_CRYPT = b"CRYPTED\x03\x07"
# each kind's whole signature (bzip2's with each block size, for a stream and an empty
# one): a message's first line cannot begin with any of them
_BZIP2 = tuple(b"BZh%d%s" % (size, start) for size in range(1, 10) for start in (b"1AY&SY", b"\x17rE8P\x90"))
_SIGNATURES = (b"\x1f\x8b\x08", *_BZIP2, b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", DOVECOT_LZ4, MAIL_CRYPT)


class UnreadableStored(ValueError):
    """A stored message that cannot be read; str() says why, for the failure list."""


def stored_message(data: bytes, limit: int) -> bytes:
    """The message a file holds: `data` itself, or what Dovecot compressed into it. Raises
    UnreadableStored for one encrypted, damaged or cut short, or over `limit` bytes once
    uncompressed (a small file may hold a bomb)."""
    if not data.startswith(_SIGNATURES):
        return data
    if data.startswith(MAIL_CRYPT):
        raise UnreadableStored("encrypted by Dovecot's mail_crypt plugin: it can be read only "
                               "through Dovecot (sweep this mailbox over IMAP)")
    if data.startswith(DOVECOT_LZ4):
        return _dovecot_lz4(data, limit)
    kind, opened = _STREAMS[data[:2]]
    decompressor, damage = opened()
    try:
        message = decompressor.decompress(data, limit + 1)
    except damage as error:
        raise UnreadableStored(f"compressed ({kind}) but damaged: {error}") from None
    if len(message) > limit:
        raise UnreadableStored(f"larger than {limit} bytes once uncompressed ({kind})")
    if not decompressor.eof:
        raise UnreadableStored(f"compressed ({kind}) but cut short")
    return message


def _dovecot_lz4(data: bytes, limit: int) -> bytes:
    """Dovecot's LZ4 framing: its signature, the largest chunk's uncompressed size (4
    bytes, big-endian), then chunks of a 4-byte compressed length and an LZ4 block."""
    import lz4.block

    offset = len(DOVECOT_LZ4) + 4
    if len(data) < offset:
        raise UnreadableStored("compressed (Dovecot's LZ4) but cut short")
    largest = min(struct.unpack_from(">I", data, len(DOVECOT_LZ4))[0], limit + 1)
    chunks: list[bytes] = []
    size = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise UnreadableStored("compressed (Dovecot's LZ4) but cut short")
        (length,) = struct.unpack_from(">I", data, offset)
        block = data[offset + 4:offset + 4 + length]
        if len(block) < length:
            raise UnreadableStored("compressed (Dovecot's LZ4) but cut short")
        try:
            chunk = lz4.block.decompress(block, uncompressed_size=largest)
        except lz4.block.LZ4BlockError as error:
            raise UnreadableStored(f"compressed (Dovecot's LZ4) but damaged: {error}") from None
        size += len(chunk)
        if size > limit:
            raise UnreadableStored(f"larger than {limit} bytes once uncompressed (Dovecot's LZ4)")
        chunks.append(chunk)
        offset += 4 + length
    return b"".join(chunks)


class _Decompressor(Protocol):
    """What zlib's, bz2's, lzma's and zstd's incremental decompressors have in common."""

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, /, max_length: int = ...) -> bytes: ...


Opened = tuple[_Decompressor, tuple[type[Exception], ...]]  # and what it raises on damage


def _gzip() -> Opened:
    import zlib

    return zlib.decompressobj(16 + zlib.MAX_WBITS), (zlib.error,)


def _bzip2() -> Opened:
    import bz2  # (each imported only when a file needs it: most never do)

    return bz2.BZ2Decompressor(), (OSError, EOFError, ValueError)


def _xz() -> Opened:
    import lzma

    return lzma.LZMADecompressor(lzma.FORMAT_XZ), (lzma.LZMAError, EOFError)


def _zstd() -> Opened:
    if sys.version_info >= (3, 14):
        from compression.zstd import ZstdDecompressor, ZstdError
    else:
        from backports.zstd import ZstdDecompressor, ZstdError
    return ZstdDecompressor(), (ZstdError, EOFError)


_STREAMS: dict[bytes, tuple[str, Callable[[], Opened]]] = {
    b"\x1f\x8b": ("gzip", _gzip),
    b"BZ": ("bzip2", _bzip2),
    b"\xfd7": ("xz", _xz),
    b"\x28\xb5": ("zstd", _zstd),
}
