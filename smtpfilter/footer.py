"""A footer (the disclaimer filter's text) appended to a message's body, where a mail
program shows it, without touching anything else.

Where it goes:
- a text/plain body: after the text, a blank line between;
- a text/html body: before </body> (else </html>, else at the end);
- multipart/alternative: in each text/plain and text/html alternative, so whichever the
  reader's program shows carries it (and in the root of a multipart/related one);
- multipart/related: in its root, the first part;
- multipart/mixed and other multiparts: in the first part when that is the body (inline
  text, alternative or related); otherwise (an attachment first, or a signed part) in a
  new text/plain part at the end.

Only the part that gets the footer changes; every other byte, and the part's own text,
stay as they were. A part is decoded (base64, quoted-printable) and encoded again in its
own transfer encoding and charset. When the footer cannot be written in the part's
charset, the part becomes UTF-8; a 7bit part that now needs 8 bits (or has a line over
998 octets) becomes quoted-printable. HTML gets the footer with characters outside
ASCII as character references, so any charset carries it. A multipart is read again
once changed: if its parts are not the ones meant (a new line that reads as a
delimiter), the message is left alone.

What is left alone, with the reason said (Footed.outcome):
- "signed", "encrypted": multipart/signed, multipart/encrypted and S/MIME at the top,
  which a footer would break (inside a multipart/mixed, one gets a new part instead);
- "dkim-signed": a message the client already signed with DKIM;
- "report": delivery and read reports (multipart/report), read by programs;
- "not-text": a part that is neither text nor a multipart (an attachment), or an
  alternative with no text in it. A whole message that is one attachment (a copier's
  scan sent as a bare application/pdf, a message/rfc822) is not left alone: it becomes a
  multipart/mixed of the attachment, unchanged, and the footer in a part of its own;
- "attachment": a text part marked as an attachment (a whole message that is one is
  wrapped as above);
- "charset", "encoding": a part whose charset or transfer encoding cannot be decoded and
  written back byte for byte;
- "malformed": a message with no header, a multipart with no delimiter, a new part for
  one that was cut short (no closing delimiter; its first part gets the footer), or a
  change that would move a delimiter;
- "too-deep": multiparts nested more than MAX_DEPTH levels;
- "already": a body that already ends with the footer, so a message filtered twice gets
  it once.
"""

from __future__ import annotations

import binascii
import codecs
import html
import re
import secrets
from dataclasses import dataclass

from smtpfilter.headers import field_blocks
from spamkit.message import content_headers
from spamkit.message.headers import header_fields

MAX_DEPTH = 50  # multiparts within multiparts; mail nests a handful at most
MAX_LINE = 998  # octets a line of a 7bit or 8bit body may have (RFC 5322 2.1.1)

_IDENTITY = ("", "7bit", "8bit", "binary")
_SIGNED = {"multipart/signed": "signed", "multipart/encrypted": "encrypted",
           "application/pkcs7-mime": "signed", "application/x-pkcs7-mime": "signed"}
_BODY_TEXT = ("text/plain", "text/html")
# charset labels that say nothing about a byte over 127: none, ASCII's names, and what
# broken mailers write for "I do not know"
_NO_CHARSET = ("", "us-ascii", "ascii", "ansi_x3.4-1968", "default", "default_charset", "unknown",
               "unknown-8bit", "x-unknown")
_BLANK_LINE = re.compile(rb"(\r?\n)(\r?\n)")
_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]{1,100}[ \t]*:")
_BARE_CR = re.compile(rb"\r(?!\n)")
_LINE_BREAK = re.compile(rb"\r?\n")


@dataclass(frozen=True)
class Footer:
    """The footer's two forms: plain text (lines joined by LF, none ending in a space, no
    blank line first or last) and an HTML fragment in ASCII."""

    text: str
    html: str

    @classmethod
    def from_text(cls, text: str, html_fragment: str | None = None) -> Footer:
        """A footer from the administrator's text, and HTML of their own if they wrote
        some; else the HTML is the text, escaped, its lines kept."""
        lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
        plain = "\n".join(lines).strip("\n")
        if html_fragment is None or not html_fragment.strip():
            html_fragment = "<br>\n<div>" + "<br>\n".join(map(html.escape, plain.split("\n"))) + "</div>"
        fragment = html_fragment.replace("\r\n", "\n").strip()
        return cls(plain, fragment.encode("ascii", "xmlcharrefreplace").decode("ascii"))


@dataclass(frozen=True)
class Footed:
    """append_footer's answer: the message with the footer, or None and why not."""

    data: bytes | None
    outcome: str  # "added", or why the message was left alone (the module's list)


class _LeftAlone(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def append_footer(message: bytes, footer: Footer) -> Footed:
    """The message with the footer in its body, or left alone with the reason."""
    if not footer.text:
        return Footed(None, "empty")
    eol = b"\r\n" if b"\r\n" in message[:4096] else b"\n"
    try:
        return Footed(_Footing(footer, eol).entity(message, "text/plain", 0, top=True), "added")
    except _LeftAlone as left:
        return Footed(None, left.why)


@dataclass(frozen=True)
class _Entity:
    """One MIME entity cut in three: head + blank + body is the entity, byte for byte."""

    head: bytes  # the header lines, each with its line break; b"" when there are none
    blank: bytes  # the empty line after them; b"" when the entity has no empty line
    body: bytes
    content_type: str
    params: dict[str, str]
    encoding: str  # Content-Transfer-Encoding, lower-case
    disposition: str
    fields: list[tuple[str, str]]

    @classmethod
    def read(cls, data: bytes, default_type: str) -> _Entity:
        head, blank, body = _cut(data)
        fields = header_fields(head.replace(b"\r\n", b"\n")) if head else []
        content_type, params, encoding, disposition = content_headers(fields, default_type)
        return cls(head, blank, body, content_type, params, encoding.strip().lower(), disposition, fields)


def _cut(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, blank line, body). An entity that does not start with a header field (or
    an mbox From line) has no head: it is all body, as mail programs read it."""
    if not _FIELD_START.match(data) and not data.startswith(b"From "):
        if data.startswith(b"\r\n"):
            return b"", b"\r\n", data[2:]
        if data.startswith(b"\n"):
            return b"", b"\n", data[1:]
        return b"", b"", data
    match = _BLANK_LINE.search(data)
    if match is None:
        return data, b"", b""
    return data[:match.end(1)], match.group(2), data[match.end():]


class _Footing:
    """One message's walk: the footer, and the line break the message uses."""

    def __init__(self, footer: Footer, eol: bytes) -> None:
        self.footer = footer
        self.eol = eol

    def entity(self, data: bytes, default_type: str, depth: int, top: bool = False) -> bytes:
        return self.footed(_Entity.read(data, default_type), depth, top)

    def footed(self, entity: _Entity, depth: int, top: bool = False) -> bytes:
        """The entity with the footer in it, or _LeftAlone."""
        if depth > MAX_DEPTH:
            raise _LeftAlone("too-deep")
        if top and not entity.head:
            raise _LeftAlone("malformed")  # a message with no header at all
        if top and any(name == "dkim-signature" for name, _ in entity.fields):
            raise _LeftAlone("dkim-signed")
        kind = entity.content_type
        if kind in _SIGNED:
            raise _LeftAlone(_SIGNED[kind])
        if kind in _BODY_TEXT:
            if entity.disposition.lower().lstrip().startswith("attachment"):
                if top:
                    return self.wrapped(entity)
                raise _LeftAlone("attachment")
            return self.text(entity, top)
        if not kind.startswith("multipart/"):
            if top:  # a message that is one attachment (a copier's scan, a forwarded message)
                return self.wrapped(entity)
            raise _LeftAlone("not-text")
        if kind == "multipart/report":
            raise _LeftAlone("report")
        parts = _Multipart.read(entity)
        if kind == "multipart/alternative":
            return self.alternative(entity, parts, depth)
        if kind == "multipart/related":
            return parts.replaced(0, self.entity(parts.part(0), "text/plain", depth + 1))
        return self.mixed(parts, depth)

    def alternative(self, entity: _Entity, parts: _Multipart, depth: int) -> bytes:
        """Every text alternative footed: the reader's program picks which it shows."""
        footed: dict[int, bytes] = {}
        reasons = []
        for index in range(len(parts.spans)):
            child = _Entity.read(parts.part(index), "text/plain")
            if child.content_type not in (*_BODY_TEXT, "multipart/related"):
                continue
            try:
                footed[index] = self.footed(child, depth + 1)
            except _LeftAlone as left:
                reasons.append(left.why)
        if not footed:  # (one already footed: the message has been here before)
            raise _LeftAlone("already" if "already" in reasons else reasons[0] if reasons else "not-text")
        return parts.replaced_all(footed)

    def mixed(self, parts: _Multipart, depth: int) -> bytes:
        """The footer in the first part when that is the body, else in a part of its own
        at the end (after an attachment, or a signed part that it must not touch)."""
        default_type = "message/rfc822" if parts.entity.content_type == "multipart/digest" else "text/plain"
        first = _Entity.read(parts.part(0), default_type)
        is_body = (first.content_type in _BODY_TEXT and not first.disposition.lower().lstrip()
                   .startswith("attachment")) or first.content_type in ("multipart/alternative",
                                                                        "multipart/related")
        if is_body:
            try:
                return parts.replaced(0, self.footed(first, depth + 1))
            except _LeftAlone as left:
                if left.why in ("already", "too-deep"):
                    raise
        return parts.appended(self.own_part())

    def wrapped(self, entity: _Entity) -> bytes:
        """A message whose whole body is an attachment, made a multipart/mixed of that
        attachment, as it was, and the footer in a part of its own: the attachment's
        Content-* fields go down with it into its part, the other fields stay on top."""
        eol = self.eol
        head = entity.head if entity.head.endswith(b"\n") else entity.head + eol
        own: list[bytes] = []  # the attachment's Content-* fields, which go down with it
        kept: list[bytes] = []
        for field in field_blocks(head):
            (own if _field_name(field).startswith(b"content-") else kept).append(field)
        if not any(_field_name(field) == b"mime-version" for field in kept):
            kept.append(b"MIME-Version: 1.0" + eol)
        boundary = _new_boundary(entity.body)
        delimiter = b"--" + boundary
        body = (delimiter + eol + b"".join(own) + eol + entity.body + eol + delimiter + eol
                + self.own_part() + eol + delimiter + b"--" + eol)
        new_head = b"".join(kept) + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"' + eol
        new_entity = new_head + eol + body
        again = _Multipart.read(_Entity.read(new_entity, "text/plain"))
        if again.close is None or [again.part(index) for index in range(len(again.spans))] \
                != [b"".join(own) + eol + entity.body, self.own_part()]:
            raise _LeftAlone("malformed")  # (a body line that reads as our delimiter: not seen)
        return new_entity

    def own_part(self) -> bytes:
        """A text/plain part holding the footer alone."""
        text = self.footer.text.replace("\n", self.eol.decode("ascii"))
        content = text.encode("utf-8")
        charset = b"us-ascii" if content.isascii() else b"utf-8"
        encoding = b"7bit"
        if not content.isascii() or _has_long_line(content):
            encoding, content = b"quoted-printable", _quoted_printable(content, self.eol)
        eol = self.eol
        return (b"Content-Type: text/plain; charset=" + charset + eol
                + b"Content-Disposition: inline" + eol
                + b"Content-Transfer-Encoding: " + encoding + eol + eol + content)

    def text(self, entity: _Entity, top: bool) -> bytes:
        """A text/plain or text/html entity with the footer in its text."""
        encoding = entity.encoding
        if encoding == "base64":
            try:
                content = binascii.a2b_base64(entity.body)
            except (binascii.Error, ValueError):
                raise _LeftAlone("encoding") from None
        elif encoding == "quoted-printable":
            content = binascii.a2b_qp(entity.body)
        elif encoding in _IDENTITY:
            content = entity.body
        else:
            raise _LeftAlone("encoding")  # uuencode, or a name we do not know
        label = entity.params.get("charset", "")
        codec = _codec(label)
        text = _round_trip(content, codec)
        new_text = self._inserted(entity.content_type, text)
        new_content, charset = self._encoded(entity.content_type, new_text, codec, content, label)
        new_encoding = encoding
        if encoding in _IDENTITY and encoding != "binary":
            eight_bit_allowed = encoding == "8bit"
            if (not new_content.isascii() and not eight_bit_allowed) or _has_long_line(new_content):
                new_encoding = "quoted-printable"
        if new_encoding == "base64":
            body = _base64(new_content, self.eol) + _trailing_breaks(entity.body)
        elif new_encoding == "quoted-printable":
            body = _quoted_printable(new_content, self.eol)
        else:
            body = new_content
        head = entity.head if entity.head.endswith(b"\n") or not entity.head else entity.head + self.eol
        if charset is not None or new_encoding != encoding:
            head = _set_fields(head, self.eol, entity.content_type, charset,
                               new_encoding if new_encoding != encoding else None, top)
        return head + (entity.blank or self.eol) + body

    def _inserted(self, content_type: str, text: str) -> str:
        newline = "\r\n" if "\r\n" in text else ("\n" if "\n" in text else self.eol.decode("ascii"))
        if content_type == "text/html":
            return self._in_html(text, newline)
        return self._after_text(text, newline)

    def _encoded(self, content_type: str, new_text: str, codec: str, content: bytes,
                 label: str) -> tuple[bytes, str | None]:
        """The text with the footer as bytes, and the part's new charset (None: as it was).
        A footer its charset cannot write makes the part UTF-8. A part whose label names
        no charset (none, us-ascii, "default"...) but holds 8-bit bytes is taken for UTF-8
        when its bytes are UTF-8 (which other text almost never is), and labelled so;
        otherwise what its bytes are is not known, and a footer that is not ASCII is not
        added. The part's own bytes stay as they were in every case."""
        try:
            return new_text.encode(codec, "surrogateescape"), None
        except UnicodeError:  # a character the part's charset has not
            pass
        try:
            return new_text.encode("utf-8"), "utf-8"
        except UnicodeError:  # bytes that its charset does not name
            pass
        if _label_name(label) in _NO_CHARSET:
            try:
                return self._inserted(content_type, content.decode("utf-8")).encode("utf-8"), "utf-8"
            except UnicodeError:
                pass
        raise _LeftAlone("charset")

    def _after_text(self, text: str, newline: str) -> str:
        core = text.rstrip("\r\n")
        if core.replace("\r\n", "\n").endswith(self.footer.text):
            raise _LeftAlone("already")
        footer = self.footer.text.replace("\n", newline)
        return core + (newline * 2 if core else "") + footer + text[len(core):]

    def _in_html(self, text: str, newline: str) -> str:
        place = next((found for found in map(lambda tag: _last(tag, text), (_BODY_END, _HTML_END))
                      if found >= 0), -1)
        at_end = place < 0
        if at_end:  # no closing tag: after the markup, before the line breaks that end it
            place = len(text.rstrip("\r\n"))
        fragment = self.footer.html.replace("\n", newline)
        line_start = text.rfind("\n", 0, place) + 1
        # "--BOUNDARY--</body>": not cut there, where the line would close the multipart early
        at_line_start = text[line_start:place].lstrip().startswith("--")
        if at_line_start:
            place = line_start
        if text[:place].rstrip().replace("\r\n", "\n").endswith(self.footer.html):
            raise _LeftAlone("already")
        if at_line_start:
            return text[:place] + fragment + newline + text[place:]
        return text[:place] + newline + fragment + ("" if at_end else newline) + text[place:]


class _Multipart:
    """A multipart entity's body parts, found by their delimiter lines as RFC 2046 5.1.1
    reads them (the line break before a delimiter belongs to it), for putting it back
    together with one part changed."""

    def __init__(self, entity: _Entity, spans: list[tuple[int, int]], close: int | None) -> None:
        self.entity = entity
        self.spans = spans  # each part's (start, end) in the body
        # where the line break before the closing delimiter starts; None when there is no
        # closing delimiter (a cut message: its last part runs to the end, as readers take it)
        self.close = close

    @classmethod
    def read(cls, entity: _Entity) -> _Multipart:
        boundary = entity.params.get("boundary", "")
        if not boundary or len(boundary) > 200:  # RFC 2046: 1 to 70 characters
            raise _LeftAlone("malformed")
        delimiter = re.compile(rb"^--" + re.escape(boundary.encode("utf-8", "surrogateescape"))
                               + rb"(--)?[ \t]*\r?$", re.MULTILINE)
        body = entity.body
        spans: list[tuple[int, int]] = []
        start = -1
        for match in delimiter.finditer(body):
            line_start = match.start()
            before = line_start
            if line_start > 0:
                before -= 2 if body[line_start - 2:line_start] == b"\r\n" else 1
            if start >= 0:
                spans.append((start, before))
            if match.group(1):
                if not spans:
                    break
                return cls(entity, spans, before)
            start = match.end() + (1 if body[match.end():match.end() + 1] == b"\n" else 0)
        if start < 0:
            raise _LeftAlone("malformed")  # no delimiter at all, or a closing one first
        return cls(entity, [*spans, (start, len(body))], None)

    def part(self, index: int) -> bytes:
        start, end = self.spans[index]
        return self.entity.body[start:end]

    def replaced(self, index: int, new_part: bytes) -> bytes:
        return self.replaced_all({index: new_part})

    def replaced_all(self, new_parts: dict[int, bytes]) -> bytes:
        body = self.entity.body
        pieces = []
        position = 0
        for index in sorted(new_parts):
            start, end = self.spans[index]
            pieces += [body[position:start], new_parts[index]]
            position = end
        pieces.append(body[position:])
        expected = [new_parts.get(index, self.part(index)) for index in range(len(self.spans))]
        return self._checked(self.entity.head + self.entity.blank + b"".join(pieces), expected)

    def _checked(self, new_entity: bytes, expected: list[bytes]) -> bytes:
        """The new entity, once read again it holds the parts expected and no others. A
        part's new text could hold a line that reads as a delimiter (a QP line broken at
        "--BOUNDARY"); mail whose parts would change is left alone instead."""
        try:
            again = _Multipart.read(_Entity.read(new_entity, self.entity.content_type))
        except _LeftAlone:
            raise _LeftAlone("malformed") from None
        if (again.close is None) != (self.close is None) \
                or [again.part(index) for index in range(len(again.spans))] != expected:
            raise _LeftAlone("malformed")
        return new_entity

    def appended(self, new_part: bytes) -> bytes:
        """A part added after the last one, unless the last one already is that part."""
        if self.part(len(self.spans) - 1) == new_part:
            raise _LeftAlone("already")
        if self.close is None:
            raise _LeftAlone("malformed")  # where it ends is not known: it may be cut
        body = self.entity.body
        line_break = body[self.close:self.close + 2]
        line_break = line_break if line_break == b"\r\n" else b"\n"
        delimiter = b"--" + self.entity.params["boundary"].encode("utf-8", "surrogateescape")
        inserted = line_break + delimiter + line_break + new_part
        expected = [*(self.part(index) for index in range(len(self.spans))), new_part]
        return self._checked(self.entity.head + self.entity.blank + body[:self.close] + inserted
                             + body[self.close:], expected)


def _field_name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def _new_boundary(body: bytes) -> bytes:
    """A boundary no line of `body` starts with (RFC 2046 5.1.1)."""
    while True:
        boundary = b"=_spamkit_" + secrets.token_hex(12).encode("ascii")
        if b"--" + boundary not in body:
            return boundary


def _label_name(label: str) -> str:
    return label.strip().strip("\"'").lower()


def _codec(label: str) -> str:
    """The codec of a charset label, as written; ascii for one that names none (8-bit
    bytes are kept as they are by surrogateescape)."""
    name = _label_name(label)
    if name in _NO_CHARSET:
        return "ascii"
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        raise _LeftAlone("charset") from None
    if not getattr(info, "_is_text_encoding", True):
        raise _LeftAlone("charset")  # base64_codec and such are not charsets
    return info.name


def _round_trip(content: bytes, codec: str) -> str:
    """The content as text, only where encoding that text again gives the same bytes:
    bytes the charset does not name are kept as they were (surrogateescape)."""
    try:
        text = content.decode(codec, "surrogateescape")
        if text.encode(codec, "surrogateescape") == content:
            return text
    except (UnicodeError, LookupError, ValueError):
        pass
    raise _LeftAlone("charset")


_BODY_END = re.compile(r"</body", re.IGNORECASE | re.ASCII)
_HTML_END = re.compile(r"</html", re.IGNORECASE | re.ASCII)


def _last(tag: re.Pattern[str], text: str) -> int:
    """Where the tag's last occurrence starts; -1 when there is none. (Not str.lower()
    and rfind: lower-casing changes some texts' length, İ to i and a dot.)"""
    found = -1
    for match in tag.finditer(text):
        found = match.start()
    return found


def _has_long_line(content: bytes) -> bool:
    return len(content) > MAX_LINE and any(len(line) > MAX_LINE for line in _LINE_BREAK.split(content))


def _trailing_breaks(body: bytes) -> bytes:
    return body[len(body.rstrip(b"\r\n")):]


def _base64(content: bytes, eol: bytes) -> bytes:
    encoded = binascii.b2a_base64(content, newline=False)
    return eol.join(encoded[i:i + 76] for i in range(0, len(encoded), 76))


def _quoted_printable(content: bytes, eol: bytes) -> bytes:
    """Quoted-printable with the message's line breaks, a lone CR written as =0D."""
    encoded = binascii.b2a_qp(content, istext=True)
    return eol.join(_BARE_CR.sub(b"=0D", line) for line in _LINE_BREAK.split(encoded))


_CHARSET = re.compile(rb'(;[ \t\r\n]*charset[ \t]*=[ \t]*)("[^"\r\n]*"|[^;\s]*)', re.IGNORECASE)


def _set_fields(head: bytes, eol: bytes, content_type: str, charset: str | None,
                encoding: str | None, top: bool) -> bytes:
    """The head with Content-Type's charset and Content-Transfer-Encoding set; a field
    that is not there is added at the end (with MIME-Version, at the top of a message
    that had none, for a program to read them)."""
    fields = field_blocks(head)
    names = [field.split(b":", 1)[0].strip().lower() for field in fields]
    added: list[bytes] = []
    if charset is not None:
        if b"content-type" in names:
            index = names.index(b"content-type")
            field = fields[index]
            value = charset.encode("ascii")
            if _CHARSET.search(field):
                field = _CHARSET.sub(lambda match: match.group(1) + value, field, count=1)
            else:
                stripped = field.rstrip(b"\r\n")
                field = stripped + b"; charset=" + value + field[len(stripped):]
            fields[index] = field
        else:
            added.append(b"Content-Type: " + content_type.encode("ascii", "replace") + b"; charset="
                         + charset.encode("ascii") + eol)
    if encoding is not None:
        new_field = b"Content-Transfer-Encoding: " + encoding.encode("ascii") + eol
        if b"content-transfer-encoding" in names:
            fields[names.index(b"content-transfer-encoding")] = new_field
        else:
            added.append(new_field)
    if top and added and b"mime-version" not in names:
        added.insert(0, b"MIME-Version: 1.0" + eol)
    return b"".join(fields) + b"".join(added)
