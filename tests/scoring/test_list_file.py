"""The white/blacklist file as administrators write it: any bytes load, or stop with a
ConfigError that names the file and line. A Latin-1 byte in it made `check`, `deliver`,
`wbl list` and `lint` fail with "internal error: UnicodeDecodeError" (exit 70)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spamkit.errors import ConfigError
from spamkit.lists import Lists, check_entry

_MESSAGE = b"From: boss@example.com\nTo: alice@example.org\nSubject: hi\n\nsee you\n"


def _spamkit(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "spamkit", *args], input=stdin,
                          capture_output=True, timeout=120)


def test_a_comment_may_hold_any_bytes(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.write_bytes(b"# R\xe9n\xe9's list, from the old server\n"
                      b"white boss@example.com  # le patron \xe9\xff\n\r\nblack *@*.xyz\r\n")
    assert Lists.load(lists).entries == [check_entry("white", "boss@example.com"),
                                         check_entry("black", "*@*.xyz")]


def test_an_entry_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.write_bytes(b"white boss@example.com\n\nblack ren\xe9@example.org\n")
    with pytest.raises(ConfigError, match=rf"^{lists}:3: not UTF-8 text$"):
        Lists.load(lists)
    lists.write_bytes("black rené@example.org\n".encode())  # UTF-8, but not an address pattern
    with pytest.raises(ConfigError, match=rf"^{lists}:1: not an address pattern: 'rené@example.org'"):
        Lists.load(lists)


def test_a_list_file_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    with pytest.raises(ConfigError, match=r"lists: cannot read: Is a directory"):
        Lists.load(tmp_path / "lists")
    assert Lists.load(tmp_path / "missing").empty


@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(
    [b"white *@example.com", b"black *@*.xyz alice", b"#", b"\xe9", b"\r", b"\n", b" ", b"\x00",
     b"\x0c", b"\x85", b"\xc3\xa9", b"white", b"black a@b c@d e"])), max_size=12))
def test_any_bytes_load_or_name_the_line(tmp_path_factory: pytest.TempPathFactory,
                                         pieces: list[bytes]) -> None:
    lists = tmp_path_factory.mktemp("lists") / "lists"
    data = b"".join(pieces)
    lists.write_bytes(data)
    try:
        loaded = Lists.load(lists)
    except ConfigError as error:
        assert str(error).startswith(f"{lists}:")
        line = int(str(error).split(":")[1])
        assert 1 <= line <= len(data.splitlines())
    else:
        assert len(loaded.entries) <= data.count(b"white") + data.count(b"black")


def test_commands_name_the_line_and_deliver_defers(tmp_path: Path) -> None:
    """`check` exits 2 with the line, `deliver` 75 (the MTA keeps the mail), and
    `lint` reports it: none of them says "internal error"."""
    config = tmp_path / "spamkit.toml"
    config.write_text("UseBuiltinRules = false\n")
    (tmp_path / "lists").write_bytes(b"white boss@example.com\nblack spam\xe9r@example.org\n")
    where = f"{tmp_path / 'lists'}:2: not UTF-8 text"
    message = tmp_path / "message.eml"
    message.write_bytes(_MESSAGE)
    assert _spamkit("learn", "--spam", str(message), "--db", str(tmp_path / "db")).returncode == 0
    checked = _spamkit("check", "--config", str(config), "--db", str(tmp_path / "db"), str(message))
    assert checked.returncode == 2 and checked.stderr.decode() == f"spamkit: error: {where}\n"
    listed = _spamkit("wbl", "list", "--config", str(config))
    assert listed.returncode == 2 and where in listed.stderr.decode()
    linted = _spamkit("lint", "--config", str(config))
    assert linted.returncode == 1 and where in linted.stdout.decode() + linted.stderr.decode()
    for folder in ("cur", "new", "tmp"):
        (tmp_path / "alice" / folder).mkdir(parents=True)
    delivered = _spamkit("deliver", "--config", str(config), "--db", str(tmp_path / "db"),
                         "--maildirs", str(tmp_path / "{user}"), "alice", stdin=_MESSAGE)
    assert delivered.returncode == 75 and where in delivered.stderr.decode()
    assert "internal error" not in delivered.stderr.decode()
    assert not any((tmp_path / "alice" / "new").iterdir())


def test_a_changed_list_file_is_read_again_and_a_broken_one_keeps_the_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A running serve or spamd asks `current()` at each message: `spamkit wbl add` held
    there only after a reload, as if the command had not worked."""
    monkeypatch.setattr("spamkit.lists.RECHECK_SECONDS", 0.0)
    path = tmp_path / "lists"
    lists = Lists.load(path, {"white": ["boss@example.com"]})  # (no file yet; one rule file's entry)
    assert lists.current() is lists
    assert Lists.load(path).add(check_entry("black", "*@spam.example"))
    fresh = lists.current()
    assert fresh.entries == [check_entry("black", "*@spam.example")]
    assert fresh.classify(["pills@spam.example"]) == "black" and fresh.classify(["boss@example.com"]) == "white"
    assert fresh.current() is fresh
    path.write_text("black *@spam.example\nblack\n")  # (an editor half way)
    with caplog.at_level("ERROR", logger="spamkit.lists"):
        assert fresh.current() is fresh
        assert fresh.current() is fresh  # (said once)
    assert [r.getMessage() for r in caplog.records] == [
        f"lists: {path}:2: expected 'white|black PATTERN [RECIPIENT]'; the lists read before stay in force"]
    path.unlink()
    assert fresh.current().entries == []
