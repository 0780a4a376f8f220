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

try:  # Python 3.11+: the parser is re._parser (sre_parse before)
    from re import _constants as constants  # type: ignore[attr-defined]
    from re import _parser as parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants as constants  # type: ignore[no-redef]
    import sre_parse as parser  # type: ignore[no-redef]

MIN_LENGTH = 3


def required_literals(pattern: str, ignorecase: bool, verbose: bool = False) -> tuple[str, ...] | None:
    """Strings one of which every match contains (lower-cased when `ignorecase`), or None."""
    flags = (re.IGNORECASE if ignorecase else 0) | (re.VERBOSE if verbose else 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = parser.parse(pattern, flags)
    except Exception:  # noqa: BLE001 - Perl syntax Python cannot read: no prefilter
        return None
    if tree.state.flags & re.IGNORECASE:
        ignorecase = True  # a leading (?i)
    if _changes_flags(list(tree)):
        return None  # (?i) or (?-i) inside the pattern: case rules vary, do not guess
    found = _sequence(list(tree))
    if not found or any(len(f) < MIN_LENGTH or not f.isascii() for f in found):
        return None
    return tuple(f.lower() for f in found) if ignorecase else tuple(found)


def _changes_flags(items: list[tuple[object, object]]) -> bool:
    for op, arg in items:
        if op is constants.SUBPATTERN:
            _, add_flags, del_flags, body = arg  # type: ignore[misc]
            if add_flags or del_flags or _changes_flags(list(body)):
                return True
        elif op is constants.BRANCH:
            if any(_changes_flags(list(branch)) for branch in arg[1]):  # type: ignore[index]
                return True
        elif op in (constants.MAX_REPEAT, constants.MIN_REPEAT):
            if _changes_flags(list(arg[2])):  # type: ignore[index]
                return True
    return False


def _sequence(items: list[tuple[object, object]]) -> tuple[str, ...] | None:
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
            run.append(chr(arg))  # type: ignore[arg-type]
            continue
        if op is constants.SUBPATTERN:
            inner = list(arg[-1])  # type: ignore[index]
            if all(o is constants.LITERAL for o, _ in inner):
                run.extend(chr(a) for _, a in inner)  # type: ignore[arg-type]
                continue
            close_run()
            candidate = _sequence(inner)
        elif op is constants.BRANCH:
            close_run()
            branches = [_sequence(list(branch)) for branch in arg[1]]  # type: ignore[index]
            if any(b is None for b in branches):
                continue
            candidate = tuple(dict.fromkeys(s for b in branches for s in b))  # type: ignore[union-attr]
        elif op in (constants.MAX_REPEAT, constants.MIN_REPEAT, getattr(constants, "POSSESSIVE_REPEAT", None)):
            low, _, body = arg  # type: ignore[misc]
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
