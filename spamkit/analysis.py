"""One message from bytes to what the store and the classifier take: tokens and their hashes."""

from __future__ import annotations

from dataclasses import dataclass

from spamkit.message import DEFAULT_LIMITS, ParsedMessage, ParseLimits, parse_message
from spamkit.tokenizer import EmailTokenizer, Tokenizer, hash_tokens


@dataclass
class Analysis:
    message: ParsedMessage
    tokens: list[str]
    hashes: list[bytes]  # hashes[i] is the storage key of tokens[i]


class Analyzer:
    """Parse, tokenize and hash. Never raises on any byte string."""

    def __init__(self, tokenizer: Tokenizer | None = None,
                 limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self.tokenizer = tokenizer or EmailTokenizer()
        self.limits = limits

    def analyze(self, raw: bytes, message: ParsedMessage | None = None) -> Analysis:
        """`message`, when given, is `raw` already parsed with these limits (not parsed again)."""
        if message is None:
            message = parse_message(raw, self.limits)
        tokens = list(self.tokenizer.tokenize(message))
        return Analysis(message, tokens, hash_tokens(tokens))
