"""Loading, validating and rewriting the configuration file (TOML), with env overrides.

Errors name the file, the line and the option, and list the valid choices or the
option meant (`TagLevle` → did you mean TagLevel?). A loader that raises leaves the
caller's previous Config in force, so a service keeps its last good configuration.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spamkit import textfile
from spamkit.atomicfile import editing, write_atomically
from spamkit.config.options import OPTIONS, OPTIONS_BY_LOWER, SENSITIVITY_LEVELS, Option, user_name_problem
from spamkit.errors import ConfigError

ENV_PREFIX = "SPAMKIT_"
_TOML_LINE_ERROR = re.compile(r"\(at line (\d+), column (\d+)\)")


def default_config_path() -> Path:
    if os.environ.get("SPAMKIT_CONFIG"):
        return Path(os.environ["SPAMKIT_CONFIG"])
    if os.geteuid() == 0:
        return Path("/etc/spamkit/spamkit.toml")
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(config_home) / "spamkit" / "spamkit.toml"


UserValues = dict[str, dict[str, tuple[Any, str]]]  # user -> {option: (value, "file:line")}


class Config(Mapping[str, Any]):
    """The settings in force: every declared option, validated. Read-only."""

    def __init__(self, values: dict[str, Any], path: Path | None, origins: dict[str, str],
                 users: UserValues | None = None) -> None:
        self._values = values
        self.path = path
        self.origins = origins  # option -> "default", "file:line" or "$ENVVAR"
        self.users = users or {}  # the [user.NAME] tables: per-user options (Option.per_user)

    def for_user(self, user: str) -> Config:
        """The settings in force for one user: its [user.NAME] table over the rest of the
        file. The environment still wins, as it does over the file."""
        values, origins = dict(self._values), dict(self.origins)
        for name, (value, where) in self.users.get(user, {}).items():
            if not origins[name].startswith("$"):
                values[name], origins[name] = value, where
        return Config(values, self.path, origins, self.users)

    def __getitem__(self, name: str) -> Any:
        return self._values[_option(name, None).name]

    def where(self, name: str) -> str:
        """Where the option in force was set, for a message that blames it: "file:line",
        "$ENVVAR", or "NAME (the default)"."""
        origin = self.origins[name]
        return f"{name} (the default)" if origin == "default" else origin

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def tag_level(self) -> float:
        """The score at or above which mail is spam, after the Sensitivity preset."""
        sensitivity = self._values["Sensitivity"]
        if sensitivity == "custom":
            return float(self._values["TagLevel"])
        return SENSITIVITY_LEVELS[sensitivity]

    @property
    def reject_level(self) -> float | None:
        """The score at or above which mail is refused; None when nothing is refused."""
        if self._values["Sensitivity"] != "custom" or not self._values["RejectLevel"]:
            return None
        return float(self._values["RejectLevel"])

    def levels_not_in_force(self) -> list[str]:
        """What is said about TagLevel and RejectLevel set while a Sensitivity preset rules,
        which then ignores them (as SME does): one line for each, naming where it is set."""
        sensitivity = self._values["Sensitivity"]
        if sensitivity == "custom":
            return []
        return [f"{self.origins[name]}: {name} is not in force: Sensitivity is {sensitivity} "
                f"(from {self.origins['Sensitivity']}), whose preset tags at "
                f"{SENSITIVITY_LEVELS[sensitivity]:g} and rejects nothing; set "
                f"Sensitivity = \"custom\" to use {name}"
                for name in ("TagLevel", "RejectLevel") if self.origins[name] != "default"]

    @property
    def lists_path(self) -> Path:
        if self._values["ListsFile"]:
            return Path(self._values["ListsFile"])
        base = self.path.parent if self.path else default_config_path().parent
        return base / "lists"


def _option(name: str, where: str | None) -> Option:
    option = OPTIONS_BY_LOWER.get(name.lower())
    if option is None:
        import difflib  # (only a misspelt option needs it)

        guess = difflib.get_close_matches(name, [o.name for o in OPTIONS], n=1)
        hint = f"; did you mean {guess[0]}?" if guess else ""
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}unknown option {name!r}{hint}")
    return option


def convert(option: Option, value: Any, where: str) -> Any:
    """Check (and for text from the command line or environment, parse) one value."""
    if isinstance(value, str) and option.kind is not str:
        value = _parse_text(option, value, where)
    if option.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if option.kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {option.name} must be a list of strings")
        if option.entry_problem is not None:
            for entry in value:
                problem = option.entry_problem(entry)
                if problem:
                    raise ConfigError(f"{where}: {option.name}: {problem}")
        return list(value)
    if not isinstance(value, option.kind) or (option.kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where}: {option.name} must be {_kind_name(option)}, not {value!r}")
    if option.value_problem is not None and isinstance(value, str):
        problem = option.value_problem(value)
        if problem:
            raise ConfigError(f"{where}: {option.name}: {problem}")
    if option.choices and value not in option.choices:
        raise ConfigError(f"{where}: {option.name} must be one of {', '.join(option.choices)}; "
                          f"not {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {option.name} must be a finite number")
        if option.minimum is not None and value < option.minimum:
            raise ConfigError(f"{where}: {option.name} must be at least {option.minimum:g}")
        if option.maximum is not None and value > option.maximum:
            raise ConfigError(f"{where}: {option.name} must be at most {option.maximum:g}")
    return value


def _parse_text(option: Option, text: str, where: str) -> Any:
    text = text.strip()
    try:
        if option.kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on", "enabled"):
                return True
            if lowered in ("0", "false", "no", "off", "disabled"):
                return False
            raise ValueError(text)
        if option.kind is int:
            return int(text)
        if option.kind is float:
            return float(text)
        if option.kind is list:
            return [part.strip() for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{where}: {option.name} must be {_kind_name(option)}, not {text!r}") from None
    return text


def _kind_name(option: Option) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text",
            list: "a list"}[option.kind]


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def load_config(path: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the file (if it exists), then SPAMKIT_<OPTION> environment overrides."""
    config_path = Path(path) if path else default_config_path()
    text = ""
    if config_path.exists():
        text = textfile.read_text(config_path)
    return config_from_text(text, config_path, os.environ if environ is None else environ)


def config_from_text(text: str, config_path: Path, environ: Mapping[str, str]) -> Config:
    values = {option.name: option.default for option in OPTIONS}
    origins = {option.name: "default" for option in OPTIONS}
    found, users = _values_from_text(text, config_path)
    for name, (value, where) in found.items():
        values[name] = value
        origins[name] = where
    for option in OPTIONS:
        env_name = ENV_PREFIX + option.name.upper()
        if env_name in environ:
            values[option.name] = convert(option, environ[env_name], f"${env_name}")
            origins[option.name] = f"${env_name}"
    if (values["Sensitivity"] == "custom" and values["RejectLevel"]
            and values["RejectLevel"] < values["TagLevel"]):
        raise ConfigError(f"{origins['RejectLevel']}: RejectLevel ({values['RejectLevel']:g}) is "
                          f"below TagLevel ({values['TagLevel']:g}): spam would be refused "
                          "before it could be tagged")
    _check_folders_differ(values, origins)
    _check_folders_fit_layout(values, origins)
    for table in users.values():
        if "MaildirLayout" in table:
            layout, where = table["MaildirLayout"]
            _check_folders_fit_layout({**values, "MaildirLayout": layout}, {**origins, "MaildirLayout": where})
    return Config(values, config_path, origins, users)


TRAINER_FOLDERS = ("SpamFolder", "HamFolder", "JunkFolder")


def _setting_rank(origin: str) -> tuple[int, int]:
    """Which of two settings was made last: a default first, then the file's by line,
    then the environment's."""
    if origin == "default":
        return (0, 0)
    if origin.startswith("$"):
        return (2, 0)
    line = origin.rpartition(":")[2]
    return (1, int(line) if line.isdigit() else 0)


def _check_folders_differ(values: dict[str, Any], origins: dict[str, str]) -> None:
    """The sweep learns and deletes what is in SpamFolder and HamFolder, and expire-junk
    deletes old mail in JunkFolder: one folder in two of those roles would teach the
    filter its own verdicts, or the opposite label, and delete mail users keep."""
    seen: dict[str, str] = {}
    for name in TRAINER_FOLDERS:
        folder = values[name].replace("/", ".").lower()
        if folder in seen:
            other = seen[folder]
            # blame the one the administrator set (a default is not a mistake), the later
            # line of two, or the environment's over the file's
            blamed, kept = sorted((other, name), key=lambda option: _setting_rank(origins[option]))[::-1]
            also = "" if origins[kept] == "default" else f", set at {origins[kept]}"
            raise ConfigError(f"{origins[blamed]}: {blamed} is the same folder as {kept} "
                              f"({values[blamed]!r}{also}): each needs a folder of its own")
        seen[folder] = name


def _check_folders_fit_layout(values: dict[str, Any], origins: dict[str, str]) -> None:
    """Under Dovecot's LAYOUT=fs a folder's own mail is in its cur, new and tmp, so no
    folder may be named so (Dovecot refuses "Contains reserved name"): a JunkFolder "Junk/new"
    would have `deliver` put spam in the Junk folder's new mail."""
    if values["MaildirLayout"] != "fs":
        return
    for name in TRAINER_FOLDERS:
        levels = values[name].replace("/", ".").split(".")
        reserved = [level for level in levels if level in ("cur", "new", "tmp")]
        if reserved:
            raise ConfigError(f"{origins[name]}: {name} {values[name]!r} cannot be a folder under "
                              f"MaildirLayout fs (from {origins['MaildirLayout']}): {reserved[0]!r} "
                              "is where a folder keeps its own mail (cur, new and tmp)")


def _values_from_text(text: str, path: Path) -> tuple[dict[str, tuple[Any, str]], UserValues]:
    """({option: (value, "file:line")}, the [user.NAME] tables) for a file's text; raises
    ConfigError naming the line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        match = _TOML_LINE_ERROR.search(str(error))
        line = f":{match.group(1)}" if match else ""
        raise ConfigError(f"{path}{line}: {_TOML_LINE_ERROR.sub('', str(error)).strip()}") from None
    out: dict[str, tuple[Any, str]] = {}
    users: UserValues = {}
    for key, value in data.items():
        if key == USER_TABLE:
            users = _user_values(text, path, value)
            continue
        line_number = _line_of(text, key)
        where = f"{path}:{line_number}" if line_number else str(path)
        option = _option(key, where)
        out[option.name] = (convert(option, value, where), where)
    return out, users


USER_TABLE = "user"


def check_user_name(user: str, where: str = "") -> str:
    problem = user_name_problem(user)
    if problem:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}{problem}")
    return user


def _user_values(text: str, path: Path, tables: Any) -> UserValues:
    """The [user.NAME] tables: each a user's own values of the per-user options."""
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        line_number = _line_of(text, USER_TABLE)
        raise ConfigError(f"{path}{f':{line_number}' if line_number else ''}: [{USER_TABLE}] "
                          f"holds one table per user: [{USER_TABLE}.NAME] with NAME's own options")
    users: UserValues = {}
    for user, table in tables.items():
        header = _user_header_line(text, user)
        check_user_name(user, f"{path}:{header}" if header else str(path))
        users[user] = {}
        for key, value in table.items():
            line_number = _line_in_user_table(text, user, key) or header
            where = f"{path}:{line_number}" if line_number else str(path)
            if isinstance(value, dict) and key.lower() not in OPTIONS_BY_LOWER:  # [user.john.smith]
                nested = _user_header_line(text, f"{user}.{key}")
                where = f"{path}:{nested}" if nested else where
                raise ConfigError(f"{where}: [{USER_TABLE}.{user}.{key}] is a table within a table; "
                                  f"a user name with a dot goes in quotes: {_user_table_header(f'{user}.{key}')}")
            option = _per_user_option(key, where)
            users[user][option.name] = (convert(option, value, where), where)
    return users


def _user_table_header(user: str) -> str:
    """`[user.NAME]`; a name with a dot in quotes (`[user."john.smith"]`), since in TOML
    an unquoted dot makes a table within a table."""
    return f'[{USER_TABLE}."{user}"]' if "." in user else f"[{USER_TABLE}.{user}]"


def _user_header_pattern(user: str) -> re.Pattern[str]:
    return re.compile(rf'^\s*\[\s*{USER_TABLE}\s*\.\s*("?){re.escape(user)}\1\s*\]\s*(?:#.*)?$')


def _user_header_line(text: str, user: str) -> int | None:
    """The 1-based line of a user's [user.NAME] header, or None."""
    header = _user_header_pattern(user)
    for number, line in enumerate(text.splitlines(), start=1):
        if header.match(line):
            return number
    return None


def _line_in_user_table(text: str, user: str, key: str) -> int | None:
    """The line of `key` inside the user's table, or None."""
    start = _user_header_line(text, user)
    if start is None:
        return None
    lines = text.splitlines()
    key_line = _key_pattern(key)
    for number in range(start + 1, len(lines) + 1):
        line = lines[number - 1]
        if line.lstrip().startswith("["):
            return None
        if key_line.match(line):
            return number
    return None


def _key_pattern(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=", re.IGNORECASE)


def format_value(value: Any) -> str:
    """A value as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def set_option(path: Path, name: str, text: str, user: str | None = None) -> Any:
    """Set one option in the file (for one user: in its [user.NAME] table), keeping every
    other line; atomic (temp file + rename).

    Creates the file if it does not exist. The result is loaded back before it replaces
    the old file, so a value that makes the file invalid never lands.
    """
    option = _option_for(name, user)
    value = convert(option, text, "spamkit config set")
    with editing(path):
        _set_line(path, option, value, user)
    return value


def _set_line(path: Path, option: Option, value: Any, user: str | None) -> None:
    old = textfile.read_text(path) if path.exists() else ""
    line = f"{option.name} = {format_value(value)}"
    lines = old.splitlines() or ["# spamkit configuration: `spamkit config show` lists every option"]
    start, end = _section(lines, user)
    if start is None:  # a user without a table yet
        assert user is not None  # (the top level always has a section)
        lines += ([""] if lines[-1].strip() else []) + [_user_table_header(user), line]
    elif (found := _find_key(lines, start, end, option.name)) is not None:
        lines[found] = line
    else:
        last = end
        while last > start and not lines[last - 1].strip():  # after the section's last line
            last -= 1
        lines.insert(last, line)
        if last + 1 < len(lines) and lines[last + 1].lstrip().startswith("["):
            lines.insert(last + 1, "")  # a blank line before the next table
    _replace_file(path, lines)


def unset_option(path: Path, name: str, user: str | None = None) -> bool:
    """Remove one option's line (for one user: from its table, and the table once empty),
    so the default (or for a user, the value for everyone) applies again. False when the
    file did not set it."""
    option = _option_for(name, user)
    if not path.exists():
        return False
    with editing(path):
        return _unset_line(path, option, user)


def _unset_line(path: Path, option: Option, user: str | None) -> bool:
    lines = textfile.read_text(path).splitlines()
    start, end = _section(lines, user)
    found = None if start is None else _find_key(lines, start, end, option.name)
    if start is None or found is None:
        return False
    del lines[found]
    if user is not None and not any(text.strip() and not text.lstrip().startswith("#")
                                    for text in lines[start:end - 1]):
        del lines[start - 1:end - 1]  # the header and the blank or comment lines left
    _replace_file(path, lines)
    return True


def _option_for(name: str, user: str | None) -> Option:
    if user is None:
        return _option(name, None)
    check_user_name(user)
    return _per_user_option(name, None)


def _per_user_option(name: str, where: str | None) -> Option:
    """The option, if it may be set per user; else ConfigError saying which may."""
    option = _option(name, where)
    if not option.per_user:
        prefix = f"{where}: " if where else ""
        per_user = ", ".join(o.name for o in OPTIONS if o.per_user)
        raise ConfigError(f"{prefix}{option.name} is not set per user (per-user options: {per_user})")
    return option


def _section(lines: list[str], user: str | None) -> tuple[int | None, int]:
    """(first, end) line indexes of where an option of this section goes: for None the
    top level (before the first table, which TOML requires), else the body of the
    user's table (first is the line after its header); first is None when the user has
    no table. end is exclusive."""
    if user is None:
        first_table = next((i for i, text in enumerate(lines) if text.lstrip().startswith("[")),
                           len(lines))
        return 0, first_table
    header = _user_header_pattern(user)
    for index, line in enumerate(lines):
        if header.match(line):
            end = next((i for i in range(index + 1, len(lines)) if lines[i].lstrip().startswith("[")),
                       len(lines))
            return index + 1, end
    return None, len(lines)


def _find_key(lines: list[str], start: int, end: int, name: str) -> int | None:
    key_line = _key_pattern(name)
    return next((i for i in range(start, end) if key_line.match(lines[i])), None)


def _replace_file(path: Path, lines: list[str]) -> None:
    while lines and not lines[-1].strip():
        lines.pop()
    new_text = "\n".join(lines) + "\n"
    config_from_text(new_text, path, {})  # never write a file that would not load
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, new_text)
