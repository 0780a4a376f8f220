"""Regular expressions compiled on first use.

Every `spamkit check`, `deliver` and daemon imports the parser, the tokenizer and the
rules package, but most of their patterns serve one rarer path: the Received-line
formats and the link canonicaliser only the rules from SpamAssassin's files ask for, the
CJK pattern only the pure-Python tokenizer uses. Compiled at import, the patterns a
check never used cost each process 16 ms of a 0.22 s one-message check
(docs/decisions/0044). Compiling imports nothing, so a daemon that has given up root
can still do it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, AnyStr, Generic


class LazyPattern(Generic[AnyStr]):
    """re.compile(pattern, flags), done the first time a method is called."""

    __slots__ = ("_pattern", "_flags", "_compiled")

    def __init__(self, pattern: AnyStr, flags: int = 0) -> None:
        self._pattern: AnyStr = pattern
        self._flags = flags
        self._compiled: re.Pattern[AnyStr] | None = None

    @property
    def compiled(self) -> re.Pattern[AnyStr]:
        if self._compiled is None:
            self._compiled = re.compile(self._pattern, self._flags)
        return self._compiled

    @property
    def pattern(self) -> AnyStr:
        return self._pattern

    def search(self, string: AnyStr, pos: int = 0) -> re.Match[AnyStr] | None:
        return self.compiled.search(string, pos)

    def match(self, string: AnyStr, pos: int = 0) -> re.Match[AnyStr] | None:
        return self.compiled.match(string, pos)

    def fullmatch(self, string: AnyStr) -> re.Match[AnyStr] | None:
        return self.compiled.fullmatch(string)

    def findall(self, string: AnyStr) -> list[Any]:
        return self.compiled.findall(string)

    def finditer(self, string: AnyStr, pos: int = 0, endpos: int = sys.maxsize) -> Iterator[re.Match[AnyStr]]:
        return self.compiled.finditer(string, pos, endpos)

    def split(self, string: AnyStr, maxsplit: int = 0) -> list[AnyStr]:
        return self.compiled.split(string, maxsplit)

    def sub(self, replacement: AnyStr | Callable[[re.Match[AnyStr]], AnyStr], string: AnyStr,
            count: int = 0) -> AnyStr:
        return self.compiled.sub(replacement, string, count)

    def subn(self, replacement: AnyStr | Callable[[re.Match[AnyStr]], AnyStr], string: AnyStr,
             count: int = 0) -> tuple[AnyStr, int]:
        return self.compiled.subn(replacement, string, count)
