"""The C core (spamkit.tokenizer._fast) gives exactly the keys the Python code gives.

A difference would silently split one database's evidence in two (a word learned under
one key, looked up under another), so the two paths are compared on every corpus
message, on hypothesis's text, and at every XXH3 input length class.
"""

from __future__ import annotations

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.message import parse_message
from spamkit.tokenizer import EmailTokenizer, TokenizerOptions, hash_token, hash_tokens, sink
from spamkit.tokenizer.sink import KeySink, StringSink


def python_keys(tokenizer: EmailTokenizer, raw: bytes) -> set[bytes]:
    return set(hash_tokens(tokenizer.tokenize(parse_message(raw))))


def test_the_c_core_is_built() -> None:
    # the install script provides a compiler; without it spamkit works, but slower
    assert sink.HAVE_C_CORE


@pytest.mark.slow
@pytest.mark.parametrize("words", ["split", "plain"])
def test_whole_corpus_same_keys_both_ways(all_messages: list[CorpusMessage], words: str) -> None:
    tokenizer = EmailTokenizer(TokenizerOptions(words=words))
    for message in all_messages:
        parsed = parse_message(message.data)
        expected = set(hash_tokens(tokenizer.tokenize(parsed)))
        assert tokenizer.tokenize_keys(parsed) == expected, message.path


def test_python_fallback_gives_the_same_keys(all_messages: list[CorpusMessage],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = EmailTokenizer()
    sample = all_messages[::40]
    with_c = [tokenizer.tokenize_keys(parse_message(m.data)) for m in sample]
    monkeypatch.setattr(sink, "HAVE_C_CORE", False)
    monkeypatch.setattr(sink, "_fast", None)
    assert [tokenizer.tokenize_keys(parse_message(m.data)) for m in sample] == with_c


# (the second line: what the plain word regex treats specially, and characters that are
# \w by isdigit or isnumeric rather than isalpha)
_TEXT = st.text(alphabet=st.sampled_from(
    list("ab@.: \t\n\x0b\x1c\x85\xa0\u2003\u3000é€") + ["日", "本", "語", "한", "カ", "😀", "\ud800"]
    + list("$'.-!_5²Ⅻ٣,")), max_size=300)


@settings(max_examples=300)
@given(_TEXT, st.sampled_from(["", "subject:", "invisible:", "x" * 64, "ü" * 40]), st.booleans())
def test_words_same_both_ways(text: str, prefix: str, plain: bool) -> None:
    slow, fast = StringSink(plain), KeySink(plain)
    slow_long, slow_at = slow.words(text, prefix)
    fast_long, fast_at = fast.words(text, prefix)
    assert fast.finish() == set(hash_tokens(slow.tokens))
    assert set(fast_long) == set(slow_long)
    assert set(fast_at) == set(slow_at)


@given(st.binary(max_size=2048))
def test_any_bytes_same_keys(raw: bytes) -> None:
    tokenizer = EmailTokenizer(TokenizerOptions(pairs=True, header_presence=True))
    assert tokenizer.tokenize_keys(parse_message(raw)) == python_keys(tokenizer, raw)


def test_xxh3_every_length_class() -> None:
    # 0, 1-3, 4-8, 9-16, 17-128, 129-240 are computed in C; longer goes to xxhash
    tokens = ["".join(chr(0x61 + (i * 7 + n) % 26) for i in range(n)) for n in range(300)]
    tokens += ["é" * 70, "\ud800" * 3, "😀" * 61]
    out: set[bytes] = set()
    sink_keys = KeySink()
    sink_keys.update(tokens)
    out = sink_keys.finish()
    assert out == {xxhash.xxh3_64_digest(t.encode("utf-8", "surrogatepass")) for t in tokens}
    assert out == {hash_token(t) for t in tokens}


# Received values full of what the two patterns turn on: "from"/"by" in any case, white
# space of every kind, host characters, runs longer than the 100-character cap, dots at
# the ends, bracketed addresses with too many digits or non-ASCII digits, and characters
# whose lower case is longer than themselves.
_RECEIVED = st.lists(st.sampled_from(
    ["from", "by", "FROM", "By", "fromby", " ", "\t", "\n ", "\u3000", "\x85", "mx", ".", "..",
     "-", "a", "example", "com", "1", "23", "456", "7890", "[", "]", "[1.2.3.4]", "\u0663", "\u0130",
     "(", ")", "x" * 40, "é"]), max_size=60).map("".join)


@settings(max_examples=500)
@given(_RECEIVED)
def test_received_keys_same_both_ways(text: str) -> None:
    fast, slow = KeySink(), StringSink()
    fast.received(text)
    slow.received(text)
    assert fast.finish() == set(hash_tokens(slow.tokens))


# URL pieces that meet each branch of urls.tokens_of_url: schemes (long, odd, special),
# userinfo, ports, dotted and IP hosts, short second levels, long path runs, escapes,
# ASCII white space the regex's \s takes (\x1c, \x0b), and non-ASCII (the Python path)
_URL_PIECES = st.sampled_from(
    ["http", "HTTPS", "mailto", "cid", "JavaScript", "data", "a+b.c-d", "x" * 16, "y" * 17, ":",
     "//", "/", "?", "#", "@", "user:pw@", ":8080", ".", "..", "www", "Example", "co", "uk", "com",
     "au", "1", "127", "255", "1234", "0.0.0.0", "%20", "AbCdEfGhIjKlMnOpQrStUv", "ab", "abc", " ",
     "\t", "\x0b", "\x1c", "\n", "é", "\x85", "日本"])
_URL = st.lists(_URL_PIECES, max_size=14).map("".join)


@settings(max_examples=1000)
@given(st.lists(_URL, max_size=6))
def test_url_keys_same_both_ways(urls: list[str]) -> None:
    fast, slow = KeySink(), StringSink()
    fast.urls(urls)
    slow.urls(urls)
    assert fast.finish() == set(hash_tokens(slow.tokens))


def test_url_keys_long_hosts_and_many_urls() -> None:
    urls = ["http://" + "a" * 300 + ".example.co.uk/" + "p" * 500 + "%41",
            "https://user@" + "b." * 200 + "com:99/x",
            *(f"http://host{i}.example/page{i}" for i in range(250))]
    fast, slow = KeySink(), StringSink()
    fast.urls(urls)
    slow.urls(urls)
    assert "url:many" in slow.tokens
    assert fast.finish() == set(hash_tokens(slow.tokens))


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(["subject", "from", "to", "x-mailer", "content-type",
                                           "x-" + "n" * 70, "received", "message-id"]), _TEXT),
                max_size=8), st.booleans())
def test_header_words_same_both_ways(headers: list[tuple[str, str]], plain: bool) -> None:
    """All of a message's header words go to the C core in one call (prefixed_words),
    long header names too (their prefix does not fit the C core's stack buffer)."""
    from spamkit.tokenizer.headers import emit_header_tokens

    fast, slow = KeySink(plain), StringSink(plain)
    for selected_only in (True, False):
        emit_header_tokens(fast, headers, True, selected_only)
        emit_header_tokens(slow, headers, True, selected_only)
    assert fast.finish() == set(hash_tokens(slow.tokens))


# Header values made to reach every branch of header_keys's address, whole-value,
# Message-ID and subject readers: user and domain runs on both sides of their 64- and
# 63-character caps, nine and ten labels, ">" and white space (\x1c is white space to
# str.isspace), capitals, "!" and three spaces, and non-ASCII (left to the Python helpers).
_HEADER_PIECES = st.sampled_from(
    ["a" * 63, "b" * 64, "c" * 65, "D" * 200, "@", "@", ".", ".", "-", "+", "_", "x", "Y", "9",
     ">", "<", " ", "   ", "\t", "\x1c", "\n ", "!", "é", "İ", "日本"])
_HEADER_VALUE = st.lists(_HEADER_PIECES, max_size=40).map("".join)


@settings(max_examples=500)
@given(st.lists(st.tuples(st.sampled_from(["subject", "from", "reply-to", "x-mailer", "content-type",
                                           "message-id", "received", "date", "x-spam-status"]),
                          _HEADER_VALUE), max_size=6), st.booleans())
def test_header_keys_same_both_ways(headers: list[tuple[str, str]], plain: bool) -> None:
    """The C core's header_keys makes the selected headers' tokens as the Python helpers
    do, text.EMAIL's matches, Message-ID domains, whole values and subject shapes."""
    from spamkit.tokenizer.headers import emit_header_tokens

    fast, slow = KeySink(plain), StringSink(plain)
    emit_header_tokens(fast, headers, True, True)
    emit_header_tokens(slow, headers, True, True)
    assert fast.finish() == set(hash_tokens(slow.tokens))


def test_header_keys_reads_addresses_as_the_email_pattern() -> None:
    """Values where the regex's backtracking decides: a user part over 64 characters (its
    last 64 are taken), a first label over 63 (no match there), a later label over 63
    (the match ends inside it, and the next match starts there), ten labels (nine are
    taken, the tenth starts the next user part), and two addresses sharing characters;
    Message-ID domains at their 200-character cap, and subjects at the capitals' edges
    (8 letters, the first 200 characters) and at two and three spaces."""
    from spamkit.tokenizer.headers import emit_header_tokens

    addresses = ["u" * 70 + "@example.com", "a@" + "b" * 64 + ".com x@y.org", "a@b." + "c" * 70,
                 "a@" + ".".join("l" * 10), "a@b.c.d.e.f.g.h.i.j.k@x.y", "a@b." + "c" * 63 + "d@x.y",
                 "a@b.c.d@e.f", "A@B..C", "@x.y", "a@b.", "<Jo.Ann+x@Mail.Example.COM>"]
    message_ids = ["<x@" + "d" * 199 + "e.f>", "<a@>b@c.d>", "a@ b@c.d"]
    subjects = ["ABCDEFG", "ABCDEFGh", "two  spaces", "three   spaces!", "A" * 7 + "b" * 3 + " " * 190 + "A"]
    values = addresses + message_ids + subjects
    for value in values:
        fast, slow = KeySink(), StringSink()
        headers = [("from", value), ("message-id", value), ("subject", value)]
        emit_header_tokens(fast, headers, True, True)
        emit_header_tokens(slow, headers, True, True)
        assert fast.finish() == set(hash_tokens(slow.tokens)), value
    tokens = StringSink()
    emit_header_tokens(tokens, [("from", "u" * 70 + "@example.com")], True, True)
    assert "from:addr:" + "u" * 64 + "@example.com" in tokens.tokens


def test_header_keys_refuses_what_is_not_a_header_or_a_plan() -> None:
    """The C core reads the tuples directly: anything else is a TypeError, ValueError or
    OverflowError, never a read of the wrong object."""
    from spamkit.tokenizer import _fast

    for headers in ([("from",)], [("from", b"x")], [["from", "x"]], [1]):
        with pytest.raises(TypeError):
            _fast.header_keys(headers, {}, 3, 12, set())  # type: ignore[arg-type]
    for plan in ((0, 1, b"x" * 65, "x"), (0, 1, "from:", "from:"), (0, 1, b"from:")):
        with pytest.raises(ValueError):
            _fast.header_keys([("from", "x")], {"from": plan}, 3, 12, set())  # type: ignore[dict-item]
    with pytest.raises(OverflowError):
        _fast.header_keys([("from", "x")], {"from": (2**70, 1, b"from:", "from:")}, 3, 12, set())
