"""Perl regular expressions as SpamAssassin rules write them, compiled with `regex`.

`regex` (mrab-regex) rather than `re`: it reads more of Perl's syntax (possessive
quantifiers, \\z, POSIX classes, \\x{...}) and every match takes a timeout, which is how
a rule that backtracks for ever is caught at load and bounded at scan time.
"""

from __future__ import annotations

from functools import lru_cache

import regex

_DELIMITED = regex.compile(r"^\s*m?(?P<open>[^\w\s])(?P<body>.*)(?P<close>[^\w\s])(?P<flags>[a-z]*)\s*$",
                           regex.DOTALL)
_PAIRS = {"{": "}", "(": ")", "[": "]", "<": ">"}
# ("a": Perl's ASCII-restricted \w, \d, \s, \b and case folding, as it matches a rule
# on SpamAssassin's byte strings: see as_byte_rule)
_FLAG_BITS = {"i": regex.IGNORECASE, "s": regex.DOTALL, "m": regex.MULTILINE, "x": regex.VERBOSE,
              "a": regex.ASCII}


class PerlRegexError(ValueError):
    pass


def split_delimited(text: str) -> tuple[str, str]:
    """'/foo/i' or 'm{foo}i' -> ('foo', 'i')."""
    match = _DELIMITED.match(text)
    if match is None:
        raise PerlRegexError(f"not a /regex/: {text[:60]!r}")
    opening, closing = match.group("open"), match.group("close")
    if _PAIRS.get(opening, opening) != closing:
        raise PerlRegexError(f"delimiters {opening!r} and {closing!r} do not pair")
    body = match.group("body")
    if opening == closing and opening != "/":
        body = body.replace("\\" + opening, opening)
    return body, match.group("flags")


def translate(body: str) -> str:
    """Perl-only escapes to their `regex` equivalents."""
    out = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            following = body[i + 1]
            if following == "z":
                out.append(r"\Z")
            elif following == "e":
                out.append(r"\x1b")
            elif following == "Z":
                out.append(r"(?=\n?\Z)")
            elif following in "QE":
                pass  # \Q...\E quoting is rare in rules; the text between stays literal-ish
            elif following == "/":
                out.append("/")
            else:
                out.append(body[i:i + 2])
            i += 2
            continue
        if char == "$" and i + 1 < len(body) and (body[i + 1].isalpha() or body[i + 1] == "{"):
            raise PerlRegexError("Perl variable interpolation is not supported")
        if char == "@" and i + 1 < len(body) and (body[i + 1].isalpha() or body[i + 1] == "{") \
                and (i == 0 or body[i - 1] != "\\"):
            out.append(r"\@")  # Perl would interpolate an array; rules mean a literal @
            i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)


def literals_for(text: str) -> tuple[str, ...] | None:
    """Required literals of '/body/flags' for the prefilter (spamkit.rules.prefilter)."""
    from spamkit.rules.prefilter import required_literals

    try:
        body, flags = split_delimited(text)
        return required_literals(translate(body), "i" in flags, "x" in flags)
    except PerlRegexError:
        return None


def superset_for(text: str, all_forms: bool = True) -> list[tuple[bytes, ...]]:
    """Hyperscan prefilter forms of '/body/flags' (spamkit.rules.multiscan), tightest first."""
    from spamkit.rules.multiscan import superset_patterns

    try:
        body, flags = split_delimited(text)
        return superset_patterns(translate(body), "i" in flags, "s" in flags, "x" in flags,
                                 all_forms)
    except PerlRegexError:
        return []


def is_paragraph_local(text: str) -> bool:
    """'/body/flags' can be tried on all paragraphs at once (spamkit.rules.prefilter)."""
    from spamkit.rules.prefilter import paragraph_local

    try:
        body, flags = split_delimited(text)
        return paragraph_local(translate(body), "i" in flags, "x" in flags)
    except PerlRegexError:
        return False


def as_byte_rule(text: str) -> str:
    """'/body/flags' as Perl matches it on SpamAssassin's text, which is bytes (UTF-8 once
    normalize_charset has decoded it): the pattern's characters as their UTF-8 bytes, one
    character a byte (as in to_bytes_view), and ASCII rules for \\w, \\s, \\d, \\b and
    case. So "\\xd0[\\xb0\\xb5]" finds a Cyrillic a or e, and [\\x80-\\xff] any non-ASCII
    character, as in SpamAssassin; a rule read as characters never matched them."""
    body, flags = split_delimited(text)
    return "/" + to_bytes_view(body) + "/" + flags.replace("a", "") + "a"


def to_bytes_view(text: str) -> str:
    """Text as its UTF-8 bytes, each byte the character of the same number (so str
    regexes with byte escapes match it, and Latin-1 gives the bytes back)."""
    return text if text.isascii() else text.encode("utf-8", "surrogatepass").decode("latin-1")


def from_bytes_view(text: str) -> str:
    """The text `to_bytes_view` made, as characters again (a cut character replaced)."""
    return text if text.isascii() else text.encode("latin-1").decode("utf-8", "replace")


def compile_perl(text: str) -> regex.Pattern[str]:
    """Compile '/body/flags' (or m{body}flags) as Perl would match it, or raise PerlRegexError."""
    body, flags = split_delimited(text)
    bits = 0
    for flag in flags:
        if flag in _FLAG_BITS:
            bits |= _FLAG_BITS[flag]
        elif flag not in "goe":  # g, o and e change nothing for a match test
            raise PerlRegexError(f"unsupported regex flag {flag!r}")
    try:
        return regex.compile(translate(body), bits | regex.V0)
    except regex.error as error:
        raise PerlRegexError(str(error)) from None


@lru_cache(maxsize=128)
def compile_bare(body: str) -> regex.Pattern[str]:
    """Compile a Perl regex written without delimiters or flags (an eval's argument, as
    html_text_match's or image_name_regex's); cached, since a rule passes the same text
    every message. Raises PerlRegexError or regex.error."""
    return regex.compile(translate(body), regex.V0)


def compiles_bare(body: str) -> bool:
    """Whether compile_bare takes `body`: an eval's `accepts` check at load."""
    try:
        compile_bare(body)
    except (PerlRegexError, regex.error):
        return False
    return True
