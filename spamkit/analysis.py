"""One message from bytes to what the store and the classifier take: tokens and their hashes."""

from __future__ import annotations

from dataclasses import dataclass

from spamkit.errors import StoreError
from spamkit.message import DEFAULT_LIMITS, ParsedMessage, ParseLimits, parse_message
from spamkit.store.base import TokenStore
from spamkit.tokenizer import EmailTokenizer, Tokenizer, hash_tokens


@dataclass
class Analysis:
    message: ParsedMessage
    hashes: list[bytes]
    tokens: list[str] | None = None  # only when asked for; then hashes[i] is the key of tokens[i]


class Analyzer:
    """Parse, tokenize and hash. Never raises on any byte string."""

    def __init__(self, tokenizer: Tokenizer | None = None,
                 limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self.tokenizer = tokenizer or EmailTokenizer()
        self.limits = limits

    def analyze(self, raw: bytes, message: ParsedMessage | None = None,
                with_tokens: bool = False) -> Analysis:
        """`message`, when given, is `raw` already parsed with these limits (not parsed again).

        The token strings are made only `with_tokens` (for --explain): learning and
        scoring need only the keys, which the tokenizer makes without them.
        """
        if message is None:
            message = parse_message(raw, self.limits)
        if with_tokens:
            tokens = list(self.tokenizer.tokenize(message))
            return Analysis(message, hash_tokens(tokens), tokens)
        return Analysis(message, list(self.tokenizer.tokenize_keys(message)))


def analyzer_for(store: TokenStore | None, limits: ParseLimits = DEFAULT_LIMITS) -> Analyzer:
    """An Analyzer that tokenizes as `store`'s database was built, so that a database
    learned before a default changed keeps meeting its own tokens; a new database (or
    none) gets the default tokenizer.

    A database built by a tokenizer this spamkit does not know is refused: scoring it
    with another would find almost none of its tokens, silently.
    """
    recorded = store.meta_value("tokenizer") if store is not None else None
    if not recorded:
        return Analyzer(limits=limits)
    tokenizer = EmailTokenizer.from_version(recorded)
    if tokenizer is None:
        raise StoreError(f"the database was built with tokenizer {recorded!r}, which this "
                         "spamkit does not know: use the spamkit that built it, or "
                         "`spamkit db reset` and train again")
    return Analyzer(tokenizer, limits)
