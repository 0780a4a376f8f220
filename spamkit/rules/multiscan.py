"""One pass over a message's text for hundreds of rules at once, to skip the rules that cannot match.

A body rule costs ~26 us a message even when it matches nothing: each regex walks the
whole text. Hyperscan (the engine rspamd uses, and the idea behind SpamAssassin's
sa-compile) runs many patterns over a text in one pass. It is used here as a prefilter:
each rule's regex is rewritten into a looser byte pattern whose matches include every
match of the original, so "no match in the pass" proves the rule misses and the rule
is skipped; a possible match runs the rule's own regex exactly as before. Hits never
change, only the work to find them.

The rewrite (`superset_patterns`) walks the regex as Python's own parser reads it and
writes each piece for Latin-1 bytes: the text is encoded Latin-1 with every other
character turned into "?", so each piece that could match a character above U+00FF
also accepts "?"; case-insensitive pieces list their case variants (the Kelvin sign is
a "k"); anchors, \\b, \\B and lookarounds are dropped, which only loosens the pattern
(and makes a match inside one paragraph a match in the paragraphs joined by newlines).
Where Hyperscan finds a pattern too large, looser forms are tried. A regex the parser
cannot read, or that Hyperscan refuses in every form, simply has no prefilter.

Body, rawbody and uri rules are scanned by the texts they read (a view: SpamAssassin's
body lines as bytes, the built-in rules' paragraphs...); header rules by header, for
headers that at least MULTISCAN_MIN_HEADER_RULES rules test. Compiling takes 12-18 s for
SpamAssassin's rule set, so the compiled databases are kept in the cache directory
($XDG_CACHE_HOME/spamkit, else ~/.cache/spamkit) under a digest of the rules and of
this code, as sa-compile keeps its compiled rules. docs/decisions/0011 has the figures.

The largest rewritten patterns (SpamAssassin's FILL_THIS_FORM rules, ~12 kB each) go to
RE2 instead, a linear-time engine that takes the same byte pattern as it is. Hyperscan
refuses them in its exact mode, and its prefilter mode loosens them until nearly every
message gets through, after compiling for 2-3 s each. RE2 compiles each in a few ms and
rules out as much as the rewrite can (docs/decisions/0039).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import threading
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from re import _constants as constants  # type: ignore[attr-defined]
from re import _parser as parser  # type: ignore[attr-defined]
from typing import Any

from spamkit.rules.prefilter import ParseItem, parse_pattern
from spamkit.rules.rulecache import code_digest, read_cached, write_cached

PLACEHOLDER = ord("?")  # what a character above U+00FF becomes in the scanned bytes
MAX_REPEAT_KEPT = 64  # larger repeat bounds are loosened ({3,500} -> {3,}); Hyperscan
#                       builds huge automata for long bounded repeats
ALL_BYTES = frozenset(range(256))
# When Hyperscan refuses a pattern as too large, alternations nested this deep (and
# deeper) are loosened, deepest first (_node)
CUT_DEPTHS = (3, 2, 1)


class Unsupported(Exception):
    """A construct the rewrite does not handle: the rule gets no prefilter."""


Form = tuple[bytes, ...]  # one or more Hyperscan patterns; a match of any is a match
MAX_SPLIT = 1024  # alternatives one form may be split into (scan ids are id * MAX_SPLIT + k)


def superset_patterns(pattern: str, ignorecase: bool = False, dotall: bool = False,
                      verbose: bool = False, all_forms: bool = True) -> list[Form]:
    """Hyperscan patterns (Latin-1 bytes) matching wherever `pattern` can, tightest first.

    Each form is one pattern or several (any of which may match). The first is the whole
    pattern rewritten. With `all_forms`, the others are for a pattern Hyperscan finds too
    large: its biggest top-level alternation distributed into one pattern per
    alternative (as tight as the whole); then looser ones, with deep alternations cut
    short, or the sequence cut after its first alternation, or ever shorter runs of the
    sequence (a match of the whole contains a match of any contiguous run of it). Looser
    forms that could match the empty string are left out, since they would let
    everything through. Empty when the pattern cannot be rewritten, or when all that is
    left of it is anchors and lookarounds.
    """
    tree: Any = parse_pattern(pattern, (re.IGNORECASE if ignorecase else 0)
                              | (re.DOTALL if dotall else 0) | (re.VERBOSE if verbose else 0))
    if tree is None:
        return []  # syntax only `regex` reads: no prefilter
    icase = bool(tree.state.flags & re.IGNORECASE)
    dotall = bool(tree.state.flags & re.DOTALL)
    items = _flatten(list(tree))
    try:
        whole = _sequence(items, icase, dotall).encode("latin-1")
        if not whole:
            return []  # nothing but anchors and lookarounds: it would match anywhere
        out: list[Form] = [(whole,)]
        if all_forms:
            candidates: list[Form] = []
            split = _split(items, icase, dotall)
            if split:
                candidates.append(tuple(p.encode("latin-1") for p in split))
            candidates += [(_sequence(items, icase, dotall, depth).encode("latin-1"),)
                           for depth in CUT_DEPTHS]
            candidates += [(_sequence(run, icase, dotall).encode("latin-1"),)
                           for run in _branch_cut(items, 4) + _branch_cut(items, 2) + _runs(items)]
            for form in candidates:
                if form not in out:
                    out.append(form)
    except (Unsupported, RecursionError):
        return []
    return out


def _split(items: list[tuple[Any, Any]], icase: bool, dotall: bool) -> list[str]:
    """The sequence with its longest top-level alternation distributed: a(?:b|c)d is
    abd or acd. Empty when there is none, or an alternative could match empty."""
    sizes = [(len(_node(op, av, icase, dotall)), index) for index, (op, av) in enumerate(items)
             if op is constants.BRANCH]
    if not sizes:
        return []
    _, index = max(sizes)
    before, after = items[:index], items[index + 1:]
    out = []
    for branch in items[index][1][1][:MAX_SPLIT]:
        sequence = before + _flatten(list(branch)) + after
        if all(_can_be_empty(*item) for item in sequence):
            return []
        out.append(_sequence(sequence, icase, dotall))
    return out if len(items[index][1][1]) <= MAX_SPLIT else []


def _flatten(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """A sequence with its plain groups opened: (?:ab(?:cd))e is the sequence a b c d e."""
    out: list[tuple[Any, Any]] = []
    for op, av in items:
        if op is constants.SUBPATTERN and not av[1] and not av[2]:
            out.extend(_flatten(list(av[3])))
        else:
            out.append((op, av))
    return out


def _runs(items: list[tuple[Any, Any]]) -> list[list[tuple[Any, Any]]]:
    """Contiguous runs of a sequence, halves then quarters..., without optional edges;
    longest first, none that can match the empty string."""
    found: list[list[tuple[Any, Any]]] = []
    pending = [items]
    while pending:
        run = pending.pop(0)
        while run and _can_be_empty(*run[0]):
            run = run[1:]
        while run and _can_be_empty(*run[-1]):
            run = run[:-1]
        if not run:
            continue
        if run != items:
            found.append(run)
        if len(run) > 1:
            middle = len(run) // 2
            pending += [run[:middle], run[middle:]]
    return found


def _branch_cut(items: list[tuple[Any, Any]], keep: int) -> list[list[tuple[Any, Any]]]:
    """The sequence up to its first alternation that cannot match empty, cut there.

    Each alternative keeps its first `keep` items (and an alternation among them is cut
    the same way): a match of the whole contains a match of the cut sequence, since
    nothing follows the cut. For the obfuscation rules whose alternations of letter
    look-alikes Hyperscan finds too long as they are. Empty when nothing useful is left.
    """
    for position, (op, av) in enumerate(items):
        if op is not constants.BRANCH:
            continue
        cut = _cut_branch(av, keep)
        if _can_be_empty(*cut):
            continue  # (?:^|\s) and the like: part of the lead-in, not the cut
        run = items[:position] + [cut]
        while run and _can_be_empty(*run[0]):
            run = run[1:]
        return [run]
    return []


def _cut_branch(av: Any, keep: int) -> tuple[Any, Any]:
    alternatives = []
    for branch in av[1]:
        kept: list[tuple[Any, Any]] = []
        for op, item in _flatten(list(branch))[:keep]:
            if op is constants.BRANCH:
                kept.append(_cut_branch(item, keep))
                break  # nothing after a cut alternation
            kept.append((op, item))
        alternatives.append(kept)
    return constants.BRANCH, (None, alternatives)


def _can_be_empty(op: Any, av: Any) -> bool:
    if op in (constants.AT, constants.ASSERT, constants.ASSERT_NOT, constants.GROUPREF):
        return True
    if op in (constants.MAX_REPEAT, constants.MIN_REPEAT, getattr(constants, "POSSESSIVE_REPEAT", None)):
        return av[0] == 0 or all(_can_be_empty(*item) for item in av[2])
    if op is constants.BRANCH:
        return any(all(_can_be_empty(*item) for item in branch) for branch in av[1])
    if op is constants.SUBPATTERN:
        return all(_can_be_empty(*item) for item in av[3])
    if op is getattr(constants, "ATOMIC_GROUP", None):
        return all(_can_be_empty(*item) for item in av)
    return False


def _sequence(items: list[ParseItem], icase: bool, dotall: bool, depth: int = -1) -> str:
    return "".join(_node(op, av, icase, dotall, depth) for op, av in items)


def _node(op: Any, av: Any, icase: bool, dotall: bool, depth: int = -1) -> str:
    """One parsed node written for Hyperscan. With a `depth` of 0 or more, the
    alternatives of alternations nested that deep are each written as their first item
    followed by any bytes of the length the rest can take: a looser pattern, for one
    Hyperscan refuses as too large (the obfuscation rules spell each letter as a class or
    one of dozens of HTML entities)."""
    if op is constants.LITERAL:
        return _byte_class(_literal_bytes(av, icase))
    if op is constants.NOT_LITERAL:
        return _byte_class(ALL_BYTES - _literal_bytes(av, icase) | {PLACEHOLDER})
    if op is constants.ANY:
        return _byte_class(ALL_BYTES if dotall else ALL_BYTES - {10})
    if op is constants.IN:
        return _byte_class(_class_bytes(av, icase))
    if op is constants.BRANCH:
        _, branches = av
        if depth == 0:
            return "(?:" + "|".join(_cut_alternative(list(b), icase, dotall) for b in branches) + ")"
        inner = depth - 1 if depth > 0 else -1
        return "(?:" + "|".join(_sequence(list(b), icase, dotall, inner) for b in branches) + ")"
    if op is constants.SUBPATTERN:
        _group, add_flags, del_flags, sub = av
        inner_icase = (icase or bool(add_flags & re.IGNORECASE)) and not del_flags & re.IGNORECASE
        inner_dotall = (dotall or bool(add_flags & re.DOTALL)) and not del_flags & re.DOTALL
        return "(?:" + _sequence(list(sub), inner_icase, inner_dotall, depth) + ")"
    if op is getattr(constants, "ATOMIC_GROUP", None):
        return "(?:" + _sequence(list(av), icase, dotall, depth) + ")"
    if op in (constants.MAX_REPEAT, constants.MIN_REPEAT, getattr(constants, "POSSESSIVE_REPEAT", None)):
        low, high, sub = av
        body = _sequence(list(sub), icase, dotall, depth)
        if not _is_atom(body):
            body = f"(?:{body})"
        low = min(low, MAX_REPEAT_KEPT)
        if high is constants.MAXREPEAT or high > MAX_REPEAT_KEPT:
            return body + {0: "*", 1: "+"}.get(low, f"{{{low},}}")
        if (low, high) == (0, 1):
            return body + "?"
        return body + (f"{{{low}}}" if low == high else f"{{{low},{high}}}")
    if op is constants.AT:
        # Every anchor is dropped, which only loosens the pattern. (^ and $ as line anchors
        # with HS_FLAG_MULTILINE lost matches when combined with HS_FLAG_SINGLEMATCH in
        # one database: Hyperscan 5.4, see docs/decisions/0011.)
        return ""
    if op in (constants.ASSERT, constants.ASSERT_NOT):
        return ""  # a lookaround only narrows the matches: without it, a superset
    if op is constants.GROUPREF:
        return "[\\x00-\\xff]*"  # whatever the group matched
    raise Unsupported(str(op))


def _cut_alternative(items: list[tuple[Any, Any]], icase: bool, dotall: bool) -> str:
    """An alternative as its first item and then any bytes, as many as the rest can take."""
    items = _flatten(items)
    if not items:
        return ""
    try:
        low, high = parser.SubPattern(parser.State(), items[1:]).getwidth()
    except Exception:  # noqa: BLE001 - a width Python cannot tell (a backreference): any
        low, high = 0, constants.MAXREPEAT
    return _node(*items[0], icase, dotall, 0) + _any_bytes(low, high)


def _any_bytes(low: int, high: int) -> str:
    """Any bytes, between low and high of them."""
    low = min(low, MAX_REPEAT_KEPT)
    if high >= MAX_REPEAT_KEPT:
        return f"[\\x00-\\xff]{{{low},}}"
    return f"[\\x00-\\xff]{{{low},{high}}}" if high else ""


def _is_atom(text: str) -> bool:
    """One byte or one [class] as _byte_class writes them: a quantifier applies to it whole."""
    if len(text) == 1 or (len(text) == 4 and text.startswith("\\x")):
        return True
    return text.startswith("[") and text.endswith("]") and text.count("]") == 1 \
        and "\\]" not in text


def _byte_class(members: Iterable[int]) -> str:
    members = sorted(set(members))
    if not members:
        raise Unsupported("a class that matches nothing")
    if len(members) == 256:
        return "[\\x00-\\xff]"
    runs: list[tuple[int, int]] = []
    for value in members:
        if runs and runs[-1][1] == value - 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    if len(runs) == 1 and runs[0][0] == runs[0][1]:
        return _byte(runs[0][0])  # one byte: no brackets
    body = "".join(_byte(a) if a == b else f"{_byte(a)}-{_byte(b)}" for a, b in runs)
    return f"[{body}]"


def _byte(value: int) -> str:
    """A byte as a pattern writes it: letters and digits as themselves (short patterns
    compile where long ones hit Hyperscan's length limit), anything else escaped."""
    char = chr(value)
    return char if char.isascii() and char.isalnum() else f"\\x{value:02x}"


def _literal_bytes(code: int, icase: bool) -> set[int]:
    """The bytes a literal character can match in the Latin-1-with-placeholder text."""
    variants = _case_variants(code) if icase else {code}
    out = {c for c in variants if c < 256}
    if any(c >= 256 for c in variants):
        out.add(PLACEHOLDER)
    return out


@lru_cache(maxsize=None)
def _case_variants(code: int) -> frozenset[int]:
    """Every character that matches `code` case-insensitively (simple case folding)."""
    char = chr(code)
    found = {code}
    for form in (char.lower(), char.upper(), char.casefold()):
        if len(form) == 1:
            found.add(ord(form))
    found |= _FOLDS_INTO().get(code, set())
    for other in list(found):
        found |= _FOLDS_INTO().get(other, set())
    return frozenset(found)


@lru_cache(maxsize=1)
def _FOLDS_INTO() -> dict[int, set[int]]:  # noqa: N802 - a lazily built constant
    """Characters whose lower, upper or folded form is another single character, by that character."""
    table: dict[int, set[int]] = {}
    for code in range(0x20000):
        char = chr(code)
        for form in (char.lower(), char.upper(), char.casefold()):
            if len(form) == 1 and ord(form) != code:
                table.setdefault(ord(form), set()).add(code)
    return table


def _class_bytes(items: list[ParseItem], icase: bool) -> set[int]:
    negate = bool(items) and items[0][0] is constants.NEGATE
    if negate:
        items = items[1:]
    wide = False  # can the class match some character above U+00FF?
    members: set[int] = set()
    for op, av in items:
        if op is constants.LITERAL:
            chars = _case_variants(av) if icase else {av}
        elif op is constants.RANGE:
            low, high = av
            members |= {c for c in range(256) if low <= c <= high or (
                icase and any(low <= v <= high for v in _case_variants(c)))}
            wide = wide or high >= 256 or (icase and any(
                v >= 256 for c in range(low, min(high, 255) + 1) for v in _case_variants(c)))
            continue
        elif op is constants.CATEGORY:
            wide = True
            chars = {c for c in range(256) if _in_category(av, chr(c), loose=not negate)}
        else:
            raise Unsupported(str(op))
        members |= {c for c in chars if c < 256}
        wide = wide or any(c >= 256 for c in chars)
    if negate:
        return set(ALL_BYTES - members) | {PLACEHOLDER}
    return members | ({PLACEHOLDER} if wide else set())


def _in_category(category: object, char: str, loose: bool) -> bool:
    """Membership in \\d, \\s, \\w and their negations as `re` or `regex` define them,
    with Unicode or with ASCII rules (the `a` flag of rules from SpamAssassin's files).

    They differ at the edges (\\x1c-\\x1f are spaces to `re` only, superscript digits
    word characters to `re` only, "é" a word character to neither with ASCII rules):
    `loose` answers "in it for any", for a class's members; strict answers "in it for
    all", for a negated class's members, so the class's complement is again loose.
    """
    if category in _NEGATIONS:
        return True if loose else not _in_category(_NEGATIONS[category], char, True)
    if category is constants.CATEGORY_DIGIT:
        return char.isdigit() if loose else char in "0123456789"
    if category is constants.CATEGORY_SPACE:
        return (char.isspace() or char in "\x85\xa0") if loose else char in " \t\n\r\f\v"
    if category is constants.CATEGORY_WORD:
        return (char.isalnum() or char == "_") if loose else (char.isascii() and (char.isalnum() or char == "_"))
    raise Unsupported(str(category))


_NEGATIONS = {constants.CATEGORY_NOT_DIGIT: constants.CATEGORY_DIGIT,
              constants.CATEGORY_NOT_SPACE: constants.CATEGORY_SPACE,
              constants.CATEGORY_NOT_WORD: constants.CATEGORY_WORD}


# the modules whose code decides the rewritten patterns: part of every cache key
_REWRITERS = ("multiscan.py", "prefilter.py", "perl_regex.py")
CHUNK = 48  # patterns per database: 583 body rules compile in 8.8 s in chunks of 48, in
#             28 s as one database, and scan as fast (docs/decisions/0011)
# a test whose rewritten pattern is at least this long is scanned by RE2, not Hyperscan
# (where RE2 is installed and takes it: docs/decisions/0039)
RE2_MIN_LENGTH = 5_000
# the memory each RE2 pattern may take, most of it its DFA's cache of states: at RE2's
# default of 8 MiB, three of Debian's largest patterns ran out of it on ordinary mail and
# went on in RE2's far slower NFA; 16 MiB costs nothing to compile (docs/decisions/0050)
RE2_MAX_MEM = 16 << 20


class MultiScan:
    """Hyperscan databases (and RE2 patterns) over groups of rules; `candidates` names the
    rules that may match.

    `groups` maps a group name (the texts its rules read, or a header) to {id: the rule's test as written};
    `forms_of(test, all_forms)` rewrites a test into prefilter patterns, tightest first
    (only the first unless `all_forms`). A pattern Hyperscan refuses is tried in its
    looser forms; one refused in every form is left out, and `covered` tells the caller
    which ids the scan answers for. Databases are cached under a digest of the tests, so
    a warm start neither rewrites nor compiles Hyperscan's databases; it compiles the
    RE2 patterns (45 with Debian's rules since decision 0041; 19 took 59 ms).
    """

    def __init__(self, groups: dict[str, dict[int, str]],
                 forms_of: Callable[[str, bool], list[Form]], cache_dir: Path | None) -> None:
        self._databases: dict[str, list[Any]] = {}  # hyperscan.Database (untyped)
        self._local = threading.local()  # a scan needs scratch space of its own per thread
        self.covered: dict[str, set[int]] = {}
        self.by_re2: dict[str, dict[int, Any]] = {}  # the largest: re2._Regexp by group and id
        for group, tests in groups.items():
            ids = sorted(tests)
            databases = []
            for start in range(0, len(ids), CHUNK):
                chunk = {i: tests[i] for i in ids[start:start + CHUNK]}
                database, covered, by_re2 = _chunk_database(chunk, forms_of, cache_dir)
                if database is not None:
                    databases.append(database)
                    self.covered.setdefault(group, set()).update(covered)
                if by_re2:
                    self.by_re2.setdefault(group, {}).update(by_re2)
                    self.covered.setdefault(group, set()).update(by_re2)
            self._databases[group] = databases

    def candidates(self, group: str, text: str) -> set[int]:
        """Ids of the group's covered patterns that match somewhere in `text` (or may)."""
        found: set[int] = set()

        def on_match(pattern_id: int, _start: int, _end: int, _flags: int, _context: object) -> None:
            found.add(pattern_id // MAX_SPLIT)

        hyperscan = _hyperscan()
        data = text.encode("latin-1", errors="replace")
        scratches: dict[int, object] = self._local.__dict__.setdefault("scratches", {})
        try:
            for database in self._databases.get(group, ()):
                scratch = scratches.get(id(database))
                if scratch is None:
                    scratch = scratches[id(database)] = hyperscan.Scratch(database)
                database.scan(data, match_event_handler=on_match, scratch=scratch)
            for test_id, compiled in self.by_re2.get(group, {}).items():
                if compiled.search(data) is not None:
                    found.add(test_id)
        except Exception:  # noqa: BLE001 - a scan that fails proves nothing: every rule may match
            return set(self.covered.get(group, ()))
        return found


@lru_cache(maxsize=None)
def _optional_module(name: str) -> Any:
    """An optional engine's module, imported on first use, or None where it is not
    installed (not every platform has a wheel: then the rules run one by one)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _hyperscan() -> Any:
    """The hyperscan module (4 ms to import), or None."""
    return _optional_module("hyperscan")


def re2_module() -> Any:
    """The re2 module (google-re2), or None: then the largest patterns are prefiltered
    by Hyperscan alone, as loosely as it makes them, and no rule runs on RE2
    (spamkit.rules.linear)."""
    return _optional_module("re2")


def re2_latin1(pattern: str) -> Any:
    """A pattern compiled by RE2 for Latin-1 bytes, or None (no RE2, or a pattern it
    refuses: then Hyperscan gets it, as a pattern of any size would, and a rule too slow
    for `regex` stays rejected)."""
    re2 = re2_module()
    if re2 is None:
        return None
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    options.log_errors = False  # (it would write to stderr, which is the caller's)
    options.max_mem = RE2_MAX_MEM
    try:
        return re2.compile(pattern.encode("latin-1"), options)
    except Exception:  # noqa: BLE001 - re2.error, or a pattern past its limits
        return None


@lru_cache(maxsize=1)
def available() -> bool:
    """Hyperscan imported and runs on this processor (it needs SSSE3)."""
    hyperscan = _hyperscan()
    if hyperscan is None:
        return False
    try:
        hyperscan.Database().compile(expressions=[b"a"], flags=0)
    except Exception:  # noqa: BLE001 - hyperscan.error on an unsupported processor
        return False
    return True


def _flags() -> int:
    hyperscan = _hyperscan()
    return int(hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_ALLOWEMPTY | hyperscan.HS_FLAG_SINGLEMATCH)


def _compile(chunk: dict[int, Form]) -> object:
    """One database; the patterns of test i's form get ids i * MAX_SPLIT + k."""
    hyperscan = _hyperscan()
    expressions = [pattern for form in chunk.values() for pattern in form]
    ids = [test_id * MAX_SPLIT + k for test_id, form in chunk.items() for k in range(len(form))]
    database = hyperscan.Database()
    database.compile(expressions=expressions, ids=ids, elements=len(ids), flags=_flags())
    return database


def _chunk_database(tests: dict[int, str], forms_of: Callable[[str, bool], list[Form]],
                    cache_dir: Path | None) -> tuple[object | None, list[int], dict[int, Any]]:
    """A compiled database for a chunk of tests, the ids it answers for, and the tests
    left to RE2 instead, compiled ({id: re2._Regexp}; RE2_MIN_LENGTH).

    Cached as one file: a JSON line with the ids Hyperscan covers and the RE2 patterns,
    then Hyperscan's serialized database.
    """
    hyperscan = _hyperscan()
    digest = hashlib.sha256()
    digest.update(f"{code_digest(_REWRITERS)} hyperscan {getattr(hyperscan, '__version__', '?')} "
                  f"flags {_flags()} re2 {re2_module() is not None}\n".encode())
    for test_id, test in tests.items():
        digest.update(f"{test_id} {test}\n".encode("utf-8", "surrogatepass"))
    path = cache_dir / f"multiscan-{digest.hexdigest()[:40]}.hsdb" if cache_dir else None
    cached = read_cached(path) if path is not None else None
    if cached is not None:
        try:
            index_line, _, data = cached.partition(b"\n")
            index = json.loads(index_line)
            from_cache = {int(i): re2_latin1(str(pattern)) for i, pattern in index["re2"].items()}
            loaded = {i: compiled for i, compiled in from_cache.items() if compiled is not None}
            if not data:
                return None, [], loaded
            return (hyperscan.loadb(data, hyperscan.HS_MODE_BLOCK), [int(i) for i in index["covered"]],
                    loaded)
        except Exception:  # noqa: BLE001 - a damaged or foreign cache file: compile again
            pass
    chunk: dict[int, Form] = {}
    large: dict[int, str] = {}  # test id: its rewritten pattern, for RE2
    by_re2: dict[int, Any] = {}  # and compiled
    for test_id, test in tests.items():
        forms = forms_of(test, False)
        if not forms:
            continue
        pattern = "|".join(f"(?:{p.decode('latin-1')})" for p in forms[0])
        compiled = re2_latin1(pattern) if len(pattern) >= RE2_MIN_LENGTH else None
        if compiled is not None:
            large[test_id], by_re2[test_id] = pattern, compiled
        else:
            chunk[test_id] = forms[0]
    try:
        database = _compile(chunk) if chunk else None
    except hyperscan.error:
        for test_id in list(chunk):  # find the refused ones, one compile each
            for form in [chunk[test_id]] + forms_of(tests[test_id], True)[1:]:
                try:
                    _compile({test_id: form})
                    chunk[test_id] = form
                    break
                except hyperscan.error:
                    continue
            else:
                del chunk[test_id]
        database = _compile(chunk) if chunk else None
    if path is not None:
        index = json.dumps({"covered": list(chunk), "re2": large}, separators=(",", ":"))
        write_cached(path, index.encode() + b"\n"
                     + (hyperscan.dumpb(database) if database is not None else b""))
    return database, list(chunk), by_re2
