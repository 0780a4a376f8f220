"""The names of the files inside an archive attachment, for the blocked-extensions check.

An invoice.zip holding invoice.js is how much malware arrives, and a check of attachment
names alone lets it through. Read here: zip, 7z, tar, cab, and a file compressed alone
with gzip, bzip2 or xz (invoice.exe.gz; a .tar.gz's members); rar (spamkit.message.rar);
and disk images, .iso and .img (spamkit.message.diskimages). Windows opens all of these
itself (7z, tar, rar and the compressed ones since 2023).

Only directories and headers are read where the format has them: a zip's central
directory and its local headers, a 7z's header (itself LZMA-packed, unpacked within the
caps below). The members themselves are never unpacked except a zip inside a zip, one
level down, and the stream of a gz, bz2 or xz file, each at most NESTED_BYTES and no
more than NESTED_RATIO times its packed size, and all of one message's together at most
MESSAGE_UNPACK_BYTES, so a bomb, or a message of many, costs little.
"""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

from spamkit.message.diskimages import image_names, is_disk_image
from spamkit.message.rar import is_rar, rar_names

MAX_MEMBERS = 10_000  # names listed from one archive (a 15 MB message can hold 100,000 empty members)
NESTED_BYTES = 10 << 20
NESTED_RATIO = 100
# bz2 unpacks text at about 15 MB/s here: 32 MB keeps one message's unpacking near 2 s
MESSAGE_UNPACK_BYTES = 32 << 20
HEAD_BYTES = 262  # enough to tell every format read here (tar's "ustar" sits at 257)

_ZIP_LOCAL = b"PK\x03\x04"
_SEVEN_ZIP = b"7z\xbc\xaf\x27\x1c"
_CABINET = b"MSCF\0\0\0\0"
# disk images: what Windows mounts with a double click (.iso, and .img, usually an ISO 9660
# image renamed), and .udf, which 7-Zip opens; told by the name, as Windows tells them,
# since their mark lies 32 KB in, past the first bytes that tell the other formats
IMAGE_SUFFIXES = (".iso", ".img", ".udf")


@dataclass(frozen=True)
class ArchiveListing:
    # "dir/file.exe", and "inner.zip/file.exe" for a member of an archive inside this one
    names: tuple[str, ...]
    # archive-unreadable, archive-encrypted, archive-nested-unread, cap-archive-members
    facts: frozenset[str]


@dataclass
class UnpackBudget:
    """What one message's archives may still unpack to, all together."""

    remaining: int = MESSAGE_UNPACK_BYTES

    def limit(self, packed: int) -> int:
        """The most that `packed` bytes may unpack to: NESTED_BYTES, NESTED_RATIO times
        their size (at least 1 KB's worth), and what the message has left."""
        return max(min(NESTED_BYTES, NESTED_RATIO * max(packed, 1024), self.remaining), 0)

    def spend(self, size: int) -> None:
        self.remaining -= size


def is_zip(head: bytes) -> bool:
    """A zip's first bytes: a local file header, or the end record of an empty one."""
    return head[:4] in (_ZIP_LOCAL, b"PK\x05\x06")


def is_zip_name(*names: str) -> bool:
    return any(name.lower().rstrip(". \t").endswith(".zip") for name in names)


def is_image_name(*names: str) -> bool:
    return any(name.lower().rstrip(". \t").endswith(IMAGE_SUFFIXES) for name in names)


def is_archive(head: bytes) -> bool:
    """Whether the first HEAD_BYTES of a file are those of a format read here (a disk
    image's mark lies past them: is_image_name)."""
    return (is_zip(head) or _compressor(head) is not None or head.startswith((_SEVEN_ZIP, _CABINET))
            or is_rar(head) or _is_tar(head))


def archive_members(data: bytes, name: str = "", budget: UnpackBudget | None = None) -> ArchiveListing:
    """The member names of an archive in any format read here, told by its first bytes
    or, for a disk image, by the mark 32 KB in (one they do not tell is read as a zip: it
    may be named .zip); never raises. `name` is the attachment's, which names the file
    inside a gz, bz2 or xz that records no name; `budget` is shared by the archives of
    one message."""
    budget = budget if budget is not None else UnpackBudget()
    if data.startswith(_SEVEN_ZIP):
        return _sevenzip_members(data, budget)
    if data.startswith(_CABINET):
        return _cabinet_members(data)
    for told, read in ((is_rar, rar_names), (is_disk_image, image_names)):
        if told(data):
            names, facts = read(data)
            return ArchiveListing(tuple(names), frozenset(facts))
    if (magic := _compressor(data)) is not None:
        return _compressed_members(data, magic, name, budget)
    if _is_tar(data):
        return _tar_members(data)
    return zip_members(data, budget=budget)


def zip_members(data: bytes, nested: bool = True, budget: UnpackBudget | None = None) -> ArchiveListing:
    """The member names of a zip archive; never raises. With `nested`, the members of a
    zip inside it too, as "inner.zip/name".

    The central directory is what Python and Windows read, from the end; 7-Zip and others
    read the local headers from the start. Two zips written one after the other (a
    disguise seen since 2024) show each of them a different archive, and a damaged
    directory hides every member from the first. So the names of both count."""
    facts: set[str] = set()
    names: list[str] = []
    nested_names: set[str] = set()
    budget = budget if budget is not None else UnpackBudget()
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
                    inner = _nested(archive, member, budget) if nested else None
                    if inner is None:
                        facts.add("archive-nested-unread")
                    else:
                        names += [f"{member.filename}/{name}" for name in inner.names]
                        facts |= inner.facts
                        nested_names.update(inner.names)
    except Exception:  # BadZipFile, and whatever else a hostile directory provokes
        facts.add("archive-unreadable")
    listed = set(names) | nested_names  # (a stored inner zip's headers are in sight too)
    headers = _local_headers(data)
    for name, encrypted in headers:
        if encrypted:
            facts.add("archive-encrypted")
        if name not in listed:
            listed.add(name)
            names.append(name)
    if len(headers) > MAX_MEMBERS or len(names) > MAX_MEMBERS + len(nested_names):
        facts.add("cap-archive-members")
        names = names[:MAX_MEMBERS]
    return ArchiveListing(tuple(names), frozenset(facts))


def _local_headers(data: bytes) -> list[tuple[str, bool]]:
    """(name, encrypted) of every zip local file header in `data`, found by its signature
    (also those of a zip stored, not packed, in the zip: which lie in the data of a
    member is for the directory to say, and a forged directory could say anything)."""
    found: list[tuple[str, bool]] = []
    at = data.find(_ZIP_LOCAL)
    while at >= 0 and len(found) <= MAX_MEMBERS:
        if at + 30 <= len(data):
            flags, = struct.unpack_from("<H", data, at + 6)
            length, = struct.unpack_from("<H", data, at + 26)
            raw = data[at + 30:at + 30 + length]
            if 0 < length == len(raw) and b"\0" not in raw:
                # as zipfile decodes: UTF-8 when the header says so, else code page 437
                found.append((raw.decode("utf-8" if flags & 0x800 else "cp437", "replace"), bool(flags & 0x1)))
        at = data.find(_ZIP_LOCAL, at + 4)
    return found


def _nested(archive: zipfile.ZipFile, member: zipfile.ZipInfo, budget: UnpackBudget) -> ArchiveListing | None:
    """The listing of a zip inside the archive, when it is small enough to unpack and
    can be (not encrypted); None otherwise."""
    if member.flag_bits & 0x1 or member.file_size > budget.limit(member.compress_size):
        return None
    try:
        with archive.open(member) as inner:
            data = inner.read(NESTED_BYTES + 1)  # (reads stop at the size the directory gives)
    except Exception:
        return None
    budget.spend(len(data))
    return zip_members(data, nested=False) if len(data) <= NESTED_BYTES else None


def _cabinet_members(data: bytes) -> ArchiveListing:
    """The file names in a Microsoft cabinet (.cab), which Windows opens as a folder: its
    CFFILE entries, each a fixed 16 bytes and a NUL-terminated name (MS-CAB)."""
    facts: set[str] = set()
    names: list[str] = []
    try:
        files_at, = struct.unpack_from("<I", data, 16)
        count, = struct.unpack_from("<H", data, 28)
        if count > MAX_MEMBERS:
            facts.add("cap-archive-members")
            count = MAX_MEMBERS
        at = files_at
        for _ in range(count):
            attributes, = struct.unpack_from("<H", data, at + 14)
            end = data.index(b"\0", at + 16, at + 16 + 257)  # (a name is at most 256 bytes)
            # UTF-8 when the attributes say so (_A_NAME_IS_UTF), else the sender's code page
            names.append(data[at + 16:end].decode("utf-8" if attributes & 0x80 else "cp1252", "replace"))
            at = end + 1
    except (struct.error, ValueError):  # (cut short, or a name with no end)
        facts.add("archive-unreadable")
    return ArchiveListing(tuple(names), frozenset(facts))


def _is_tar(head: bytes) -> bool:
    """POSIX (ustar) and GNU tar write "ustar" at 257; older tars have no mark and are not read."""
    return head[257:262] == b"ustar"


def _tar_members(data: bytes) -> ArchiveListing:
    """The member names of a tar, as far as its headers can be read."""
    names: list[str] = []
    facts: set[str] = set()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            while (member := archive.next()) is not None:
                if len(names) >= MAX_MEMBERS:
                    facts.add("cap-archive-members")
                    break
                names.append(member.name)
    except Exception:  # a truncated or damaged tar: the names before the damage still count
        facts.add("archive-unreadable")
    return ArchiveListing(tuple(names), frozenset(facts))


# a single file compressed alone: (its suffixes and what they leave, a decompressor maker)
_STREAMS: dict[bytes, tuple[dict[str, str], Any]] = {
    b"\x1f\x8b\x08": ({".gz": "", ".gzip": "", ".tgz": ".tar"}, lambda: zlib.decompressobj(31)),
    b"BZh": ({".bz2": "", ".bz": "", ".tbz2": ".tar", ".tbz": ".tar"}, bz2.BZ2Decompressor),
    b"\xfd7zXZ\x00": ({".xz": "", ".txz": ".tar"}, lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)),
}


def _compressor(head: bytes) -> bytes | None:
    return next((magic for magic in _STREAMS if head.startswith(magic)), None)


def _compressed_members(data: bytes, magic: bytes, name: str, budget: UnpackBudget) -> ArchiveListing:
    """A gz, bz2 or xz file: the one file inside (the name gzip recorded, else the
    attachment's name less its suffix, as 7-Zip and Windows name it), and a tar's or a
    zip's members when that file is one."""
    suffixes, decompressor = _STREAMS[magic]
    inner = _gzip_name(data) if magic == b"\x1f\x8b\x08" else None
    if inner is None:
        base = name.replace("\\", "/").rsplit("/", 1)[-1].rstrip(". ")
        suffix = next((s for s in suffixes if base.lower().endswith(s)), None)
        inner = base[:-len(suffix)] + suffixes[suffix] if suffix else ""
    facts: set[str] = set()
    content = _unpack(decompressor(), data, facts, budget)
    contents = ArchiveListing((), frozenset())
    if content is not None and _is_tar(content):
        contents = _tar_members(content)
    elif content is not None and is_zip(content):
        contents = zip_members(content, nested=False)
    names = ([inner] if inner else []) + [f"{inner or 'file'}/{member}" for member in contents.names]
    return ArchiveListing(tuple(names), frozenset(facts | contents.facts))


def _unpack(decompressor: Any, data: bytes, facts: set[str], budget: UnpackBudget) -> bytes | None:
    """What `data` unpacks to, at most the budget's limit for it: the part that fits if
    it unpacks to more (archive-nested-unread); None if it is damaged from the start."""
    limit = budget.limit(len(data))
    try:
        content: bytes = decompressor.decompress(data, limit + 1)
    except Exception:
        facts.add("archive-unreadable")
        return None
    budget.spend(min(len(content), limit))
    if len(content) > limit:
        facts.add("archive-nested-unread")
        return content[:limit]
    return content


def _gzip_name(data: bytes) -> str | None:
    """The original name gzip records (FNAME, RFC 1952), if it does; Latin-1 by the RFC."""
    if len(data) < 10 or not data[3] & 0x08:
        return None
    at = 10
    if data[3] & 0x04:  # FEXTRA: two bytes of length, then the field
        if len(data) < 12:
            return None
        at += 2 + struct.unpack_from("<H", data, 10)[0]
    end = data.find(b"\0", at, at + 1024)
    return data[at:end].decode("latin-1") if end > at else None


# --- 7z: the header's names (7-Zip's 7zFormat.txt) -------------------------------------

class _Damaged(Exception):
    """A 7z header that cannot be read."""


_AES = b"\x06\xf1\x07\x01"
_LZMA = b"\x03\x01\x01"
_LZMA2 = b"\x21"
_COPY = b"\x00"
_END, _HEADER, _ARCHIVE_PROPERTIES, _ADDITIONAL_STREAMS, _MAIN_STREAMS, _FILES = range(6)
_PACK_INFO, _UNPACK_INFO, _SUBSTREAMS, _SIZE, _CRC, _FOLDER, _UNPACK_SIZE, _NUM_UNPACK = range(6, 14)
_NAME, _ENCODED_HEADER = 0x11, 0x17


@dataclass
class _Folder:
    coders: list[tuple[bytes, bytes]]  # (method id, properties)
    unpack_sizes: list[int]
    has_crc: bool = False


@dataclass
class _Streams:
    pack_position: int = 0
    pack_sizes: list[int] | None = None
    folders: list[_Folder] | None = None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise _Damaged("truncated")
        self.at += 1
        return self.data[self.at - 1]

    def take(self, count: int) -> bytes:
        if count < 0 or self.at + count > len(self.data):
            raise _Damaged("truncated")
        self.at += count
        return self.data[self.at - count:self.at]

    def number(self) -> int:
        """7z's NUMBER: the first byte's leading ones count the little-endian bytes after it."""
        first, mask, value = self.byte(), 0x80, 0
        for index in range(8):
            if not first & mask:
                return value | ((first & (mask - 1)) << (8 * index))
            value |= self.byte() << (8 * index)
            mask >>= 1
        return value

    def count(self, limit: int | None = None) -> int:
        """A NUMBER that counts things: files, streams, folders. Each of those takes at
        least a byte of the header to describe, so a count past the header's length is
        damage (and would have lists of billions made)."""
        value = self.number()
        if value > (len(self.data) + 1 if limit is None else limit):
            raise _Damaged("count")
        return value

    def bits(self, count: int) -> list[bool]:
        raw = self.take((count + 7) // 8)
        return [bool(raw[i // 8] & (0x80 >> (i % 8))) for i in range(count)]

    def defined(self, count: int) -> list[bool]:
        """An "all defined" byte, else a bit vector."""
        return [True] * count if self.byte() else self.bits(count)


def _sevenzip_members(data: bytes, budget: UnpackBudget) -> ArchiveListing:
    facts: set[str] = set()
    names: list[str] = []
    try:
        if len(data) < 32:
            raise _Damaged("no start header")
        offset, size = struct.unpack_from("<QQ", data, 12)
        header = data[32 + offset:32 + offset + size] if offset < len(data) else b""
        if size == 0 or len(header) != size:
            raise _Damaged("no header")
        reader = _Reader(header)
        for _ in range(4):  # an encoded header unpacks to a header (7-Zip writes one level)
            kind = reader.byte()
            if kind != _ENCODED_HEADER:
                break
            streams = _streams_info(reader)
            reader = _Reader(_unpack_header(data, streams, facts, budget))
        if kind != _HEADER:
            raise _Damaged("no header")
        names = _header_names(reader, facts)
    except Exception:  # _Damaged, lzma's errors, and whatever else hostile bytes provoke
        facts.add("archive-unreadable")
    if len(names) > MAX_MEMBERS:
        facts.add("cap-archive-members")
        names = names[:MAX_MEMBERS]
    return ArchiveListing(tuple(names), frozenset(facts))


def _header_names(reader: _Reader, facts: set[str]) -> list[str]:
    kind = reader.byte()
    if kind == _ARCHIVE_PROPERTIES:
        while reader.byte() != _END:
            reader.take(reader.number())
        kind = reader.byte()
    if kind == _ADDITIONAL_STREAMS:
        _streams_info(reader)
        kind = reader.byte()
    if kind == _MAIN_STREAMS:
        streams = _streams_info(reader)
        if any(method == _AES for folder in streams.folders or [] for method, _ in folder.coders):
            facts.add("archive-encrypted")
        kind = reader.byte()
    if kind != _FILES:
        return []
    files = reader.count()
    while (kind := reader.byte()) != _END:
        field = _Reader(reader.take(reader.number()))
        if kind == _NAME:
            if field.byte():
                raise _Damaged("names kept elsewhere")
            text = field.data[field.at:].decode("utf-16-le", "replace")
            return text.split("\0")[:files]
    return []


def _streams_info(reader: _Reader) -> _Streams:
    streams = _Streams()
    kind = reader.byte()
    if kind == _PACK_INFO:
        streams.pack_position = reader.number()
        count = reader.count()
        while (kind := reader.byte()) != _END:
            if kind == _SIZE:
                streams.pack_sizes = [reader.number() for _ in range(count)]
            elif kind == _CRC:
                _skip_digests(reader, count)
            else:
                raise _Damaged("pack info")
        kind = reader.byte()
    if kind == _UNPACK_INFO:
        streams.folders = _coders_info(reader)
        kind = reader.byte()
    if kind == _SUBSTREAMS:
        _skip_substreams(reader, streams.folders or [])
        kind = reader.byte()
    if kind != _END:
        raise _Damaged("streams info")
    return streams


def _coders_info(reader: _Reader) -> list[_Folder]:
    if reader.byte() != _FOLDER:
        raise _Damaged("coders info")
    count = reader.count()
    if reader.byte():
        raise _Damaged("folders kept elsewhere")
    folders, outputs = [], []
    for _ in range(count):
        coders, total_in, total_out = [], 0, 0
        for _ in range(reader.count(64)):
            flags = reader.byte()
            method = reader.take(flags & 0x0F)
            ins, outs = (reader.count(64), reader.count(64)) if flags & 0x10 else (1, 1)
            properties = reader.take(reader.number()) if flags & 0x20 else b""
            coders.append((method, properties))
            total_in, total_out = total_in + ins, total_out + outs
        for _ in range(total_out - 1):  # bind pairs
            reader.number(), reader.number()
        packed = total_in - (total_out - 1)
        if packed > 1:
            for _ in range(packed):
                reader.number()
        folders.append(_Folder(coders, []))
        outputs.append(total_out)
    if reader.byte() != _UNPACK_SIZE:
        raise _Damaged("coders info")
    for folder, total_out in zip(folders, outputs):
        folder.unpack_sizes = [reader.number() for _ in range(total_out)]
    while (kind := reader.byte()) != _END:
        if kind != _CRC:
            raise _Damaged("coders info")
        for folder, has_crc in zip(folders, reader.defined(count)):
            folder.has_crc = has_crc
        reader.take(4 * sum(folder.has_crc for folder in folders))
    return folders


def _skip_substreams(reader: _Reader, folders: list[_Folder]) -> None:
    per_folder = [1] * len(folders)
    kind = reader.byte()
    if kind == _NUM_UNPACK:
        per_folder = [reader.count() for _ in folders]
        kind = reader.byte()
    if kind == _SIZE:
        for streams in per_folder:
            for _ in range(streams - 1):
                reader.number()
        kind = reader.byte()
    while kind != _END:
        if kind != _CRC:
            raise _Damaged("substreams")
        unknown = sum(streams for streams, folder in zip(per_folder, folders)
                      if not (streams == 1 and folder.has_crc))
        _skip_digests(reader, unknown)
        kind = reader.byte()


def _skip_digests(reader: _Reader, count: int) -> None:
    reader.take(4 * sum(reader.defined(count)))


def _unpack_header(data: bytes, streams: _Streams, facts: set[str], budget: UnpackBudget) -> bytes:
    """An encoded header's bytes: its one folder's pack stream, through its coder."""
    if not streams.folders or not streams.pack_sizes:
        raise _Damaged("encoded header")
    folder = streams.folders[0]
    methods = [method for method, _ in folder.coders]
    if _AES in methods:
        facts.add("archive-encrypted")  # 7z -mhe: the names themselves are encrypted
        raise _Damaged("encrypted header")
    if len(folder.coders) != 1 or not folder.unpack_sizes:
        raise _Damaged("header coders")
    start = 32 + streams.pack_position
    packed = data[start:start + streams.pack_sizes[0]]
    size = folder.unpack_sizes[0]
    if size > budget.limit(len(packed)):
        raise _Damaged("header too large")
    budget.spend(size)
    method, properties = folder.coders[0]
    if method == _COPY:
        return packed[:size]
    if method == _LZMA and len(properties) == 5:
        lc, rest = properties[0] % 9, properties[0] // 9
        dictionary, = struct.unpack_from("<I", properties, 1)
        filters = [{"id": lzma.FILTER_LZMA1, "lc": lc, "lp": rest % 5, "pb": rest // 5,
                    "dict_size": dictionary}]
    elif method == _LZMA2 and len(properties) == 1 and properties[0] <= 40:
        bits = properties[0]
        filters = [{"id": lzma.FILTER_LZMA2,
                    "dict_size": 0xFFFFFFFF if bits == 40 else (2 | (bits & 1)) << (bits // 2 + 11)}]
    else:
        raise _Damaged("header method")
    unpacked = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters).decompress(packed, size)
    if len(unpacked) != size:
        raise _Damaged("header truncated")
    return unpacked
