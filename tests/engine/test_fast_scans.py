"""The parser's C scans (spamkit.message._scans) give exactly what its regexes give.

A difference would change a message's headers, visible text, URLs or alt text depending
on whether spamkit was built with a compiler, and so its tokens: the two paths are
compared on the whole corpus and on hypothesis's strings.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.message import html as html_module
from spamkit.message import parse_message, text_urls_py
from spamkit.message.decode import decode_text
from spamkit.message.headers import header_fields_py, split_header_block
from spamkit.message.html import (
    render_html,
    strip_tags_py,
    tag_names_py,
    useful_attrs_py,
)

try:
    from spamkit.message import _scans as fast
except ImportError:  # reported by the test below, not skipped: CI must build it
    fast = None


def test_the_c_scans_are_built() -> None:
    # the install script provides a compiler; without it spamkit works, but slower
    assert fast is not None and html_module.HAVE_C_HTML


needs_c = pytest.mark.skipif(fast is None, reason="spamkit.message._scans not built")


def _html_parts(messages: list[CorpusMessage]) -> list[str]:
    """Every text the parser hands to render_html, collected by wrapping it."""
    collected: list[str] = []

    def collect(source: str):  # type: ignore[no-untyped-def]
        collected.append(source)
        return render_html(source)

    import spamkit.message as message_module

    original = message_module.render_html
    message_module.render_html = collect
    try:
        for message in messages:
            parse_message(message.data)
    finally:
        message_module.render_html = original
    return collected


@needs_c
@pytest.mark.slow
def test_every_corpus_html_part_scans_the_same(all_messages: list[CorpusMessage]) -> None:
    parts = _html_parts(all_messages)
    assert len(parts) > 1000
    for source in parts:
        lowered = source.lower()
        assert fast.strip_tags(source) == strip_tags_py(source)
        assert fast.tag_names(lowered) == tag_names_py(lowered)
        assert fast.useful_attrs(lowered) == useful_attrs_py(lowered)
        if len(lowered) == len(source):
            assert fast.useful_attrs(lowered, source) == useful_attrs_py(lowered, source)


# Small alphabets full of the characters the patterns turn on: tag brackets, quotes,
# "=", every kind of white space (Unicode ones too), word and non-word characters,
# inline tag names in both cases and mixed, and characters needing 2 and 4 bytes.
_PIECES = ["<", ">", "/", "!", "\"", "'", "=", " ", "\t", "\n", "\x0b", "\x1c", "\x85", "\xa0",
           "\u2003", "\u3000", "a", "b", "B", "i", "s", "x", "_", "1", "é", "ß", "€", "日", "😀",
           "font", "FONT", "Font", "span", "strong", "STRONG", "wbr", "abbr", "q", "sub",
           "href", "src", "alt", "title", "action", "background", "lowsrc", "hreff", "<a ",
           "<b>", "</b>", "<br>", "<!--", "-->", "<img src=", " alt='", " href=\""]
_HTMLISH = st.lists(st.sampled_from(_PIECES), max_size=60).map("".join)


@needs_c
@settings(max_examples=600)
@given(_HTMLISH)
def test_strip_tags_same_both_ways(source: str) -> None:
    assert fast.strip_tags(source) == strip_tags_py(source)


@needs_c
@settings(max_examples=600)
@given(_HTMLISH)
def test_attribute_and_tag_scans_same_both_ways(source: str) -> None:
    lowered = source.lower()
    assert fast.useful_attrs(lowered) == useful_attrs_py(lowered)
    assert fast.tag_names(lowered) == tag_names_py(lowered)
    if len(lowered) == len(source):  # the values as written: the same attributes, each in its case
        as_written = fast.useful_attrs(lowered, source)
        assert as_written == useful_attrs_py(lowered, source)
        assert [(name, value.lower()) for name, value in as_written] == fast.useful_attrs(lowered)


@needs_c
@given(st.text(max_size=400))
def test_any_text_same_both_ways(source: str) -> None:
    assert fast.strip_tags(source) == strip_tags_py(source)
    assert fast.useful_attrs(source) == useful_attrs_py(source)
    assert fast.tag_names(source) == tag_names_py(source)


@needs_c
def test_known_cases() -> None:
    assert fast.strip_tags("V<b></b>iagra<br>now") == "Viagra now"
    # "Font" (mixed case) is not taken as inline; "<x>" appears once "<b>" is gone
    assert fast.strip_tags("<Font>a</FONT><<b>x>") == " a "
    assert fast.useful_attrs('<a href="http://x.example/">  <img src=y.png alt = \'hi\'>') == [
        ("href", "http://x.example/"), ("src", "y.png"), ("alt", "hi")]
    assert fast.tag_names("<p><table1><" + "a" * 40) == ["p", "table1", "a" * 31]
    source = '<A HREF="http://X.Example/Path" ALT=\'Hi\'> <img src=Y.PNG title="">'
    assert fast.useful_attrs(source.lower(), source) == [
        ("href", "http://X.Example/Path"), ("alt", "Hi"), ("src", "Y.PNG"), ("title", "")]
    with pytest.raises(ValueError, match="as long as"):
        fast.useful_attrs("abc", "ab")


@needs_c
@pytest.mark.slow
def test_every_corpus_header_block_and_text_scans_the_same(all_messages: list[CorpusMessage]) -> None:
    for message in all_messages:
        head, _ = split_header_block(message.data.replace(b"\r\n", b"\n"))
        text = head.decode("ascii") if head.isascii() else decode_text(head, None)
        for keep_case in (False, True):
            assert fast.header_fields(text, keep_case) == header_fields_py(text, keep_case)
        for part in parse_message(message.data).text:
            assert fast.text_urls(part) == text_urls_py(part), message.path


_HEADERISH = st.lists(st.sampled_from(
    ["From", "subject", "X-Long-" + "N" * 95, ":", " ", "\t", "\n", "\n ", "\n\t\t", "\r", "\x85",
     "\u3000", "a", "=?utf-8?B?w6k=?=", "é", "日", "😀", ";", "\x7f", "\x20:"]), max_size=40).map("".join)


@needs_c
@settings(max_examples=600)
@given(_HEADERISH, st.booleans())
def test_header_fields_same_both_ways(text: str, keep_case: bool) -> None:
    assert fast.header_fields(text, keep_case) == header_fields_py(text, keep_case)


_URLISH = st.lists(st.sampled_from(
    ["http://", "https://", "www.", "http:/", "https:", "htt", "ww", "w", "h", "x", "é", "/", ".", " ",
     "\u3000", "\x85", "<", ">", "\"", "'", "(", ")", "[", "]", "{", "}", "a" * 150, "日", "😀"]),
    max_size=40).map("".join)


@needs_c
@settings(max_examples=600)
@given(_URLISH)
def test_text_urls_same_both_ways(text: str) -> None:
    assert fast.text_urls(text) == text_urls_py(text)


@needs_c
@given(st.text(max_size=400), st.booleans())
def test_any_text_scans_the_same(text: str, keep_case: bool) -> None:
    assert fast.text_urls(text) == text_urls_py(text)
    assert fast.header_fields(text, keep_case) == header_fields_py(text, keep_case)
