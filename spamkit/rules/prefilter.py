"""Literal text a regex cannot match without: checked with `in` before the regex runs.

Most rules look for words. If every match of /cheap\\s+v[i1]agra/i must contain "cheap",
a message whose text lacks "cheap" cannot match, and `"cheap" in text` costs a fraction
of running the regex. SpamAssassin's sa-compile does the same with re2c; here the
pattern is read with Python's own regex parser (re._parser) and walked for the longest
run of literal characters every match needs; an alternation at the top gives one such
run per branch. A pattern the parser cannot read, or one with no run of at least
MIN_LENGTH characters, simply has no prefilter.
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache
from typing import Any

# Python's own regex parser (3.11+; typeshed has no types for it)
from re import _constants as constants  # type: ignore[attr-defined]
from re import _parser as parser  # type: ignore[attr-defined]

# one (opcode, argument) of a tree from re._parser, whose arguments differ by opcode (an
# int, a list, a tuple of a group's flags and body...): typed loosely on purpose
ParseItem = tuple[Any, Any]
MIN_LENGTH = 3
# [[:alpha:]]: POSIX classes, which `regex` reads and Python's parser reads wrongly (as a
# class of the characters "[:alph" followed by a literal "]"): such patterns get no shortcut
_POSIX_CLASS = re.compile(r"\[:\^?[A-Za-z]+:\]")


@lru_cache(maxsize=4096)
def parse_pattern(pattern: str, flags: int) -> Any:
    """The pattern as Python's regex parser reads it, or None where that reading could
    differ from `regex`'s (syntax it does not know, POSIX classes). Shared by the literal
    prefilter, the paragraph test and the multi-pattern rewrite: each pattern parsed once."""
    if _POSIX_CLASS.search(pattern):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return parser.parse(pattern, flags)
    except Exception:  # noqa: BLE001 - Perl syntax Python cannot read
        return None


def required_literals(pattern: str, ignorecase: bool, verbose: bool = False) -> tuple[str, ...] | None:
    """Strings one of which every match contains (lower-cased when `ignorecase`), or None."""
    tree = parse_pattern(pattern, (re.IGNORECASE if ignorecase else 0) | (re.VERBOSE if verbose else 0))
    if tree is None:
        return None
    if tree.state.flags & re.IGNORECASE:
        ignorecase = True  # a leading (?i)
    if _changes_flags(list(tree)):
        return None  # (?i) or (?-i) inside the pattern: case rules vary, do not guess
    found = _sequence(list(tree))
    if not found or any(len(f) < MIN_LENGTH or not f.isascii() for f in found):
        return None
    return tuple(f.lower() for f in found) if ignorecase else tuple(found)


def _changes_flags(items: list[ParseItem]) -> bool:
    for op, arg in items:
        if op is constants.SUBPATTERN:
            _, add_flags, del_flags, body = arg
            if add_flags or del_flags or _changes_flags(list(body)):
                return True
        elif op is constants.BRANCH:
            if any(_changes_flags(list(branch)) for branch in arg[1]):
                return True
        elif op in (constants.MAX_REPEAT, constants.MIN_REPEAT):
            if _changes_flags(list(arg[2])):
                return True
    return False


def _sequence(items: list[ParseItem]) -> tuple[str, ...] | None:
    """Best required literal(s) of a sequence of nodes: its longest mandatory run."""
    best: tuple[str, ...] | None = None
    run: list[str] = []

    def close_run() -> None:
        nonlocal best, run
        if run:
            candidate = ("".join(run),)
            if best is None or _weight(candidate) > _weight(best):
                best = candidate
        run = []

    for op, arg in items:
        if op is constants.LITERAL:
            run.append(chr(arg))
            continue
        if op is constants.SUBPATTERN:
            inner = list(arg[-1])
            if all(o is constants.LITERAL for o, _ in inner):
                run.extend(chr(a) for _, a in inner)
                continue
            close_run()
            candidate = _sequence(inner)
        elif op is constants.BRANCH:
            close_run()
            branches = [_sequence(list(branch)) for branch in arg[1]]
            if any(b is None for b in branches):
                continue
            candidate = tuple(dict.fromkeys(s for b in branches if b is not None for s in b))
        elif op in (constants.MAX_REPEAT, constants.MIN_REPEAT, getattr(constants, "POSSESSIVE_REPEAT", None)):
            low, _, body = arg
            close_run()
            candidate = _sequence(list(body)) if low >= 1 else None
        elif op is constants.AT:
            continue  # an anchor takes no characters: the run goes on around it
        else:
            close_run()
            continue
        if candidate is not None and (best is None or _weight(candidate) > _weight(best)):
            best = candidate
    close_run()
    return best


def _weight(literals: tuple[str, ...]) -> float:
    """Prefer long literals and few alternatives: the shortest one is what filters."""
    return min(len(s) for s in literals) - 0.1 * (len(literals) - 1)


# Zero-width tests whose answer does not change when a paragraph is embedded in the
# joined text between "\n" separators: word boundaries (a "\n" is a non-word character,
# as the start and end of a string are).
_SAFE_ANCHORS = frozenset(
    getattr(constants, name) for name in ("AT_BOUNDARY", "AT_NON_BOUNDARY", "AT_UNI_BOUNDARY",
                                          "AT_UNI_NON_BOUNDARY", "AT_LOC_BOUNDARY",
                                          "AT_LOC_NON_BOUNDARY") if hasattr(constants, name))


def paragraph_local(pattern: str, ignorecase: bool, verbose: bool = False) -> bool:
    r"""True when every match in one paragraph is also a match in all the paragraphs joined
    by "\n": no anchors but word boundaries (and SpamAssassin's "(?:^|\s)"), lookarounds
    only where the joined text cannot change their answer, no conditionals.

    For such a pattern one search over the joined text answers "no paragraph matches" in
    one call instead of one call per paragraph; only a hit needs the per-paragraph look
    (a match in the joined text may span two paragraphs).
    """
    tree = parse_pattern(pattern, (re.IGNORECASE if ignorecase else 0) | (re.VERBOSE if verbose else 0))
    if tree is None:
        return False  # keep the slow, sure way
    return _local(list(tree))


def _local(items: list[ParseItem]) -> bool:
    for op, arg in items:
        if op is constants.AT:
            if arg not in _SAFE_ANCHORS:
                return False
        elif op is constants.ASSERT:  # (?=X), (?<=X): X's match is within the paragraph
            if not _local(list(arg[1])):
                return False
        elif op is constants.ASSERT_NOT:  # (?!X), (?<!X): X must not reach past the paragraph
            body = list(arg[1])
            if not _local(body) or not _newline_free(body):
                return False
        elif op is constants.GROUPREF_EXISTS:
            return False
        elif op is constants.SUBPATTERN:
            if not _local(list(arg[-1])):
                return False
        elif op is constants.BRANCH:
            branches = [list(branch) for branch in arg[1]]
            if any(_is_newline_char(b) for b in branches):
                # SpamAssassin's "(?:^|\s)" and "(?:$|\W)": where the anchor matches at a
                # paragraph's edge, the "\n" between paragraphs is matched by its sibling
                branches = [b for b in branches if not _is_edge_anchor(b)]
            if not all(_local(branch) for branch in branches):
                return False
        elif op in (constants.MAX_REPEAT, constants.MIN_REPEAT,
                    getattr(constants, "POSSESSIVE_REPEAT", None)):
            if not _local(list(arg[2])):
                return False
        elif op is getattr(constants, "ATOMIC_GROUP", None):
            if not _local(list(arg)):
                return False
    return True


_EDGE_ANCHORS = frozenset({constants.AT_BEGINNING, constants.AT_BEGINNING_STRING,
                           constants.AT_END, constants.AT_END_STRING})
_NEWLINE_CATEGORIES = frozenset(
    getattr(constants, name) for name in ("CATEGORY_SPACE", "CATEGORY_NOT_WORD", "CATEGORY_NOT_DIGIT",
                                          "CATEGORY_LINEBREAK", "CATEGORY_UNI_SPACE",
                                          "CATEGORY_UNI_NOT_WORD", "CATEGORY_UNI_NOT_DIGIT",
                                          "CATEGORY_UNI_LINEBREAK") if hasattr(constants, name))


def _is_edge_anchor(branch: list[ParseItem]) -> bool:
    return len(branch) == 1 and branch[0][0] is constants.AT and branch[0][1] in _EDGE_ANCHORS


def _is_newline_char(branch: list[ParseItem]) -> bool:
    r"""The branch is one character test that "\n" passes."""
    if len(branch) != 1:
        return False
    op, arg = branch[0]
    if op is constants.LITERAL:
        return bool(arg == 10)
    if op is constants.NOT_LITERAL:
        return bool(arg != 10)
    if op is not constants.IN:
        return False
    items = list(arg)
    negated = bool(items) and items[0][0] is constants.NEGATE
    hit = False
    for item_op, item_arg in items[1:] if negated else items:
        if item_op is constants.LITERAL and item_arg == 10:
            hit = True
        elif item_op is constants.RANGE and item_arg[0] <= 10 <= item_arg[1]:
            hit = True
        elif item_op is constants.CATEGORY and item_arg in _NEWLINE_CATEGORIES:
            hit = True
        elif item_op is constants.CATEGORY and negated:
            return False  # [^\s] and the like: do not guess
    return hit != negated


def _newline_free(items: list[ParseItem]) -> bool:
    r"""No match of these items can contain a "\n" (a DOTALL "." could: then False)."""
    for op, arg in items:
        if op is constants.LITERAL:
            if arg == 10:
                return False
        elif op in (constants.NOT_LITERAL, constants.ANY):
            return False  # [^x] matches "\n"; so may "." under (?s): do not guess
        elif op is constants.IN:
            if _is_newline_char([(op, arg)]) or any(o is constants.NEGATE for o, _ in arg):
                return False
        elif op is constants.SUBPATTERN:
            if arg[1] or not _newline_free(list(arg[-1])):
                return False  # (arg[1]: inline flags added, perhaps (?s))
        elif op is constants.BRANCH:
            if not all(_newline_free(list(branch)) for branch in arg[1]):
                return False
        elif op in (constants.MAX_REPEAT, constants.MIN_REPEAT,
                    getattr(constants, "POSSESSIVE_REPEAT", None)):
            if not _newline_free(list(arg[2])):
                return False
        elif op is getattr(constants, "ATOMIC_GROUP", None):
            if not _newline_free(list(arg)):
                return False
        elif op not in (constants.AT, constants.ASSERT, constants.ASSERT_NOT, constants.GROUPREF):
            return False  # anything else: do not guess
    return True
