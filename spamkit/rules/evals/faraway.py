"""The "faraway charset" evals: text in a character set of a language the site does not
read (`ok_locales`, spamkit.rules.locales). With `ok_locales all`, the default, each
returns False at once, as SpamAssassin's do.

CHARSET_FARAWAY and CHARSET_FARAWAY_HEADER score 3.2 in Debian's rules,
MIME_CHARSET_FARAWAY 2.45 (and HTML_CHARSET_FARAWAY 0.5, which never hits: see
html_charset_faraway).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from spamkit.lazyregex import LazyPattern
from spamkit.rules.locales import charset_is_ok, every_locale

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

# a Content-Type's charset as MIMEEval's get_charset_from_ct_line reads it: quoted in
# double or single quotes, else up to white space
# (compiled on first use, as every pattern only some rule files ask for: decision 0044)
_LINE_CHARSET = (LazyPattern(r'charset="([^"]+)"', re.IGNORECASE), LazyPattern(r"charset='([^']+)'", re.IGNORECASE),
                 LazyPattern(r"charset=(\S+)", re.IGNORECASE))
# a part's charset as Util's parse_content_type reads it
_PART_CHARSET = LazyPattern(r"""\bcharset\s*=\s*["']?(.*?)["']?(?:;|$)""", re.IGNORECASE)
# an encoded word's charset, in a header as written (HeaderEval)
_ENCODED_WORD_CHARSET = LazyPattern(r"=\?(.+?)\?.\?.*?\?=")
_MISSING_CONTENT_TYPE = "text/plain; charset=us-ascii"


def check_for_faraway_charset(context: MessageContext) -> bool:
    """The message's own Content-Type names a far-away charset, and its body text (as
    body rules read it, in UTF-8) has at least as many bytes outside ASCII as inside, and
    more than 3: KOI8-R is ASCII too, so a charset alone proves nothing."""
    if every_locale(context.ok_locales):
        return False
    content_type = "\n".join(context.header_values("content-type"))
    charset = next((m.group(1) for pattern in _LINE_CHARSET if (m := pattern.search(content_type))), None)
    if charset is None or charset_is_ok(charset, context.ok_locales):
        return False
    body = "\n".join(context.texts("body:bytes"))
    high = sum(1 for character in body if character > "\x7f")
    return high > 3 and len(body) - high <= high


def check_for_faraway_charset_in_headers(context: MessageContext) -> bool:
    """An encoded word of From or Subject, as written, is in a far-away charset."""
    if every_locale(context.ok_locales):
        return False
    return any(not charset_is_ok(match.group(1), context.ok_locales)
               for name in ("from", "subject") for value in context.header_values(name, raw=True)
               for match in _ENCODED_WORD_CHARSET.finditer(value))


def entity_charsets(context: MessageContext) -> list[str]:
    """The charset of every entity of the message (the message itself, each multipart,
    each part), in lower case, from its last Content-Type, as MIMEEval reads them ("" for
    none; US-ASCII where there is no Content-Type)."""
    cached = context.cache.get("entity_charsets")
    if cached is None:
        cached = context.cache["entity_charsets"] = [_charset_of(fields) for fields in context.message.part_headers]
    return cast("list[str]", cached)


def _charset_of(fields: list[tuple[str, str]]) -> str:
    content_type = next((value for name, value in reversed(fields) if name == "content-type"), "")
    found = _PART_CHARSET.search(content_type or _MISSING_CONTENT_TYPE)
    return found.group(1).lower() if found else ""


def mime_faraway_charset(context: MessageContext) -> bool:
    """check_for_mime('mime_faraway_charset'): some entity of the message declares a
    far-away charset."""
    if every_locale(context.ok_locales):
        return False
    return any(re.search("[a-z]", charset) and not charset_is_ok(charset, context.ok_locales)
               for charset in entity_charsets(context))


def html_charset_faraway(context: MessageContext) -> bool:
    """Never, as in SpamAssassin 4.0: the eval counts the charsets of an HTML part's
    <meta http-equiv="Content-Type"> tags, but its HTML reader keeps them where the eval
    does not look (HTML.pm stores `charsets` on the reader, not in the results it hands
    on), so HTML_CHARSET_FARAWAY never hits there. Hitting here would score mail 0.5
    higher than SpamAssassin does with the same files."""
    return False


EVALS: dict[str, Callable[..., bool]] = {
    "check_for_faraway_charset": check_for_faraway_charset,
    "check_for_faraway_charset_in_headers": check_for_faraway_charset_in_headers,
    "html_charset_faraway": html_charset_faraway,
}
