"""Where a tokenizer puts its tokens: as strings, or straight as their 8-byte keys.

The tokenizer is written once against StringSink's methods. `StringSink` keeps the token
strings (`spamkit check --explain` names them); `KeySink` keeps only their keys, and with
the C core (`spamkit.tokenizer._fast`) a body word, a Received host and its parent
domains, or a header's token goes from the text to its key without ever being a Python
string. Both give the
same keys for the same message: KeySink without the C core is StringSink followed by
hashing. Tested on the whole corpus.
"""

from __future__ import annotations

from collections.abc import Iterable

import xxhash

from spamkit.tokenizer.received import received_tokens
from spamkit.tokenizer.text import MAX_WORD, MIN_WORD, address_words, split_words
from spamkit.tokenizer.urls import MAX_URLS, MANY_URLS_TOKEN, tokens_of_url, url_tokens

try:
    from spamkit.tokenizer import _fast
except ImportError:  # built without a C compiler: same keys, slower
    _fast = None  # type: ignore[assignment]

HAVE_C_CORE = _fast is not None
# How the C core's header_keys reads a header name: (kind, flags, prefix as UTF-8, prefix);
# headers.py's _C_PLANS has one for each selected header
HeaderPlan = tuple[int, int, bytes, str]
_xxh64 = xxhash.xxh3_64_digest


def hash_token(token: str) -> bytes:
    """The 8-byte storage key of a token (XXH3-64 of its UTF-8 form)."""
    return _xxh64(token.encode("utf-8", "surrogatepass"))


def hash_tokens(tokens: set[str] | list[str]) -> list[bytes]:
    """Hash many tokens; the order follows the input's iteration order.

    One join, one encode and one split replace a Python-level loop of encodes; a token
    with a newline in it (rare: a decoded file name) sends the call the slow way.
    """
    if not tokens:
        return []
    pieces = "\n".join(tokens).encode("utf-8", "surrogatepass").split(b"\n")
    if len(pieces) != len(tokens):
        return [hash_token(token) for token in tokens]
    return list(map(_xxh64, pieces))


class StringSink:
    """Collects a message's distinct tokens as strings (the base every sink extends)."""

    def __init__(self, plain_words: bool = False) -> None:
        self.plain_words = plain_words
        self.tokens: set[str] = set()

    def add(self, token: str) -> None:
        self.tokens.add(token)

    def update(self, tokens: Iterable[str]) -> None:
        self.tokens.update(tokens)

    def words(self, text: str, prefix: str = "") -> tuple[list[str], list[str]]:
        """Add prefix + each word of 3-12 characters (and CJK pair) of `text`.

        Returns (the longer words, the words with an "@"), for skip and address tokens.
        """
        words, long_words = split_words(text, self.plain_words)
        self.tokens.update([prefix + w for w in words] if prefix else words)
        if self.plain_words:
            return list(long_words), address_words(text)
        at_words = [w for w in words if "@" in w] + [w for w in long_words if "@" in w] \
            if "@" in text else []
        return list(long_words), at_words

    def prefixed_words(self, pieces: list[tuple[str, bytes]]) -> None:
        """`words(text, prefix)` for each (text, UTF-8 prefix), the returned words unused."""
        for text, prefix in pieces:
            self.words(text, prefix.decode("utf-8", "surrogatepass"))

    def selected_header_keys(self, headers: list[tuple[str, str]],
                             plans: dict[str, HeaderPlan]) -> list[tuple[HeaderPlan, str]] | None:
        """The keys of the selected headers' tokens in one call, where the C core can make
        them (headers.emit_header_tokens; its `_C_PLANS`): returns the (plan, value)
        pairs left to the Python helpers. None: this sink takes the headers one by one."""
        return None

    def received(self, value: str) -> None:
        """Add the tokens of the Received headers (their values joined into `value`)."""
        self.tokens.update(received_tokens(value))

    def urls(self, urls: list[str]) -> None:
        """Add the tokens of a message's URLs."""
        self.tokens.update(url_tokens(urls))


class KeySink(StringSink):
    """Collects only the tokens' 8-byte keys; with the C core, words never become strings."""

    def __init__(self, plain_words: bool = False) -> None:
        super().__init__(plain_words)
        self.keys: set[bytes] = set()
        self._pending: list[str] = []
        self._c_words = HAVE_C_CORE

    def add(self, token: str) -> None:
        self._pending.append(token)

    def update(self, tokens: Iterable[str]) -> None:
        self._pending.extend(tokens)

    def words(self, text: str, prefix: str = "") -> tuple[list[str], list[str]]:
        encoded = prefix.encode("utf-8", "surrogatepass")
        if not self._c_words:
            long_words, at_words = StringSink.words(self, text, prefix)
            self._pending.extend(self.tokens)
            self.tokens.clear()
            return long_words, at_words
        long_words, at_words = _fast.hash_words(text, encoded, MIN_WORD, MAX_WORD, self.keys,
                                                self.plain_words)
        return long_words, at_words

    def prefixed_words(self, pieces: list[tuple[str, bytes]]) -> None:
        if self._c_words:  # one call for all of them
            _fast.hash_prefixed_words(pieces, MIN_WORD, MAX_WORD, self.keys, self.plain_words)
        else:
            StringSink.prefixed_words(self, pieces)

    def selected_header_keys(self, headers: list[tuple[str, str]],
                             plans: dict[str, HeaderPlan]) -> list[tuple[HeaderPlan, str]] | None:
        if not self._c_words:
            return None
        return _fast.header_keys(headers, plans, MIN_WORD, MAX_WORD, self.keys, self.plain_words)

    def received(self, value: str) -> None:
        if HAVE_C_CORE:
            _fast.received_keys(value.lower(), value, self.keys)
        else:
            self._pending.extend(received_tokens(value))

    def urls(self, urls: list[str]) -> None:
        if not self._c_words:
            self._pending.extend(url_tokens(urls))
            return
        for url in _fast.url_keys(set(urls[:MAX_URLS]), self.keys):  # (the C core reads ASCII)
            self._pending.extend(tokens_of_url(url))
        if len(urls) > MAX_URLS:
            self._pending.append(MANY_URLS_TOKEN)

    def finish(self) -> set[bytes]:
        """The keys of everything added so far."""
        if self._pending:
            if HAVE_C_CORE:
                _fast.hash_strings(self._pending, self.keys)
            else:
                self.keys.update(hash_tokens(self._pending))
            self._pending = []
        return self.keys
