"""The body text as SpamAssassin's body rules read it: its parts joined, HTML rendered its way.

Bayes reads spamkit's own rendering of HTML (spamkit.message.html), in which a tag is
a space and a part is a paragraph of its own. SpamAssassin's rendering
(Mail::SpamAssassin::HTML, read from Debian's 4.0 package, and Message.pm's
get_body_text_array_common) differs where a paragraph begins, which rules such as
__BODY_TEXT_LINE (BODY_URI_ONLY, EMPTY_MESSAGE) and TRACKER_ID count or anchor on:

- a <br> or <div>, start or end tag, is a line break; two in a row (white space
  between) end a paragraph; <p>, <hr>, <blockquote>, <pre>, <title> and a few old
  tags end one each; <li>, <td>, <th>, <dt>, <dd>, <embed> and <h1>-<h6> are a space;
  every other tag is nothing at all ("a<span>b" reads "ab");
- white space written in the HTML (a blank line in the source included) is one space;
- script and style contents, comments, declarations and processing instructions are
  no text; hidden text is kept (SpamAssassin's "rendered" text keeps it);
- text parts are read (text/html rendered, the others as they are, text/plain that
  looks like HTML included; not text/calendar or text/x-vcard), and joined by one line
  break, with one more for each leaf part that gives no text, so a part that does not
  end in a line break runs into the next part's first paragraph.

Only the rules read from SpamAssassin's files see this text (decision 0040); the
built-in rules keep the text their scores were fitted on (decision 0005).
"""

from __future__ import annotations

import html
import re

from spamkit.lazyregex import LazyPattern
from spamkit.message import ParsedMessage

# what a tag of these names (start or end) puts in the text; every other tag, nothing
_TAG_TEXT = {
    **dict.fromkeys(("br", "div"), "\n"),
    **dict.fromkeys(("li", "th", "td", "dt", "dd", "embed", "h1", "h2", "h3", "h4", "h5", "h6"), " "),
    **dict.fromkeys(("p", "hr", "blockquote", "pre", "listing", "plaintext", "xmp", "title"), "\n\n"),
}
# where markup may begin: "<" and a letter (a tag), "/" (an end tag), "!" (a comment,
# declaration or marked section) or "?" (a processing instruction); else "<" is text
_MARKUP_START = LazyPattern(r"<[A-Za-z/!?]")
# a start or end tag: its name (to white space, "/" or ">"), then attributes, a quoted
# value running to its closing quote whatever it holds (">" included), then ">". As one
# regex, <(/?)([A-Za-z][^\s/>]*)(?:[^>=]++|=\s*+(?:"[^"]*+"|'[^']*+'|(?!["'])))*+>, it
# gave the name back a character at a time when the tag did not end, and 500 kB of "a<"
# did not finish; _Rendering.match_tag finds the same tags in linear time. _TAG is that
# regex with the longest name only: its first try, and the answer whenever it matches.
_TAG = LazyPattern(r"""<(/?)([A-Za-z][^\s/>]*+)(?:[^>=]++|=\s*+(?:"[^"]*+"|'[^']*+'|(?!["'])))*+>""")
_TAG_HEAD = LazyPattern(r"<(/?)([A-Za-z][^\s/>]*+)")
_ATTRIBUTE_STOP = LazyPattern(r"[=>]")
_SPACES = LazyPattern(r"\s*+")
# elements whose content HTML::Parser does not read for tags, to their end tag: script
# and style (no text: SpamAssassin closes one left open at the end of the part), and
# the ones whose content is text, entities decoded (True) or not
_NO_TEXT_ELEMENTS = frozenset({"script", "style"})
_LITERAL_ELEMENTS = {"script": False, "style": False, "iframe": False, "xmp": False,
                     "title": True, "textarea": True}
_END_TAGS = {name: LazyPattern(f"</{name}", re.IGNORECASE) for name in _LITERAL_ELEMENTS}
_HTML_SPACE = LazyPattern(r"[ \t\n\r\f\v]+")


def render_html(source: str) -> str:
    """An HTML part's text as SpamAssassin renders it for body rules.

    HTML::Parser's reading, as SpamAssassin 4.0 runs it: a comment ends at "-->", or
    without one at the next ">"; "</" before a non-letter, "<!" and "<?" run to the next
    ">"; a CDATA section, and everything after <plaintext>, is text as written; markup
    that never ends, and an unclosed script or style element, take the rest of the part
    with them. As SpamAssassin's display_text does, a tag's line break or space takes
    the space off the end of the text before it, and off the start of the text after it.
    """
    # (SpamAssassin's own first steps: &nbsp; a space, curly double quotes straight)
    source = source.replace("&nbsp;", " ").replace("\u201c", '"').replace("\u201d", '"')
    return _Rendering(source).run()


class _Rendering:
    """One HTML part read in order, its text and tags' breaks collected."""

    __slots__ = ("source", "pieces", "after_break", "comment_close", "tag_ends", "walk_tags")

    def __init__(self, source: str) -> None:
        self.source = source
        self.pieces: list[str] = []
        self.after_break = False  # the last piece is a tag's (a line break or a space)
        # where the next "-->" is (-1: none left), kept: looked for again only once
        # passed, so a part of many "<!-- >" costs one pass, not one pass a comment
        self.comment_close = -2
        # where a tag's attributes and ">" end, by the "=" they pass (-1: they do not);
        # the same whichever tag asks, so each is followed once
        self.tag_ends: dict[int, int] = {}
        self.walk_tags = False  # _TAG has failed once: from then on tags are walked

    def run(self) -> str:
        source, position = self.source, 0
        while (opening := _MARKUP_START.search(source, position)) is not None:
            self.text(source[position:opening.start()])
            position = self.markup(opening.start())
            if position < 0:
                return "".join(self.pieces)
        self.text(source[position:])
        return "".join(self.pieces)

    def text(self, written: str, decode: bool = True) -> None:
        """Text between tags: entities decoded, white space as one space."""
        if not written:
            return
        text = _HTML_SPACE.sub(" ", html.unescape(written) if decode and "&" in written else written)
        self.pieces.append(text[1:] if self.after_break and text.startswith(" ") else text)
        self.after_break = False

    def tag(self, name: str) -> None:
        """What a tag puts in the text: a line break, a space, or (most tags) nothing."""
        tag_text = _TAG_TEXT.get(name)
        if tag_text is None:
            return
        if self.pieces and not self.after_break and self.pieces[-1].endswith(" "):
            self.pieces[-1] = self.pieces[-1][:-1]
        self.pieces.append(tag_text)
        self.after_break = True

    def markup(self, start: int) -> int:
        """Read the markup at `start`; where it ends (-1: it does not, nor the part)."""
        source = self.source
        following = source[start + 1]
        if following == "!" and source.startswith("<!--", start):
            if self.comment_close != -1 and self.comment_close < start + 4:
                self.comment_close = source.find("-->", start + 4)
            if self.comment_close >= 0:
                return self.comment_close + 3
            return _after(source.find(">", start + 4))
        if following == "!" and source.startswith("<![CDATA[", start):
            close = source.find("]]>", start + 9)
            self.text(source[start + 9:None if close < 0 else close], decode=False)
            return _after(close, 3)
        if following in "!?" or (following == "/" and not source[start + 2:start + 3].isalpha()):
            return _after(source.find(">", start + 2))
        tag = self.match_tag(start)
        if tag is None:
            return -1
        closing, name, tag_end = tag
        name = name.lower()
        self.tag(name)
        if closing:
            return tag_end
        if name == "plaintext":  # the rest of the part is text
            self.text(source[tag_end:], decode=False)
            return -1
        if name not in _LITERAL_ELEMENTS:
            return tag_end
        end_tag = _END_TAGS[name].search(source, tag_end)
        content = source[tag_end:None if end_tag is None else end_tag.start()]
        if name not in _NO_TEXT_ELEMENTS:
            self.text(content, decode=_LITERAL_ELEMENTS[name])
        if end_tag is None:
            return -1
        self.tag(name)
        return _after(source.find(">", end_tag.end()))

    def match_tag(self, start: int) -> tuple[bool, str, int] | None:
        """The tag at `start` as the regex above takes it: (an end tag, its name, where
        it ends), or None. The longest name whose attributes end in ">" wins. A shorter
        name can only end differently when it stops just before an "=" of the longer one
        (otherwise its attributes run on to the same place), so only those are tried."""
        source = self.source
        if not self.walk_tags:  # (mail's tags end with their longest name, fastest as one regex)
            tag = _TAG.match(source, start)
            if tag is not None:
                return bool(tag.group(1)), tag.group(2), tag.end()
            # a failed match may have read to the end of the part: doing that again
            # for every later tag would be quadratic, so they are walked from now on
            self.walk_tags = True
        head = _TAG_HEAD.match(source, start)
        if head is None:
            return None
        name_start, position = head.span(2)
        end = self.attributes_end(position)
        if end >= 0:
            return bool(head.group(1)), head.group(2), end
        while (position := source.rfind("=", name_start + 1, position)) != -1:
            end = self.attributes_end(position)
            if end >= 0:
                return bool(head.group(1)), source[name_start:position], end
        return None

    def attributes_end(self, position: int) -> int:
        r"""Where (?:[^>=]++|=\s*+(?:"[^"]*+"|'[^']*+'|(?!["'])))*+> ends when it starts at
        `position`; -1 when it does not match. Followed step by step, each "=" on the way
        remembered with the answer (each step's answer is the next one's). Two ways that
        meet have passed the same "=" (a quoted value's end has one opening quote, and a
        run of other characters leads to the same "=" or ">"), so the "=" are enough."""
        source, known = self.source, self.tag_ends
        path: list[int] = []
        while True:
            following = source[position:position + 1]
            if following in ("", ">"):
                end = position + 1 if following else -1
                break
            if following != "=":  # a run of anything else, to the next "=" or ">"
                stop = _ATTRIBUTE_STOP.search(source, position)
                position = len(source) if stop is None else stop.start()
                continue
            remembered = known.get(position)
            if remembered is not None:
                end = remembered
                break
            path.append(position)
            spaces = _SPACES.match(source, position + 1)
            value = spaces.end() if spaces is not None else position + 1
            quote = source[value:value + 1]
            if quote in ('"', "'"):
                close = source.find(quote, value + 1)
                if close < 0:  # an unclosed quote: no alternative matches, nor does ">"
                    end = -1
                    break
                value = close + 1
            position = value
        for place in path:
            known[place] = end
        return end


def _after(close: int, length: int = 1) -> int:
    """The position after a closing mark found at `close` (-1 when not found)."""
    return -1 if close < 0 else close + length


# SpamAssassin's body_part_scan_size: the text of a part that body rules read, cut near
# here (at a line end, else a space, within RENDERED_CUT_REACH after it)
BODY_PART_SCAN_SIZE = 50_000
RENDERED_CUT_REACH = 1024
MAX_LINE_LENGTH = 2048  # SpamAssassin's MAX_BODY_LINE_LENGTH, in bytes: longer lines are cut
# the parts read as they are: SpamAssassin reads every text type but these two (and
# HTML) as text/plain (text/enriched, text/rfc822-headers...), and a part with no type
_READ_AS_PLAIN = LazyPattern(r"$|text\b(?!/(?:x-vcard|calendar)$)")
# Perl's \s: Python's, less the four separator controls \x1c-\x1f (str.isspace counts
# them as white space, Unicode and Perl do not)
_PARAGRAPH_BREAK = LazyPattern(r"\n+[^\S\x1c-\x1f]*\n+")
_SPACE = LazyPattern(r"[^\S\x1c-\x1f]+")


def body_lines(subject: str, message: ParsedMessage) -> list[str]:
    """What a SpamAssassin body rule is tried on, one by one: the Subject, then each
    paragraph of the text with its white space one space (a leading or trailing one
    kept), each ending in a line break but the last, and cut at MAX_LINE_LENGTH."""
    text = _SPACE.sub(" ", _PARAGRAPH_BREAK.sub("\0", body_text(message))).replace("\0", "\n")
    lines = [line + "\n" for line in (subject + "\n" + text).split("\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()  # the text ended in a line break: no empty line after it
    return [piece for line in lines for piece in _short_lines(line)]


def _short_lines(line: str) -> list[str]:
    """A line cut as SpamAssassin cuts a long one, counting its UTF-8 bytes (it cuts the
    text once encoded): after the last space in the first MAX_LINE_LENGTH + 1 bytes,
    else at MAX_LINE_LENGTH bytes (here moved back to where a character begins)."""
    if len(line) * 4 <= MAX_LINE_LENGTH:  # (a character is at most 4 bytes)
        return [line]
    data = line.encode("utf-8", "surrogatepass")
    pieces = []
    while len(data) > MAX_LINE_LENGTH:
        length = data.rfind(b" ", 0, MAX_LINE_LENGTH + 1) + 1
        if not length:
            length = MAX_LINE_LENGTH
            while data[length] & 0xC0 == 0x80:  # inside a character
                length -= 1
        pieces.append(data[:length].decode("utf-8", "surrogatepass"))
        data = data[length:]
    pieces.append(data.decode("utf-8", "surrogatepass"))
    return pieces


def body_text(message: ParsedMessage) -> str:
    """The message's text parts, HTML rendered, joined as SpamAssassin joins them for
    body rules (before it cuts the text into paragraphs)."""
    texts = iter(message.raw_text)  # one for each part that is not an attachment, in order
    pieces: list[str] = []
    started = False
    for part in message.parts:
        if started:
            pieces.append("\n")
        if part.attachment:
            continue
        text = next(texts, "").replace("\r\n", "\n")  # (in base64 or quoted-printable)
        if part.content_type == "text/html":
            text = render_html(text)
        elif not _READ_AS_PLAIN.match(part.content_type):
            continue  # text/calendar, text/x-vcard: not read
        text = _cut(text)
        pieces.append(text)
        started = started or text != ""
    return "".join(pieces)


def _cut(text: str) -> str:
    """A part's text cut to about BODY_PART_SCAN_SIZE as SpamAssassin cuts it."""
    if len(text) <= BODY_PART_SCAN_SIZE:
        return text
    for mark in ("\n", " "):
        end = text.find(mark, BODY_PART_SCAN_SIZE)
        if 0 <= end - BODY_PART_SCAN_SIZE <= RENDERED_CUT_REACH:
            return text[:end + 1]
    return text[:BODY_PART_SCAN_SIZE]
