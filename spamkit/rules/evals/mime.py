"""MIME, HTML and body evals (SpamAssassin's MIMEEval, HTMLEval, BodyEval, ImageInfo)
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
    "mime_attachment": lambda c: any(p.attachment for p in c.message.parts),
    # text that needed no encoding, sent as base64 anyway: a way to hide it from filters
    "mime_base64_encoded_text": lambda c: any(
        p.encoding == "base64" and not p.attachment and p.ascii_text
        and p.content_type.startswith("text/") for p in c.message.parts),
    "mime_qp_long_line": lambda c: any(p.long_qp_line for p in c.message.parts),
}


def check_for_mime(context: MessageContext, test: str) -> bool:
    return _MIME_TESTS[test](context)


check_for_mime.accepts = lambda args: len(args) == 1 and args[0] in _MIME_TESTS  # type: ignore[attr-defined]


def html_test(context: MessageContext, test: str) -> bool:
    """Only "html" (the message has a text/html part) is known here."""
    return check_for_mime_html(context)


html_test.accepts = lambda args: args == ("html",)  # type: ignore[attr-defined]


def html_tag_exists(context: MessageContext, tag: str) -> bool:
    return tag.lower() in set(context.message.html_tags)


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


EVALS: dict[str, Callable[..., bool]] = {
    "check_for_mime_html": check_for_mime_html,
    "check_for_mime_html_only": check_for_mime_html_only,
    "check_for_mime": check_for_mime,
    "html_test": html_test,
    "html_tag_exists": html_tag_exists,
    "image_count": image_count,
    "check_body_length": check_body_length,
    "check_for_uppercase": check_for_uppercase,
}
