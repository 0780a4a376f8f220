"""The links SpamAssassin 4.0 finds written in a message's text, for its `uri` rules.

PerMsgStatus.pm's `_process_text_uri_list` runs a mix of Thunderbird's and Outlook
Express's link finder (`_tbirdurire`) over the text its body rules read. It takes three
kinds of link:
- a scheme or a "www."/"ftp." start: `http://x.example/a`, `www.x.example`;
- an address: `mailto:...`, or anything@anything;
- a bare host under a known top-level domain, with a port and path if any:
  `NoMailAudit.pm`, `example.com/offer` (given "http://", and marked "unlinked" there).

This module finds them as it does, on the text as UTF-8 bytes (each byte one character,
as `to_bytes_view` makes it): `\\s`, `\\b`, `\\d` and case are ASCII's, "\\xa0" is a
delimiter and bytes from 0x80 end an address, as they do for Perl on octets. Whether a
link is then kept (a host it knows, or an IP address) is the caller's: the same test
applies to every spelling the canonicaliser derives (`MessageContext.written_links`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator

import regex

from spamkit.lazyregex import LazyPattern
from spamkit.rules.registry import Registry
from spamkit.rules.sa_uris import decode_printable_escapes, is_fqdn_valid

# the delimiters of _tbirdurire, as its Perl strings spell them
_START_DELIMITERS = r"><\"'`,{\[(|\s\x1b\xa0"
_END_DELIMITERS = r"><\"`}\]{\[|\s\x1b\xa0"
_END_DELIMITERS_MAIL = _END_DELIMITERS + r",(\x27\x80-\xff"
_END_DELIMITERS_MAIL_AT = _END_DELIMITERS_MAIL + "@"
_SCHEMELESS_START = r"[!\"#$&'()*+,/:;<=>?@\[\\\]^`{|}~\s\x1b\xa0]"
# valid_tlds_re (RegistryBoundaries.pm): a whole label, not followed by another
_TLD = r"(?<![a-zA-Z0-9-])\L<tlds>(?![a-zA-Z0-9-]|\.[a-zA-Z0-9])"

_KNOWN_SCHEME = rf"(?:(?:https?|ftp)://|(?:www\d{{0,2}}|ftp)\.)[^{_END_DELIMITERS}]{{1,2048}}"
_MAIL = (rf"(?:mailto:[^{_END_DELIMITERS_MAIL}]{{1,2048}}"
         rf"|[^{_END_DELIMITERS_MAIL_AT}]{{1,251}}@[^{_END_DELIMITERS_MAIL}]{{1,251}})")
_SCHEMELESS = rf"(?P<host>[a-z\d][a-z\d._-]{{0,251}}\.{_TLD})\.?(?::\d{{1,5}})?(?:/[^{_END_DELIMITERS}]{{1,2048}})?"
# _tbirdurire's start, then its three branches in its order (a match at a position is
# the first branch's that matches there)
_START = rf"(?:\b|(?<=\x1b\(.)|(?<=[{_START_DELIMITERS}]))"
_SCHEME_BRANCH = rf"(?:(?P<scheme>{_KNOWN_SCHEME})(?=[{_END_DELIMITERS}]|\Z))"
_MAIL_BRANCH = rf"(?:(?P<mail>{_MAIL})(?=[{_END_DELIMITERS_MAIL}]|\Z))"
_BARE_HOST_BRANCH = rf"(?:(?:^|(?<={_SCHEMELESS_START}))(?P<bare>{_SCHEMELESS})(?=[{_END_DELIMITERS}]|\Z))"


def _link_pattern(mail: bool, bare_host: bool) -> str:
    """_tbirdurire with only the branches asked for. A branch that cannot match
    somewhere is left out there, which changes no match: the address branch in a text
    with no "@"; the bare-host branch except within 252 characters before a dot whose
    label is a top-level domain (_TLD_CANDIDATE), where such a host can start. Both try
    at nearly every word, the first up to 251 characters ahead for an "@", the second
    every dot of a word against the list: on the test fold they made the finder 20 times
    slower, where only a few lines can hold such a link."""
    branches = [_SCHEME_BRANCH] + [_MAIL_BRANCH] * mail + [_BARE_HOST_BRANCH] * bare_host
    return _START + "(?:" + "|".join(branches) + ")"


# a label after a dot that could be the bare-host branch's top-level domain: the whole
# label (valid_tlds_re's boundaries), looked up in the list
_TLD_CANDIDATE = LazyPattern(r"\.([a-z0-9-]+)(?![a-zA-Z0-9-]|\.[a-zA-Z0-9])", re.IGNORECASE | re.ASCII)
# The finder's seconds a message. The address branch backtracks up to 251 characters at
# each "@" of "a@a@a@...": 28 ms a 2 kB line, 0.7 s for 400 kB (the corpus's slowest
# message, 196 kB of text, takes 37 ms). Past it, the links found by then, as
# MATCH_BUDGET bounds a rule's search.
FINDER_BUDGET = 0.25
_BARE_HOST_REACH = 252  # [a-z\d][a-z\d._-]{0,251}: where a bare host can start, before its dot
_LOCAL_PART_REACH = 251  # [^...@]{1,251}: where an address can start, before its "@"
_AT = LazyPattern("@")
_MAILTO = LazyPattern("mailto:", re.IGNORECASE | re.ASCII)
_FLAGS = regex.IGNORECASE | regex.ASCII | regex.VERSION0  # the link patterns'
_HELPER_FLAGS = re.IGNORECASE | re.ASCII  # the steps after a match (compiled on first use)

_UNOPENED_CLOSE = LazyPattern(r"^([^(]*)\).*$", re.ASCII)
_TRAILING_PUNCTUATION = LazyPattern(r"[-~!@#^&*()_+=:;'?,.]*$", re.ASCII)
_CID = LazyPattern(r"^[cm]id:", _HELPER_FLAGS)
_EMPTY = LazyPattern(r"^\w+:/{0,2}$", _HELPER_FLAGS)
_HAS_SCHEME = LazyPattern(r"^(?:https?|ftp|mailto):", _HELPER_FLAGS)
_FTP_HOST = LazyPattern(r"^ftp\.", _HELPER_FLAGS)
_WWW_HOST = LazyPattern(r"^www\d{0,2}\.", _HELPER_FLAGS)
_SLASH_BEFORE_AT = LazyPattern(r"/.+@", _HELPER_FLAGS)
_DOT_AFTER_AT = LazyPattern(r"@.+?\.", _HELPER_FLAGS)
_MISREAD_PREFIX = LazyPattern(r"^(?:skype|e?-?mail)?:+", _HELPER_FLAGS)
_ESCAPE = LazyPattern(r"%[0-9a-f]{2}", _HELPER_FLAGS)
_MAIL_HOST = LazyPattern(r"@([^?&>]*)", _HELPER_FLAGS)
_TRAILING_SPACES = LazyPattern(r"(?:%20)+$", _HELPER_FLAGS)


class TextLinkFinder:
    """_tbirdurire over one registry's top-level domains (compiled once a rule set)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        # by (may hold an address, may hold a bare host): the branches that can match
        self._patterns = {(mail, bare_host): self._compile(_link_pattern(mail, bare_host))
                          for mail in (True, False) for bare_host in (True, False)}

    def _compile(self, pattern: str) -> regex.Pattern[str]:
        if r"\L<tlds>" not in pattern:
            return regex.compile(pattern, _FLAGS)
        if self.registry.tlds:
            return regex.compile(pattern, _FLAGS, tlds=sorted(self.registry.tlds))
        # (an empty named list would match "": no top-level domain, no bare host)
        return regex.compile(pattern.replace(r"\L<tlds>", "(?!)"), _FLAGS)

    def links(self, texts: Iterable[str], budget: float = FINDER_BUDGET) -> list[str]:
        """The links of `texts` (byte views) as `_process_text_uri_list` adds them,
        before its host check: each once, in the order found. Found within `budget`
        seconds; past it, the links of the texts read to the end by then."""
        found: list[str] = []
        seen: set[str] = set()
        deadline = time.monotonic() + budget
        for text in texts:
            if "@" not in text and "." not in text and "://" not in text:
                continue  # (every link kept has one: a "mailto:" without an "@" is dropped)
            try:
                matches = list(self._matches(text, deadline))
            except TimeoutError:
                break
            for match in matches:
                groups = match.groupdict()
                raw = groups.get("scheme") or groups.get("mail") or groups["bare"]
                raw = _TRAILING_PUNCTUATION.sub("", _UNOPENED_CLOSE.sub(r"\1", raw, count=1), count=1)
                if raw in seen:
                    continue
                seen.add(raw)
                link = self._link(raw, is_mail=groups.get("mail") is not None, host=groups.get("host"))
                if link is not None:
                    found.append(link)
        return found

    def _matches(self, text: str, deadline: float | None = None) -> Iterator[regex.Match[str]]:
        """What `_link_pattern(True, True).finditer(text)` gives, each of the two costly
        branches tried only within its windows (where such a link can start): elsewhere
        the pattern without it, whose match at a position is the whole pattern's."""
        windows = (_mail_windows(text), self._bare_host_windows(text))
        cursors = [0, 0]
        position, end = 0, len(text)
        while position < end:
            inside, limit = [False, False], end  # (the next place where that changes)
            for kind, stretches in enumerate(windows):
                index = cursors[kind]
                while index < len(stretches) and stretches[index][1] <= position:
                    index += 1
                cursors[kind] = index
                if index < len(stretches):
                    start, stop = stretches[index]
                    inside[kind] = start <= position
                    limit = min(limit, stop if inside[kind] else start)
            pattern = self._patterns[inside[0], inside[1]]
            if deadline is None:
                match = pattern.search(text, position)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                match = pattern.search(text, position, timeout=left)
            if match is None or match.start() >= limit:
                if limit >= end:
                    return
                position = limit  # nothing starts before it
                continue
            yield match
            position = match.end()

    def _bare_host_windows(self, text: str) -> list[tuple[int, int]]:
        """The stretches [start, end) of `text` where a bare host can start: up to
        _BARE_HOST_REACH before each dot whose label is a top-level domain, merged."""
        if "." not in text:
            return []
        tlds = self.registry.tlds
        return _merged((candidate.start() - _BARE_HOST_REACH, candidate.start())
                       for candidate in _TLD_CANDIDATE.finditer(text) if candidate.group(1).lower() in tlds)

    def _link(self, raw: str, is_mail: bool, host: str | None) -> str | None:
        """One raw link as SpamAssassin adds it (a scheme given where it has none), or
        None for what it skips."""
        if is_mail and "@" not in raw:
            return None  # (its "@" was trimmed off the end)
        if host is not None and not is_fqdn_valid(host.lower()):
            return None
        if _CID.match(raw) or _EMPTY.match(raw):
            return None
        link = raw
        if not _HAS_SCHEME.match(link):
            if _FTP_HOST.match(link):
                link = "ftp://" + link
            elif _WWW_HOST.match(link):
                link = "http://" + link
            elif _SLASH_BEFORE_AT.search(link):
                link = "http://" + link  # a "/" before the @: not an address
            elif "@" in link:
                if not _DOT_AFTER_AT.search(link) or "&nbsp;" in link:
                    return None
                link = "mailto:" + _MISREAD_PREFIX.sub("", link, count=1)
            elif "." not in link:
                return None
            else:
                link = "http://" + link  # a bare host, which mail readers do not link
        if link[:7].lower() == "mailto:":
            if _ESCAPE.search(link):
                link = decode_printable_escapes(link)
            host_match = _MAIL_HOST.search(link)
            if host_match is None:
                return None
            if not self.registry.is_domain_valid(_TRAILING_SPACES.sub("", host_match.group(1), count=1)):
                return None
        return link


def _mail_windows(text: str) -> list[tuple[int, int]]:
    """The stretches [start, end) of `text` where an address can start: up to 251
    characters before each "@" ([^...@]{1,251}@), and at each "mailto:"."""
    found = [(at.start() - _LOCAL_PART_REACH, at.start()) for at in _AT.finditer(text)] if "@" in text else []
    if ":" in text:  # (mailto: needs no "@")
        found += [(mailto.start(), mailto.start() + 1) for mailto in _MAILTO.finditer(text)]
    return _merged(sorted(found))


def _merged(stretches: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Stretches in order of their starts, clipped at 0, those that meet made one."""
    merged: list[tuple[int, int]] = []
    for start, end in stretches:
        start = max(0, start)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
