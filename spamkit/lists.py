"""White and blacklists: global and per recipient, on the envelope sender and From address.

Patterns are SME Server's `wbl.global` ones (and SpamAssassin's whitelist_from): `*` and
`?` wildcards over the whole address, case-insensitive: `*@vonage.com`, `*domain2.com`,
`user@domain3.com`, `*@*.xyz`. A recipient's own entries are looked at before the global
ones; within one scope a blacklist entry wins over a whitelist entry.

The list file has one entry a line: `white|black PATTERN [RECIPIENT]`; `#` starts a
comment. `spamkit wbl add|remove` rewrite it atomically.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from spamkit.atomicfile import FileSignature, editing, file_signature, write_atomically
from spamkit.errors import ConfigError
from spamkit.textfile import without_bom

log = logging.getLogger("spamkit.lists")

KINDS = ("white", "black")
# how often a long-running scanner (serve, spamd) looks whether the list file changed
RECHECK_SECONDS = 2.0
FILE_HEADER = "# spamkit white/blacklists: white|black PATTERN [RECIPIENT]\n"
_PATTERN = re.compile(r"^[\x21-\x7e]{1,320}$")
# senders of unlike shapes: a pattern that matches all of them matches every sender
_UNLIKE_SENDERS = ("a@b.example", "first.last+tag@mail.example.org", "x@[192.0.2.1]",
                   "postmaster@localhost")


@dataclass(frozen=True)
class Entry:
    kind: str  # "white" or "black"
    pattern: str  # lower-cased
    user: str = ""  # recipient it applies to; "" for everyone

    def line(self) -> str:
        return f"{self.kind} {self.pattern}" + (f" {self.user}" if self.user else "")


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE)


def matches(pattern: str, address: str) -> bool:
    return bool(address) and _compiled(pattern).match(address) is not None


def check_entry(kind: str, pattern: str, user: str = "") -> Entry:
    if kind not in KINDS:
        raise ConfigError(f"list kind must be white or black, not {kind!r}")
    if not _PATTERN.match(pattern) or "@" not in pattern and "*" not in pattern:
        raise ConfigError(f"not an address pattern: {pattern!r} (examples: *@example.com, "
                          "user@example.com, *@*.xyz)")
    if pattern.startswith("@") or pattern.endswith("@"):
        empty = "local part" if pattern.startswith("@") else "domain"
        raise ConfigError(f"{pattern!r} matches no address (its {empty} is empty); for every "
                          "address at a domain give *@domain, e.g. *@example.com")
    if user and not _PATTERN.match(user):
        raise ConfigError(f"not a recipient address: {user!r}")
    return Entry(kind, pattern.lower(), user.lower())


def entry_warning(entry: Entry) -> str | None:
    """What an entry for everyone that matches every sender does; a recipient's own one
    may well mean it (all mail to a spam trap is spam; postmaster gets everything)."""
    if entry.user or not all(matches(entry.pattern, sender) for sender in _UNLIKE_SENDERS):
        return None
    if entry.kind == "white":
        return f"white {entry.pattern} matches every sender: no mail is filtered as spam"
    return f"black {entry.pattern} matches every sender: all mail is blacklisted as spam"


def _read_lines(path: Path) -> list[bytes]:
    """The list file's lines as bytes, without a byte-order mark; none when there is no file."""
    try:
        return without_bom(path.read_bytes(), path).splitlines()
    except FileNotFoundError:
        return []
    except OSError as error:  # a directory, or not readable by this account
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None


def _file_lines(path: Path) -> list[str]:
    """The list file's lines with their ends, as `add` and `remove` write them back: bytes
    that are not UTF-8 (a comment in Latin-1) kept as they are by surrogateescape."""
    try:
        return [line.decode("utf-8", "surrogateescape")
                for line in path.read_bytes().splitlines(keepends=True)]
    except FileNotFoundError:
        return []


def _entry_in_line(line: str, where: str) -> Entry | None:
    """The entry a line of the file holds (None for a blank or comment line)."""
    text = line.lstrip("\ufeff").split("#", 1)[0].strip()
    return _entry_of_line(text, where) if text else None


def _entry_of_line(line: str, where: str) -> Entry:
    fields = line.split()
    if len(fields) not in (2, 3):
        raise ConfigError(f"{where}: expected 'white|black PATTERN [RECIPIENT]'")
    try:
        return check_entry(*fields)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def _recipient_names(recipients: Iterable[str]) -> set[str]:
    """The names a per-recipient entry may be written as: each recipient as given (an
    address from SMTP, or the account name that `deliver USER` and `spamc -u USER` give),
    and an address's local part too, so that an entry for `alice` holds for mail to
    alice@ any domain, as SpamAssassin's per-user preferences hold for the account."""
    names = set()
    for recipient in recipients:
        recipient = recipient.strip().strip("<>").lower()
        if recipient:
            names.add(recipient)
            if "@" in recipient:
                names.add(recipient.rpartition("@")[0])
    return names


class Lists:
    def __init__(self, entries: Iterable[Entry] = (), path: Path | None = None,
                 from_rules: Iterable[Entry] = (), signature: FileSignature | None = None) -> None:
        """`signature`: the file's as `load` found it before reading (`current` compares it)."""
        self.entries = list(dict.fromkeys(entries))  # the list file's; what add/remove change
        self.from_rules = list(from_rules)  # whitelist_from & co. of rule files: read-only
        self.path = path
        self._signature = signature
        self._next_check = time.monotonic() + RECHECK_SECONDS

    @classmethod
    def load(cls, path: Path, extra: dict[str, list[str]] | None = None) -> Lists:
        """The list file (missing is empty), plus whitelist_from/blacklist_from of rule files.

        A comment may hold any bytes (a file written in Latin-1, or carried over from
        another system); an entry that is not UTF-8 is a ConfigError naming its line."""
        entries: list[Entry] = []
        signature = file_signature(path)  # (before the read: a change made during it is seen next time)
        for number, raw in enumerate(_read_lines(path), start=1):
            try:
                line = raw.split(b"#", 1)[0].decode("utf-8").strip()
            except UnicodeDecodeError:
                raise ConfigError(f"{path}:{number}: not UTF-8 text") from None
            if line:
                entries.append(_entry_of_line(line, f"{path}:{number}"))
        from_rules = [Entry(kind, p.lower()) for kind, patterns in (extra or {}).items()
                      for p in patterns]
        return cls(entries, path, from_rules, signature)

    def current(self) -> Lists:
        """These lists, or the file's as it is now if it changed since they were read
        (looked at no more often than every RECHECK_SECONDS): a `spamkit wbl add` holds
        in a running `serve` or `spamd` within seconds, with no reload, as rspamd reads
        its maps again. A file that cannot be read now leaves these in force, logged."""
        if self.path is None or time.monotonic() < self._next_check:
            return self
        self._next_check = time.monotonic() + RECHECK_SECONDS
        signature = file_signature(self.path)
        if signature == self._signature:
            return self
        self._signature = signature  # (a broken file is logged once, not every time)
        try:
            fresh = Lists.load(self.path)
        except ConfigError as error:
            log.error("lists: %s; the lists read before stay in force", error)
            return self
        fresh.from_rules = self.from_rules
        log.info("lists: %s changed: %d entries now", self.path, len(fresh.entries))
        return fresh

    @property
    def empty(self) -> bool:
        """No entry, from the list file or from rule files: every message is unlisted."""
        return not (self.entries or self.from_rules)

    def classify(self, addresses: Iterable[str], recipients: Iterable[str] = ()) -> str | None:
        """'white', 'black' or None for a message from `addresses` to `recipients`."""
        senders = [a.lower() for a in addresses if a]
        users = _recipient_names(recipients)
        for scope in ("user", "global"):
            found = set()
            for entry in self.entries + self.from_rules:
                in_scope = entry.user in users if scope == "user" else not entry.user
                if in_scope and any(matches(entry.pattern, s) for s in senders):
                    found.add(entry.kind)
            if "black" in found:
                return "black"
            if "white" in found:
                return "white"
        return None

    def warnings(self) -> list[str]:
        """The list file's entries that match every sender (`entry_warning`)."""
        return [text for entry in self.entries if (text := entry_warning(entry)) is not None]

    def add(self, entry: Entry) -> bool:
        """Add a line to the file as it is now: read again under its lock, so that an entry
        another process added meanwhile stays (atomicfile.editing). The administrator's
        lines and comments stay as written."""
        path = self._file()
        with editing(path):
            self.entries = Lists.load(path).entries
            if entry in self.entries:
                return False
            self.entries.append(entry)
            lines = _file_lines(path) or [FILE_HEADER]
            ending = "\r\n" if lines[-1].endswith("\r\n") else "\n"
            if not lines[-1].endswith(("\n", "\r")):
                lines[-1] += ending
            lines.append(entry.line() + ending)
            write_atomically(path, "".join(lines), errors="surrogateescape")
        return True

    def remove(self, entry: Entry) -> bool:
        """Take out every line holding the entry; every other line and comment stays."""
        path = self._file()
        with editing(path):
            self.entries = Lists.load(path).entries
            if entry not in self.entries:
                return False
            self.entries = [kept for kept in self.entries if kept != entry]
            lines = [line for number, line in enumerate(_file_lines(path), start=1)
                     if _entry_in_line(line, f"{path}:{number}") != entry]
            write_atomically(path, "".join(lines), errors="surrogateescape")
        return True

    def _file(self) -> Path:
        if self.path is None:
            raise ConfigError("these lists have no file to be saved in")
        return self.path

