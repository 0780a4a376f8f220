"""MIME and body evals (SpamAssassin's MIMEEval, BodyEval, ImageInfo)
that spamkit's parser has the facts for. Arguments it cannot answer are refused at load
(see `accepts`), so no rule runs on a guess."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from spamkit.lazyregex import LazyPattern
from spamkit.rules.evals.faraway import entity_charsets, mime_faraway_charset

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

_HEAD_END = re.compile(rb"\r?\n\r?\n")
# US-ASCII by any of its registered names, or no charset at all (SpamAssassin's list)
_ASCII_CHARSET = re.compile(r"^$|us-ascii|ansi_x3\.4-1968|iso-ir-6|ansi_x3\.4-1986|iso_646\.irv:1991|ascii"
                            r"|iso646-us|us|ibm367|cp367|csascii")
_BAD_ISO_CHARSET = LazyPattern(r"iso-\S+-\S+\b", re.IGNORECASE)
_GOOD_ISO_CHARSET = LazyPattern(r"iso-(?:8859-\d{1,2}|2022-(?:jp|kr))\b")
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
    "mime_faraway_charset": mime_faraway_charset,
    # an ISO charset other than ISO 8859 and ISO-2022-JP/KR ("iso-2022-cn", "iso-ir-111")
    "mime_bad_iso_charset": lambda c: any(_BAD_ISO_CHARSET.search(charset) and not _GOOD_ISO_CHARSET.search(charset)
                                          for charset in entity_charsets(c)),
    # never, as in SpamAssassin 4.0: its parser sets this flag on the message, where
    # check_for_mime does not look (MIMEPART_LIMIT_EXCEEDED cannot hit there either)
    "mimepart_limit_exceeded": lambda c: False,
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
    difference, _, _ = _alternative_difference(context)
    return (float(low) == 0 or difference > float(low)) and (high == "undef" or difference <= float(high))


def multipart_alternative_difference_count(context: MessageContext, ratio: str, least_html: str) -> bool:
    """The last multipart/alternative with HTML words: more than `least_html` distinct
    words in its HTML, and its plain text's distinct words over them above `ratio`
    (MPART_ALT_DIFF_COUNT: 3, 1, a plain part with three times the HTML's words)."""
    _, html_words, text_words = _alternative_difference(context)
    return html_words > float(least_html) and text_words / html_words > float(ratio)


def _alternative_difference(context: MessageContext) -> tuple[float, int, int]:
    """(the largest difference in percent; the distinct HTML and plain words of the last
    alternative that had HTML words), worked out once a message."""
    if "alternative_difference" not in context.cache:
        context.cache["alternative_difference"] = _alternative_words(context)
    return cast("tuple[float, int, int]", context.cache["alternative_difference"])


def _alternative_words(context: MessageContext) -> tuple[float, int, int]:
    if context.message.content_types == _MEETING_REQUEST:
        return 0.0, 0, 0
    largest = 0.0
    html_words = text_words = 0
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
        html_words, text_words = len(html), len(plain)
        left = sum(1 for word, count in html.items() if count - plain.get(word, 0) >= 1)
        largest = max(largest, 100.0 * left / len(html))
    return largest, html_words, text_words


def check_mime_multipart_ratio(context: MessageContext, low: str, high: str) -> bool:
    """The bytes as sent of the last text/plain part over those of the last text/html
    part, counting the parts met after a multipart/alternative and not marked
    attachments, is in [low, high) (MIME_HTML_MOSTLY: 0-0.01, a token plain part
    beside the HTML). With no such pair the ratio is 1."""
    text = html = None
    for part in reversed(context.message.parts):
        if not part.after_alternative or "attachment" in part.disposition:
            continue
        if html is None and part.content_type == "text/html":
            html = part.raw_length
        elif text is None and part.content_type == "text/plain":
            text = part.raw_length
        if html is not None and text is not None:
            break
    ratio = text / html if text is not None and html else 1.0
    return float(low) <= ratio < float(high)


def check_base64_length(context: MessageContext, low: str, high: str = "") -> bool:
    """The longest line of the base64 parts, its line break counted (PartInfo.longest_line),
    is at least `low` and at most `high` (BASE64_LENGTH_79_INF: longer than the 76
    characters MIME allows, and Outlook's 78). Calendar invitations (application/ics)
    are let off."""
    longest = max((part.longest_line for part in context.message.parts
                   if part.content_type != "application/ics"), default=0)
    return longest >= int(low) and not (high and longest > int(high))


def tvd_vertical_words(context: MessageContext, low: str, high: str) -> bool:
    """The most spaced-out body line: spaces per other byte, in percent (100 when spaces
    outnumber the rest), of lines over 5 bytes, is in [low, high) (TVD_SPACE_RATIO:
    "w o r d s   w r i t t e n   l i k e   t h i s"). -1 with no such line."""
    if "vertical_words" not in context.cache:
        most = -1
        for line in context.texts("body:bytes"):
            if len(line) <= 5:
                continue
            spaces = line.count(" ")
            others = len(line) - spaces
            percent = 100 if spaces > others or others == 0 else 100 * spaces // others
            most = max(most, percent)
        context.cache["vertical_words"] = most
    most = cast("int", context.cache["vertical_words"])
    return float(low) <= most < (101 if float(high) >= 100 else float(high))


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
_PARSE_FLAGS = {"mime_epilogue_exists": lambda context: context.message.mime_epilogue,
                "missing_mime_headers": lambda context: context.message.missing_mime_headers}


def check_msg_parse_flags(context: MessageContext, flag: str) -> bool:
    """What the parser noted about the message: "mime_epilogue_exists", text after a
    multipart's closing delimiter (T_TVD_MIME_EPI); "missing_mime_headers", a part that
    does not begin with a header field (T_TVD_MIME_NO_HEADERS)."""
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
    "multipart_alternative_difference_count": multipart_alternative_difference_count,
    "check_mime_multipart_ratio": check_mime_multipart_ratio,
    "check_base64_length": check_base64_length,
    "tvd_vertical_words": tvd_vertical_words,
}
