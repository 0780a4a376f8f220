"""Text files an administrator writes by hand, read as the editors that write them save them.

Windows Notepad (and other editors) put a UTF-8 byte-order mark before the first line.
It is invisible in the editor, but the mark is a character: `TagLevel` on the first line
became `\\ufeffTagLevel` and the configuration was refused with "Invalid statement"; the
first rule of a `.cf` file was an unknown directive, silently skipped. The mark is taken
off. Notepad's "Unicode" is UTF-16, which is refused with what to do instead.
"""

from __future__ import annotations

from pathlib import Path

from spamkit.errors import ConfigError

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def is_utf16(data: bytes) -> bool:
    """Whether the bytes start with a UTF-16 byte-order mark (never valid UTF-8)."""
    return data.startswith(UTF16_BOMS)


def _utf16_refusal(where: str | Path) -> str:
    return (f"{where}: saved as UTF-16 (Windows editors call it \"Unicode\"): "
            "save it as UTF-8")


def without_bom(data: bytes, where: str | Path) -> bytes:
    """The bytes without a leading UTF-8 byte-order mark; a ConfigError for UTF-16."""
    if is_utf16(data):
        raise ConfigError(_utf16_refusal(where))
    return data.removeprefix(UTF8_BOM)


def decode_text(data: bytes, where: str | Path) -> str:
    """UTF-8 text without its byte-order mark; a ConfigError naming the first line that is
    not UTF-8."""
    data = without_bom(data, where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"{where}:{line}: not UTF-8 text") from None


def read_text(path: Path) -> str:
    """A hand-written file's text (`decode_text`); a ConfigError when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    return decode_text(data, path)
