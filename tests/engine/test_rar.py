"""File names in RAR archives, RAR 5 and RAR 4. No free tool writes RAR, so the archives
are written here, byte by byte as the format's documentation lays them out, and two
readers that are not ours judge them: each test archive is first listed by The
Unarchiver's lsar and libarchive's bsdtar, and what they list is what the reader must find."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from spamkit.message.archives import HEAD_BYTES, ArchiveListing, archive_members, is_archive
from spamkit.message.rar import RAR4, RAR5, rar_names
from tests.engine.rarfiles import rar4, rar5, rar5_block, vint


def listed(data: bytes) -> list[tuple[str, bool]]:
    """(path, encrypted) of each file The Unarchiver's lsar lists in the archive, after
    checking that libarchive's bsdtar lists the same paths (Debian's 7-Zip reads no RAR:
    its RAR code is in the non-free 7zip-rar)."""
    with tempfile.TemporaryDirectory() as directory:  # (alone: lsar takes a.rar and b.rar for volumes)
        (Path(directory) / "a.rar").write_bytes(data)
        report = json.loads(subprocess.run(["lsar", "-j", "a.rar"], cwd=directory, capture_output=True,
                                           text=True, timeout=60).stdout)
        by_libarchive = subprocess.run(["bsdtar", "-tf", "a.rar"], cwd=directory, capture_output=True,
                                       text=True, timeout=60).stdout.splitlines()
    files = [(entry["XADFileName"], bool(entry.get("XADIsEncrypted"))) for entry in report["lsarContents"]
             if not entry.get("XADIsDirectory")]
    assert [name for name, _ in files] == [name for name in by_libarchive if name in {n for n, _ in files}]
    return files


FILES = {"invoice.pdf.exe": b"MZ" * 100, "docs/readme.txt": b"hello", "Übersicht 2026 – März.js": b"x"}


def test_rar5_names_as_7zip_lists_them() -> None:
    data = rar5(FILES, folders=("docs",))
    assert listed(data) == [(name, False) for name in FILES]
    assert is_archive(data[:HEAD_BYTES])
    assert archive_members(data, "a.rar") == ArchiveListing(tuple(FILES), frozenset())


def test_rar4_names_as_7zip_lists_them() -> None:
    """Including a name packed in RAR 4's Unicode form, whose DOS name says "?" where the
    Unicode one has Ü and –: the Unicode name counts."""
    data = rar4(FILES)
    assert [name for name, _ in listed(data)] == list(FILES)
    assert archive_members(data, "a.rar") == ArchiveListing(tuple(FILES), frozenset())


def test_encrypted_files_and_headers() -> None:
    """`rar -p`: the files are named, and said to be encrypted; `rar -hp`: no names, and
    the archive is said to be encrypted."""
    for make in (rar5, rar4):
        data = make(FILES, encrypted=("invoice.pdf.exe",))
        assert listed(data)[0] == ("invoice.pdf.exe", True)
        assert archive_members(data, "a.rar") == ArchiveListing(tuple(FILES), frozenset({"archive-encrypted"}))
    hidden = RAR5 + rar5_block(vint(4) + vint(0) + vint(0) + vint(0) + bytes([15]) + bytes(16)) + bytes(512)
    assert archive_members(hidden, "a.rar") == ArchiveListing((), frozenset({"archive-encrypted"}))
    hidden4 = rar4({}, headers_encrypted=True)
    assert archive_members(hidden4, "a.rar") == ArchiveListing((), frozenset({"archive-encrypted"}))


def test_cut_short_the_names_before_the_cut_count() -> None:
    for make in (rar5, rar4):
        data = make(FILES)
        cut = data.index("docs/readme.txt".encode()) + 3  # in the second file's name
        assert archive_members(data[:cut], "a.rar") == \
            ArchiveListing(("invoice.pdf.exe",), frozenset({"archive-unreadable"}))
        whole = archive_members(data[:-3], "a.rar")  # (the end header cut)
        assert whole.names == tuple(FILES)


def test_many_files_stop_at_the_cap() -> None:
    names, facts = rar_names(rar5({f"f{index}.txt": b"" for index in range(10_050)}))
    assert len(names) == 10_000 and facts == {"cap-archive-members"}


@given(st.binary(max_size=2048))
def test_any_bytes(data: bytes) -> None:
    for head in (RAR5, RAR4):
        assert isinstance(archive_members(head + data, "a.rar"), ArchiveListing)


@given(st.data())
@settings(max_examples=300)
def test_damaged_archives(draw: st.DataObject) -> None:
    data = bytearray(draw.draw(st.sampled_from([rar5(FILES, folders=("docs",)), rar4(FILES)])))
    for _ in range(draw.draw(st.integers(1, 6))):
        data[draw.draw(st.integers(0, len(data) - 1))] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(data)))
    assert isinstance(archive_members(bytes(data[:cut]), "a.rar"), ArchiveListing)
