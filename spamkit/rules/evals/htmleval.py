"""HTML evals (SpamAssassin's HTMLEval plugin), over each HTML part's facts
(spamkit.rules.htmlfacts). A rule hits when any HTML part of the message satisfies it.

Comparisons are written in the rule as text ("!= 0", "< 512"); they are read once at
load into an operator and a number, and anything else is refused there.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from spamkit.rules.evals.mime import check_for_mime_html
from spamkit.rules.htmlfacts import NAMED_FLAGS, NAMED_TEXTS, NAMED_VALUES
from spamkit.rules.perl_regex import compile_bare, compiles_bare

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

_COMPARISON = re.compile(r"^\s*(==|!=|<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_TAG_NAME = re.compile(r"^[a-zA-Z0-9]+$")
_NUMBER = re.compile(r"^\s*-?(?:\d+\.?\d*|\.\d+)\s*$")


def _comparison(text: str) -> tuple[Callable[[float, float], bool], float]:
    match = _COMPARISON.match(text)
    if match is None:
        raise ValueError(f"not a comparison: {text!r}")
    return _OPERATORS[match.group(1)], float(match.group(2))


def html_test(context: MessageContext, test: str) -> bool:
    """A yes/no fact of an HTML part: "html" (there is one), "font_low_contrast" (text
    nearly the background's colour), "font_invalid_color", "font_face_bad",
    "form_action_mailto", "embeds"."""
    if test == "html":
        return check_for_mime_html(context)
    return any(test in facts.flags for facts in context.html_facts)


html_test.accepts = lambda args: len(args) == 1 and args[0] in NAMED_FLAGS  # type: ignore[attr-defined]


def html_tag_exists(context: MessageContext, tag: str) -> bool:
    return any(tag.lower() in facts.inside for facts in context.html_facts)


def html_tag_balance(context: MessageContext, tag: str, comparison: str) -> bool:
    """Opened minus closed `tag`s, compared as written ("!= 0": left open or closed
    twice)."""
    compare, number = _comparison(comparison)
    return any(tag in facts.inside and compare(facts.inside[tag], number) for facts in context.html_facts)


html_tag_balance.accepts = lambda args: (  # type: ignore[attr-defined]
    len(args) == 2 and _TAG_NAME.match(args[0]) is not None and _COMPARISON.match(args[1]) is not None)


def html_image_only(context: MessageContext, low: str, high: str) -> bool:
    """An HTML part with an image whose source is (low, high] characters long: a
    picture with little around it (HTML_IMAGE_ONLY_*)."""
    return any("img" in facts.inside and float(low) < facts.length <= float(high) for facts in context.html_facts)


def html_image_ratio(context: MessageContext, low: str, high: str) -> bool:
    """Characters of text per pixel of image, in (low, high]."""
    return any(facts.image_area > 0 and float(low) < facts.non_space_length / facts.image_area <= float(high)
               for facts in context.html_facts)


def html_range(context: MessageContext, name: str, low: str, high: str = "inf") -> bool:
    """A named number of an HTML part (length, max_size, bad_tag_ratio, ...) in
    (low, high] ("inf": no upper bound)."""
    for facts in context.html_facts:
        value = facts.value(name)
        if value is not None and value > float(low) and (high.strip() == "inf" or value <= float(high)):
            return True
    return False


html_range.accepts = lambda args: (  # type: ignore[attr-defined]
    len(args) in (2, 3) and args[0] in NAMED_VALUES and _NUMBER.match(args[1]) is not None
    and (len(args) == 2 or args[2].strip() == "inf" or _NUMBER.match(args[2]) is not None))


def html_eval(context: MessageContext, name: str, comparison: str) -> bool:
    """A named number of an HTML part, compared as written ("< 512")."""
    compare, number = _comparison(comparison)
    for facts in context.html_facts:
        value = facts.value(name)
        if value is not None and compare(value, number):
            return True
    return False


html_eval.accepts = lambda args: (  # type: ignore[attr-defined]
    len(args) == 2 and args[0] in NAMED_VALUES and _COMPARISON.match(args[1]) is not None)


def html_text_match(context: MessageContext, name: str, pattern: str) -> bool:
    """A link's text ("anchor": an image inside a link reads "<img>"), a comment (as
    written, "<!--" kept) or a title of an HTML part matches the pattern."""
    compiled = compile_bare(pattern)
    return any(compiled.search(text) is not None for facts in context.html_facts for text in facts.texts(name))


def _accepts_text_match(args: tuple[str, ...]) -> bool:
    return len(args) == 2 and args[0] in NAMED_TEXTS and compiles_bare(args[1])


html_text_match.accepts = _accepts_text_match  # type: ignore[attr-defined]
html_image_only.accepts = html_image_ratio.accepts = lambda args: (  # type: ignore[attr-defined]
    len(args) == 2 and all(_NUMBER.match(arg) is not None for arg in args))


def html_title_subject_ratio(context: MessageContext, ratio: str) -> bool:
    """An HTML part's longest title is more than `ratio` times as long as the Subject,
    in UTF-8 bytes, the Subject's line break counted as SpamAssassin's get() keeps it
    (HTML_TITLE_SUBJ_DIFF: 3.5, a page pasted in whole)."""
    subject = context.header_text("Subject")
    if not subject:
        return False
    length = len(subject.encode("utf-8", "surrogatepass"))
    return any(max((len(title.encode("utf-8", "surrogatepass")) for title in facts.titles), default=0)
               > float(ratio) * length for facts in context.html_facts)


EVALS: dict[str, Callable[..., bool]] = {
    "html_test": html_test,
    "html_tag_exists": html_tag_exists,
    "html_tag_balance": html_tag_balance,
    "html_image_only": html_image_only,
    "html_image_ratio": html_image_ratio,
    "html_range": html_range,
    "html_eval": html_eval,
    "html_text_match": html_text_match,
    "html_title_subject_ratio": html_title_subject_ratio,
}
