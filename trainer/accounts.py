"""The IMAP accounts file (`--imap-accounts FILE`): who the sweep, stats and expire-junk log
in as, checked whole before any server is asked.

A TOML file of `[[account]]` tables, readable only by its owner since it holds passwords:

    [[account]]
    user = "alice@example.org"
    password = "..."
    host = "imap.example.org"
    port = 993              # default 993 for tls, 143 otherwise
    security = "tls"        # tls, starttls or none
    verify = true           # check the server's certificate
    ca_file = "/etc/ssl/private-ca.pem"
    trash = "Trash"         # where MOVE puts learned mail on a server without UIDPLUS

To sweep every mailbox on a server without each user's password, log in as a master
user (Dovecot's master passdb, Cyrus's proxy servers): the login is SASL PLAIN with
`master_user` authenticating and `user` the mailbox opened, and `password` is the
master user's. A `[defaults]` table gives any key but `user` to every account that
does not set it, so such a file is one line an account:

    [defaults]
    host = "imap.example.org"
    master_user = "spamkit"
    password = "..."

    [[account]]
    user = "alice"

    [[account]]
    user = "bob"

A mistake names the file, the account's number (or the defaults), the line and the
key, as the main configuration does; a misspelt key is an error, not a default taken
in silence.
"""

from __future__ import annotations

import difflib
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spamkit.config.options import folder_problem
from spamkit.errors import ConfigError
from spamkit.textfile import read_text
from trainer.users import check_user_name

SECURITY = ("none", "starttls", "tls")


@dataclass(frozen=True)
class ImapAccount:
    user: str
    password: str
    host: str
    port: int
    security: str = "tls"
    verify: bool = True
    ca_file: str | None = None
    trash: str = "Trash"
    master_user: str | None = None  # log in as this user, to `user`'s mailbox (SASL PLAIN)

    @property
    def label(self) -> str:
        """A name for reports and the audit log (the login, made safe)."""
        name = self.user.split("@", 1)[0].lower()
        try:
            return check_user_name(name)
        except ValueError:
            return "imap-account"


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be text (in quotes), not {value!r}"
    return None if value else "must be text, not empty"


def _port(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return None if ok else f"must be a port number (1-65535), not {value!r}"


def _security(value: Any) -> str | None:
    return None if value in SECURITY else f"must be none, starttls or tls, not {value!r}"


def _verify(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {value!r}"


def _ca_file(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be the path of a PEM file"
    return None if Path(value).is_file() else f"{value!r} is not a file"


def _trash(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be text, not {value!r}"
    if value.upper() == "INBOX":
        return "INBOX is the user's inbox: learned mail would go back into it"
    return folder_problem(value)


KEYS: dict[str, Callable[[Any], str | None]] = {
    "user": _text, "password": _text, "host": _text, "port": _port, "security": _security,
    "verify": _verify, "ca_file": _ca_file, "trash": _trash, "master_user": _text,
}
REQUIRED = ("user", "password", "host")


def load_accounts(path: Path) -> list[ImapAccount]:
    """Read the credentials file, refusing one that others can read or that has a mistake."""
    try:
        info = path.stat()
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(f"{path} holds passwords and is readable by others "
                          f"(mode {stat.S_IMODE(info.st_mode):o}): chmod 600 {path}")
    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None
    tables = data.get("account", [])
    defaults = data.get("defaults", {})
    other = sorted(set(data) - {"account", "defaults"})
    if other or not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables) \
            or not isinstance(defaults, dict):
        raise ConfigError(f"{path}: the file holds [[account]] tables only, and a [defaults] table"
                          + (f" (found {', '.join(other)})" if other else ""))
    if not tables:
        raise ConfigError(f"{path}: no [[account]] tables")
    if defaults:  # (checked however its heading is written; the line found where it can be)
        heading = _DEFAULTS_HEADING.search(text)
        lines = _Lines(path, text, [heading.start()] if heading else [], 1, "defaults")
        _check_keys(defaults, lines)
        if "user" in defaults:
            raise ConfigError(f"{lines.where('user')}: user: each [[account]] names its own")
    starts = [match.start() for match in _ACCOUNT_HEADING.finditer(text)]
    return [_account(table, defaults, _Lines(path, text, starts, number))
            for number, table in enumerate(tables, start=1)]


_DEFAULTS_HEADING = re.compile(r"^[ \t]*\[\s*defaults\s*\]", re.MULTILINE)
_ACCOUNT_HEADING = re.compile(r"^[ \t]*\[\[\s*account\s*\]\]", re.MULTILINE)
_ANY_HEADING = re.compile(r"^[ \t]*\[", re.MULTILINE)


class _Lines:
    """Where one account's keys (or the defaults') are written, for error messages."""

    def __init__(self, path: Path, text: str, starts: list[int], number: int, name: str | None = None) -> None:
        self.path, self.number, self.name = path, number, name or f"account {number}"
        begin = starts[number - 1] if number <= len(starts) else 0
        following = _ANY_HEADING.search(text, begin + 1)  # the next table, of any kind
        end = following.start() if following else len(text)
        self.text, self.first_line = text[begin:end], text.count("\n", 0, begin) + 1

    def where(self, key: str | None = None) -> str:
        line = self.first_line
        match = re.search(rf"^[ \t]*\"?{re.escape(key)}\"?\s*=", self.text, re.MULTILINE) if key else None
        if match:
            line += self.text.count("\n", 0, match.start())
        return f"{self.path}:{line}: {self.name}"


def _check_keys(table: dict[str, Any], lines: _Lines) -> None:
    for key, value in table.items():
        check = KEYS.get(key)
        if check is None:
            guess = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"; did you mean {guess[0]}?" if guess else f"; known keys: {', '.join(KEYS)}"
            raise ConfigError(f"{lines.where(key)}: unknown key {key!r}{hint}")
        problem = check(value)
        if problem:
            raise ConfigError(f"{lines.where(key)}: {key}: {problem}")


def _account(table: dict[str, Any], defaults: dict[str, Any], lines: _Lines) -> ImapAccount:
    _check_keys(table, lines)
    merged = {**defaults, **table}
    missing = [key for key in REQUIRED if key not in merged]
    if missing:
        raise ConfigError(f"{lines.where()}: missing {', '.join(missing)}")
    security = merged.get("security", "tls")
    return ImapAccount(merged["user"], merged["password"], merged["host"],
                       merged.get("port", 993 if security == "tls" else 143), security,
                       merged.get("verify", True), merged.get("ca_file"), merged.get("trash", "Trash"),
                       merged.get("master_user"))
