"""The two prefilters of the rule engine must never hide a match: required literals, and
one search over all paragraphs joined (spamkit.rules.prefilter)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spamkit.rules.prefilter import paragraph_local

LOCAL = [r"cheap\s+pills", r"(?:^|\s)free(?:$|\W)", r"\bfoo\b", r"foo(?!bar)", r"(?<=x)foo",
         r"(?<![a-z])foo", r"a[^\n]{0,5}b", r"(?:^|[^a-z])win"]
NOT_LOCAL = [r"^foo", r"foo$", r"\Afoo", r"foo(?!\s*bar)", r"(?<!\s)foo", r"(?<![^a-z])foo",
             r"(foo)?(?(1)bar|baz)", r"(?:^|x)foo"]


@pytest.mark.parametrize("pattern", LOCAL)
def test_local_patterns(pattern: str) -> None:
    assert paragraph_local(pattern, ignorecase=False)


@pytest.mark.parametrize("pattern", NOT_LOCAL)
def test_patterns_whose_answer_the_joined_text_could_change(pattern: str) -> None:
    assert not paragraph_local(pattern, ignorecase=False)


_PARAGRAPH = st.lists(st.sampled_from(list("abfoxrwin ") + ["cheap", "pills", "bar", "\t"]),
                      max_size=12).map("".join)


@settings(max_examples=400)
@given(st.lists(_PARAGRAPH, min_size=1, max_size=5))
def test_no_match_in_the_joined_text_means_none_in_any_paragraph(paragraphs: list[str]) -> None:
    joined = "\n".join(paragraphs)
    for pattern in LOCAL:
        compiled = re.compile(pattern)
        if any(compiled.search(p) for p in paragraphs):
            assert compiled.search(joined), (pattern, paragraphs)
