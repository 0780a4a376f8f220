"""MIME and body evals (SpamAssassin's MIMEEval, BodyEval, ImageInfo)
that spamkit's parser has the facts for. Arguments it cannot answer are refused at load
(see `accepts`), so no rule runs on a guess."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

_HEAD_END = re.compile(rb"\r?\n\r?\n")
# US-ASCII by any of its registered names, or no charset at all (SpamAssassin's list)
_ASCII_CHARSET = re.compile(r"^$|us-ascii|ansi_x3\.4-1968|iso-ir-6|ansi_x3\.4-1986|iso_646\.irv:1991|ascii"
                            r"|iso646-us|us|ibm367|cp367|csascii")
_NO_UPPER = str.maketrans("", "", string.ascii_uppercase)
_NO_LOWER = str.maketrans("", "", string.ascii_lowercase)


def check_for_mime_html(context: MessageContext) -> bool:
    """Some part is text/html."""
    return "text/html" in context.message.content_types


def check_for_mime_html_only(context: MessageContext) -> bool:
    """HTML and no plain-text alternative."""
    return context.html_only


_MIME_TESTS: dict[str, Callable[[MessageContext], bool]] = {
    "mime_base64_count": lambda c: any(p.encoding == "base64" for p in c.message.parts),
    "mime_qp_count": lambda c: any(p.encoding == "quoted-printable" for p in c.message.parts),
    # (as SpamAssassin counts them: a part whose Content-Disposition says so)
    "mime_attachment": lambda c: any("attachment" in p.disposition for p in c.message.parts),
    # text declared US-ASCII (or no charset), which needs no encoding, sent as base64
    # anyway: a way to hide it from filters
    "mime_base64_encoded_text": lambda c: any(
        "base64" in p.encoding and p.content_type.startswith("text") and _ASCII_CHARSET.search(p.charset)
        and not p.disposition.startswith(("attachment", "inline")) for p in c.message.parts),
    "mime_qp_long_line": lambda c: any(p.long_qp_line for p in c.message.parts),
}


def check_for_mime(context: MessageContext, test: str) -> bool:
    return _MIME_TESTS[test](context)


check_for_mime.accepts = lambda args: len(args) == 1 and args[0] in _MIME_TESTS  # type: ignore[attr-defined]


def check_for_ascii_text_illegal(context: MessageContext) -> bool:
    """A text/plain part says US-ASCII (or names no charset) and carries 8-bit
    characters or NULs as sent (PP_MIME_FAKE_ASCII_TEXT)."""
    return any(p.false_ascii for p in context.message.parts)


_HAS_WORD_CHARACTER = re.compile(r"[0-9A-Za-z_]")
# Exchange's meeting requests: an HTML text and the calendar, nothing alike by design
_MEETING_REQUEST = ["multipart/alternative", "text/html", "text/calendar"]


def multipart_alternative_difference(context: MessageContext, low: str, high: str) -> bool:
    """How much of a multipart/alternative's HTML the plain version does not say, in
    percent, in (low, high] (low 0: from 0 on; high "undef": open): the words of the
    HTML (white-space separated, with a letter, digit or _) not found as often in the
    plain text, over the HTML's distinct words; an HTML version of no words but an
    image differs wholly. The largest of the message's alternatives counts
    (MPART_ALT_DIFF: 99-100, a plain part unrelated to the HTML one)."""
    if "alternative_difference" not in context.cache:
        context.cache["alternative_difference"] = _alternative_difference(context)
    difference = context.cache["alternative_difference"]
    assert isinstance(difference, float)
    return (float(low) == 0 or difference > float(low)) and (high == "undef" or difference <= float(high))


def _alternative_difference(context: MessageContext) -> float:
    if context.message.content_types == _MEETING_REQUEST:
        return 0.0
    largest = 0.0
    for versions in context.message.alternatives:
        html: dict[str, int] = {}
        plain: dict[str, int] = {}
        for content_type, visible, has_image in versions:
            words = html if content_type == "text/html" else plain
            for word in visible.split():
                if _HAS_WORD_CHARACTER.search(word):
                    words[word] = words.get(word, 0) + 1
            if content_type == "text/html" and not html and has_image:
                html["\n"] = 1  # (a mark no split word can be)
        if not html:
            continue
        left = sum(1 for word, count in html.items() if count - plain.get(word, 0) >= 1)
        largest = max(largest, 100.0 * left / len(html))
    return largest


_IMAGE_TYPES = {"gif": ("image/gif",), "png": ("image/png",),
                "jpeg": ("image/jpeg", "image/jpg", "image/pjpeg")}


def image_count(context: MessageContext, kind: str, low: str, high: str = "") -> bool:
    """Image parts of a type ("all": any image) between low and high, both included."""
    if kind == "all":
        count = sum(1 for p in context.message.parts if p.content_type.startswith("image/"))
    else:
        count = sum(1 for p in context.message.parts if p.content_type in _IMAGE_TYPES[kind])
    return count >= int(low) and (not high or count <= int(high))


image_count.accepts = lambda args: bool(args) and (args[0] in _IMAGE_TYPES or args[0] == "all")  # type: ignore[attr-defined]


def check_body_length(context: MessageContext, most: str) -> bool:
    """The body as sent (everything after the header block) is at most `most` bytes."""
    match = _HEAD_END.search(context.raw)
    length = len(context.raw) - match.end() if match else 0
    return length <= int(most)


def check_for_uppercase(context: MessageContext, low: str, high: str) -> bool:
    """The share of capitals among the body's letters, in percent, is in [low, high)
    ([low, 100] for the top band).

    Only bodies with at least 200 letters are judged: a short note in capitals says
    little.
    """
    counts = context.cache.get("letter-case")
    if counts is None:
        text = "".join(context.message.text)[:250_000]
        counts = (len(text) - len(text.translate(_NO_UPPER)), len(text) - len(text.translate(_NO_LOWER)))
        context.cache["letter-case"] = counts
    upper, lower = cast("tuple[int, int]", counts)
    letters = upper + lower
    if letters < 200:
        return False
    share = 100.0 * upper / letters
    return float(low) <= share and (share < float(high) or float(high) >= 100)


# the parser's notes SpamAssassin's rules ask about that spamkit's parser keeps
_PARSE_FLAGS = {"mime_epilogue_exists": lambda context: context.message.mime_epilogue}


def check_msg_parse_flags(context: MessageContext, flag: str) -> bool:
    """What the parser noted about the message: "mime_epilogue_exists", text after a
    multipart's closing delimiter (T_TVD_MIME_EPI)."""
    return bool(_PARSE_FLAGS[flag](context))


check_msg_parse_flags.accepts = lambda args: len(args) == 1 and args[0] in _PARSE_FLAGS  # type: ignore[attr-defined]


EVALS: dict[str, Callable[..., bool]] = {
    "check_for_mime_html": check_for_mime_html,
    "check_for_mime_html_only": check_for_mime_html_only,
    "check_for_mime": check_for_mime,
    "check_for_ascii_text_illegal": check_for_ascii_text_illegal,
    "multipart_alternative_difference": multipart_alternative_difference,
    "image_count": image_count,
    "check_body_length": check_body_length,
    "check_for_uppercase": check_for_uppercase,
    "check_msg_parse_flags": check_msg_parse_flags,
}
