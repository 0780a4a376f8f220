"""Which users to sweep, and where their Maildirs are, without ever leaving the base.

Users come from a pattern with `{user}` (SME: /home/e-smith/files/users/{user}/Maildir):
the names are the entries of the directory before `{user}`. A name must match
spamkit.config.options.USER_NAME (no `..`, `/`, NUL or look-alike characters), and the resolved Maildir must
lie under that directory after following links; anything else is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from spamkit.config.loader import check_user_name as _check_configured_name
from spamkit.config.options import maildir_pattern_problem
from spamkit.errors import ConfigError
from trainer.maildir import MAILDIR_PLUS, folder_path


@dataclass(frozen=True)
class Account:
    user: str
    maildir: Path
    layout: str = MAILDIR_PLUS  # how folders lie in it: Maildir++ or Dovecot's LAYOUT=fs

    def folder(self, name: str) -> Path:
        """The folder `name` ("LearnAsSpam", "Junk/LearnAsSpam", "INBOX") in this Maildir."""
        return folder_path(self.maildir, name, self.layout)


class UnsafeUser(ValueError):
    pass


class UnknownUser(ValueError):
    """A user asked for by name who has no Maildir: a mistyped --user reported nothing to
    do for that name, as if the folders were empty."""


def check_user_name(user: str) -> str:
    """The name, if it is one SME allows (the configuration's rule); else UnsafeUser."""
    try:
        return _check_configured_name(user)
    except ConfigError as error:
        raise UnsafeUser(str(error)) from None


def split_pattern(pattern: str) -> tuple[Path, str]:
    """('/home/e-smith/files/users', '/Maildir') for '/home/e-smith/files/users/{user}/Maildir'."""
    problem = maildir_pattern_problem(pattern, absolute=False)  # the configuration's is checked absolute
    if problem:
        raise ConfigError(f"Maildir pattern: {problem}")
    before, _, after = pattern.partition("{user}")
    return Path(before), after


def resolve(pattern: str, user: str) -> Path:
    """The user's Maildir, checked to lie under the pattern's base directory."""
    base, after = split_pattern(pattern)
    check_user_name(user)
    path = Path(str(base) + "/" + user + after)
    real_base = os.path.realpath(base)
    real = os.path.realpath(path)
    if not (real == real_base or real.startswith(real_base.rstrip("/") + "/")):
        raise UnsafeUser(f"{path} resolves outside {base}")
    return path


def accounts(pattern: str, only: str | None = None, extra: list[str] | None = None) -> list[Account]:
    """Every user with a Maildir under the pattern (or just `only`), plus extra NAME=PATH ones."""
    found: dict[str, Account] = {}
    base, _ = split_pattern(pattern)
    names = [only] if only else sorted(os.listdir(base)) if base.is_dir() else []
    for name in names:
        try:
            maildir = resolve(pattern, name)
        except UnsafeUser:
            if only:
                raise
            continue  # a directory whose name is not a user name: not ours to touch
        if (maildir / "cur").is_dir():
            found[name] = Account(name, maildir)
    for entry in extra or []:
        name, _, path = entry.partition("=")
        if not path:
            raise ConfigError(f"ExtraAccounts entries are NAME=MAILDIR, not {entry!r}")
        check_user_name(name)
        if only is None or only == name:
            found[name] = Account(name, Path(path))
    if only and only not in found:
        raise UnknownUser(f"no Maildir for {only} at {resolve(pattern, only)} (nor in ExtraAccounts)")
    return list(found.values())
