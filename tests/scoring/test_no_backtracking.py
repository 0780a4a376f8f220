"""Patterns of the rules' code that backtracked on hostile headers and bodies, rewritten to
run in linear time: each gives what the pattern it replaces gave.

The slow inputs were found by `tests/fuzz/pumped.py --rules /usr/share/spamassassin`, by
pumping every module-level pattern and built-in rule with repeated units, and by messages
of many short headers (tests/fuzz/README.md has the times). Timings are not asserted
here; the answers are, against the original patterns.
"""

from __future__ import annotations

import functools
import re

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from spamkit.rules import Rule, load_rules
from spamkit.rules.context import _ADDRESS as _ADDRESS_NOW
from spamkit.rules.context import MessageContext, _without_quoted_names
from spamkit.rules.evals.auth import _properties
from spamkit.rules.evals.headers import _RECIPIENT
from spamkit.rules.evals.received import _HOST_SHAPE, _msn_group_member
from spamkit.rules.namedlists import address_glob
from spamkit.rules.relays import _DATE_SUFFIX
from spamkit.rules.sa_body import _Rendering
from spamkit.rules.sa_uris import _MAILTO_AFTER_SPACES, _has_address_after_spaces


def _joined(*pieces: str, max_size: int = 14) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=max_size).map("".join)


# the patterns as they were
_ADDRESS = re.compile(r"<([^<>\s]*@[^<>\s]*)>|([^\s<>\"',;]+@[^\s<>\"',;]+)")
_RECIPIENT_AS_WAS = re.compile(r"[^\s<>\"',;:()]+@[^\s<>\"',;:()]+")
_DATE_SUFFIX_AS_WAS = re.compile(r"[\s;]+(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d+ \w{3} \d+ \d+:\d+(?::\d+)? \S+$")
_HOST_SHAPE_AS_WAS = re.compile(r"^\w+(?:[\w.-]+\.)+\w+$")
_MSN_GROUP_TO = re.compile(r"<(\S+)@groups\.msn\.com>", re.IGNORECASE)
_PROPERTY = re.compile(r"([\w-]+\.[\w.-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)")
_TAG = re.compile(r"""<(/?)([A-Za-z][^\s/>]*)(?:[^>=]++|=\s*+(?:"[^"]*+"|'[^']*+'|(?!["'])))*+>""")


@settings(max_examples=2500, deadline=None)
@given(_joined("a", "@", "<", ">", " ", "\t", '"', "'", ",", ";", ":", "(", ")", ".", "\u00a0", "é"))
def test_header_addresses_are_the_patterns(value: str) -> None:
    """From/To addresses (a From of 95,000 letters took 25 s with the built-in rules) and
    the recipient list's addresses. (addresses_in then keeps what SpamAssassin's parser
    would, decision 0042: tests/scoring/test_sa_evals.py holds that against it.)"""
    unquoted = _without_quoted_names(value)
    as_was = [(m.group(1) or m.group(2) or "").strip() for m in _ADDRESS.finditer(unquoted)]
    assert [(m.group(1) or m.group(2) or "").strip() for m in _ADDRESS_NOW.finditer(unquoted)] == as_was
    assert set(MessageContext.addresses_in(value, lower=False)) <= {"@".join(a.split("@", 2)[:2]) for a in as_was}
    assert _RECIPIENT.findall(value) == _RECIPIENT_AS_WAS.findall(value)


@settings(max_examples=2500, deadline=None)
@given(_joined(" ", ";", "\n", "1", "12", "Jan", "Mon, ", "a", ":", "+0000", "1 Jan 2001 00:00:00 +0000"))
def test_received_date_suffix_is_the_pattern(line: str) -> None:
    """The date a Received line ends with (95,000 ";" took minutes)."""
    assert _DATE_SUFFIX.sub("", line) == _DATE_SUFFIX_AS_WAS.sub("", line)


@settings(max_examples=2500, deadline=None)
@given(st.text(alphabet="a1._-\n é", max_size=14))
def test_host_shape_is_the_pattern(host: str) -> None:
    """RelayEval's host shape (a "by" of "1." forty times did not finish)."""
    assert bool(_HOST_SHAPE.search(host)) == bool(_HOST_SHAPE_AS_WAS.search(host))


@settings(max_examples=2500, deadline=None)
@given(_joined("<", "a", " ", "\n", "@groups.msn.com>", "@GROUPS.MSN.COM>", "@groups.msn.com", "x>", "ſ"))
def test_msn_group_member_is_what_the_pattern_took(to: str) -> None:
    """The MSN Groups member in a To ("<" repeated took seconds)."""
    match = _MSN_GROUP_TO.search(to)
    assert _msn_group_member(to) == (match.group(1) if match else None)


def _glob_as_was(pattern: str) -> re.Pattern[str]:
    text = re.sub(r"[\0\\(]", "_", pattern.lower())
    text = re.sub(r"([^*?_a-zA-Z0-9])", r"\\\1", text).replace("?", ".")
    return re.compile("^" + re.sub(r"\*+", ".*", text) + "$")


@settings(max_examples=2500, deadline=None)
@given(_joined("*", "**", "?", "a", "b", "@", ".", "ab", "a@", "\\", "(", "-", max_size=8),
       _joined("a", "b", "@", ".", "ab", "a@", "_", "-", "\\", "(", "A"))
def test_named_list_globs_are_the_patterns(pattern: str, address: str) -> None:
    """enlist_addrlist's globs (each "*@*.example" backtracked over a From of "a@")."""
    assert bool(address_glob(pattern).match(address)) == bool(_glob_as_was(pattern).match(address))


@settings(max_examples=2500, deadline=None)
@given(_joined("a", ".", "-", "=", " ", '"', "x.y", "header.d", "=x", "é", "\t", "..", "_", "1", max_size=16))
def test_authentication_results_properties_are_the_pattern(text: str) -> None:
    """An Authentication-Results method's properties ("a." repeated took 40 s)."""
    assert _properties(text) == _PROPERTY.findall(text)


@settings(max_examples=2500, deadline=None)
@given(_joined("mailto:", "%20", "%", "2", "0", "@", "?", "&", "a", "m", "%2", "\n"))
def test_mailto_after_spaces_is_asked_first(uri: str) -> None:
    """The link canonicaliser's "%20" mailto: form (100,000 "%20" took 19 s)."""
    assert _has_address_after_spaces(uri) == (_MAILTO_AFTER_SPACES.match(uri) is not None)


@settings(max_examples=6000, deadline=None)
@given(_joined("<", "a", "b", "=", '"', "'", " ", ">", "/", "\n", "x=", '="', "T", "\u3000", "<a", max_size=16),
       st.integers(0, 3))
def test_tags_are_what_the_pattern_took(html: str, starts: int) -> None:
    """The body renderer's tags ("a<" repeated did not finish), asked at the first few
    "<" of one part (the walk remembers what it read, and switches from the regex to the
    walk when the regex first fails)."""
    html = "<a" + html
    rendering = _Rendering(html)
    for start in sorted({0, *[m.start() for m in re.finditer("<", html)][:starts + 1]}):
        match = _TAG.match(html, start)
        expected = None if match is None else (bool(match.group(1)), match.group(2), match.end())
        assert rendering.match_tag(start) == expected


_MANY_RECIPIENTS_AS_WAS = re.compile(r"(?:[^,]*@[^,]*,){5}")


@functools.cache
def _builtin_rule(name: str) -> Rule:
    return load_rules(cache=False, multiscan=False).rules[name]


@settings(max_examples=2500, deadline=None)
@given(_joined("a", "@", ",", "\n", " ", "é", "a@b", "a@b,", "To: u@d\n", max_size=30))
def test_many_recipients_rule_is_the_pattern(to: str) -> None:
    """The built-in TO_NO_BRACKETS_MANY as the rule engine compiles it, against the
    pattern it was written as (4,500 To lines without a comma took 0.26 s)."""
    pattern = _builtin_rule("TO_NO_BRACKETS_MANY").pattern
    assert isinstance(pattern, regex.Pattern)  # not RE2's: it needs none
    assert [m.span() for m in pattern.finditer(to)] == \
        [m.span() for m in _MANY_RECIPIENTS_AS_WAS.finditer(to)]
