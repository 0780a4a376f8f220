"""The files inside a TNEF attachment (winmail.dat, application/ms-tnef), for the
attachment check.

Outlook sends its rich-text mail with the attachments packed into one winmail.dat, and
shows what it receives that way as ordinary attachments: an .exe in a winmail.dat is an
.exe to the Outlook user, whose mail program opens TNEF without a word. So each file in
one is listed as an attachment of its own (spamkit.message), under every name the
stream gives it.

The format (MS-OXTNEF): a signature, then attributes, each a level (message or
attachment), an id, a length, the data and a checksum. attAttachRendData starts an
attachment; attAttachTitle is its short name; attAttachData its bytes; attAttachment its
MAPI properties, where the long file name (PR_ATTACH_LONG_FILENAME) and the name shown
(PR_DISPLAY_NAME) are, and an attached message (PR_ATTACH_DATA_OBJ), itself TNEF, whose
files are read too, MAX_DEPTH levels down. Attributes and properties are walked by the
lengths they give; nothing is unpacked, and nothing read raises: damage ends the walk,
keeping what was read before it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SIGNATURE = b"\x78\x9f\x3e\x22"  # 0x223E9F78, little-endian

MAX_FILES = 10_000  # as for archives (spamkit.message.archives.MAX_MEMBERS)
MAX_ATTRIBUTES = 200_000  # 20 an attachment is plenty; a stream of empty ones stops here
MAX_PROPERTIES = 200_000  # in all of a stream's attAttachments (Outlook writes 10-30 a file)
MAX_DEPTH = 5  # attached messages within attached messages

LEVEL_ATTACHMENT = 2
ATT_ATTACH_REND_DATA = 0x00069002
ATT_ATTACH_TITLE = 0x00018010
ATT_ATTACH_DATA = 0x0006800F
ATT_ATTACHMENT = 0x00069005
ATT_OEM_CODEPAGE = 0x00069007

PR_DISPLAY_NAME = 0x3001
PR_ATTACH_DATA = 0x3701  # PT_BINARY: the file; PT_OBJECT: an attached message (TNEF)
PR_ATTACH_FILENAME = 0x3704
PR_ATTACH_LONG_FILENAME = 0x3707
PR_ATTACH_PATHNAME = 0x3708
PR_ATTACH_LONG_PATHNAME = 0x370D
# the names Outlook may show or save a file under, the one it shows first
NAME_PROPERTIES = (PR_ATTACH_LONG_FILENAME, PR_ATTACH_FILENAME, PR_DISPLAY_NAME, PR_ATTACH_LONG_PATHNAME,
                   PR_ATTACH_PATHNAME)

PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT = 0x001E, 0x001F, 0x0102, 0x000D
MULTI_VALUED = 0x1000
# the bytes one value of a fixed-size property type takes in TNEF (shorter ones padded to 4)
_FIXED_SIZES = {0x0001: 4, 0x0002: 4, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8,
                0x000A: 4, 0x000B: 4, 0x0014: 8, 0x0040: 8, 0x0048: 16}
_VARIABLE = (PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT)
_OBJECT_IID = 16  # an object value starts with the interface's id


@dataclass
class TnefFile:
    names: list[str] = field(default_factory=list)  # the one Outlook shows first
    data: bytes = b""


class _Damaged(Exception):
    pass


def is_tnef(data: bytes) -> bool:
    return data[:4] == SIGNATURE


def tnef_files(data: bytes) -> tuple[list[TnefFile], set[str]]:
    """The files in a TNEF stream, and facts: archive-unreadable (damage ended the walk
    early), cap-tnef-files (more files, attributes or properties than are read: some
    files may be unseen), archive-nested-unread (messages attached deeper than
    MAX_DEPTH). Never raises."""
    facts: set[str] = set()
    files: list[TnefFile] = []
    _walk(data, files, facts, depth=0, budget=[MAX_PROPERTIES])
    if len(files) > MAX_FILES:
        facts.add("cap-tnef-files")
        del files[MAX_FILES:]
    return files, facts


def _walk(data: bytes, files: list[TnefFile], facts: set[str], depth: int, budget: list[int]) -> None:
    """The attributes of one stream (an attached message's too), its files added to
    `files`; budget[0] is how many more MAPI properties the whole stream may have read."""
    if not is_tnef(data):
        facts.add("archive-unreadable")
        return
    codepage = "cp1252"
    position = 6  # the signature and a two-byte key
    current: TnefFile | None = None
    for _ in range(MAX_ATTRIBUTES):
        if position >= len(data):
            return
        if position + 9 > len(data):
            facts.add("archive-unreadable")
            return
        level = data[position]
        attribute, length = struct.unpack_from("<II", data, position + 1)
        start = position + 9
        value = data[start:start + length]
        if len(value) < length:
            facts.add("archive-unreadable")  # cut short: what it has named so far stands
            if current is not None and attribute == ATT_ATTACH_DATA:
                current.data = value
            return
        position = start + length + 2  # and the checksum, which is not checked
        if attribute == ATT_OEM_CODEPAGE and length >= 4:
            codepage = _codepage(struct.unpack_from("<I", value)[0])
        if level != LEVEL_ATTACHMENT:
            continue
        if attribute == ATT_ATTACH_REND_DATA or current is None:
            if len(files) > MAX_FILES:
                return  # (tnef_files says so)
            current = TnefFile()
            files.append(current)
        if attribute == ATT_ATTACH_TITLE:
            _add_name(current, _string(value, codepage))
        elif attribute == ATT_ATTACH_DATA:
            current.data = value
        elif attribute == ATT_ATTACHMENT:
            try:
                _properties(value, current, codepage, files, facts, depth, budget)
            except (_Damaged, struct.error):
                facts.add("archive-unreadable")
    facts.add("cap-tnef-files")


def _properties(data: bytes, file: TnefFile, codepage: str, files: list[TnefFile], facts: set[str],
                depth: int, budget: list[int]) -> None:
    """An attachment's MAPI properties: its names, its bytes when attAttachData had none,
    and an attached message's files."""
    count = _u32(data, 0)
    position = 4
    names: dict[int, str] = {}
    if count > budget[0]:
        facts.add("cap-tnef-files")
        count = budget[0]
    budget[0] -= count
    try:
        for _ in range(count):
            kind, number = struct.unpack_from("<HH", data, position)
            position += 4
            if number >= 0x8000:  # a named property: its GUID, then an id or a name
                position += 16
                if _u32(data, position) == 1:
                    position += 4 + _padded(_u32(data, position + 4)) + 4
                else:
                    position += 8
            values, position = _values(data, position, kind)
            base = kind & ~MULTI_VALUED
            if number in NAME_PROPERTIES and base in (PT_STRING8, PT_UNICODE) and values:
                names.setdefault(number, _text(values[0], base, codepage))
            elif number == PR_ATTACH_DATA and values:
                if base == PT_OBJECT and depth < MAX_DEPTH:
                    _walk(values[0][_OBJECT_IID:], files, facts, depth + 1, budget)
                elif base == PT_OBJECT:
                    facts.add("archive-nested-unread")
                elif base == PT_BINARY and not file.data:
                    file.data = values[0]
    finally:  # (names read before damage count: damage after a name must not hide it)
        for number in NAME_PROPERTIES:
            if number in names:
                path_name = names[number].replace("\\", "/").rsplit("/", 1)[-1]
                _add_name(file, path_name if number in (PR_ATTACH_PATHNAME, PR_ATTACH_LONG_PATHNAME)
                          else names[number], first=number == PR_ATTACH_LONG_FILENAME)


def _values(data: bytes, position: int, kind: int) -> tuple[list[bytes], int]:
    """A property's values (variable ones as their bytes, fixed ones as theirs), and
    where the next property starts."""
    base = kind & ~MULTI_VALUED
    count = 1
    if kind & MULTI_VALUED or base in _VARIABLE:
        count = _u32(data, position)
        position += 4
        if count > len(data) - position:  # every value takes at least a byte
            raise _Damaged
    values = []
    for _ in range(count):
        if base in _VARIABLE:
            length = _u32(data, position)
            value = data[position + 4:position + 4 + length]
            if len(value) < length:
                raise _Damaged
            values.append(value)
            position += 4 + _padded(length)
        elif base in _FIXED_SIZES:
            values.append(data[position:position + _FIXED_SIZES[base]])
            position += _FIXED_SIZES[base]
        else:
            raise _Damaged  # a type whose size is not known: the rest cannot be found
    if position > len(data):
        raise _Damaged
    return values, position


def _add_name(file: TnefFile, name: str, first: bool = False) -> None:
    """A name the file goes by, once; `first` puts it first (the long file name)."""
    name = name.strip()
    if not name:
        return
    if name in file.names:
        file.names.remove(name)
    if first:
        file.names.insert(0, name)
    else:
        file.names.append(name)


def _text(value: bytes, kind: int, codepage: str) -> str:
    if kind == PT_UNICODE:
        return value.decode("utf-16-le", "replace").split("\0", 1)[0]
    return _string(value, codepage)


def _string(value: bytes, codepage: str) -> str:
    return value.split(b"\0", 1)[0].decode(codepage, "replace")


def _codepage(number: int) -> str:
    """The codec of a Windows code page number; Windows-1252 for one Python has not."""
    name = "utf-8" if number == 65001 else f"cp{number}"
    try:
        "".encode(name)
    except LookupError:
        return "cp1252"
    return name


def _u32(data: bytes, position: int) -> int:
    if position + 4 > len(data):
        raise _Damaged
    value: int = struct.unpack_from("<I", data, position)[0]
    return value


def _padded(length: int) -> int:
    return (length + 3) & ~3
