"""Files administrators write by hand, as Windows editors save them: a UTF-8 byte-order
mark first, CRLF line ends, or UTF-16. Before spamkit/textfile.py, a configuration saved
by Notepad was refused ("Invalid statement" on line 1, where the administrator sees a
good line), and a rule file's first rule was silently skipped. `wbl add` and `wbl remove`
rewrote the list file from its entries, dropping every comment the administrator wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smtpfilter.plugins.disclaimer import read_text_file
from spamkit.config.loader import load_config, set_option, unset_option
from spamkit.errors import ConfigError
from spamkit.lists import Lists, check_entry
from spamkit.rules import load_rules
from trainer.accounts import load_accounts

BOM = b"\xef\xbb\xbf"


def test_a_configuration_saved_with_a_byte_order_mark_and_crlf_loads_and_can_be_changed(
        tmp_path: Path) -> None:
    path = tmp_path / "spamkit.toml"
    path.write_bytes(BOM + b'Sensitivity = "custom"\r\nTagLevel = 4\r\n\r\n[user.alice]\r\nSortSpam = false\r\n')
    config = load_config(path, environ={})
    assert config["Sensitivity"] == "custom" and config["TagLevel"] == 4
    assert config.origins["Sensitivity"] == f"{path}:1"
    assert config.for_user("alice")["SortSpam"] is False
    # `config set` finds the first line's option (it did not see it behind the mark, and a
    # second Sensitivity line would have made the file one TOML refuses)
    set_option(path, "Sensitivity", "high")
    assert path.read_bytes().count(b"Sensitivity") == 1
    assert load_config(path, environ={})["Sensitivity"] == "high"
    path.write_bytes(BOM + b"TagLevel = 4\r\n")
    assert unset_option(path, "TagLevel")
    assert load_config(path, environ={}).origins["TagLevel"] == "default"


def test_a_configuration_saved_as_utf16_says_how_to_save_it(tmp_path: Path) -> None:
    path = tmp_path / "spamkit.toml"
    path.write_bytes('TagLevel = 4\r\n'.encode("utf-16"))
    with pytest.raises(ConfigError, match=rf"^{path}: saved as UTF-16 .*: save it as UTF-8$"):
        load_config(path, environ={})
    result = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--config", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "saved as UTF-16" in result.stderr


def test_a_list_file_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "lists"
    path.write_bytes(BOM + b"black spammer@bad.example\r\nwhite *@good.example\r\n")
    assert Lists.load(path).entries == [check_entry("black", "spammer@bad.example"),
                                        check_entry("white", "*@good.example")]
    path.write_bytes("white *@good.example\n".encode("utf-16"))
    with pytest.raises(ConfigError, match="saved as UTF-16"):
        Lists.load(path)


def test_wbl_add_and_remove_keep_the_administrators_lines_as_written(tmp_path: Path) -> None:
    path = tmp_path / "lists"
    written = (BOM + b"# R\xe9n\xe9's list, from the old server\r\n"
               b"black spammer@bad.example   # ticket 12\r\n"
               b"\r\n"
               b"white boss@example.com\r\n"
               b"white  BOSS@example.com  # again, for alice\r\n"
               b"white friend@good.example alice\r\n")
    path.write_bytes(written)
    lists = Lists.load(path)
    assert lists.add(check_entry("black", "*@*.xyz"))
    assert path.read_bytes() == written + b"black *@*.xyz\r\n"
    assert lists.remove(check_entry("white", "boss@example.com"))  # both of its lines
    assert path.read_bytes() == (BOM + b"# R\xe9n\xe9's list, from the old server\r\n"
                                 b"black spammer@bad.example   # ticket 12\r\n"
                                 b"\r\n"
                                 b"white friend@good.example alice\r\n"
                                 b"black *@*.xyz\r\n")
    assert Lists.load(path).entries == lists.entries == [
        check_entry("black", "spammer@bad.example"), check_entry("white", "friend@good.example", "alice"),
        check_entry("black", "*@*.xyz")]
    assert not lists.remove(check_entry("white", "boss@example.com"))


def test_wbl_add_ends_a_last_line_that_has_no_end_and_starts_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "lists"
    path.write_bytes(b"black spammer@bad.example")
    assert Lists.load(path).add(check_entry("white", "boss@example.com"))
    assert path.read_bytes() == b"black spammer@bad.example\nwhite boss@example.com\n"
    fresh = tmp_path / "new" / "lists"
    assert Lists.load(fresh).add(check_entry("white", "boss@example.com"))
    assert fresh.read_text().splitlines()[1:] == ["white boss@example.com"]
    assert fresh.read_text().startswith("#")


def test_a_rule_file_with_a_byte_order_mark_keeps_its_first_rule(tmp_path: Path) -> None:
    path = tmp_path / "local.cf"
    path.write_bytes(BOM + b"header LOCAL_HELLO Subject =~ /hello/\r\nscore LOCAL_HELLO 3.5\r\n")
    ruleset = load_rules([path], builtin=False)
    assert not ruleset.report.errors
    assert ruleset.rules["LOCAL_HELLO"].scores == (3.5, 3.5, 3.5, 3.5)
    path.write_bytes("header LOCAL_HELLO Subject =~ /hello/\r\n".encode("utf-16"))
    ruleset = load_rules([path], builtin=False)
    assert ruleset.report.errors == [f"{path}: saved as UTF-16 (Windows editors call it \"Unicode\"): "
                                     "save it as UTF-8"]


def test_an_accounts_file_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_bytes(BOM + b'[[account]]\r\nuser = "alice"\r\npassword = "s3cret"\r\nhost = "imap.example.org"\r\n')
    path.chmod(0o600)
    assert [account.user for account in load_accounts(path)] == ["alice"]
    path.write_bytes(b'[[account]]\nuser = "al\xe9"\n')
    with pytest.raises(ConfigError, match=rf"^{path}:2: not UTF-8 text$"):
        load_accounts(path)


@pytest.mark.parametrize("data", [BOM + "Sent from Ré's office\r\n".encode(),
                                  "Sent from Ré's office\r\n".encode("utf-16"),
                                  "Sent from Ré's office\r\n".encode("cp1252")])
def test_a_disclaimer_is_its_text_whatever_the_editor_saved(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "disclaimer"
    path.write_bytes(data)
    assert read_text_file(path) == "Sent from Ré's office\r\n"
