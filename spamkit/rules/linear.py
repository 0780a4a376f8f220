"""A rule's regex run by RE2, a linear-time engine, when the backtracking engine is too
slow on adversarial input (decision 0043) or the pattern is long (decision 0049).

Rules from files are tried on pumped input at load, and one that takes more than the
probe budget is rejected (spamkit.rules.compile). Many such patterns backtrack only
because of how a backtracking engine searches: FROM_DOMAIN_NOVOWEL's
/\\@\\S*[bcdfgjklmnpqrstvwxz]{7}/i is quadratic on "x@x@x@...", and RE2 answers it in
one pass. So before rejecting a rule, compile checks whether RE2 can run it with
exactly the same meaning, and runs it there.

"Exactly the same" is built, not hoped for: the pattern is read with Python's regex
parser, and written out again for RE2 from a short list of constructs whose meaning is
the same in both. Each is written the same way for every flag. A byte rule (Perl's ASCII
rules on Latin-1 bytes, decision 0041) is emitted byte by byte. Every character class is
computed as the set of the 256 bytes it matches, case folding of ASCII letters
included, and written as that set. "." is [^\\n] or, with /s, any byte. "$" is (?m:$)
with /m; without it, where nothing follows it, (\\n)?\\z, the match ending before the
newline that group took (a "$" with more after it is not translated). A small fixed
count over counts that would pass RE2's nesting limit is written out as copies.
Backreferences, lookarounds, possessive and atomic groups, conditionals, characters
beyond one byte, repeat counts over RE2's 1,000, a repeated group that can match nothing
and a pattern that can (where the two engines step differently), and character rules
(the built-in ones) are not translated. Such a rule stays rejected if it is too slow,
and stays on `regex` otherwise.

Rules too slow on the load probes run here, and so do long rules whatever the probes say
(spamkit.rules.compile.RE2_PREFERRED_LENGTH, decision 0049).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from re import _constants as constants  # type: ignore[attr-defined]
from typing import Any

from spamkit.rules.multiscan import re2_latin1, re2_module
from spamkit.rules.perl_regex import PerlRegexError, split_delimited, translate
from spamkit.rules.prefilter import parse_pattern

RE2_MAX_REPEAT = 1000
# A fixed count of at most this many, over a group whose own repeats would take RE2 past
# its nesting limit, is written out as that many copies (FILL_THIS_FORM_LONG's {5} over
# counts of up to 100); RE2 then judges the size of what it compiles, as it would have.
UNROLL_MAX = 10
_FLAGS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE, "x": re.VERBOSE}
_BYTES = range(256)
_DIGIT = frozenset(range(0x30, 0x3A))
_WORD = _DIGIT | frozenset(range(0x41, 0x5B)) | frozenset(range(0x61, 0x7B)) | {0x5F}
_SPACE = frozenset(b"\t\n\x0b\x0c\r ")
_CATEGORIES = {
    constants.CATEGORY_DIGIT: _DIGIT, constants.CATEGORY_NOT_DIGIT: frozenset(_BYTES) - _DIGIT,
    constants.CATEGORY_WORD: _WORD, constants.CATEGORY_NOT_WORD: frozenset(_BYTES) - _WORD,
    constants.CATEGORY_SPACE: _SPACE, constants.CATEGORY_NOT_SPACE: frozenset(_BYTES) - _SPACE,
}


def available() -> bool:
    """google-re2 is installed (it is wherever Hyperscan is: x86-64)."""
    return re2_module() is not None


class NotLinear(Exception):
    """A construct RE2 does not run with the same meaning."""


def re2_form(text: str) -> str | None:
    """'/body/flags' of a byte rule (its "a" flag) as an RE2 pattern for Latin-1 bytes,
    or None when it cannot be run there with the same meaning, or RE2 refuses it (or is
    not installed)."""
    try:
        body, flags = split_delimited(text)
    except PerlRegexError:
        return None
    if "a" not in flags:
        return None  # a character rule: RE2 would have to read Unicode the way `regex` does
    bits = 0
    for flag in flags:
        bits |= _FLAGS.get(flag, 0)
    try:
        tree = parse_pattern(translate(body), bits)
    except PerlRegexError:
        return None
    if tree is None:
        return None
    try:
        if _nullable(list(tree)):
            # a rule that matches the empty string: `regex` and RE2 step past an empty
            # match differently, so a rule counting its matches would count apart
            raise NotLinear("a pattern that can match nothing")
        form = _sequence(list(tree), tree.state.flags, tail=True)
    except (NotLinear, RecursionError):
        return None
    return form if re2_latin1(form) is not None else None  # (past RE2's limits: nested repeats)


def _sequence(items: list[tuple[Any, Any]], flags: int, tail: bool = False) -> str:
    """`tail`: nothing in the pattern can come after these items (where a `$` may be)."""
    last = len(items) - 1
    return "".join(_node(op, av, flags, tail and i == last) for i, (op, av) in enumerate(items))


def _node(op: Any, av: Any, flags: int, tail: bool = False) -> str:
    icase = bool(flags & re.IGNORECASE)
    if op is constants.LITERAL:
        return _byte_class(_with_case({_byte(av)}, icase))
    if op is constants.NOT_LITERAL:
        return _byte_class(frozenset(_BYTES) - _with_case({_byte(av)}, icase))
    if op is constants.ANY:
        return r"[\x00-\xff]" if flags & re.DOTALL else r"[^\n]"
    if op is constants.IN:
        return _byte_class(_class_bytes(av, icase))
    if op is constants.BRANCH:
        return "(?:" + "|".join(_sequence(list(branch), flags, tail) for branch in av[1]) + ")"
    if op is constants.SUBPATTERN:
        _, add_flags, del_flags, body = av
        if (add_flags | del_flags) & ~(re.IGNORECASE | re.DOTALL | re.MULTILINE):
            raise NotLinear("group flags")
        return "(?:" + _sequence(list(body), (flags | add_flags) & ~del_flags, tail) + ")"
    if op in (constants.MAX_REPEAT, constants.MIN_REPEAT):
        low, high, body = av
        if low > RE2_MAX_REPEAT or (high != constants.MAXREPEAT and high > RE2_MAX_REPEAT):
            raise NotLinear("repeat count")
        if (high == constants.MAXREPEAT or high > 1) and _nullable(list(body)):
            # Perl and `regex` end the loop at a turn that matched nothing; RE2 goes on to
            # the next way to match, so the two may end the match in different places
            # ('Aa*(?:A*|[^a]|a)*' on "AA0": "AA" against "AA0")
            raise NotLinear("a repeated group that can match nothing")
        inner = "(?:" + _sequence(list(body), flags, tail and high <= 1) + ")"
        if low == high <= UNROLL_MAX and low * _nested_count(list(body)) > RE2_MAX_REPEAT:
            return inner * int(low)  # (exactly what RE2 would expand it to, past its nesting limit)
        count = f"{{{low},}}" if high == constants.MAXREPEAT else f"{{{low},{high}}}"
        return inner + count + ("?" if op is constants.MIN_REPEAT else "")
    if op is constants.AT:
        return _anchor(av, flags, tail)
    raise NotLinear(str(op))  # backreferences, lookarounds, possessive and atomic groups...


def _nullable(items: list[tuple[Any, Any]]) -> bool:
    """Whether these items can match the empty string."""
    for op, av in items:
        if op in (constants.MAX_REPEAT, constants.MIN_REPEAT):
            if av[0] > 0 and not _nullable(list(av[2])):
                return False
        elif op is constants.BRANCH:
            if not any(_nullable(list(branch)) for branch in av[1]):
                return False
        elif op is constants.SUBPATTERN:
            if not _nullable(list(av[3])):
                return False
        elif op is not constants.AT:
            return False  # a literal, a class, "." (anything else is not translated)
    return True


def _nested_count(items: list[tuple[Any, Any]]) -> int:
    """The largest product of repeat counts nested in these items, as RE2 reckons it
    against its limit of 1,000 (a repeat's upper count, or its lower one when unbounded)."""
    largest = 1
    for op, av in items:
        if op in (constants.MAX_REPEAT, constants.MIN_REPEAT):
            low, high, body = av
            largest = max(largest, max(1, low if high == constants.MAXREPEAT else high) * _nested_count(list(body)))
        elif op is constants.BRANCH:
            largest = max([largest, *(_nested_count(list(branch)) for branch in av[1])])
        elif op is constants.SUBPATTERN:
            largest = max(largest, _nested_count(list(av[3])))
    return largest


def _anchor(code: Any, flags: int, tail: bool) -> str:
    multiline = bool(flags & re.MULTILINE)
    if code is constants.AT_BEGINNING:
        return "(?m:^)" if multiline else r"\A"
    if code is constants.AT_BEGINNING_STRING:
        return r"\A"
    if code is constants.AT_END and multiline:
        return "(?m:$)"
    if code is constants.AT_END:
        # Perl's $: the end, or before a newline that ends the text; RE2 has no lookahead,
        # so the newline is taken and marked by a group, and LinearPattern ends the match
        # before it. Right only where nothing follows: `$\n` or `$\B` would be tried
        # after the newline instead of before it.
        if not tail:
            raise NotLinear("a $ with more of the pattern after it")
        return r"(?:(\n)?\z)"
    if code is constants.AT_END_STRING:
        return r"\z"
    if code is constants.AT_BOUNDARY:
        return r"\b"  # (RE2's word characters are ASCII's, as Perl's on bytes)
    if code is constants.AT_NON_BOUNDARY:
        return r"\B"
    raise NotLinear(str(code))


def _byte(code: int) -> int:
    if code > 0xFF:
        raise NotLinear("a character beyond one byte")
    return code


def _with_case(codes: set[int] | frozenset[int], icase: bool) -> frozenset[int]:
    """The bytes, and with /i each ASCII letter's other case (Perl's ASCII folding)."""
    if not icase:
        return frozenset(codes)
    out = set(codes)
    for code in codes:
        if 0x41 <= code <= 0x5A or 0x61 <= code <= 0x7A:
            out.add(code ^ 0x20)
    return frozenset(out)


def _class_bytes(items: list[tuple[Any, Any]], icase: bool) -> frozenset[int]:
    """The set of bytes a character class matches."""
    negate = False
    codes: set[int] = set()
    for op, av in items:
        if op is constants.NEGATE:
            negate = True
        elif op is constants.LITERAL:
            codes.add(_byte(av))
        elif op is constants.RANGE:
            low, high = av
            if low > 0xFF:
                continue  # (a range of characters no byte can be)
            codes.update(range(low, min(high, 0xFF) + 1))
        elif op is constants.CATEGORY and av in _CATEGORIES:
            codes.update(_CATEGORIES[av])
        else:
            raise NotLinear(str(op))
    folded = _with_case(codes, icase)
    return frozenset(_BYTES) - folded if negate else folded


def _byte_class(codes: frozenset[int]) -> str:
    """A set of bytes as an RE2 class of ranges (a class that matches nothing: none)."""
    if not codes:
        return r"[^\x00-\xff]"
    ordered = sorted(codes)
    ranges: list[tuple[int, int]] = []
    for code in ordered:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return "[" + "".join(rf"\x{a:02x}" if a == b else rf"\x{a:02x}-\x{b:02x}" for a, b in ranges) + "]"


class LinearMatch:
    """A match of a LinearPattern, its text as the byte view the rule reads."""

    __slots__ = ("_data", "start", "end")

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self._data, self.start, self.end = data, start, end

    def group(self, index: int = 0) -> str:
        if index != 0:  # (the forms have no groups of the rule's own: see _anchor)
            raise IndexError("no such group")
        return self._data[self.start:self.end].decode("latin-1")


class LinearPattern:
    """The rule's regex compiled by RE2 for Latin-1 bytes, searched as `regex` patterns are
    (the timeout is accepted and not needed: RE2 takes time linear in the text)."""

    def __init__(self, pattern: str) -> None:
        compiled = re2_latin1(pattern)
        if compiled is None:  # (re2_form made sure it compiles where RE2 is installed)
            raise ValueError(f"RE2 cannot compile {pattern[:60]!r}")
        self.pattern = pattern
        self._compiled = compiled
        self._ends = compiled.groups  # each group is a `$` that may take the final newline

    def search(self, text: str, timeout: float | None = None) -> LinearMatch | None:
        return self._search(text.encode("latin-1", "replace"), 0)

    def finditer(self, text: str, timeout: float | None = None) -> Iterator[LinearMatch]:
        """Every match as Perl's /g finds them: each search goes on where the last match
        ended, before a final newline that a `$` took."""
        data = text.encode("latin-1", "replace")
        position = 0
        while position <= len(data) and (match := self._search(data, position)) is not None:
            yield match
            position = match.end if match.end > match.start else match.end + 1

    def _search(self, data: bytes, position: int) -> LinearMatch | None:
        match = self._compiled.search(data, position)
        if match is None:
            return None
        end = match.end()
        for group in range(1, self._ends + 1):
            if match.start(group) >= 0:  # a `$` took the final newline: Perl's ends before it
                end = match.start(group)
                break
        return LinearMatch(data, match.start(), end)
