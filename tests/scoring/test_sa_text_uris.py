"""SpamAssassin's text link finder (spamkit.rules.sa_text_uris): the windowed scan, which
tries the address and bare-host branches only where such a link can start, finds what
the whole pattern finds, match for match. (What the links then are is held against
Mail::SpamAssassin in tests/scoring/test_sa_evals.py.)"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules
from spamkit.rules.registry import Registry, RegistryLists
from spamkit.rules.sa_text_uris import TextLinkFinder, _link_pattern
from tests.scoring.test_spamassassin_rules import DEBIAN_RULES, require_debian_rules

_GROUPS = ("scheme", "mail", "bare", "host")
FINDER = TextLinkFinder(Registry(RegistryLists(tlds={"com", "org", "pm", "it", "example", "xn--p1ai"})))


def _found(matches: Iterable[regex.Match[str]]) -> list[tuple[tuple[int, int], tuple[str | None, ...]]]:
    return [(match.span(), tuple(match.groupdict().get(name) for name in _GROUPS)) for match in matches]


def _same_as_whole_pattern(finder: TextLinkFinder, text: str) -> None:
    whole = finder._patterns[True, True]
    assert _found(finder._matches(text)) == _found(whole.finditer(text)), text


# pieces the branches turn on: schemes, "www.", "@", dots before known and unknown
# top-level domains, every kind of delimiter, and runs long enough to reach past a window
_PIECES = ["http://", "HTTPS://", "ftp.", "www.", "www2.", "mailto:", "MailTo:", "@", ".", "..", ".com", ".COM",
           ".org.", ".pm", ".txt", ".example", ".xn--p1ai", ".it.x", "/", ":80", "-", "_", "a", "B", "x1",
           " ", "\t", "\n", "\xa0", "\x1b(B", "<", ">", '"', "'", "`", ",", "(", ")", "[", "]", "{", "}", "|",
           "?", "=", "&", "%40", "\xc3\xa9", "a" * 120, "b." * 60, "c@" * 40]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40).map("".join))
def test_windowed_scan_finds_what_the_whole_pattern_finds(text: str) -> None:
    _same_as_whole_pattern(FINDER, text)


def test_known_cases() -> None:
    assert FINDER.links(["see NoMailAudit.pm line 484, host.invalidtld and file.txt"]) == ["http://NoMailAudit.pm"]
    assert FINDER.links(["go to www.Example.com/Path) now"]) == ["http://www.Example.com/Path"]
    assert FINDER.links(["e-mail:Someone@Mail.Example.com, or x@y"]) == ["mailto:Someone@Mail.Example.com"]
    assert FINDER.links(["cid:image001.png@01D4986E.E3459640 mailto:nobody"]) == []
    assert FINDER.links(["a/b@c.example.com"]) == ["http://a/b@c.example.com"]
    # within its budget: none at all, nothing found
    assert FINDER.links(["see http://a.example/x"], budget=0) == []
    # each link once: the second is the first again
    assert FINDER.links(["http://a.example/x", "and http://a.example/x"]) == ["http://a.example/x"]
    # no top-level domains known: no bare host, the others still found
    nothing_known = TextLinkFinder(Registry(RegistryLists()))
    assert nothing_known.links(["see example.com or http://example.com/x"]) == ["http://example.com/x"]
    assert "(?!)" in nothing_known._patterns[True, True].pattern and _link_pattern(False, False).count("(?P<") == 1


@pytest.mark.slow
def test_every_corpus_body_line_scans_the_same(all_messages: list[CorpusMessage]) -> None:
    require_debian_rules()
    registry = load_rules([DEBIAN_RULES], builtin=False).registry
    assert registry is not None and len(registry.tlds) > 1000
    finder = TextLinkFinder(registry)
    lines = 0
    for message in all_messages:
        for text in MessageContext(message.data, parse_message(message.data)).texts("body:bytes"):
            _same_as_whole_pattern(finder, text)
            lines += 1
    assert lines > 60_000
