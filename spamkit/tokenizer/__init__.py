"""Tokenizers: a ParsedMessage in, the set of its distinct tokens out.

A token counts once per message however often it appears (docs/decisions/). Tokens are
strings with a prefix naming where they came from ("subject:free", "url:example.com")
so `spamkit check --explain` can show them; the store keeps only their 8-byte hashes.

TOKENIZERS is the registration table; `EmailTokenizer` is the one implementation.
"""

from __future__ import annotations

from typing import Protocol

import xxhash

from spamkit.message import ParsedMessage
from spamkit.tokenizer.default import EmailTokenizer, TokenizerOptions

__all__ = ["DEFAULT_TOKENIZER", "EmailTokenizer", "TOKENIZERS", "Tokenizer",
           "TokenizerOptions", "hash_token", "hash_tokens"]


class Tokenizer(Protocol):
    """Turns a parsed message into its distinct tokens. Never raises."""

    version: str

    def tokenize(self, message: ParsedMessage) -> set[str]: ...


TOKENIZERS: dict[str, type[EmailTokenizer]] = {"email": EmailTokenizer}
DEFAULT_TOKENIZER = "email"

_xxh64 = xxhash.xxh3_64_digest


def hash_token(token: str) -> bytes:
    """The 8-byte storage key of a token (XXH3-64 of its UTF-8 form)."""
    return _xxh64(token.encode("utf-8", "surrogatepass"))


def hash_tokens(tokens: set[str] | list[str]) -> list[bytes]:
    """Hash many tokens at C speed; the order follows the input's iteration order.

    One join, one encode and one split replace a Python-level loop of encodes; a token
    with a newline in it (rare: a decoded file name) sends the call the slow way.
    """
    if not tokens:
        return []
    pieces = "\n".join(tokens).encode("utf-8", "surrogatepass").split(b"\n")
    if len(pieces) != len(tokens):
        return [hash_token(token) for token in tokens]
    return list(map(_xxh64, pieces))
