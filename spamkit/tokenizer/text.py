"""Words from text: the shared word rules for bodies, headers and alt text.

A word is a run of non-space characters, 3 to 12 long, taken whole (SpamBayes's rule:
punctuation stays on, "free!" and "free" are different evidence). str.split() and a
set, then a length filter over the distinct words, is 3.4x faster than one regex with
look-arounds (first profile: findall was 35% of all time). The choice and the limits
are in docs/decisions/0002-tokenizer.md with their figures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from spamkit.lazyregex import LazyPattern

MIN_WORD = 3
MAX_WORD = 12
# The alternative measured there: runs of letters and digits with inner ' . - $.
PLAIN_WORD = LazyPattern(r"[\w$][\w'$.-]*[\w$!]")
EMAIL = re.compile(r"([\w.+-]{1,64})@([\w-]{1,63}(?:\.[\w-]{1,63}){1,8})")


# Chinese, Japanese and Korean text has no spaces between words; a run of these
# characters becomes overlapping character pairs instead (docs/decisions/0002).
CJK_RUN = LazyPattern(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]{2,}")
MAX_CJK_CHARS = 20_000


def split_words(text: str, plain: bool = False) -> tuple[set[str], set[str]]:
    """(distinct words of 3 to 12 characters and CJK character pairs, distinct longer words)."""
    unique = set(PLAIN_WORD.findall(text)) if plain else set(text.split())
    words = {w for w in unique if MIN_WORD <= len(w) <= MAX_WORD}
    long_words = {w for w in unique - words if len(w) > MAX_WORD}
    if not text.isascii():
        words.update(cjk_pairs(text))
    return words, long_words


def address_words(text: str) -> list[str]:
    """The whitespace words of at least MIN_WORD characters that hold an "@": what the
    address tokens are read from (a plain word never holds one)."""
    return [w for w in set(text.split()) if "@" in w and len(w) >= MIN_WORD] if "@" in text else []


def cjk_pairs(text: str) -> set[str]:
    pairs: set[str] = set()
    budget = MAX_CJK_CHARS
    for run in CJK_RUN.findall(text):
        run = run[:budget]
        pairs.update(run[i:i + 2] for i in range(len(run) - 1))
        budget -= len(run)
        if budget <= 0:
            break
    return pairs


def long_word_tokens(long_words: set[str]) -> set[str]:
    """SpamBayes's "skip" tokens: a long word says its first character and length/10."""
    return {f"skip:{word[0]} {len(word) // 10 * 10}" for word in long_words
            if "@" not in word and "://" not in word}  # those are tokenized on their own


def email_tokens(words: Iterable[str]) -> set[str]:
    """Address parts in a message's words that contain "@": the name before @ and the domain.

    Only words with an @ are looked at: EMAIL over the whole text cost 13% of all
    tokenizing time, since the regex engine tries every position.
    """
    out: set[str] = set()
    candidates = " ".join(set(words))
    for name, domain in EMAIL.findall(candidates):
        out.add("email name:" + name.lower())
        out.add("email addr:" + domain.lower())
    return out


def pair_tokens(word_list: list[str]) -> list[str]:
    """Adjacent word pairs ("bigrams"), as an option."""
    return [f"{a} {b}" for a, b in zip(word_list, word_list[1:])]
