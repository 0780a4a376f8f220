"""File names in disk images (.iso, .img: ISO 9660, Joliet, UDF) and cabinets (.cab), as
genisoimage, xorriso and gcab write them, checked against what 7-Zip and gcab list; and
never an exception, whatever the bytes."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spamkit.message.diskimages as diskimages
from spamkit.message.archives import HEAD_BYTES, ArchiveListing, archive_members, is_archive, is_image_name
from spamkit.message.diskimages import SECTOR, image_names, is_disk_image

FILES = {"Invoice_2026_March.lnk": "x", "docs/report.dll": "MZ", "readme.txt": "hello",
         "docs/deeper/Übersicht des Jahres 2026.pdf.exe": "MZ", "empty/": ""}
LONG_NAMES = {"Invoice_2026_March.lnk", "docs/report.dll", "readme.txt",
              "docs/deeper/Übersicht des Jahres 2026.pdf.exe"}


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True, timeout=120)


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return root


@functools.cache
def image(*options: str, tool: str = "genisoimage", files: tuple[tuple[str, str], ...] = tuple(FILES.items())) -> bytes:
    """An image of FILES, made by `tool` with `options` (cached: each is made once a run)."""
    with tempfile.TemporaryDirectory() as directory:
        tree = make_tree(Path(directory) / "tree", dict(files))
        command = ["xorriso", "-as", "mkisofs"] if tool == "xorriso" else ["genisoimage"]
        run(*command, "-quiet", *options, "-o", "../out.iso", ".", cwd=tree)
        return (Path(directory) / "out.iso").read_bytes()


def seven_zip_files(data: bytes) -> set[str]:
    """The files (not folders) 7-Zip lists in an image, with / between folders."""
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "a.iso").write_bytes(data)
        listed = run("7zz", "l", "-slt", "a.iso", cwd=Path(directory)).stdout
    files, path = set(), None
    for line in listed.split("\n----------\n", 1)[-1].splitlines():
        if line.startswith("Path = "):
            path = line[len("Path = "):]
        elif line == "Folder = -" and path is not None:
            files.add(path)
    return files


@pytest.mark.parametrize("options,tool", [
    (("-J", "-R"), "genisoimage"),  # ISO 9660 names, Joliet's and Rock Ridge's
    (("-J", "-R", "-udf"), "genisoimage"),  # a UDF bridge: UDF, Joliet and ISO 9660 trees
    (("-J", "-R"), "xorriso"),
    (("-r",), "xorriso"),  # Rock Ridge only: Windows shows the ISO 9660 names
])
def test_images_as_the_tools_make_them(options: tuple[str, ...], tool: str) -> None:
    """Every file 7-Zip lists is named (7-Zip reads one tree: UDF, else Joliet, else
    ISO 9660), and the ISO 9660 tree's names are there too, told by content, whatever
    the attachment is called."""
    data = image(*options, tool=tool)
    assert is_disk_image(data) and not is_archive(data[:HEAD_BYTES])  # (the mark is at 32 KB)
    listing = archive_members(data, "attachment.bin")
    listed = seven_zip_files(data)
    assert listed and listed <= set(listing.names), (listed, listing.names)
    assert listing.facts == frozenset()
    assert any(name.upper().endswith("REPORT.DLL") for name in listing.names)
    if "-J" in options:
        assert LONG_NAMES <= set(listing.names)


def test_the_udf_tree_alone_is_read() -> None:
    """A UDF bridge with its ISO 9660 and Joliet descriptors unreadable: its names still
    come from the UDF tree (which is what Windows shows of an image that has one)."""
    data = bytearray(image("-J", "-R", "-udf"))
    for sector in (16, 17, 18):  # primary, Joliet, terminator
        assert data[sector * SECTOR + 1:sector * SECTOR + 6] == b"CD001"
        data[sector * SECTOR + 1:sector * SECTOR + 6] = b"XX001"
    names, facts = image_names(bytes(data))
    assert set(names) == LONG_NAMES and facts == set()


def test_names_are_suffixed_as_windows_mounts_them() -> None:
    assert is_image_name("invoice.ISO") and is_image_name("a.pdf", "scan.img. ") and is_image_name("x.udf")
    assert not is_image_name("isotope.pdf", "image.png")


def test_loops_caps_and_an_image_with_no_file_system(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(image("-J"))
    # the Joliet root's subdirectory "docs" made to point at the root, which is not read
    # again (nor its own "docs" again, and so on)
    root_at = int.from_bytes(data[17 * SECTOR + 156 + 2:17 * SECTOR + 156 + 6], "little")
    name = "docs".encode("utf-16-be")
    record_at = data.index(bytes([len(name)]) + name, root_at * SECTOR) - 32
    data[record_at + 2:record_at + 6] = root_at.to_bytes(4, "little")
    names, facts = image_names(bytes(data))
    assert "readme.txt" in names and "DOCS/REPORT.DLL" in names and facts == set()
    assert not any(name.startswith("docs/") for name in names)
    monkeypatch.setattr(diskimages, "MAX_MEMBERS", 3)
    names, facts = image_names(image("-J"))
    assert len(names) == 3 and facts == {"cap-archive-members"}
    monkeypatch.undo()
    monkeypatch.setattr(diskimages, "MAX_DIRECTORY_BYTES", 3 * SECTOR)
    assert "cap-archive-members" in image_names(image("-J", "-R", "-udf"))[1]
    monkeypatch.undo()
    blank = bytes(40 * SECTOR)
    assert image_names(blank) == ([], {"archive-unreadable"})
    assert archive_members(blank, "scan.img") == ArchiveListing((), frozenset({"archive-unreadable"}))
    cut = image("-J", "-R", "-udf")[:20 * SECTOR]  # (the directories lie past the cut)
    assert "archive-unreadable" in image_names(cut)[1]


def directory_record(identifier: bytes, flags: int = 0, location: int = 0, length: int = 0) -> bytes:
    """An ISO 9660 directory record (ECMA-119 9.1), its both-endian numbers' little half."""
    record = bytearray(33 + len(identifier) + (1 - len(identifier) % 2))
    record[0], record[25], record[32] = len(record), flags, len(identifier)
    record[2:6], record[10:14] = location.to_bytes(4, "little"), length.to_bytes(4, "little")
    record[33:33 + len(identifier)] = identifier
    return bytes(record)


def test_one_name_repeated_by_the_hundred_thousand_stops_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile directory of 4 MB, 104,448 records that all name A.EXE: one name, and
    the records read stop at the cap, so that a 10 MB one costs no more than its budget."""
    record = directory_record(b"A.EXE;1")
    sector = (record * (SECTOR // len(record))).ljust(SECTOR, b"\0")
    primary = bytearray(SECTOR)
    primary[0], primary[1:6], primary[128:130] = 1, b"CD001", SECTOR.to_bytes(2, "little")
    primary[156:190] = directory_record(b"\0", 0x02, 20, 2048 * SECTOR)
    terminator = b"\xffCD001".ljust(SECTOR, b"\0")
    hostile = bytes(16 * SECTOR) + bytes(primary) + terminator + bytes(2 * SECTOR) + sector * 2048
    assert image_names(hostile) == (["A.EXE"], {"cap-archive-members"})
    monkeypatch.setattr(diskimages, "MAX_RECORDS", 10 ** 9)
    assert image_names(hostile) == (["A.EXE"], set())  # (the whole directory read)


def test_an_empty_image_is_no_damaged_one(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    run("genisoimage", "-quiet", "-J", "-udf", "-o", "empty.iso", "empty", cwd=tmp_path)
    assert image_names((tmp_path / "empty.iso").read_bytes()) == ([], set())


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_damaged_images(draw: st.DataObject) -> None:
    """Bytes of a real UDF bridge changed where its descriptors and directories lie, or
    the image cut anywhere: a listing, at worst unreadable, never an exception."""
    data = bytearray(image("-J", "-R", "-udf"))
    for _ in range(draw.draw(st.integers(1, 8))):
        sector = draw.draw(st.sampled_from([*range(16, 40), *range(256, 300)]))
        data[sector * SECTOR + draw.draw(st.integers(0, SECTOR - 1))] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(16 * SECTOR, len(data)))
    assert isinstance(archive_members(bytes(data[:cut]), "a.iso"), ArchiveListing)


@pytest.mark.parametrize("options", [[], ["-z"]])
def test_cabinets_as_gcab_makes_them(tmp_path: Path, options: list[str]) -> None:
    """Windows opens a .cab as a folder. Its names are as gcab lists them (with
    Windows' backslashes, which the check reads as folders), packed or not."""
    make_tree(tmp_path, FILES)
    files = sorted(name for name in FILES if not name.endswith("/"))
    run("gcab", "-c", *options, "a.cab", *files, cwd=tmp_path)
    data = (tmp_path / "a.cab").read_bytes()
    listed = [line.split(" ")[0] for line in run("gcab", "-l", "a.cab", cwd=tmp_path).stdout.splitlines()]
    assert is_archive(data[:HEAD_BYTES])
    listing = archive_members(data, "a.cab")
    assert [name.split(" ")[0] for name in listing.names] == listed
    assert set(listing.names) == {name.replace("/", "\\") for name in files} and listing.facts == frozenset()
    files_at = int.from_bytes(data[16:20], "little")
    for cut in (8, 30, files_at + 20):  # in the header; in the first file's name
        assert archive_members(data[:cut], "a.cab") == ArchiveListing((), frozenset({"archive-unreadable"}))
    first_name_ends = data.index(b"\0", files_at + 16)
    assert archive_members(data[:first_name_ends + 20], "a.cab") == \
        ArchiveListing((listing.names[0],), frozenset({"archive-unreadable"}))


@given(st.binary(max_size=4096))
def test_any_bytes(data: bytes) -> None:
    for head in (bytes(16 * SECTOR) + b"\x01CD001\x01", bytes(16 * SECTOR) + b"\x00BEA01\x01", b"MSCF\0\0\0\0"):
        archive_members(head + data, "a.iso")
