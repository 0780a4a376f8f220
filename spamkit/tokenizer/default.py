"""EmailTokenizer: headers, visible and invisible text, URLs, attachments and damage."""

from __future__ import annotations

import math
from dataclasses import dataclass

from spamkit.message import ParsedMessage
from spamkit.tokenizer.headers import emit_header_tokens
from spamkit.tokenizer.sink import KeySink, StringSink
from spamkit.tokenizer.text import email_tokens, long_word_tokens, pair_tokens

MAX_TEXT_CHARS = 200_000  # per message; text beyond this adds little and costs linearly


@dataclass(frozen=True)
class TokenizerOptions:
    """Choices measured in docs/decisions/0002-tokenizer.md; the defaults won there."""

    words: str = "plain"  # "plain": letters/digits with inner ' . - $; "split": whitespace words
    fold_case: bool = True
    headers: bool = True  # headers as name:word tokens
    header_set: str = "selected"  # SELECTED_HEADERS, or "all" but the ignored ones
    header_presence: bool = False  # "header:name:count" for every header present
    pairs: bool = False  # adjacent body word pairs
    invisible: bool = True  # hidden HTML text as its own "invisible:" tokens
    html_tags: bool = False


_SWITCHES = ("fold_case", "headers", "header_presence", "pairs", "invisible", "html_tags")


class EmailTokenizer:
    """The default tokenizer. Deterministic: same bytes, same options, same tokens."""

    def __init__(self, options: TokenizerOptions | None = None) -> None:
        self.options = options or TokenizerOptions()
        self._plain = self.options.words == "plain"
        o = self.options
        switches = "".join(str(int(getattr(o, name))) for name in _SWITCHES)
        self.version = f"email-1:{o.words}:{o.header_set}:{switches}"

    @classmethod
    def from_version(cls, version: str) -> EmailTokenizer | None:
        """The tokenizer whose `version` this is (a database records the one it was built
        with), or None if this spamkit does not know it."""
        parts = version.split(":")
        if len(parts) != 4 or parts[0] != "email-1" or parts[1] not in ("split", "plain") \
                or parts[2] not in ("selected", "all") or len(parts[3]) != len(_SWITCHES) \
                or set(parts[3]) - {"0", "1"}:
            return None
        switches = {name: flag == "1" for name, flag in zip(_SWITCHES, parts[3])}
        return cls(TokenizerOptions(words=parts[1], header_set=parts[2], **switches))

    def tokenize(self, message: ParsedMessage) -> set[str]:
        """The message's distinct tokens, as strings (for --explain and tests)."""
        sink = StringSink(self._plain)
        self.emit(message, sink)
        return sink.tokens

    def tokenize_keys(self, message: ParsedMessage) -> set[bytes]:
        """The 8-byte keys of exactly the tokens `tokenize` gives, without making them all."""
        sink = KeySink(self._plain)
        self.emit(message, sink)
        return sink.finish()

    def emit(self, message: ParsedMessage, sink: StringSink) -> None:
        options = self.options
        text = " ".join(message.text)[:MAX_TEXT_CHARS]
        if options.fold_case:
            text = text.lower()
        long_words, at_words = sink.words(text)
        sink.update(long_word_tokens(set(long_words)))
        if options.pairs:
            sink.update(pair_tokens(text.split()[:5000]))
        if at_words:
            sink.update(email_tokens(at_words))
        if options.headers:
            emit_header_tokens(sink, message.headers, options.fold_case,
                               options.header_set == "selected", options.header_presence)
        else:
            sink.words((message.header("subject") or "").lower(), "subject:")
        sink.urls(message.urls)
        if options.invisible and message.invisible:
            sink.words(" ".join(message.invisible)[:MAX_TEXT_CHARS].lower(), "invisible:")
        if message.alt_text:
            sink.words(" ".join(message.alt_text[:100]).lower(), "alt:")
        if options.html_tags and message.html_tags:
            sink.update("tag:" + tag for tag in set(message.html_tags))
        sink.update(_structure_tokens(message))


def _structure_tokens(message: ParsedMessage) -> set[str]:
    out = {"fact:" + fact for fact in message.facts}
    out.update("part:" + content_type for content_type in set(message.content_types))
    for attachment in message.attachments[:50]:
        out.add("attachment:" + attachment.content_type)
        name = attachment.filename.lower()
        if "." in name:
            out.add("attachment:ext:" + name.rsplit(".", 1)[1][:10].replace(" ", "_"))
        if attachment.size > 0:
            out.add(f"attachment:size:2^{int(math.log2(attachment.size))}")
    if not message.text or not any(part.strip() for part in message.text):
        out.add("body:empty")
    out.add(f"size:2^{int(math.log2(max(1, message.size)))}")
    return out
