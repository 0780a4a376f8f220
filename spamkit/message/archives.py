"""The names of the files inside a zip attachment, for the blocked-extensions check.

An invoice.zip holding invoice.js is how much malware arrives, and a check of attachment
names alone lets it through. Only the archive's central directory is read, which lists
every member's name whether or not the members are encrypted; nothing is decompressed
except a zip inside the zip (one level down, at most NESTED_BYTES of it and no more than
NESTED_RATIO times its compressed size), so a zip bomb costs nothing. Other archive
formats (rar, 7z, gz) are not read: block their extensions to refuse them.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

MAX_MEMBERS = 10_000  # names listed from one archive (a 15 MB message can hold 100,000 empty members)
NESTED_BYTES = 10 << 20
NESTED_RATIO = 100


@dataclass(frozen=True)
class ArchiveListing:
    # "dir/file.exe", and "inner.zip/file.exe" for a member of a zip inside this one
    names: tuple[str, ...]
    # archive-unreadable, archive-encrypted, archive-nested-unread, cap-archive-members
    facts: frozenset[str]


def is_zip(head: bytes) -> bool:
    """A zip's first bytes: a local file header, or the end record of an empty one."""
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def is_zip_name(*names: str) -> bool:
    return any(name.lower().rstrip(". \t").endswith(".zip") for name in names)


def zip_members(data: bytes, nested: bool = True) -> ArchiveListing:
    """The member names of a zip archive; never raises. With `nested`, the members of a
    zip inside it too, as "inner.zip/name"."""
    facts: set[str] = set()
    names: list[str] = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                facts.add("cap-archive-members")
                members = members[:MAX_MEMBERS]
            for member in members:
                names.append(member.filename)
                if member.flag_bits & 0x1:
                    facts.add("archive-encrypted")
                if is_zip_name(member.filename) and not member.is_dir():
                    inner = _nested(archive, member) if nested else None
                    if inner is None:
                        facts.add("archive-nested-unread")
                    else:
                        names += [f"{member.filename}/{name}" for name in inner.names]
                        facts |= inner.facts
    except Exception:  # BadZipFile, and whatever else a hostile directory provokes
        facts.add("archive-unreadable")
    return ArchiveListing(tuple(names), frozenset(facts))


def _nested(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> ArchiveListing | None:
    """The listing of a zip inside the archive, when it is small enough to unpack and
    can be (not encrypted); None otherwise."""
    if (member.flag_bits & 0x1 or member.file_size > NESTED_BYTES
            or member.file_size > NESTED_RATIO * max(member.compress_size, 1024)):
        return None
    try:
        with archive.open(member) as inner:
            data = inner.read(NESTED_BYTES + 1)  # (reads stop at the size the directory gives)
    except Exception:
        return None
    return zip_members(data, nested=False) if len(data) <= NESTED_BYTES else None
