"""Member names of zip attachments: read from the directory, nothing unpacked but a
small zip inside a zip, and never an exception."""

from __future__ import annotations

import functools
import io
import struct
import subprocess
import tempfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import spamkit.message.archives as archives
from spamkit.message.archives import (HEAD_BYTES, MAX_MEMBERS, MESSAGE_UNPACK_BYTES, NESTED_BYTES, NESTED_RATIO, ArchiveListing,
                                      UnpackBudget, archive_members, is_archive, is_zip, is_zip_name, zip_members)


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
    inner = zip_of({"a.exe": b"MZ" * 1000})
    outer = zip_of({"inner.zip": inner})
    stored = zip_of({"inner.zip": inner}, method=zipfile.ZIP_STORED)
    assert zip_members(outer).names == zip_members(stored).names == ("inner.zip", "inner.zip/a.exe")
    monkeypatch.setattr(archives, "NESTED_BYTES", len(inner) - 1)
    assert zip_members(outer).names == ("inner.zip",)
    # an inner zip stored unpacked shows its local headers, read whatever its size
    assert zip_members(stored).names == ("inner.zip", "a.exe")
    assert NESTED_BYTES == 10 << 20


def test_member_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_MEMBERS", 3)
    listing = zip_members(zip_of({f"f{i}.txt": b"" for i in range(5)}))
    assert listing.names == ("f0.txt", "f1.txt", "f2.txt") and "cap-archive-members" in listing.facts


def test_damaged_archives_are_unreadable_not_errors() -> None:
    """A zip whose directory is cut off or damaged is unreadable to Python and Windows,
    but 7-Zip reads its local headers; their names count."""
    whole = zip_of({"a.exe": b"MZ" * 100})
    for damaged, names in ((b"PK\x03\x04garbage", ()), (b"", ()), (whole[: len(whole) // 2], ("a.exe",)),
                           (whole.replace(b"PK\x01\x02", b"PK\x01\x03"), ("a.exe",))):
        listing = zip_members(damaged)
        assert listing.names == names and listing.facts == {"archive-unreadable"}


def seven_zip_lists(data: bytes, name: str) -> list[str]:
    """The paths 7-Zip lists in an archive (its errors and warnings aside)."""
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / name).write_bytes(data)
        listed = subprocess.run(["7zz", "l", "-slt", name], cwd=directory, capture_output=True, text=True,
                                timeout=60).stdout
    return [line[len("Path = "):] for line in listed.splitlines() if line.startswith("Path = ")][1:]


def test_two_zips_one_after_the_other_show_both() -> None:
    """`cat a.zip b.zip`: Windows and Python read b's directory at the end, 7-Zip reads
    a from the start (Perception Point, November 2024). Both sets of names count."""
    first, second = zip_of({"invoice.exe": b"MZ" * 50}), zip_of({"invoice.pdf": b"%PDF"})
    assert zipfile.ZipFile(io.BytesIO(first + second)).namelist() == ["invoice.pdf"]
    assert seven_zip_lists(first + second, "a.zip") == ["invoice.exe"]
    cut = zip_of({"a.exe": b"MZ" * 100, "b.txt": b"hi"})
    cut = cut[:cut.index(b"PK\x01\x02")]  # the directory gone: 7-Zip still lists both
    assert seven_zip_lists(cut, "cut.zip") == ["a.exe", "b.txt"] == list(zip_members(cut).names)
    listing = zip_members(first + second)
    assert listing.names == ("invoice.pdf", "invoice.exe") and listing.facts == frozenset()
    locked = bytearray(zip_of({"a.exe": b"MZ"}))
    locked[6] |= 0x1  # the local header's encrypted flag; the directory's end record cut off below
    assert zip_members(bytes(locked[:-22])).facts == {"archive-unreadable", "archive-encrypted"}


def run(*command: str | Path, cwd: Path) -> None:
    subprocess.run([str(part) for part in command], cwd=cwd, check=True, capture_output=True, timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Files to archive: a script in a folder, a document, an empty file and folder."""
    root = tmp_path / "invoice"
    (root / "scripts").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "scripts" / "run.js").write_text("WScript.Echo(1)")
    (root / "invoice.pdf").write_bytes(b"%PDF-1.4" + bytes(range(256)) * 40)
    (root / "naïve.txt").write_text("")
    return tmp_path


TREE_NAMES = {"invoice", "invoice/scripts", "invoice/empty", "invoice/scripts/run.js",
              "invoice/invoice.pdf", "invoice/naïve.txt"}


@pytest.mark.parametrize("options", [[], ["-mx0"], ["-m0=lzma2", "-mhc=off"], ["-m0=PPMd", "-ms=off"],
                                     ["-pSecret"]])
def test_7z_names_are_read_from_its_header(tree: Path, options: list[str]) -> None:
    """Archives 7-Zip itself made (its header LZMA-packed by default, stored with
    -mhc=off), read as 7-Zip lists them; files encrypted with a password are named and
    said to be encrypted."""
    run("7zz", "a", "-bd", *options, "a.7z", "invoice", cwd=tree)
    data = (tree / "a.7z").read_bytes()
    assert is_archive(data[:HEAD_BYTES])
    listing = archive_members(data, "a.7z")
    assert set(listing.names) == TREE_NAMES and len(listing.names) == len(TREE_NAMES)
    assert listing.facts == ({"archive-encrypted"} if "-pSecret" in options else frozenset())


def test_7z_with_its_names_encrypted_is_said_to_be(tree: Path) -> None:
    run("7zz", "a", "-bd", "-pSecret", "-mhe=on", "a.7z", "invoice", cwd=tree)
    listing = archive_members((tree / "a.7z").read_bytes(), "a.7z")
    assert listing.names == () and listing.facts == {"archive-encrypted", "archive-unreadable"}


def test_7z_of_thousands_of_files_lists_what_7zip_lists(tmp_path: Path) -> None:
    for index in range(3000):
        folder = tmp_path / "src" / f"d{index % 37}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.{'js' if index % 5 else 'txt'}").write_bytes(b"x" * (index % 3))
    run("7zz", "a", "-bd", "-mx9", "big.7z", "src", cwd=tmp_path)
    listed = subprocess.run(["7zz", "l", "-slt", "big.7z"], cwd=tmp_path, capture_output=True, text=True,
                            check=True).stdout
    expected = [line[len("Path = "):] for line in listed.splitlines() if line.startswith("Path = ")][1:]
    listing = archive_members((tmp_path / "big.7z").read_bytes(), "big.7z")
    assert len(expected) == 3000 + 37 + 1 and sorted(listing.names) == sorted(expected)
    assert listing.facts == frozenset()


def test_a_7z_of_more_files_than_the_cap_is_said_to_be(tmp_path: Path) -> None:
    """41,000 empty files: more than MAX_MEMBERS, as a zip of as many is (and refused as
    uncheckable by the filter). It was once read as damaged, and so let through."""
    (tmp_path / "src").mkdir()
    for index in range(41_000):
        (tmp_path / "src" / f"f{index}.txt").touch()
    run("7zz", "a", "-bd", "many.7z", "src", cwd=tmp_path)
    listing = archive_members((tmp_path / "many.7z").read_bytes(), "many.7z")
    assert len(listing.names) == MAX_MEMBERS and listing.facts == {"cap-archive-members"}


@pytest.mark.parametrize("command, name", [(["tar", "cf"], "a.tar"), (["tar", "czf"], "a.tar.gz"),
                                           (["tar", "cjf"], "a.tbz2"), (["tar", "cJf"], "a.txz")])
def test_tar_names_plain_or_packed(tree: Path, command: list[str], name: str) -> None:
    run(*command, name, "invoice", cwd=tree)
    data = (tree / name).read_bytes()
    listing = archive_members(data, name)
    if name != "a.tar":  # the tar inside, then its members under its name
        assert listing.names[0] == "a.tar" and all(n.startswith("a.tar/") for n in listing.names[1:])
    members = listing.names if name == "a.tar" else tuple(n.removeprefix("a.tar/") for n in listing.names[1:])
    assert set(members) == TREE_NAMES and len(members) == len(TREE_NAMES)
    assert listing.facts == frozenset() and is_archive(data[:HEAD_BYTES])


@pytest.mark.parametrize("command, name, inner", [
    (["gzip", "-c"], "x.gz", "run.js"),  # gzip records the name: the attachment's does not matter
    (["gzip", "-n", "-c"], "run.js.gz", "run.js"),  # no name recorded: the attachment's, less .gz
    (["gzip", "-n", "-c"], "run.gz", "run"),
    (["bzip2", "-c"], "run.js.bz2", "run.js"), (["xz", "-c"], "Run.JS.XZ", "Run.JS")])
def test_a_file_compressed_alone_is_named(tree: Path, command: list[str], name: str, inner: str) -> None:
    script = tree / "invoice" / "scripts" / "run.js"
    (tree / name).write_bytes(subprocess.run([*command, str(script)], capture_output=True, check=True).stdout)
    assert archive_members((tree / name).read_bytes(), name) == ArchiveListing((inner,), frozenset())


def test_a_compressed_bomb_is_unpacked_only_to_the_cap(tmp_path: Path) -> None:
    """100 MB of zeros, gzipped to about 100 KB: unpacked no further than NESTED_BYTES,
    nor past NESTED_RATIO times its size, and said to be."""
    import gzip

    bomb = gzip.compress(bytes(100 << 20), compresslevel=9, mtime=0)
    tracemalloc.start()
    try:
        listing = archive_members(bomb, "zeros.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert listing == ArchiveListing(("zeros",), frozenset({"archive-nested-unread"}))
    assert peak < 3 * NESTED_RATIO * max(len(bomb), 1024), peak


def test_one_messages_archives_share_one_unpacking_budget(tree: Path) -> None:
    """A message of many small bombs: each is capped, and so is their sum (a 15 MB
    message could otherwise unpack over a gigabyte). Past the budget a stream is not
    unpacked further; what its header names still counts."""
    run("tar", "czf", "a.tar.gz", "invoice", cwd=tree)
    data = (tree / "a.tar.gz").read_bytes()
    size = len(zlib.decompress(data, 31))
    budget = UnpackBudget(remaining=size + size // 2)
    first, second, third = (archive_members(data, "a.tar.gz", budget) for _ in range(3))
    assert len(first.names) == 1 + len(TREE_NAMES) and first.facts == frozenset()
    assert "archive-nested-unread" in second.facts and len(second.names) < len(first.names)
    assert third == ArchiveListing(("a.tar",), frozenset({"archive-nested-unread"}))
    assert budget.remaining == 0 and UnpackBudget().remaining == MESSAGE_UNPACK_BYTES == 32 << 20


@given(st.binary(max_size=2048))
def test_any_bytes(data: bytes) -> None:
    zip_members(b"PK\x03\x04" + data)
    zip_members(zip_of({"a.zip": data}))
    for head in (b"7z\xbc\xaf\x27\x1c", b"\x1f\x8b\x08", b"BZh", b"\xfd7zXZ\x00", bytes(257) + b"ustar"):
        archive_members(head + data, "a.tar.gz")


@functools.cache
def seven_zip() -> bytes:
    """A small 7z with a packed header, as 7-Zip writes one."""
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "a.js").write_text("x")
        (Path(directory) / "b.txt").write_text("y" * 100)
        run("7zz", "a", "-bd", "a.7z", "a.js", "b.txt", cwd=Path(directory))
        return (Path(directory) / "a.7z").read_bytes()


@given(st.data())
def test_damaged_7z_headers(draw: st.DataObject) -> None:
    """Any byte of a real 7z changed, or the file cut anywhere: unreadable at worst."""
    data = bytearray(seven_zip())
    for _ in range(draw.draw(st.integers(1, 4))):
        data[draw.draw(st.integers(0, len(data) - 1))] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(data)))
    assert isinstance(archive_members(bytes(data[:cut]), "a.7z"), ArchiveListing)
