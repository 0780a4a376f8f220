"""The files in a TNEF attachment (winmail.dat), as Debian's `tnef` (verdammelt/tnef)
lists them: each stream, written byte by byte in tests/engine/tneffiles.py, is read by
that program first, and spamkit must find the same names."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from spamkit.message import ParseLimits, list_attachments
from spamkit.message.tnef import tnef_files
from tests.engine.tneffiles import (
    ATTACHMENT,
    PR_ATTACH_FILENAME,
    PR_ATTACH_LONG_FILENAME,
    attached_message,
    attachment,
    attribute,
    long,
    named_string,
    properties,
    stream,
    string8,
    unicode,
)

assert shutil.which("tnef"), "Debian's tnef is missing: scripts/install-test-deps.sh installs it"


def listed_by_tnef(data: bytes, tmp_path: Path, codepage: str = "utf-8") -> list[str]:
    """The names `tnef --list` gives (the name it saves each file under, before "|"). It
    writes a Unicode name in UTF-8, and an 8-bit one as the bytes the stream has."""
    path = tmp_path / "winmail.dat"
    path.write_bytes(data)
    done = subprocess.run(["tnef", "--list", "--file", str(path)], capture_output=True, timeout=60, check=True)
    return [line.split(b"\t|", 1)[0].decode(codepage) for line in done.stdout.splitlines()]


def saved_by_tnef(data: bytes, tmp_path: Path) -> dict[str, bytes]:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "w.dat").write_bytes(data)
    subprocess.run(["tnef", "--file", str(tmp_path / "w.dat"), "--directory", str(out)], capture_output=True,
                   timeout=60, check=True)
    return {path.name: path.read_bytes() for path in out.iterdir()}


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


OUTLOOK = stream(
    attachment("INVOIC~1.EXE", b"MZ" + bytes(200), string8(PR_ATTACH_FILENAME, "INVOIC~1.EXE"),
               unicode(PR_ATTACH_LONG_FILENAME, "Rechnung März – 2026.pdf.exe"), named_string("x-tag", "v")),
    attachment("REPORT~1.ZIP", _zip({"report/run.js": b"x"}), string8(PR_ATTACH_LONG_FILENAME, "report 2026.zip")),
    attachment("NOTES.TXT", b"notes"),  # an old client's: the 8.3 title alone
)


def test_the_names_tnef_gives(tmp_path: Path) -> None:
    files, facts = tnef_files(OUTLOOK)
    assert facts == set()
    assert [file.names[0] for file in files] == listed_by_tnef(OUTLOOK, tmp_path) == [
        "Rechnung März – 2026.pdf.exe", "report 2026.zip", "NOTES.TXT"]
    assert files[0].names == ["Rechnung März – 2026.pdf.exe", "INVOIC~1.EXE"]
    saved = saved_by_tnef(OUTLOOK, tmp_path)
    assert {file.names[0]: file.data for file in files} == saved


def test_a_code_page_and_an_attached_message(tmp_path: Path) -> None:
    """8-bit names are in the stream's code page (here Cyrillic, 1251); a message attached
    to the message is itself TNEF, which `tnef` saves whole and spamkit reads too."""
    inner = stream(attachment("SCRIPT.JS", b"x=1", string8(PR_ATTACH_LONG_FILENAME, "счёт.js", "cp1251")),
                   codepage=1251)
    data = stream(attachment("A.PDF", b"%PDF", string8(PR_ATTACH_LONG_FILENAME, "договор.pdf", "cp1251")),
                  attached_message("Fwd: invoice", inner), codepage=1251)
    files, facts = tnef_files(data)
    assert [file.names[0] for file in files] == ["договор.pdf", "Fwd: invoice", "счёт.js"]
    assert listed_by_tnef(data, tmp_path, "cp1251") == ["договор.pdf", "Fwd: invoice"]
    saved = saved_by_tnef(data, tmp_path)["Fwd%3A invoice"]
    assert listed_by_tnef(saved[16:], tmp_path, "cp1251") == ["счёт.js"]  # past the object's interface id
    assert facts == set()


def test_in_a_message_every_file_is_an_attachment(tmp_path: Path) -> None:
    part = base64.encodebytes(OUTLOOK).replace(b"\n", b"\r\n")
    message = (b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
               b"Content-Type: text/plain\r\n\r\nsee\r\n--b\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + part + b"--b--\r\n")
    listing = list_attachments(message, ParseLimits())
    assert [(a.filename, a.other_names, a.members) for a in listing.attachments] == [
        ("winmail.dat", (), ()),
        ("Rechnung März – 2026.pdf.exe", ("INVOIC~1.EXE",), ()),
        ("report 2026.zip", ("REPORT~1.ZIP",), ("report/run.js",)),
        ("NOTES.TXT", (), ())]
    unnamed = message.replace(b"application/ms-tnef; name=winmail.dat", b"application/octet-stream")
    assert [a.filename for a in list_attachments(unnamed, ParseLimits()).attachments][1:] == [
        "Rechnung März – 2026.pdf.exe", "report 2026.zip", "NOTES.TXT"]  # told by its first bytes


def test_damage_keeps_what_was_read_and_caps_hold() -> None:
    cut = OUTLOOK[:OUTLOOK.index(b"REPORT~1.ZIP") + 3]
    files, facts = tnef_files(cut)
    assert facts == {"archive-unreadable"} and files[0].names[0] == "Rechnung März – 2026.pdf.exe"
    damaged_after_the_name = stream(attachment("REPORT.TXT", b"MZ", string8(PR_ATTACH_LONG_FILENAME, "report.exe"),
                                               b"\x00\x00\x01\x00"))  # a property of no known type
    files, facts = tnef_files(damaged_after_the_name)
    assert facts == {"archive-unreadable"} and files[0].names == ["report.exe", "REPORT.TXT"]
    many = stream(*(attachment(f"F{n}.TXT", b"") for n in range(10_001)))
    files, facts = tnef_files(many)
    assert facts == {"cap-tnef-files"} and len(files) == 10_000
    crowded = properties(*(long(0x1000 + n % 0x6000, n) for n in range(70_000)))
    assert tnef_files(stream(*(attribute(ATTACHMENT, 0x00069005, crowded) for _ in range(3))))[1] == {"cap-tnef-files"}
    nested = b""
    for _ in range(8):
        nested = stream(attached_message("FWD", nested) if nested else attachment("A.JS", b"x"))
    assert "archive-nested-unread" in tnef_files(nested)[1]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000) | st.builds(lambda cut, junk: OUTLOOK[:cut] + junk,
                                             st.integers(0, len(OUTLOOK)), st.binary(max_size=40)))
def test_any_bytes_never_raise(data: bytes) -> None:
    files, facts = tnef_files(b"\x78\x9f\x3e\x22\x00\x00" + data)
    assert facts <= {"archive-unreadable", "cap-tnef-files", "archive-nested-unread"}
    assert len(files) <= 10_000
