"""The IMAP accounts file: a mistake names the line and the key before any server is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from spamkit.errors import ConfigError
from trainer.accounts import ImapAccount, load_accounts

GOOD = '[[account]]\nuser = "alice@example.org"\npassword = "s3cret"\nhost = "imap.example.org"\n\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_defaults_follow_the_security(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + GOOD.replace("alice", "bob") + 'security = "starttls"\ntrash = "Junk/Bin"\n')
    assert load_accounts(path) == [
        ImapAccount("alice@example.org", "s3cret", "imap.example.org", 993),
        ImapAccount("bob@example.org", "s3cret", "imap.example.org", 143, "starttls", trash="Junk/Bin")]


@pytest.mark.parametrize("extra, where, words", [
    # each of these once ended in "internal error: ValueError/TypeError", was taken as a
    # default in silence (a misspelt key; verify = "no" read as true), or reached the server;
    # a key after a blank line was said to be on the blank line (line 10, not 11)
    ('port = "imap"\n', ":11: account 2", "port: must be a port number (1-65535), not 'imap'"),
    ('port = 99999\n', ":11: account 2", "port: must be a port number"),
    ('pasword = "x"\n', ":11: account 2", "unknown key 'pasword'; did you mean password?"),
    ('verify = "no"\n', ":11: account 2", "verify: must be true or false, not 'no'"),
    ('security = "ssl"\n', ":11: account 2", "security: must be none, starttls or tls"),
    ('trash = "INBOX"\n', ":11: account 2", "trash: INBOX is the user's inbox"),
    ('trash = "../x"\n', ":11: account 2", "is not a folder name"),
    ('ca_file = "/nonexistent/ca.pem"\n', ":11: account 2", "ca_file: '/nonexistent/ca.pem' is not a file"),
    ('host = ""\n', ":9: account 2", "host: must be text, not empty"),
    ('user = 1042\n', ":7: account 2", "user: must be text (in quotes), not 1042"),
])
def test_a_mistake_names_the_line_the_account_and_the_key(tmp_path: Path, extra: str, where: str,
                                                          words: str) -> None:
    second = GOOD.replace("alice", "bob")
    key = extra.partition(" ")[0]
    if key in ("user", "host"):  # (these the second account has already: written in their place)
        second = "".join(extra if line.startswith(f"{key} =") else line for line in second.splitlines(True))
        extra = ""
    path = write(tmp_path, GOOD + second + extra)
    with pytest.raises(ConfigError) as error:
        load_accounts(path)
    assert str(error.value).startswith(f"{path}{where}: "), str(error.value)
    assert words in str(error.value)


@pytest.mark.parametrize("text, words", [
    ("account = 3\n", "holds [[account]] tables only"),
    ('[account]\nuser = "a"\n', "holds [[account]] tables only"),
    (GOOD + '[options]\nx = 1\n', "(found options)"),
    ('[[account]]\nuser = "a"\n', ":1: account 1: missing password, host"),
    ("", "no [[account]] tables"),
    ("[[account]\n", "accounts.toml: "),
])
def test_a_file_not_shaped_as_accounts_is_refused(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_accounts(write(tmp_path, text))
    assert words in str(error.value)


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        load_accounts(path)


DEFAULTS = '[defaults]\nhost = "imap.example.org"\nmaster_user = "spamkit"\npassword = "m4ster"\n\n'


def test_a_defaults_table_gives_every_account_what_it_does_not_set(tmp_path: Path) -> None:
    """One line an account, as a master user's sweep of a whole server wants; an account's
    own key wins, wherever in the file the defaults are."""
    accounts = '[[account]]\nuser = "alice"\n\n[[account]]\nuser = "bob"\nhost = "other.example.org"\n\n'
    for text in (DEFAULTS + accounts, accounts + DEFAULTS):
        assert load_accounts(write(tmp_path, text)) == [
            ImapAccount("alice", "m4ster", "imap.example.org", 993, master_user="spamkit"),
            ImapAccount("bob", "m4ster", "other.example.org", 993, master_user="spamkit")]


@pytest.mark.parametrize("text, words", [
    (DEFAULTS + 'user = "alice"\n' + GOOD, ":6: defaults: user: each [[account]] names its own"),
    (DEFAULTS + 'prot = 143\n' + GOOD, ":6: defaults: unknown key 'prot'; did you mean port?"),
    (GOOD + '[defaults]\nport = "imap"\n', ":7: defaults: port: must be a port number"),
    ('[defaults]\nhost = "h"\n\n[[account]]\nuser = "a"\n', ":4: account 1: missing password"),
    ('[defaults]\nmaster_user = ""\n' + GOOD, ":2: defaults: master_user: must be text, not empty"),
    # a heading written with TOML's quotes was once not found, and its keys went unchecked
    ('["defaults"]\nport = "imap"\n' + GOOD, ":2: defaults: port: must be a port number"),
])
def test_a_mistake_in_the_defaults_is_named(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_accounts(write(tmp_path, text))
    assert words in str(error.value), str(error.value)
