"""The file names in a RAR archive, RAR 4 or RAR 5, read from its block headers.

RAR is, with zip, the archive malware mail carries most, and WinRAR or 7-Zip opens it
on most Windows machines (Windows 11 itself since 2023). Every file's header holds its
name in the clear, so nothing is unpacked: the headers are walked from one to the next
by the sizes they give. A file encrypted with a password (`rar -p`) is named and said
to be encrypted; an archive whose headers are encrypted too (`rar -hp`) names nothing,
and is said to be encrypted. A header cut short or out of bounds ends the reading, with
the fact archive-unreadable; the names before it count. Not read: an archive behind a
self-extractor's program (that is an .exe, refused as one), and the names of files in
an archive inside this one.
"""

from __future__ import annotations

import struct

MAX_MEMBERS = 10_000  # as for the other archives (spamkit.message.archives)
RAR4 = b"Rar!\x1a\x07\x00"
RAR5 = b"Rar!\x1a\x07\x01\x00"


def is_rar(head: bytes) -> bool:
    return head.startswith((RAR4, RAR5))


def rar_names(data: bytes) -> tuple[list[str], set[str]]:
    """(the paths of the files in the archive, facts)."""
    names: list[str] = []
    facts: set[str] = set()
    try:
        if data.startswith(RAR5):
            _rar5(data, names, facts)
        else:
            _rar4(data, names, facts)
    except (IndexError, struct.error, ValueError):  # (a header past the end, or nonsense)
        facts.add("archive-unreadable")
    if len(names) > MAX_MEMBERS:
        facts.add("cap-archive-members")
        del names[MAX_MEMBERS:]
    return names, facts


# ---- RAR 5 ----

_MAIN, _FILE, _SERVICE, _ENCRYPTION, _END = 1, 2, 3, 4, 5


def _vint(data: bytes, at: int) -> tuple[int, int]:
    """A RAR 5 variable-length number at `at`: (its value, where the next field starts)."""
    value = shift = 0
    for position in range(at, at + 10):
        byte = data[position]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position + 1
        shift += 7
    raise ValueError("a number longer than 10 bytes")


def _rar5(data: bytes, names: list[str], facts: set[str]) -> None:
    position = len(RAR5)
    while position < len(data) and len(names) <= MAX_MEMBERS:
        header_size, start = _vint(data, position + 4)  # (after the header's CRC32)
        end = start + header_size
        if end > len(data):
            raise ValueError("a header past the end")
        kind, at = _vint(data, start)
        flags, at = _vint(data, at)
        extra_size = data_size = 0
        if flags & 0x01:
            extra_size, at = _vint(data, at)
        if flags & 0x02:
            data_size, at = _vint(data, at)
        if kind == _ENCRYPTION:  # every header after this one is encrypted
            facts.add("archive-encrypted")
            return
        if kind == _END:
            return
        if kind == _FILE:
            file_flags, at = _vint(data, at)
            _, at = _vint(data, at)  # unpacked size
            _, at = _vint(data, at)  # attributes
            at += 4 * bool(file_flags & 0x02) + 4 * bool(file_flags & 0x04)  # mtime, CRC32
            _, at = _vint(data, at)  # compression
            _, at = _vint(data, at)  # host OS
            name_length, at = _vint(data, at)
            if at + name_length > end:
                raise ValueError("a name past its header")
            if not file_flags & 0x01:  # (not a directory)
                names.append(data[at:at + name_length].decode("utf-8", "replace"))
            if _encrypted_file(data, end - extra_size, end):
                facts.add("archive-encrypted")
        position = end + data_size


def _encrypted_file(data: bytes, at: int, end: int) -> bool:
    """Whether a file header's extra area (`at` to `end`) has an encryption record."""
    while at < end:
        size, next_at = _vint(data, at)
        kind, _ = _vint(data, next_at)
        if kind == 0x01:
            return True
        if size == 0:
            return False
        at = next_at + size
    return False


# ---- RAR 4 (RAR 2.9 to 4.x) ----

_MAIN_HEAD, _FILE_HEAD, _END_HEAD = 0x73, 0x74, 0x7B
_LONG_BLOCK, _LARGE, _UNICODE_NAME, _PASSWORD, _DIRECTORY = 0x8000, 0x0100, 0x0200, 0x0004, 0x00E0
_HEADERS_ENCRYPTED = 0x0080  # in the main header


def _rar4(data: bytes, names: list[str], facts: set[str]) -> None:
    position = len(RAR4)
    while position + 7 <= len(data) and len(names) <= MAX_MEMBERS:
        kind, flags, size = struct.unpack_from("<BHH", data, position + 2)
        if size < 7:
            raise ValueError("a header shorter than its fixed part")
        following = struct.unpack_from("<I", data, position + 7)[0] if flags & _LONG_BLOCK else 0
        if kind == _MAIN_HEAD and flags & _HEADERS_ENCRYPTED:
            facts.add("archive-encrypted")
            return
        if kind == _END_HEAD:
            return
        if kind == _FILE_HEAD:
            name_size, = struct.unpack_from("<H", data, position + 26)
            name_at = position + 32
            if flags & _LARGE:
                following += struct.unpack_from("<I", data, position + 32)[0] << 32
                name_at += 8
            raw = data[name_at:name_at + name_size]
            if len(raw) < name_size or name_at + name_size > position + size:
                raise ValueError("a name past its header")
            if flags & _DIRECTORY != _DIRECTORY:
                names.append(_rar4_name(raw, bool(flags & _UNICODE_NAME)))
            if flags & _PASSWORD:
                facts.add("archive-encrypted")
        position += size + following


def _rar4_name(raw: bytes, unicode: bool) -> str:
    """A RAR 4 file name: in the DOS code page, or, with the Unicode flag, the DOS name, a
    NUL and the Unicode name packed against it (or UTF-8 alone, without the NUL)."""
    if not unicode:
        return raw.decode("cp437", "replace")
    plain, nul, packed = raw.partition(b"\0")
    if not nul:
        return raw.decode("utf-8", "replace")
    return _unpack_name(plain, packed) or plain.decode("cp437", "replace")


def _unpack_name(plain: bytes, packed: bytes) -> str:
    """RAR 4's packed Unicode name: a high byte, then two bits a character say how it is
    given (a byte with high byte 0, a byte with the high byte, two bytes, or a run of
    the DOS name's characters, corrected)."""
    characters: list[int] = []
    high = packed[0] if packed else 0
    at, flags, flag_bits = 1, 0, 0
    while at < len(packed) and len(characters) < 1024:
        if flag_bits == 0:
            flags, flag_bits = packed[at], 8
            at += 1
            if at >= len(packed):
                break
        how = flags >> 6
        if how == 0:
            characters.append(packed[at])
            at += 1
        elif how == 1:
            characters.append(packed[at] | high << 8)
            at += 1
        elif how == 2:
            characters.append(packed[at] | packed[at + 1] << 8)
            at += 2
        else:
            length = packed[at]
            at += 1
            if length & 0x80:
                correction = packed[at]
                at += 1
                for _ in range((length & 0x7F) + 2):
                    if len(characters) >= len(plain):
                        break
                    characters.append(((plain[len(characters)] + correction) & 0xFF) | high << 8)
            else:
                for _ in range(length + 2):
                    if len(characters) >= len(plain):
                        break
                    characters.append(plain[len(characters)])
        flags = (flags << 2) & 0xFF
        flag_bits -= 2
    return "".join(chr(c) if c < 0xD800 or 0xDFFF < c < 0x110000 else "\ufffd" for c in characters)
