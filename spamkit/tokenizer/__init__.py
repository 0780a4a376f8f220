"""Tokenizers: a ParsedMessage in, the set of its distinct tokens out.

A token counts once per message however often it appears (docs/decisions/). Tokens are
strings with a prefix naming where they came from ("subject:free", "url:example.com")
so `spamkit check --explain` can show them; the store keeps only their 8-byte hashes.

TOKENIZERS is the registration table; `EmailTokenizer` is the one implementation.
"""

from __future__ import annotations

from typing import Protocol

from spamkit.message import ParsedMessage
from spamkit.tokenizer.default import EmailTokenizer, TokenizerOptions
from spamkit.tokenizer.sink import HAVE_C_CORE, hash_token, hash_tokens

__all__ = ["DEFAULT_TOKENIZER", "EmailTokenizer", "HAVE_C_CORE", "TOKENIZERS", "Tokenizer",
           "TokenizerOptions", "hash_token", "hash_tokens"]


class Tokenizer(Protocol):
    """Turns a parsed message into its distinct tokens. Never raises."""

    version: str

    def tokenize(self, message: ParsedMessage) -> set[str]: ...

    def tokenize_keys(self, message: ParsedMessage) -> set[bytes]:
        """The keys of the tokens `tokenize` gives (the hot path: learning, scoring)."""


TOKENIZERS: dict[str, type[EmailTokenizer]] = {"email": EmailTokenizer}
DEFAULT_TOKENIZER = "email"
