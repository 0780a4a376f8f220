"""What SpamAssassin's HTML rules know about an HTML part, worked out as its HTML
module works it out: tag balance, the share of tags that are not HTML, image area
against text, font sizes, text drawn in (nearly) the background's colour, the text of
links, comments and titles.

spamkit's own renderer (spamkit.message.html) makes the text Bayes and the body rules
read; this is a second, slower reading of the same source, done only when a rule set
asks an HTML eval (Debian's rule files do), so that those rules hit where SpamAssassin's
do. Each HTML part gets one HtmlFacts; a rule hits when any part's facts say so.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser

import webcolors

from spamkit.lazyregex import LazyPattern

# elements of the HTML 4.01 and XHTML 1.0 DTDs, and three common non-standard ones:
# any other tag is "bad" (bad_tag_ratio, non_element_ratio)
ELEMENTS = frozenset("""
a abbr acronym address area b base bdo big blockquote body br button caption cite code col colgroup
dd del dfn div dl dt em fieldset form h1 h2 h3 h4 h5 h6 head hr html i img input ins kbd label legend
li link map meta noscript object ol optgroup option p param pre q samp script select small span
strong style sub sup table tbody td textarea tfoot th thead title tr tt ul var
applet basefont center dir font frame frameset iframe isindex menu noframes s strike u
nobr x-sigsep x-tab
""".split())
_RENDERED_NON_ELEMENTS = frozenset("bgsound embed listing plaintext xmp".split())
_STYLED = frozenset("body font table tr th td big small basefont span p div a".split())
_STYLE_ATTRIBUTES = {
    "basefont": {"color", "face", "size"}, "body": {"text", "bgcolor", "link", "alink", "vlink", "background"},
    "font": {"color", "face", "size"}, "table": {"bgcolor", "style"}, "td": {"bgcolor", "style"},
    "th": {"bgcolor", "style"}, "tr": {"bgcolor", "style"}, "span": {"style"}, "p": {"style"},
    "div": {"style"}, "a": {"style"},
}
_WHITESPACE_TAGS = frozenset("br div li th td dt dd p hr blockquote pre embed listing plaintext xmp title "
                             "h1 h2 h3 h4 h5 h6".split())
_NAMESPACED = LazyPattern(r"^(?:o|st\d):[\w-]+/?$")
# a font face list as mail programs write it; anything else is odd (font_face_bad)
_GOOD_FACE = LazyPattern(r"""^\s*["'.]?[a-z ][a-z -]*[a-z]\d?["']?(?:,\s*["']?[a-z][a-z -]*[a-z]\d?["']?)*;?$""",
                        re.IGNORECASE)
_PUNCTUATION = "\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e"
_STARTS_WORD = LazyPattern(rf"^[^\s{_PUNCTUATION}]")
_ENDS_WORD = LazyPattern(rf"[^\s{_PUNCTUATION}]\Z")
_WHITESPACE = LazyPattern(r"\s+")
_HEX_OR_RGB = LazyPattern(r"^[#a-f0-9]*$|rgb\([\d%, ]*\)", re.IGNORECASE)
_RGB_PERCENT = LazyPattern(r"rgb\((\d+)%,\s*(\d+)%,\s*(\d+)%\s*\)", re.IGNORECASE)
_RGB_DECIMAL = LazyPattern(r"rgb\((\d+),\s*(\d+),\s*(\d+)\s*\)", re.IGNORECASE)
_HEX6 = LazyPattern(r"^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$")
_COLOR_PROPERTY = LazyPattern(r"^\s*(background-)?color:\s*(.+?)\s*$", re.IGNORECASE | re.DOTALL)
_BACKGROUND_PROPERTY = LazyPattern(r"^\s*background:\s*(.+?)\s*$", re.DOTALL)
_OTHER_PROPERTY = LazyPattern(r"^\s*([a-z_-]+)\s*:\s*(\S.*?)\s*$", re.IGNORECASE | re.DOTALL)
_IMPORTANT = LazyPattern(r"\s*!\s*important$")
_DIMENSION = LazyPattern(r"^(\d+)(%)?$")
_LEADING_NUMBER = LazyPattern(r"^\s*([+-]?)(\d+)")
# html.parser is fed this much at a time, and a message's HTML parts are read for this
# long at most (then a part's facts are those of what was read, flagged "cut_short"):
# 500 kB of "<b>x" took 1.8 s read in one go
_PIECE = 8192
HTML_TIME_BUDGET = 0.5
_LOW_CONTRAST = 12  # the brightness-weighted distance under which text is unreadable
_SCREEN = (800, 600)  # what a percentage width or height is taken of
_GUESSED_SIDE = 200  # an image side not given, or given as 0


def color_to_rgb(value: str) -> str:
    """A colour as written (name, #hex, #rgb shorthand, rgb() in numbers or percent)
    as "#rrggbb", or "invalid" for anything a mail reader could not know."""
    color = value.lower().strip()
    try:
        return str(webcolors.name_to_hex(color))
    except ValueError:
        pass
    if not _HEX_OR_RGB.search(color):
        return "invalid"
    if match := _RGB_PERCENT.search(color):
        color = "#" + "".join(_hex_byte(int(int(n) / 100 * 255)) for n in match.groups())
    if match := _RGB_DECIMAL.search(color):
        color = "#" + "".join(_hex_byte(int(n)) for n in match.groups())
    if not color.startswith("#"):
        return "invalid"
    digits = re.sub(r"[^a-f0-9]", "", color)[:6]
    if 3 < len(digits) < 6:
        digits = digits[:3]
    if len(digits) % 3:
        digits += "0" * (3 - len(digits) % 3)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits


def _hex_byte(number: int) -> str:
    return ("0" if number < 16 else "") + f"{number:x}"


def _css_background_values(value: str) -> list[str]:
    """The values of a CSS background's last layer (layers split at commas outside
    brackets and quotes, values at spaces)."""
    layers: list[list[str]] = []
    tokens: list[str] = []
    token = ""
    closers: list[str] = []
    for ch in value:
        if closers:
            token += ch
            if ch == closers[-1]:
                closers.pop()
                if ch == ")" and not closers:
                    tokens.append(token)
                    token = ""
            elif ch in "\"'" and closers[-1] == ")":
                closers.append(ch)
        elif ch == " ":
            if token:
                tokens.append(token)
            token = ""
        elif ch in "(\"'":
            token += ch
            closers.append(")" if ch == "(" else ch)
        elif ch == ",":
            if token:
                tokens.append(token)
            token = ""
            layers.append(tokens)
            tokens = []
        else:
            token += ch
    if token:
        tokens.append(token)
    if tokens:
        layers.append(tokens)
    return layers[-1] if layers else []


@dataclass
class HtmlFacts:
    """One HTML part as SpamAssassin's HTML rules see it."""

    length: int = 0  # characters of the HTML source
    inside: dict[str, int] = field(default_factory=dict)  # open minus closed, per tag name
    tags: int = 0
    elements: int = 0
    tags_seen: int = 0
    elements_seen: int = 0
    closed_extra: int = 0  # closing tags never opened
    obfuscation: int = 0  # text runs glued to the word before them by a tag
    image_area: int = 0
    max_size: int = 3
    min_size: int = 3
    non_space_length: int = 0  # characters of text, white space not counted
    anchors: list[str] = field(default_factory=list)  # each link's text; "<img>" for an image
    comments: list[str] = field(default_factory=list)  # as written, "<!--" and "-->" kept
    titles: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)  # font_low_contrast, font_face_bad, embeds, ...

    def value(self, name: str) -> float | None:
        """A named number, as html_range and html_eval name them; None when not set."""
        if name in ("length", "image_area", "max_size", "min_size"):
            return float(getattr(self, name))
        if name == "non_space_len":
            return float(self.non_space_length)
        if name == "closed_extra_ratio":
            return self.closed_extra / self.tags if self.tags else None
        if name == "bad_tag_ratio":
            return (self.tags - self.elements) / self.tags if self.tags and self.elements else None
        if name == "non_element_ratio":
            return ((self.tags_seen - self.elements_seen) / self.tags_seen
                    if self.tags_seen and self.elements_seen else None)
        if name == "obfuscation_ratio":
            return self.obfuscation / self.tags if self.tags and self.obfuscation else None
        return None

    def texts(self, name: str) -> list[str]:
        return {"anchor": self.anchors, "comment": self.comments, "title": self.titles}.get(name, [])


NAMED_VALUES = frozenset({"length", "image_area", "max_size", "min_size", "non_space_len", "closed_extra_ratio",
                          "bad_tag_ratio", "non_element_ratio", "obfuscation_ratio"})
NAMED_TEXTS = frozenset({"anchor", "comment", "title"})
NAMED_FLAGS = frozenset({"html", "font_low_contrast", "font_invalid_color", "font_face_bad",
                         "form_action_mailto", "embeds"})


def html_facts(source: str, deadline: float | None = None) -> HtmlFacts:
    """The facts of one HTML part's source (decoded to text), read until `deadline`
    (time.monotonic()) at the latest, or for HTML_TIME_BUDGET seconds."""
    reader = _Reader()
    reader.facts.length = len(source)
    source = source.replace("&nbsp;", " ")
    source = re.sub(r"<(\w+)\s*/>", r"<\1>", source)
    source = source.replace("\u201c", '"').replace("\u201d", '"')
    deadline = time.monotonic() + HTML_TIME_BUDGET if deadline is None else deadline
    try:
        start = 0
        while start < len(source):
            # fed in pieces that end before a "<", so no run of text is split in two
            end = source.find("<", start + _PIECE)
            end = len(source) if end < 0 else end
            reader.feed(source[start:end])
            start = end
            if time.monotonic() > deadline:
                reader.facts.flags.add("cut_short")
                return reader.facts
        for tag in ("style", "script"):  # an unclosed one would swallow the rest
            while reader.facts.inside.get(tag, 0) > 0:
                reader.handle_endtag(tag)
        # What is still unread is an unfinished tag, comment or declaration. html.parser
        # finishes one by searching the rest for each "<" in it: quadratic, 5 s for
        # 500 kB of "<". A long one is left unread: it holds no tag anyway.
        if len(reader.rawdata) <= _PIECE:
            reader.close()
    except (AssertionError, ValueError, IndexError):  # html.parser on very broken input
        pass
    return reader.facts


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.facts = HtmlFacts(flags={"html"})
        self.styles: list[dict[str, str | int]] = [
            {"tag": "default", "fgcolor": "#000000", "bgcolor": "#ffffff", "size": 3}]
        self.basefont = 3
        self.last_text: str | None = None  # the last piece of rendered text
        self.last_was_whitespace = False
        self.last_was_invisible = False

    # --- tags

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, {name: value or "" for name, value in attrs}, 1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """<img ... />: a start tag only, as HTML (not XHTML) readers take it."""
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self._tag(tag, {}, -1)

    def _tag(self, tag: str, attrs: dict[str, str], step: int) -> None:
        facts = self.facts
        namespaced = _NAMESPACED.match(tag) is not None
        if tag in ELEMENTS or namespaced:
            facts.elements += 1
            if tag not in facts.inside:
                facts.elements_seen += 1
        facts.tags += 1
        if tag not in facts.inside:
            facts.tags_seen += 1
        facts.inside[tag] = facts.inside.get(tag, 0) + step
        if facts.inside[tag] < 0:
            facts.inside[tag] = 0
            facts.closed_extra += 1
        if namespaced or (tag not in ELEMENTS and tag not in _RENDERED_NON_ELEMENTS):
            return
        if tag in _STYLED:
            self._style(tag, attrs, step)
        if tag in _WHITESPACE_TAGS:
            self._display_whitespace()
        if step == 1:
            self._tests(tag, attrs)

    def _tests(self, tag: str, attrs: dict[str, str]) -> None:
        facts = self.facts
        if tag == "font" and "face" in attrs and not _GOOD_FACE.match(attrs["face"]):
            facts.flags.add("font_face_bad")
        if tag == "img" and facts.inside.get("a", 0) > 0 and facts.anchors:
            facts.anchors[-1] += "<img>\n"
        if tag == "img" and "width" in attrs and "height" in attrs:
            width, height = (self._side(attrs[name], screen) for name, screen in zip(("width", "height"), _SCREEN))
            facts.image_area += width * height
        if tag == "form" and re.search("mailto:", attrs.get("action", ""), re.IGNORECASE):
            facts.flags.add("form_action_mailto")
        if tag in ("object", "embed"):
            facts.flags.add("embeds")
        if tag == "a":
            facts.anchors.append("")
        if tag == "title":
            facts.titles.append("")

    @staticmethod
    def _side(value: str, screen: int) -> int:
        match = _DIMENSION.match(value)
        side = 0
        if match:
            side = int(match.group(1)) * (screen // 100 if match.group(2) else 1)
        return side if side > 0 else _GUESSED_SIDE

    # --- text style: colours and sizes, a stack as the tags open and close

    def _style(self, tag: str, attrs: dict[str, str], step: int) -> None:
        tag = "td" if tag == "th" else tag
        if step == -1:
            if tag != "body":  # text after </body> is still shown in the body's style
                self._close(tag)
            return
        if tag == "basefont":
            match = _LEADING_NUMBER.match(attrs.get("size", ""))
            if match and not match.group(1):
                self.basefont = int(match.group(2))
                return
        if tag in ("td", "tr"):
            self._close_table_cell(tag)
        new = dict(self.styles[-1])
        new["tag"] = tag
        if tag in ("big", "small"):
            new["size"] = int(new["size"]) + (1 if tag == "big" else -1)
            self.styles.append(new)
            return
        facts = self.facts
        for name, value in attrs.items():
            if name not in _STYLE_ATTRIBUTES.get(tag, ()):
                continue
            if name in ("text", "color"):
                new["fgcolor"] = color_to_rgb(value)
            elif name == "size":
                match = _LEADING_NUMBER.match(value)
                if match:
                    new["size"] = (self.basefont + int(match.group(1) + match.group(2)) if match.group(1)
                                   else int(match.group(2)))
            elif name == "style":
                self._css(new, value)
            elif name != "bgcolor":  # (SpamAssassin 4.0 reads bgcolor from CSS only)
                new[name] = value
            size = int(new["size"])
            if size > facts.max_size:
                facts.max_size = size
            elif size < facts.min_size:
                facts.min_size = size
        self.styles.append(new)

    def _css(self, new: dict[str, str | int], style: str) -> None:
        for declaration in style.split(";"):
            if match := _COLOR_PROPERTY.match(declaration):
                which = "bgcolor" if match.group(1) else "fgcolor"
                value = _IMPORTANT.sub("", match.group(2).lower())
                if "rgb" in value:
                    numbers = re.sub(r"[^0-9,]", "", value).split(",")[:3]
                    numbers += [""] * (3 - len(numbers))
                    new[which] = "#" + "".join(f"{min(int(n) if n else 0, 255):02x}" for n in numbers)
                elif value == "transparent":
                    new[which] = value
                elif value != "inherit":
                    new[which] = color_to_rgb(value)
            elif match := _BACKGROUND_PROPERTY.match(declaration):
                for value in _css_background_values(match.group(1).lower()):
                    color = color_to_rgb(value)
                    if color != "invalid":
                        new["bgcolor"] = color
                        break
            elif match := _OTHER_PROPERTY.match(declaration):
                new["style_" + match.group(1)] = match.group(2)
        if new.get("bgcolor") == "transparent":
            new["bgcolor"] = self.styles[-1]["bgcolor"]
        if new.get("fgcolor") == "transparent":
            new["fgcolor"] = new["bgcolor"]

    def _close(self, tag: str) -> None:
        if not any(style["tag"] == tag for style in self.styles):
            return
        while self.styles:
            if self.styles.pop()["tag"] == tag:
                break
        if not self.styles:  # (never left without a style: the default is put back)
            self.styles.append({"tag": "default", "fgcolor": "#000000", "bgcolor": "#ffffff", "size": 3})

    def _close_table_cell(self, tag: str) -> None:
        if not any(style["tag"] == tag for style in self.styles):
            return
        closing = ("font", "td") if tag == "td" else ("font", "td", "tr")
        while len(self.styles) > 1 and self.styles[-1]["tag"] in closing:
            self.styles.pop()

    def _invisible(self) -> bool:
        style = self.styles[-1]
        fg, bg = str(style["fgcolor"]), str(style["bgcolor"])
        if fg[-6:] == bg[-6:]:
            self.facts.flags.add("font_low_contrast")
            return True
        fg_match, bg_match = _HEX6.match(fg), _HEX6.match(bg)
        if fg_match and bg_match:
            r, g, b = (int(x, 16) - int(y, 16) for x, y in zip(fg_match.groups(), bg_match.groups()))
            if ((0.2126 * r) ** 2 + (0.7152 * g) ** 2 + (0.0722 * b) ** 2) ** 0.5 < _LOW_CONTRAST:
                self.facts.flags.add("font_low_contrast")
                return True
        if fg == "invalid" or bg == "invalid":
            self.facts.flags.add("font_invalid_color")
            return True
        display, visibility = str(style.get("style_display", "")), str(style.get("style_visibility", ""))
        return int(style["size"]) <= 1 or display.lower() == "none" or visibility.lower() == "hidden"

    # --- text

    def handle_data(self, data: str) -> None:
        facts = self.facts
        if facts.inside.get("script", 0) > 0 or facts.inside.get("style", 0) > 0:
            return
        if facts.inside.get("a", 0) > 0 and facts.anchors:
            facts.anchors[-1] += data
        if facts.inside.get("title", 0) > 0 and facts.titles:
            facts.titles[-1] += data
        invisible = bool(data.strip()) and self._invisible()
        if self.last_text is not None and _STARTS_WORD.match(data) and _ENDS_WORD.search(self.last_text):
            facts.obfuscation += 1
        facts.non_space_length += len(data) - sum(len(run) for run in _WHITESPACE.findall(data))
        text = _WHITESPACE.sub(" ", data)
        if self.last_text is not None and not invisible and self.last_was_whitespace:
            text = text.removeprefix(" ")
        self.last_text, self.last_was_whitespace, self.last_was_invisible = text, False, invisible

    def _display_whitespace(self) -> None:
        if self.last_text is not None and not self.last_was_whitespace and not self.last_was_invisible:
            self.last_text = self.last_text.removesuffix(" ")
        self.last_text, self.last_was_whitespace, self.last_was_invisible = "\n", True, False

    def handle_comment(self, data: str) -> None:
        self.facts.comments.append(f"<!--{data}-->")

    def parse_bogus_comment(self, i: int, report: bool = True) -> int:
        """A "<!...>" that is neither a comment nor a declaration HTML::Parser knows
        ("<!x>"): a comment as written, as SpamAssassin records it (HTML_COMMENT_SHORT)."""
        if not self.rawdata.startswith("<!", i):
            return super().parse_bogus_comment(i, report)
        end = super().parse_bogus_comment(i, False)
        if end > 0 and report:
            self.facts.comments.append(self.rawdata[i:end])
        return int(end)

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype"):
            facts = self.facts
            facts.elements += 1
            facts.tags += 1
            facts.inside["!doctype"] = 0
