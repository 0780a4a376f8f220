"""Member names of zip attachments: read from the directory, nothing unpacked but a
small zip inside a zip, and never an exception."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import spamkit.message.archives as archives
from spamkit.message.archives import NESTED_BYTES, is_zip, is_zip_name, zip_members


def zip_of(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED, encrypted: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            archive.writestr(info, data)
    data = out.getvalue()
    for name in encrypted:  # the flag set in the directory, as an encrypting program sets it
        entry = data.rindex(b"PK\x01\x02", 0, data.rindex(name.encode()))
        flags = struct.unpack_from("<H", data, entry + 8)[0] | 0x1
        data = data[:entry + 8] + struct.pack("<H", flags) + data[entry + 10:]
    return data


def test_names_paths_and_one_zip_inside() -> None:
    inner = zip_of({"setup.exe": b"MZ" * 100})
    listing = zip_members(zip_of({"docs/readme.txt": b"hi", "docs/": b"", "inner.zip": inner}))
    assert listing.names == ("docs/readme.txt", "docs/", "inner.zip", "inner.zip/setup.exe")
    assert listing.facts == frozenset()
    assert is_zip(zip_of({"a": b""})) and is_zip(zip_of({})) and not is_zip(b"%PDF-1.4")
    assert is_zip_name("a.pdf", "Invoice.ZIP. ") and not is_zip_name("a.zipx")


def test_encrypted_members_are_named_and_said_to_be_encrypted() -> None:
    listing = zip_members(zip_of({"invoice.js": b"x" * 50, "note.txt": b"y"}, encrypted=("invoice.js",)))
    assert listing.names == ("invoice.js", "note.txt")
    assert "archive-encrypted" in listing.facts


def test_a_zip_two_levels_down_is_not_opened() -> None:
    """42.zip's shape: zips in zips. One level is read; the next is said, not unpacked."""
    deepest = zip_of({"payload.exe": b"MZ"})
    middle = zip_of({"deeper.zip": deepest})
    listing = zip_members(zip_of({"middle.zip": middle}))
    assert listing.names == ("middle.zip", "middle.zip/deeper.zip")
    assert "archive-nested-unread" in listing.facts


def test_a_bomb_inside_costs_nothing(tmp_path: Path) -> None:
    """An inner zip that unpacks to 100 MB of zeros from about 100 KB (1,000:1) is left
    packed: nothing near its size is ever allocated. (So is one larger than
    NESTED_BYTES at any ratio: test_nested_size_cap.)"""
    inner = tmp_path / "zeros.zip"
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as archive, archive.open("zeros", "w") as member:
        for _ in range(100):
            member.write(bytes(1 << 20))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(inner, "bomb.zip")
    bomb = out.getvalue()
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        listing = zip_members(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(bomb) + (1 << 20), peak
    assert listing.names == ("bomb.zip",) and "archive-nested-unread" in listing.facts


def test_nested_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    inner = zip_of({"a.exe": b"MZ" * 1000}, method=zipfile.ZIP_STORED)
    outer = zip_of({"inner.zip": inner}, method=zipfile.ZIP_STORED)
    assert zip_members(outer).names == ("inner.zip", "inner.zip/a.exe")
    monkeypatch.setattr(archives, "NESTED_BYTES", len(inner) - 1)
    assert zip_members(outer).names == ("inner.zip",)
    assert NESTED_BYTES == 10 << 20


def test_member_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_MEMBERS", 3)
    listing = zip_members(zip_of({f"f{i}.txt": b"" for i in range(5)}))
    assert listing.names == ("f0.txt", "f1.txt", "f2.txt") and "cap-archive-members" in listing.facts


def test_damaged_archives_are_unreadable_not_errors() -> None:
    whole = zip_of({"a.exe": b"MZ" * 100})
    for damaged in (b"PK\x03\x04garbage", whole[: len(whole) // 2], b"", whole.replace(b"PK\x01\x02", b"PK\x01\x03")):
        listing = zip_members(damaged)
        assert listing.names == () and listing.facts == {"archive-unreadable"}


@given(st.binary(max_size=2048))
def test_any_bytes(data: bytes) -> None:
    zip_members(b"PK\x03\x04" + data)
    zip_members(zip_of({"a.zip": data}))
