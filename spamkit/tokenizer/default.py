"""EmailTokenizer: headers, visible and invisible text, URLs, attachments and damage."""

from __future__ import annotations

import math
from dataclasses import dataclass

from spamkit.message import ParsedMessage
from spamkit.tokenizer.headers import header_tokens
from spamkit.tokenizer.text import email_tokens, long_word_tokens, pair_tokens, split_words
from spamkit.tokenizer.urls import url_tokens

MAX_TEXT_CHARS = 200_000  # per message; text beyond this adds little and costs linearly


@dataclass(frozen=True)
class TokenizerOptions:
    """Choices measured in docs/decisions/0002-tokenizer.md; the defaults won there."""

    words: str = "split"  # "split": whitespace words, punctuation kept; "plain": letters/digits
    fold_case: bool = True
    headers: bool = True  # headers as name:word tokens
    header_set: str = "selected"  # SELECTED_HEADERS, or "all" but the ignored ones
    header_presence: bool = False  # "header:name:count" for every header present
    pairs: bool = False  # adjacent body word pairs
    invisible: bool = True  # hidden HTML text as its own "invisible:" tokens
    html_tags: bool = False


class EmailTokenizer:
    """The default tokenizer. Deterministic: same bytes, same options, same tokens."""

    def __init__(self, options: TokenizerOptions | None = None) -> None:
        self.options = options or TokenizerOptions()
        self._plain = self.options.words == "plain"
        o = self.options
        self.version = (f"email-1:{o.words}:{o.header_set}:{int(o.fold_case)}{int(o.headers)}"
                        f"{int(o.header_presence)}{int(o.pairs)}{int(o.invisible)}{int(o.html_tags)}")

    def tokenize(self, message: ParsedMessage) -> set[str]:
        options = self.options
        tokens: set[str] = set()
        text = " ".join(message.text)[:MAX_TEXT_CHARS]
        if options.fold_case:
            text = text.lower()
        body_words, long_words = split_words(text, self._plain)
        tokens.update(body_words)
        tokens.update(long_word_tokens(long_words))
        if options.pairs:
            tokens.update(pair_tokens(text.split()[:5000]))
        if "@" in text:
            tokens.update(email_tokens(body_words | long_words))
        if options.headers:
            tokens.update(header_tokens(message.headers, self._plain, options.fold_case,
                                        options.header_set == "selected", options.header_presence))
        else:
            subject = (message.header("subject") or "").lower()
            tokens.update("subject:" + w for w in split_words(subject, self._plain)[0])
        tokens.update(url_tokens(message.urls))
        if options.invisible and message.invisible:
            hidden = " ".join(message.invisible)[:MAX_TEXT_CHARS].lower()
            tokens.update("invisible:" + w for w in split_words(hidden, self._plain)[0])
        if message.alt_text:
            alt = " ".join(message.alt_text[:100]).lower()
            tokens.update("alt:" + w for w in split_words(alt, self._plain)[0])
        if options.html_tags and message.html_tags:
            tokens.update("tag:" + tag for tag in set(message.html_tags))
        tokens.update(_structure_tokens(message))
        return tokens


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
