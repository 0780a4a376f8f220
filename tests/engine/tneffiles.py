"""TNEF streams (winmail.dat) written byte by byte, as Outlook writes them (MS-OXTNEF),
for the tests: no free program writes TNEF. Debian's `tnef` reads each one the tests
use before spamkit does, so a mistake here shows as a disagreement there."""

from __future__ import annotations

import struct

SIGNATURE = b"\x78\x9f\x3e\x22"
MESSAGE, ATTACHMENT = 1, 2
PT_LONG, PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT = 0x0003, 0x001E, 0x001F, 0x0102, 0x000D
PR_DISPLAY_NAME, PR_ATTACH_DATA, PR_ATTACH_FILENAME, PR_ATTACH_METHOD = 0x3001, 0x3701, 0x3704, 0x3705
PR_ATTACH_LONG_FILENAME, PR_ATTACH_MIME_TAG = 0x3707, 0x370E
# IID_IMessage, the interface an attached message's PR_ATTACH_DATA_OBJ names
IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")


def attribute(level: int, number: int, data: bytes) -> bytes:
    """One attribute: level, id, length, data, and the checksum of the data."""
    return bytes([level]) + struct.pack("<II", number, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def stream(*attributes: bytes, codepage: int = 1252) -> bytes:
    """A TNEF stream: the signature, a key, TNEF's version and the code page, then these."""
    return (SIGNATURE + struct.pack("<H", 0x1A2B) + attribute(MESSAGE, 0x00089006, struct.pack("<I", 0x00010000))
            + attribute(MESSAGE, 0x00069007, struct.pack("<II", codepage, 0))
            + attribute(MESSAGE, 0x00078008, b"IPM.Microsoft Mail.Note\0") + b"".join(attributes))


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def variable(kind: int, number: int, value: bytes) -> bytes:
    return struct.pack("<HHII", kind, number, 1, len(value)) + _padded(value)


def string8(number: int, text: str, codepage: str = "cp1252") -> bytes:
    return variable(PT_STRING8, number, text.encode(codepage) + b"\0")


def unicode(number: int, text: str) -> bytes:
    return variable(PT_UNICODE, number, text.encode("utf-16-le") + b"\0\0")


def long(number: int, value: int) -> bytes:
    return struct.pack("<HHI", PT_LONG, number, value)


def named_string(name: str, text: str) -> bytes:
    """A named property (id 0x8000 and up): its GUID and name, then a PT_STRING8 value."""
    encoded = name.encode("utf-16-le") + b"\0\0"
    value = text.encode("ascii") + b"\0"
    return (struct.pack("<HH", PT_STRING8, 0x8005) + bytes(range(16)) + struct.pack("<II", 1, len(encoded))
            + _padded(encoded) + struct.pack("<II", 1, len(value)) + _padded(value))


def properties(*encoded: bytes) -> bytes:
    return struct.pack("<I", len(encoded)) + b"".join(encoded)


def attachment(title: str, data: bytes, *props: bytes) -> bytes:
    """One attached file: attAttachRendData, attAttachTitle (the 8.3 name), attAttachData,
    and attAttachment with its MAPI properties."""
    rendering = struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0, 0, 0)  # ATTACH_BY_VALUE, no position
    return (attribute(ATTACHMENT, 0x00069002, rendering)
            + attribute(ATTACHMENT, 0x00018010, title.encode("cp1252") + b"\0")
            + attribute(ATTACHMENT, 0x0006800F, data)
            + attribute(ATTACHMENT, 0x00069005, properties(long(PR_ATTACH_METHOD, 1), *props)))


def attached_message(title: str, inner: bytes) -> bytes:
    """A message attached to the message (ATTACH_EMBEDDED_MSG): its own TNEF stream in
    PR_ATTACH_DATA_OBJ."""
    rendering = struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0, 0, 0)
    return (attribute(ATTACHMENT, 0x00069002, rendering)
            + attribute(ATTACHMENT, 0x00018010, title.encode("cp1252") + b"\0")
            + attribute(ATTACHMENT, 0x00069005, properties(
                long(PR_ATTACH_METHOD, 5), string8(PR_DISPLAY_NAME, title),
                variable(PT_OBJECT, PR_ATTACH_DATA, IID_IMESSAGE + inner))))
