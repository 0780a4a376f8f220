"""What `spamkit learn` and `check` read from their PATH arguments, and what they refuse.

A bad entry (a link, a FIFO, an oversized or unreadable file) is reported with its
reason and never stops the others; nothing is followed out of the directory given.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spamkit import sources
from spamkit.sources import LINK_NOT_FOLLOWED, MAX_FILE_BYTES, iter_messages

MESSAGE = b"From: a@example.com\nSubject: hi\n\nbody\n"


def _by_name(paths: list[str]) -> dict[str, tuple[bytes | None, str | None]]:
    return {Path(item.name).name: (item.data, item.error) for item in iter_messages(paths)}


def test_a_directory_of_files_with_bad_entries(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "1.msg").write_bytes(MESSAGE)
    (folder / "2.empty").write_bytes(b"")
    (folder / ".hidden").write_bytes(MESSAGE)
    (folder / "3.link").symlink_to(folder / "1.msg")
    os.mkfifo(folder / "4.fifo")  # opening it must not block
    with open(folder / "5.big", "wb") as big:
        big.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    (folder / "sub").mkdir()
    (folder / "sub" / "6.msg").write_bytes(MESSAGE * 2)

    found = _by_name([str(folder)])

    assert found["1.msg"] == (MESSAGE, None)
    assert found["2.empty"] == (b"", None)
    assert ".hidden" not in found
    assert found["3.link"] == (None, LINK_NOT_FOLLOWED)
    assert found["4.fifo"] == (None, "not a regular file")
    assert found["5.big"] == (None, f"larger than {MAX_FILE_BYTES >> 20} MiB")
    assert found["6.msg"] == (MESSAGE * 2, None)


def test_links_inside_a_directory_are_reported_and_links_named_are_followed(tmp_path: Path) -> None:
    """Nothing outside the directories given is read: a link in one to a directory
    elsewhere, or to a parent (which would loop), is reported, like a link to a file, in
    a Maildir too. A link named on the command line is what the admin asked for."""
    outside, mail, maildir = tmp_path / "outside", tmp_path / "mail", tmp_path / "maildir"
    for folder in (outside, mail, maildir / "cur", maildir / "new"):
        folder.mkdir(parents=True)
    (outside / "secret.msg").write_bytes(MESSAGE)
    (mail / "1.msg").write_bytes(MESSAGE)
    (mail / "escape").symlink_to(outside)
    (mail / "loop").symlink_to(tmp_path)
    (maildir / "cur" / "a:2,S").symlink_to(outside / "secret.msg")
    (tmp_path / "named").symlink_to(outside / "secret.msg")

    items = list(iter_messages([str(mail), str(maildir), str(tmp_path / "named")]))

    assert [(Path(i.name).name, i.data, i.error) for i in items] == [
        ("1.msg", MESSAGE, None), ("escape", None, LINK_NOT_FOLLOWED), ("loop", None, LINK_NOT_FOLLOWED),
        ("a:2,S", None, LINK_NOT_FOLLOWED), ("named", MESSAGE, None)]
    # an entry listed as a directory or a file that is a link by the time it is read
    for link in (mail / "escape", tmp_path / "named"):
        assert [(i.data, i.error) for i in sources._iter_path(link, named=False)] == [(None, LINK_NOT_FOLLOWED)]


def test_a_maildir_reads_cur_and_new_only(tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "cur" / "a:2,S").write_bytes(MESSAGE)
    (tmp_path / "new" / "b").write_bytes(MESSAGE)
    (tmp_path / "tmp" / "c").write_bytes(MESSAGE)  # still being delivered
    assert sorted(_by_name([str(tmp_path)])) == ["a:2,S", "b"]


def test_missing_and_unreadable_paths_are_reported(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.write_bytes(MESSAGE)
    locked.chmod(0)
    found = _by_name([str(tmp_path / "absent"), str(locked)])
    assert found["absent"][0] is None and "No such file" in str(found["absent"][1])
    if os.geteuid() != 0:  # root reads it anyway
        assert found["locked"][0] is None and "Permission denied" in str(found["locked"][1])


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 70_000, 1 << 20])
def test_whole_file_read_at_any_size(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    (tmp_path / "m").write_bytes(data)
    assert _by_name([str(tmp_path / "m")])["m"] == (data, None)


def test_an_mbox_file_is_split(tmp_path: Path) -> None:
    mbox = (b"From a@example.com Mon Sep  9 12:21:16 2002\n" + MESSAGE
            + b"From b@example.com Tue Sep 10 12:21:16 2002\n" + MESSAGE)
    (tmp_path / "box").write_bytes(mbox)
    items = list(iter_messages([str(tmp_path / "box")]))
    assert [item.name.rsplit("#", 1)[1] for item in items] == ["1", "2"]
    assert all(item.data and item.data.endswith(MESSAGE) for item in items)


def test_an_mbox_larger_than_the_file_cap_is_read_a_message_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An mbox archive over MAX_FILE_BYTES is split as it is read, each message as a
    small mbox's would be; a message over the cap is reported, the rest still read. A
    large file that only starts like an mbox is one message too large."""
    messages = [b"Subject: one\n\nbody\n>From the start\n", b"Subject: two\n\n" + b"x" * 5000 + b"\n",
                b"Subject: three\n\nlast\n"]
    mbox = b"".join(b"From a@example.com Mon Sep  9 12:21:16 2002\n" + m for m in messages)
    (tmp_path / "box").write_bytes(mbox)
    small = [(i.name, i.data, i.error) for i in iter_messages([str(tmp_path / "box")])]
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 4096)
    streamed = [(i.name, i.data, i.error) for i in iter_messages([str(tmp_path / "box")])]
    assert streamed[0] == small[0] and streamed[2] == small[2]
    assert streamed[0][1] is not None and streamed[0][1].endswith(b"body\nFrom the start\n")
    assert streamed[1] == (f"{tmp_path / 'box'}#2", None, "larger than 0 MiB")
    (tmp_path / "big").write_bytes(b"From nobody in particular\n" + b"y" * 5000)
    assert [(i.data, i.error) for i in iter_messages([str(tmp_path / "big")])] == [(None, "larger than 0 MiB")]


class _Stdin:
    """What iter_messages reads for "-": standard input's bytes."""

    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BufferedReader(io.BytesIO(data), 7)  # (small reads, as from a pipe)


def test_stdin_is_read_as_a_file_is_and_a_long_mbox_a_message_at_a_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`-` (a message or an mbox piped in) was read whole, however long. It is now read
    as a file: whole up to MAX_FILE_BYTES, a longer mbox split as it streams in (the
    same messages as when it is read whole), anything else longer reported too large."""
    messages = [b"Subject: one\n\nbody\n>From the start\n", b"Subject: two\n\n" + b"x" * 5000 + b"\n",
                b"Subject: three\n\nlast\n"]
    mbox = b"".join(b"From a@example.com Mon Sep  9 12:21:16 2002\n" + m for m in messages)
    monkeypatch.setattr("sys.stdin", _Stdin(mbox))
    whole = [(i.name, i.data, i.error) for i in iter_messages(["-"])]
    assert [name for name, _, _ in whole] == ["-#1", "-#2", "-#3"]
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 4096)
    monkeypatch.setattr("sys.stdin", _Stdin(mbox))
    streamed = [(i.name, i.data, i.error) for i in iter_messages(["-"])]
    assert streamed[0] == whole[0] and streamed[2] == whole[2]
    assert streamed[1] == ("-#2", None, "larger than 0 MiB")
    monkeypatch.setattr("sys.stdin", _Stdin(MESSAGE))
    assert [(i.name, i.data) for i in iter_messages(["-"])] == [("-", MESSAGE)]
    monkeypatch.setattr("sys.stdin", _Stdin(MESSAGE + b"y" * 5000))
    assert [(i.data, i.error) for i in iter_messages(["-"])] == [(None, "larger than 0 MiB")]


def test_a_long_mbox_on_stdin_is_learned_in_bounded_memory(tmp_path: Path) -> None:
    """An mbox of 80 messages of 2 MB piped to `spamkit learn --spam -` peaks within 30
    MiB of one of 20 (before, stdin was read whole: 120 MiB more)."""
    import sys

    from tests.peak_memory import run_measured
    from tests.trainer.test_sweep_maildir import large_spam

    env = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
    peaks = {}
    for count in (20, 80):
        box = tmp_path / f"box{count}"
        with open(box, "wb") as out:
            for data in large_spam(count, seed=count):
                out.write(b"From spam@example.net Mon Sep  9 12:21:16 2002\n" + data + b"\n")
        done, peaks[count] = run_measured(["sh", "-c", f"{sys.executable} -m spamkit learn --spam - "
                                           f"--db {tmp_path / f'db{count}'} --json < {box}"], env)
        assert done.returncode == 0, done.stderr
        assert '"learned": %d,' % count in done.stdout
    assert peaks[80] - peaks[20] < 30, peaks

