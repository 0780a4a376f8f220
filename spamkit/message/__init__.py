"""Any byte string in, a `ParsedMessage` out; `parse_message` never raises.

The parser is our own, not `email`: on the SpamAssassin corpus it is faster than
`email` with `policy=compat32` (docs/decisions/0001-message-parser.md has the figures),
it stops at the caps below instead of building a tree first, and it is linear in the
input. Damage and caps are recorded in `ParsedMessage.facts` for the tokenizer.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from spamkit.message.archives import (
    HEAD_BYTES,
    UnpackBudget,
    archive_members,
    is_archive,
    is_image_name,
    is_zip_name,
)
from spamkit.message.decode import decode_rfc2047, decode_text, decode_transfer, decode_uuencode
from spamkit.message.headers import header_block_span, parse_header_block, split_header_block, split_parameters
from spamkit.message.html import render_html
from spamkit.message.images import Image, ImagePart, image_part
from spamkit.message.tnef import is_tnef, tnef_files

__all__ = ["Attachment", "ParsedMessage", "ParseLimits", "PartInfo", "content_headers", "list_attachments",
           "message_key", "parse_message"]


@dataclass(frozen=True)
class ParseLimits:
    """Caps on the work one message may cause. Exceeding one is a fact, not an error."""

    max_message_bytes: int = 500_000  # SME's spamassassin MaxMessageSize
    max_depth: int = 100  # Postfix mime_nesting_limit
    max_parts: int = 1_000
    max_boundary_length: int = 2_048  # Postfix mime_boundary_length_limit


DEFAULT_LIMITS = ParseLimits()


@dataclass
class Attachment:
    content_type: str
    filename: str  # Content-Disposition's filename, else Content-Type's name (RFC 2231 and 2047 undone)
    size: int
    other_names: tuple[str, ...] = ()  # a Content-Type name that differs: some programs save under it
    members: tuple[str, ...] = ()  # inside an archive, by `list_attachments` only (archives.py)
    encrypted: bool = False  # an archive with encrypted files or names (or one inside), by `list_attachments` only


@dataclass(frozen=True)
class PartInfo:
    """One leaf MIME part, for the rules' MIME tests (not for the tokenizer)."""

    content_type: str
    encoding: str  # Content-Transfer-Encoding, lower-case, "" when absent
    attachment: bool  # not text, or text named and marked as an attachment: a file
    disposition: str = ""  # Content-Disposition as written, lower-case
    charset: str = ""  # the charset parameter, lower-case, "" when absent
    # a quoted-printable part with a line over 78 characters: RFC 5322's limit, which
    # SpamAssassin's MIME_QP_LONG_LINE tests (RFC 2045's 76 is broken by Apple Mail and
    # Outlook Web Access by two characters)
    long_qp_line: bool = False
    # text/plain declared US-ASCII (or no charset at all) whose bytes as sent hold 8-bit
    # characters or NULs: the declaration is false (PP_MIME_FAKE_ASCII_TEXT)
    false_ascii: bool = False
    raw_length: int = 0  # bytes of the body as sent, before decoding
    # a base64 part's longest line as sent, its line break counted and cut as
    # SpamAssassin cuts lines (LONGEST_LINE_COUNTED): a line of 76 characters, the
    # standard, is 77 (BASE64_LENGTH_78_79, BASE64_LENGTH_79_INF)
    longest_line: int = 0
    # a multipart/alternative came before this part in the walk (enclosing it or not):
    # from then on SpamAssassin counts text parts' bytes for its ratio (MIME_HTML_MOSTLY)
    after_alternative: bool = False
    # a base64 GIF, PNG or JPEG part, which SpamAssassin's ImageInfo reads (`image`)
    image_part: ImagePart | None = None

    @property
    def image(self) -> Image | None:
        """The part's image and its size, read on first use; None for any other part."""
        return None if self.image_part is None else self.image_part.image


@dataclass
class ParsedMessage:
    """What the tokenizer and the rules need to know about one message."""

    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower-case name, value)
    raw_headers: list[tuple[str, str]] = field(default_factory=list)  # as written: name case kept, RFC 2047 not undone
    # each MIME entity's (lower-case name, value) pairs, RFC 2047 not undone: the message
    # itself first, then every part (multipart containers and attached messages too), in
    # SpamAssassin's order (a part, then what it holds, then the next)
    part_headers: list[list[tuple[str, str]]] = field(default_factory=list)
    raw_text: list[str] = field(default_factory=list)  # text parts decoded, HTML not rendered
    text: list[str] = field(default_factory=list)  # visible text, one entry a part
    invisible: list[str] = field(default_factory=list)  # hidden HTML text and comments
    alt_text: list[str] = field(default_factory=list)  # img alt and title attributes
    urls: list[str] = field(default_factory=list)  # HTML attributes' links, then those in the text, a part at a time
    html_links: list[str] = field(default_factory=list)  # the links of HTML attributes alone (href, src...)
    html_tags: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    parts: list[PartInfo] = field(default_factory=list)  # leaf parts, in order
    facts: set[str] = field(default_factory=set)
    size: int = 0
    # each multipart/alternative's text parts, as (type, visible text, has an <img>):
    # the versions of one text, which should say the same (SpamAssassin's MPART_ALT_DIFF)
    alternatives: list[list[tuple[str, str, bool]]] = field(default_factory=list)
    html_sources: list[str] = field(default_factory=list)  # each text/html part, decoded, tags kept
    # text after a multipart's closing delimiter (other than white space and dots), for the
    # rules (SpamAssassin's mime_epilogue_exists); not a fact, so Bayes does not see it
    mime_epilogue: bool = False
    # a multipart's part that does not begin with a header field (SpamAssassin's
    # missing_mime_headers, T_TVD_MIME_NO_HEADERS); for the rules too, not a fact
    missing_mime_headers: bool = False

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


def normalize_newlines(raw: bytes) -> bytes:
    """CRLF and bare CR become LF, so every line-ending convention parses the same."""
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return raw


# the Message-ID field and its value, in the lower-cased header block: where it starts,
# or after a line break (the pattern begins with literal bytes, which the regex engine
# looks for as fast as bytes.find)
_MESSAGE_ID_FIRST = re.compile(rb"message-id[ \t]*:(.*(?:\n[ \t].*)*)")
_MESSAGE_ID_LINE = re.compile(rb"\nmessage-id[ \t]*:(.*(?:\n[ \t].*)*)")


def _message_id(head: bytes) -> bytes:
    """The first Message-ID field's value, unfolded; b"" when there is none.

    Found by one regex search in the lower-cased block, its value then read from the
    block as written. Searching with IGNORECASE and MULTILINE "^" tried every position
    (6.9 against 1.9 us a message); a loop over bytes.find's hits ran Python once a hit
    (15 MB of "xmessage-id": 0.27 s, now 0.03 s; corpus mail 1.8 us either way).
    """
    lowered = head.lower()
    match = _MESSAGE_ID_FIRST.match(lowered) or _MESSAGE_ID_LINE.search(lowered)
    return b"" if match is None else b" ".join(head[match.start(1):match.end(1)].split())


def message_key(raw: bytes) -> bytes:
    """16-byte identity of a message for the learned-once table.

    The digest of its Message-ID and its body, so the same mail delivered twice (or
    with other Received lines, or other line endings) is the same message.
    """
    data = normalize_newlines(raw)
    head, body = split_header_block(data)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(_message_id(head))
    digest.update(b"\x00")
    digest.update(body)
    return digest.digest()


def parse_message(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse any bytes as a mail message. Never raises."""
    return _walk(raw, limits, files_only=False)


def list_attachments(raw: bytes, limits: ParseLimits) -> ParsedMessage:
    """The files a mail program could save from this message, for the blocked-extensions
    check: every leaf part that is not text or has a name, uuencoded files, and the
    names inside zip archives (`Attachment.members`). Only `attachments` and `facts`
    are filled; no text is decoded. The check must see what scoring does not: give it
    limits that cover the whole message (an attachment past the scoring cap of 500 KB
    went unchecked). Never raises."""
    return _walk(raw, limits, files_only=True)


def _walk(raw: bytes, limits: ParseLimits, files_only: bool) -> ParsedMessage:
    message = ParsedMessage(size=len(raw))
    try:
        _Walker(message, limits, files_only).walk_message(raw)
    except RecursionError:
        message.facts.add("cap-mime-depth")
    except Exception as error:  # the promise is "never raises": record, and keep what we have
        message.facts.add(f"parser-error:{type(error).__name__}")
    return message


# base64 of HEAD_BYTES, with its line breaks: enough of a part to tell an archive by its first bytes
ARCHIVE_HEAD_CHARACTERS = 512
TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
_UU_BLOCK = re.compile(rb"^begin [0-7]{3,4} \S", re.MULTILINE)
_UU_NAMES = re.compile(rb"^begin [0-7]{3,4} (\S[^\n]*)", re.MULTILINE)
_URL_TAIL = r"[^\s<>\"'()\[\]{}]{2,400}"
# Case-sensitive with a literal prefix is 3x faster than IGNORECASE; the rare
# upper-case URL takes the slow pattern.
_TEXT_URL = re.compile(r"(?:https?://|www\.)" + _URL_TAIL)
_TEXT_URL_ANY_CASE = re.compile(r"(?:https?://|www\.)" + _URL_TAIL, re.IGNORECASE)


def text_urls(text: str) -> list[str]:
    """The URLs written in a text: _TEXT_URL.findall, or its any-case form when the
    text has an upper-case "HTTP" or "WWW." (rare, so the usual case stays fast)."""
    urls = _text_urls_exact_case(text)
    return _TEXT_URL_ANY_CASE.findall(text) if urls is None else urls


def text_urls_py(text: str) -> list[str] | None:
    """What _TEXT_URL.findall(text) gives, 1.7x faster on the corpus; None when the text
    has "HTTP", "WWW.", "Http" or "Www.", for the any-case pattern.

    The regex engine tries the pattern at every position; str.find jumps to the places
    a URL can start ("http", "www.") and the pattern is tried only there. (The C scan,
    when built, is 3x faster again: spamkit/message/_scans.c.)
    """
    if "HTTP" in text or "WWW." in text or "Http" in text or "Www." in text:
        return None
    urls: list[str] = []
    find, match = text.find, _TEXT_URL.match
    http, www = find("http"), find("www.")
    while http != -1 or www != -1:
        start = http if www == -1 or (http != -1 and http < www) else www
        found = match(text, start)
        if found is None:
            resume = start + 1
        else:
            urls.append(found.group())
            resume = found.end()
        if http != -1 and http < resume:
            http = find("http", resume)
        if www != -1 and www < resume:
            www = find("www.", resume)
    return urls


try:
    from spamkit.message._scans import text_urls as _text_urls_exact_case
except ImportError:  # built without a compiler
    _text_urls_exact_case = text_urls_py


class _Walker:
    """One pass over a MIME tree, filling in a ParsedMessage as it goes."""

    def __init__(self, message: ParsedMessage, limits: ParseLimits, files_only: bool = False) -> None:
        self.message = message
        self.limits = limits
        self.files_only = files_only  # list_attachments: names and archive members, no text
        self.unpack_budget = UnpackBudget()  # shared by the message's archives
        self.parts = 0
        self.open_alternatives: list[list[tuple[str, str, bool]]] = []  # the ones being walked
        self.seen_alternative = False  # a multipart/alternative has been walked into

    def walk_message(self, raw: bytes) -> None:
        if len(raw) > self.limits.max_message_bytes:
            self.message.facts.add("cap-message-bytes")
            raw = raw[: self.limits.max_message_bytes]
        if b"\x00" in raw:
            self.message.facts.add("nul-bytes")
            raw = raw.replace(b"\x00", b"")
        data = normalize_newlines(raw)
        self.message.size = len(data)
        head_end, body_start = header_block_span(data, 0, len(data))
        head = data[:head_end]
        if not head:
            self.message.facts.add("no-headers")
        # Every entity below is read in place, as a span of `data`; only a leaf's bytes are
        # copied. Nested multiparts used to copy the message at each level: 100 MB for 500
        # kB nested 99 deep, 1 GB for the attachment check's whole 5 MB message.
        if self.files_only:  # only the MIME fields count: no names as written, no decoding
            self._walk_entity(parse_header_block(head, self.message.facts), data, body_start, len(data),
                              depth=0, default_type="text/plain")
            return
        as_written = parse_header_block(head, self.message.facts, keep_case=True)
        fields = [(name.lower(), value) for name, value in as_written]
        facts = self.message.facts
        self.message.raw_headers = as_written
        self.message.headers = fields if b"=?" not in head else [  # most mail has no encoded word
            (name, decode_rfc2047(value, facts) if "=?" in value else value) for name, value in fields]
        self.message.part_headers.append(fields)
        self._walk_entity(fields, data, body_start, len(data), depth=0, default_type="text/plain")

    def _walk_entity(self, fields: list[tuple[str, str]], data: bytes, start: int, end: int, depth: int,
                     default_type: str) -> None:
        """The entity whose body is data[start:end]."""
        self.parts += 1
        if self.parts > self.limits.max_parts:
            self.message.facts.add("cap-mime-parts")
            return
        content_type, params, encoding, disposition = content_headers(fields, default_type)
        self.message.content_types.append(content_type)
        if content_type == "multipart/alternative":
            self.seen_alternative = True
            self.open_alternatives.append([])
            self._walk_multipart(params, data, start, end, depth)
            versions = self.open_alternatives.pop()
            if versions:
                self.message.alternatives.append(versions)
        elif content_type.startswith("multipart/"):
            self._walk_multipart(params, data, start, end, depth)
        elif content_type == "message/rfc822" and depth < self.limits.max_depth:
            head_end, body_start = header_block_span(data, start, end)
            inner_fields = parse_header_block(data[start:head_end], self.message.facts)
            self.message.part_headers.append(inner_fields)
            self._walk_entity(inner_fields, data, body_start, end, depth + 1, "text/plain")
        else:
            if content_type == "message/rfc822":  # one level too deep to open
                self.message.facts.add("cap-mime-depth")
            self._leaf(content_type, params, encoding, disposition, data[start:end])

    def _walk_multipart(self, params: dict[str, str], data: bytes, start: int, end: int, depth: int) -> None:
        boundary = params.get("boundary", "")
        if not boundary or len(boundary) > self.limits.max_boundary_length:
            self.message.facts.add("mime-bad-boundary")
            self._leaf("text/plain", {}, "", "", data[start:end])
            return
        if depth + 1 > self.limits.max_depth:
            self.message.facts.add("cap-mime-depth")
            return
        delimiter = b"--" + boundary.encode("latin-1", "replace")
        pieces = _multipart_spans(data, start, end, delimiter, self.limits.max_parts - self.parts + 1)
        if pieces is None:
            self.message.facts.add("mime-missing-boundary")
            self._leaf("text/plain", {}, "", "", data[start:end])
            return
        parts, closed, epilogue_start = pieces
        if not closed:
            self.message.facts.add("mime-unterminated")
        elif _HAS_EPILOGUE_TEXT.search(data, epilogue_start, end):
            self.message.mime_epilogue = True
        for part_start, part_end in parts:
            if not _HEADER_FIELD_START.match(data, part_start, part_end):
                self.message.missing_mime_headers = True
            if self.parts >= self.limits.max_parts:
                self.message.facts.add("cap-mime-parts")
                return
            head_end, body_start = header_block_span(data, part_start, part_end)
            part_fields = parse_header_block(data[part_start:head_end], self.message.facts)
            self.message.part_headers.append(part_fields)
            self._walk_entity(part_fields, data, body_start, part_end, depth + 1, "text/plain")

    def _leaf(self, content_type: str, params: dict[str, str], encoding: str,
              disposition: str, body: bytes) -> None:
        message = self.message
        filename, *other_names = _file_names(params, disposition)
        is_text = content_type.startswith("text/") or content_type == ""
        cte = encoding.strip().lower()
        if self.files_only:
            self._file(content_type, filename, tuple(other_names), encoding, body, is_text)
            return
        charset = params.get("charset", "").lower()
        lowered_disposition = disposition.strip().lower()
        false_ascii = (content_type in ("text/plain", "") and charset in ("", "us-ascii")
                       and (not body.isascii() or b"\0" in body))
        longest = _longest_line(body) if cte == "base64" else 0
        if not is_text or (filename and "attachment" in lowered_disposition):
            size = len(body) * 3 // 4 if cte == "base64" else len(body)
            message.attachments.append(Attachment(content_type, filename, size, tuple(other_names)))
            message.parts.append(PartInfo(content_type, cte, attachment=True, disposition=lowered_disposition,
                                          charset=charset, false_ascii=false_ascii, raw_length=len(body),
                                          longest_line=longest, after_alternative=self.seen_alternative,
                                          image_part=image_part(content_type, cte, body, filename)))
            return
        data = decode_transfer(body, encoding, message.facts)
        if cte in ("base64", "quoted-printable") and b"\r" in data:
            # CRLF line ends that were encoded become LF, as the message's own did (and as
            # SpamAssassin decodes a text part): the same text, however it was sent
            data = data.replace(b"\r\n", b"\n")
        long_qp = cte == "quoted-printable" and any(len(line) > 78 for line in body.split(b"\n"))
        message.parts.append(PartInfo(content_type, cte, attachment=False, disposition=lowered_disposition,
                                      charset=charset, long_qp_line=long_qp, false_ascii=false_ascii,
                                      raw_length=len(body), longest_line=longest,
                                      after_alternative=self.seen_alternative))
        if b"begin " in data and _UU_BLOCK.search(data):
            decoded, uu_name = decode_uuencode(data, message.facts)
            message.attachments.append(Attachment("application/x-uuencode", uu_name or "", len(decoded)))
            data = _UU_BLOCK.split(data, 1)[0]
        text = decode_text(data, params.get("charset"), message.facts)
        message.raw_text.append(text)
        if content_type == "text/html":
            message.html_sources.append(text)
        if content_type == "text/html" or (content_type == "text/plain" and _looks_like_html(text)):
            rendered = render_html(text)
            message.text.append(rendered.visible)
            if rendered.invisible.strip():
                message.invisible.append(rendered.invisible)
            message.alt_text.extend(rendered.alt_text)
            message.urls.extend(rendered.urls)
            message.html_links.extend(rendered.urls)
            message.html_tags.extend(rendered.tags)
            message.facts.update(rendered.facts)
            message.urls.extend(text_urls(rendered.visible))
            visible, has_image = rendered.visible, "img" in rendered.tags
        else:
            message.text.append(text)
            message.urls.extend(text_urls(text))
            visible, has_image = text, False
        for versions in self.open_alternatives:
            versions.append((content_type or "text/plain", visible, has_image))

    def _file(self, content_type: str, filename: str, other_names: tuple[str, ...], encoding: str,
              body: bytes, is_text: bool) -> None:
        """list_attachments' view of a leaf: any part with a name is a file (a text/plain
        part named invoice.exe is saved as one), as is any part that is not text; a text
        part may carry uuencoded files (their names are listed, each counted as a part
        against the parts cap: a 10 MB text of "begin 644 a" lines listed 833,000 files
        in 130 MB); an archive's members are read."""
        message = self.message
        if is_text:
            data = decode_transfer(body, encoding, message.facts)
            for match in _UU_NAMES.finditer(data) if b"begin " in data else ():
                if self.parts >= self.limits.max_parts:
                    message.facts.add("cap-mime-parts")
                    break
                self.parts += 1
                message.attachments.append(Attachment("application/x-uuencode",
                                                      match.group(1).strip().decode("latin-1"), 0))
            if not filename:
                return
        members: tuple[str, ...] = ()
        size, encrypted = len(body), False
        head = decode_transfer(body[:ARCHIVE_HEAD_CHARACTERS].lstrip(), encoding, set())
        if content_type in TNEF_TYPES or is_tnef(head) \
                or any(name.lower().strip() == "winmail.dat" for name in (filename, *other_names)):
            data = decode_transfer(body, encoding, message.facts)
            message.attachments.append(Attachment(content_type, filename, len(data), other_names))
            self._tnef(data)
            return
        if is_zip_name(filename, *other_names) or is_image_name(filename, *other_names) \
                or is_archive(head[:HEAD_BYTES]):
            data = decode_transfer(body, encoding, message.facts)
            members, size, encrypted = self._archive(data, filename, other_names)
        message.attachments.append(Attachment(content_type, filename, size, other_names, members,
                                              encrypted))

    def _archive(self, data: bytes, filename: str, other_names: tuple[str, ...]) -> tuple[tuple[str, ...], int, bool]:
        """(member names, size, encrypted) of an archive's bytes, its facts noted."""
        listing = archive_members(data, filename, self.unpack_budget)
        self.message.facts.update(listing.facts)
        return listing.names, len(data), "archive-encrypted" in listing.facts

    def _tnef(self, data: bytes) -> None:
        """Each file in a TNEF stream (winmail.dat) as an attachment of its own, as Outlook
        shows it, under every name it has; an archive among them read as one."""
        files, facts = tnef_files(data)
        self.message.facts.update(facts)
        for file in files:
            filename, *other_names = file.names or [""]
            members: tuple[str, ...] = ()
            encrypted = False
            if file.data and (is_zip_name(*file.names) or is_image_name(*file.names)
                              or is_archive(file.data[:HEAD_BYTES])):
                members, _, encrypted = self._archive(file.data, filename, tuple(other_names))
            self.message.attachments.append(Attachment("application/octet-stream", filename, len(file.data),
                                                       tuple(other_names), members, encrypted))


# SpamAssassin cuts a body line longer than this many bytes, each piece ending in a line
# break (Message.pm's MAX_BODY_LINE_LENGTH)
LONGEST_LINE_COUNTED = 2048


def _longest_line(body: bytes) -> int:
    """The longest line of a part's body as SpamAssassin measures it: with its line break,
    a line over LONGEST_LINE_COUNTED bytes cut to that and a break; the last line, whose
    break belongs to the multipart delimiter (or which has none), without one."""
    *lines, last = body.split(b"\n")
    longest = min(max(map(len, lines), default=-1), LONGEST_LINE_COUNTED) + 1
    return max(longest, LONGEST_LINE_COUNTED + 1 if len(last) > LONGEST_LINE_COUNTED else len(last))


def content_headers(fields: list[tuple[str, str]],
                    default_type: str) -> tuple[str, dict[str, str], str, str]:
    """(content type, its parameters, transfer encoding, disposition) of one entity's
    fields, the first of each field counting, as mail programs read them."""
    content_type, encoding, disposition = default_type, "", ""
    params: dict[str, str] = {}
    seen_type = False
    for name, value in fields:
        if name == "content-type" and not seen_type:
            seen_type = True
            main, params = split_parameters(value)
            if "/" in main:
                content_type = main
        elif name == "content-transfer-encoding" and not encoding:
            encoding = value
        elif name == "content-disposition" and not disposition:
            disposition = value
    return content_type, params, encoding, disposition


def _file_names(params: dict[str, str], disposition: str) -> list[str]:
    """[the name a mail program shows, any other name the part gives]: Content-
    Disposition's filename, else Content-Type's name, each with RFC 2047 words decoded
    (not the standard, but what Outlook and Gmail write); [""] when there is none."""
    names = [params.get("name", "")]
    if disposition:
        _, disposition_params = split_parameters(disposition)
        if disposition_params.get("filename"):
            names.insert(0, disposition_params["filename"])
    names = [decode_rfc2047(name, set()) if "=?" in name else name for name in names if name]
    return list(dict.fromkeys(names)) or [""]


def _looks_like_html(text: str) -> bool:
    head = text[:2000].lower()
    return "<html" in head or "<body" in head or ("<a href" in head and "</a>" in head)


_HAS_EPILOGUE_TEXT = re.compile(rb"[^\s.]")
_HEADER_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")  # a field name (RFC 5322) and its colon


def _multipart_spans(data: bytes, start: int, end: int, delimiter: bytes,
                     limit: int) -> tuple[list[tuple[int, int]], bool, int] | None:
    """The body parts of the multipart body data[start:end], as (start, end) spans
    between delimiter lines, the first `limit` of them (what the parts cap leaves the
    walker to read); None when the delimiter never begins a line.

    Returns (parts, closed, epilogue start), closed being False when the closing
    delimiter is missing (a truncated message), in which case the last part runs to the
    end; the epilogue is what follows the closing delimiter's line.
    """
    line, line_end, closing = _delimiter_line(data, delimiter, start, start, end)
    if line < 0:
        return None
    parts: list[tuple[int, int]] = []
    while True:
        if closing:
            return parts, True, line_end + 1 if line_end >= 0 else end
        if line_end < 0:
            return parts, False, end
        if len(parts) == limit:  # no more are read: only whether (and where) it closes
            return (parts, *_closing_line_after(data, delimiter, line_end + 1, end))
        following, following_end, closing = _delimiter_line(data, delimiter, line_end + 1, start, end)
        if following < 0:
            parts.append((line_end + 1, end))
            return parts, False, end
        # the part ends at the line break before the next delimiter (a part may be empty)
        parts.append((line_end + 1, max(line_end + 1, following - 1)))
        line_end = following_end


def _delimiter_line(data: bytes, delimiter: bytes, position: int, body_start: int,
                    end: int) -> tuple[int, int, bool]:
    """(where it begins, where it ends or -1, whether it closes) of the first delimiter
    line at or after `position` in the body data[body_start:end]; (-1, -1, False) when
    there is none. A delimiter line is the delimiter alone, or closing with "--", white
    space after it allowed (RFC 2046): a nested multipart's "--boundaryAA" lines are not
    the outer "--boundary"'s, though Outlook Express makes one the other's prefix. The
    body's first line is a line whatever comes before it."""
    if position == body_start and (found := _delimiter_at(data, delimiter, position, end)) is not None:
        return position, *found
    line_start = b"\n" + delimiter
    search = max(position - 1, body_start)  # the line break before a line at `position` or later
    while (newline := data.find(line_start, search, end)) >= 0:
        if (found := _delimiter_at(data, delimiter, newline + 1, end)) is not None:
            return newline + 1, *found
        search = newline + 1
    return -1, -1, False


def _delimiter_at(data: bytes, delimiter: bytes, line: int, end: int) -> tuple[int, bool] | None:
    """(where the line ends or -1, whether it closes) when a delimiter line begins at
    `line`, else None."""
    if not data.startswith(delimiter, line, end):
        return None
    line_end = data.find(b"\n", line, end)
    rest = data[line + len(delimiter): line_end if line_end >= 0 else end].rstrip()
    return (line_end, rest == b"--") if rest in (b"", b"--") else None


def _closing_line_after(data: bytes, delimiter: bytes, position: int, end: int) -> tuple[bool, int]:
    """(closed, epilogue start) of a multipart whose parts from the line at `position`
    on are not read: the first closing delimiter line ends it, whatever parts come
    before. Looked for directly: splitting all of a 10 MB message's 2.5 million empty
    parts took the attachment check 1.5 s (27 s and 322 MB once each was a span)."""
    needle = b"\n" + delimiter + b"--"
    search = position - 1
    while (newline := data.find(needle, search, end)) >= 0:
        found = _delimiter_at(data, delimiter, newline + 1, end)
        if found is not None and found[1]:
            return True, found[0] + 1 if found[0] >= 0 else end
        search = newline + 1
    return False, end
