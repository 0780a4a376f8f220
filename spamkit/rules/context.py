"""One message as the rules see it: headers, body paragraphs, raw body, URIs, full text.

Each view is built on first use and kept, so a rule set that has no `full` rules never
decodes the whole message as text.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from functools import cached_property

from spamkit.geoip import Countries
from spamkit.message import ParsedMessage, normalize_newlines
from spamkit.message.decode import decode_rfc2047
from spamkit.message.headers import split_header_block
from spamkit.rules.evals.freemail import AddressPattern, FreemailDomains
from spamkit.rules.htmlfacts import HTML_TIME_BUDGET, HtmlFacts, html_facts
from spamkit.lazyregex import LazyPattern
from spamkit.rules.namedlists import NamedLists
from spamkit.rules.perl_regex import from_bytes_view, to_bytes_view
from spamkit.rules.registry import Registry, RegistryLists
from spamkit.rules.relays import (
    RELAY_COUNTRY_HEADERS,
    RELAY_PSEUDO_HEADERS,
    TRUST_SIDE_HEADERS,
    Relays,
    first_address_in,
)
from spamkit.rules.sa_body import body_lines as spamassassin_body_lines
from spamkit.rules.sa_text_uris import TextLinkFinder
from spamkit.rules.sa_uris import NO_REDIRECTORS, canonical_uris, uri_host

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# an address in angle brackets, else a run of address characters holding an @. Written
# so it never backtracks: the bracketed run stops at its first @ possessively, and a bare
# run is only tried where one starts (where an earlier start failed, no later one in the
# same run can match). The plain form took 25 s on a From of 95,000 letters.
_ADDRESS = re.compile(r"<([^<>\s@]*+@[^<>\s]*+)>|(?<![^\s<>\"',;])([^\s<>\"',;]+@[^\s<>\"',;]+)")
# an address as SpamAssassin 4's header address parser takes one (Util.pm's mail pattern):
# a local part quoted or without white space and @<>()[],:;, then a domain without white
# space, quotes and those, or an address literal. What is not one, "[x]@example.com"
# say, it reads as a name, and nothing after a second @ counts ("a@b@c.example" is a@b)
_SPAMASSASSIN_ADDRESS = LazyPattern(r'(?:"(?:[^"\\]|\\.)*"|[^@\s<>()\[\],:;]+)@(?:[^"\s<>()\[\],:;]+|\[[\d:.]+\])')
# a quoted display name (followed by the address in angle brackets); a quoted local
# part, <"odd name"@example.com>, is part of the address and stays
_QUOTED_NAME = re.compile(r'"(?:[^"\\]|\\.)*"(?=\s*<)')
# SpamAssassin 4's default originating_ip_headers (10_default_prefs.cf), in its order
ORIGINATING_IP_HEADERS = ("X-Yahoo-Post-IP", "X-Originating-IP", "X-Apparently-From", "X-SenderIP",
                          "X-AOL-IP", "X-MS-Exchange-CrossTenant-OriginalAttributedTenantConnectingIp")
RAWBODY_CHUNK = 2048  # SpamAssassin's MAX_BODY_LINE_LENGTH
MAX_BODY_CHARS = 250_000  # text the body rules look at (SpamAssassin scans 50-ish KB per part)


@dataclass(frozen=True)
class Verified:
    """What this server's SMTP filter verified of a message as it arrived, handed to the
    scan directly: the envelope sender's SPF result and the domains whose DKIM signatures
    verified. Unlike a header, no sender can write it. The welcomelist evals, worth -7.5
    to -100 points, trust only this (a message scanned without the filter, by `check` or
    `spamd`, has none: as in SpamAssassin without network tests)."""

    spf: str | None = None  # pass, fail, softfail, ... (None: not checked)
    # the verified signatures' identity domains, lower-case: i= after its "@" (a signer may
    # name a subdomain of d= there), else d=, as SpamAssassin's DKIM.pm compares them
    dkim_domains: tuple[str, ...] = ()


class MessageContext:
    def __init__(self, raw: bytes, message: ParsedMessage, *, envelope_from: str | None = None,
                 recipients: tuple[str, ...] = (), bayes_probability: float | None = None,
                 listed: str | None = None, max_bytes: int = 500_000,
                 verified: Verified | None = None) -> None:
        self.raw = raw
        self.message = message
        self.envelope_from = envelope_from
        self.recipients = recipients
        self.bayes_probability = bayes_probability
        self.listed = listed  # "white", "black" or None: set by the lists before rules run
        self.max_bytes = max_bytes
        self.verified = verified
        self._haystacks: dict[tuple[str, bool], str] = {}
        self._texts: dict[tuple[str, bool], list[str]] = {}
        self.cache: dict[str, object] = {}  # evals keep what several rules share here
        self._header_texts: dict[tuple[str, str], str | None] = {}
        self.freemail: FreemailDomains | None = None  # set by the RuleSet before its evals run
        self.registry: Registry | None = None  # likewise: the rule files' util_rb_* lists
        self.address_pattern: AddressPattern | None = None  # and FreeMail's address regex over them
        self.countries: Countries | None = None  # likewise: the relays' country lookup
        self.named_lists: NamedLists | None = None  # and the rule files' enlisted addresses and hosts
        self.ok_locales: tuple[str, ...] = ("all",)  # and their ok_locales (spamkit.rules.locales)
        self.redirectors = NO_REDIRECTORS  # and their redirector_pattern lines
        self.skipped_rules: list[str] = []  # not run: the time limit had passed (RuleSet.match_counts)

    @cached_property
    def _headers(self) -> dict[str, list[str]]:
        """Decoded header values by lower-case name (built on first use: a run without
        header rules, Bayes alone, never needs them)."""
        values: dict[str, list[str]] = {}
        for name, value in self.message.headers:
            values.setdefault(name, []).append(value)
        return values

    @cached_property
    def _raw_headers(self) -> dict[str, list[str]]:
        values: dict[str, list[str]] = {}
        for name, value in self.message.raw_headers:
            values.setdefault(name.lower(), []).append(value)
        return values

    def header_values(self, name: str, raw: bool = False) -> list[str]:
        return (self._raw_headers if raw else self._headers).get(name.lower(), [])

    def addresses(self, name: str) -> list[str]:
        """Every address of every `name` header (or the envelope sender, for
        EnvelopeFrom), lower-case, in order: SpamAssassin's get("NAME:addr") in list
        context."""
        if name == "EnvelopeFrom":
            return [address] if (address := self.header_text(name, "addr")) else []
        return [address for value in self.header_values(name) for address in self.addresses_in(value)]

    @staticmethod
    def addresses_in(value: str, lower: bool = True) -> list[str]:
        """The addresses of one header value as SpamAssassin's parser reads them (its
        rules' :addr and its evals' address lists), lower-case unless asked otherwise (a
        quoted display name passed over)."""
        found = _ADDRESS.finditer(_without_quoted_names(value))
        return ["@".join(address.split("@", 2)[:2]) for match in found
                if (address := _address_of(match, lower)) and _SPAMASSASSIN_ADDRESS.fullmatch(address)]

    def header_text(self, name: str, modifier: str = "", file_rule: bool = False) -> str | None:
        """The text a header rule tests (built once per message and header); what an eval
        gets from SpamAssassin's get() in scalar context (:addr the first address).

        For a rule from SpamAssassin's files (`file_rule`), as its header rules read it:
        UTF-8 bytes (perl_regex.to_bytes_view), and for :addr every address of every
        such header as written (case kept), one a line (4.0's rules take get()'s list,
        joined by line breaks: a From of two addresses matches /\\s/, as FROM_ADDR_WS asks)."""
        key = (name, modifier + ":file" if file_rule else modifier)
        if key not in self._header_texts:
            if file_rule:
                text = self._every_address(name) if modifier == "addr" else self.header_text(name, modifier)
                self._header_texts[key] = None if text is None else to_bytes_view(text)
            else:
                self._header_texts[key] = self._build_header_text(name, modifier)
        return self._header_texts[key]

    def _every_address(self, name: str) -> str | None:
        """Every address of every `name` header, one a line; with none found, what the
        first-address reading gives (the envelope sender and the pseudo-headers have one
        at most)."""
        if name in ("EnvelopeFrom", "ALL") or name in RELAY_PSEUDO_HEADERS or name in TRUST_SIDE_HEADERS:
            return self.header_text(name, "addr")
        values = (self.header_values("to") + self.header_values("cc")) if name == "ToCc" else self.header_values(name)
        addresses = [address for value in values for address in self.addresses_in(value, lower=False)]
        return "\n".join(addresses) if addresses else self.header_text(name, "addr")

    def _build_header_text(self, name: str, modifier: str) -> str | None:
        """The text a header rule tests, as SpamAssassin builds it; None when absent.

        The pseudo-headers are recognised in SpamAssassin's own spelling only (ALL,
        ALL-TRUSTED, ALL-INTERNAL, ALL-UNTRUSTED, ALL-EXTERNAL, ToCc, EnvelopeFrom, MESSAGEID,
        X-Spam-Relays-*, X-Relay-Countries*): `exists:MessageID` asks for a real, malformed
        header.
        """
        key = name.lower()
        raw = modifier == "raw"
        if name in RELAY_PSEUDO_HEADERS:  # the path, as SpamAssassin writes it (relays.py)
            return self.relays.pseudo_headers[name]
        if name in RELAY_COUNTRY_HEADERS:  # absent without a country database, as there
            countries = self._relay_countries
            return None if countries is None else countries[name]
        if name == "ALL":  # every header, names as written
            return "".join(self._header_lines(raw))
        if name in TRUST_SIDE_HEADERS:
            return self._trust_side(TRUST_SIDE_HEADERS[name], raw)
        if name == "ToCc":
            values = self.header_values("to", raw) + self.header_values("cc", raw)
        elif name == "EnvelopeFrom":
            sender = self.envelope_from if self.envelope_from is not None else self.guessed_envelope_from
            values = [] if sender is None else [sender]
        elif name == "MESSAGEID":
            values = (self.header_values("message-id", raw) + self.header_values("resent-message-id", raw)
                      + self.header_values("x-message-id", raw)
                      + self.header_values("x-original-message-id", raw))
        else:
            values = self.header_values(key, raw)
        if not values:
            return None
        if modifier == "addr":
            return first_address(values[0])
        if modifier == "name":
            return display_name(values[0])
        return "\n".join(values) + "\n"

    def _header_lines(self, raw: bool) -> list[str]:
        """Every header as "Name: value\\n", names as written, in order."""
        names = [name for name, _ in self.message.raw_headers]
        values = [v for _, v in (self.message.raw_headers if raw else self.message.headers)]
        return [f"{n}: {v}\n" for n, v in zip(names, values)]

    def _trust_side(self, untrusted: bool, raw: bool) -> str | None:
        """ALL-UNTRUSTED (ALL-EXTERNAL): the headers from the Received line of the first
        untrusted relay down; ALL-TRUSTED (ALL-INTERNAL): those above it, and that line.
        Both hold that line, as SpamAssassin's do: its relay wrote it. None when empty."""
        border = self.relays.trusted_lines  # the index of that Received line among them
        lines: list[str] = []
        received = -1
        for line in self._header_lines(raw):
            if line[:9].lower() == "received:":
                received += 1
            if untrusted and received >= border:
                lines.append(line)
            elif not untrusted:
                lines.append(line)
                if received == border:
                    break
        return "".join(lines) or None

    @cached_property
    def _relay_countries(self) -> dict[str, str] | None:
        """The relays' X-Relay-Countries* values, or None with no country database."""
        if self.countries is None or not self.countries.available():
            return None
        return self.relays.country_headers(self.countries.country)

    def part_header_values(self, name: str, raw: bool = False) -> list[str | None]:
        """A mimeheader rule's texts: for each MIME entity (the message itself first, then
        its parts, as SpamAssassin's MIMEHeader walks them), the last value of the header
        it has, RFC 2047 undone unless `raw`; None where the entity has none."""
        key = name.lower()
        values: list[str | None] = []
        for fields in self.message.part_headers:
            value = next((v for n, v in reversed(fields) if n == key), None)
            if value is not None and not raw and "=?" in value:
                value = decode_rfc2047(value, set())
            values.append(value)
        return values

    @cached_property
    def body_paragraphs(self) -> list[str]:
        """Subject, then the text's paragraphs as SpamAssassin renders and cuts them
        (spamkit.rules.sa_body): what body rules from its files read."""
        return spamassassin_body_lines(" ".join(self.header_values("subject")), self.message)

    @cached_property
    def builtin_body_paragraphs(self) -> list[str]:
        """Subject, then the text Bayes reads (visible text, each part its own paragraph),
        one entry a paragraph with white space folded: what the built-in body rules read,
        their scores fitted on it (decision 0005)."""
        subject = " ".join(self.header_values("subject"))
        text = "\n\n".join(self.message.text)[:MAX_BODY_CHARS]
        paragraphs = [" ".join(p.split()) for p in _PARAGRAPH_BREAK.split(text)]
        return [subject] + [p for p in paragraphs if p]

    def texts(self, kind: str, lowered: bool = False) -> list[str]:
        """The texts a kind of rule is tried on one by one (paragraphs, lines, URIs, the
        whole message), lower-cased for the literal prefilter when `lowered`."""
        key = ("texts:" + kind, lowered)
        if key not in self._texts:
            if lowered:
                self._texts[key] = [text.lower() for text in self.texts(kind)]
            else:
                self._texts[key] = self._view(kind)
        return self._texts[key]

    def _view(self, kind: str) -> list[str]:
        """Only the view asked for is made (each is kept once made). "KIND:bytes" is a
        view's texts as UTF-8 bytes, for rules from SpamAssassin's files."""
        if kind.endswith(":bytes"):
            return [to_bytes_view(text) for text in self.texts(kind[:-6])]
        match kind:
            case "body":
                return self.body_paragraphs
            case "builtin_body":
                return self.builtin_body_paragraphs
            case "rawbody":
                return self.rawbody_chunks
            case "rawbody_lines":
                return self.rawbody_lines
            case "uri":
                return self.uris
            case "links":
                return self.links
            case "full":
                return [self.full_text]
        raise KeyError(kind)

    def haystack(self, kind: str, lowered: bool) -> str:
        """All the text a kind of rule looks at, as one string, for the literal prefilter:
        each of its texts is a piece of it (rawbody's: the parts, joined)."""
        key = (kind, lowered)
        if key not in self._haystacks:
            if kind.startswith("rawbody"):  # the parts joined (rawbody_lines' pieces too)
                text = to_bytes_view(self._rawbody_text) if kind.endswith(":bytes") else self._rawbody_text
            else:
                text = "\n".join(self.texts(kind))
            self._haystacks[key] = text.lower() if lowered else text
        return self._haystacks[key]

    @cached_property
    def _rawbody_text(self) -> str:
        """Text parts after transfer decoding, HTML left in, joined."""
        return "\n".join(self.message.raw_text)[:MAX_BODY_CHARS]

    @cached_property
    def rawbody_lines(self) -> list[str]:
        """The rawbody one line at a time (the built-in rules' view)."""
        return self._rawbody_text.split("\n")

    @cached_property
    def rawbody_chunks(self) -> list[str]:
        """The rawbody as SpamAssassin cuts it for rawbody rules: each text part whole, or,
        past RAWBODY_CHUNK characters, in pieces of one to two of those, each ending at a
        line end where one is in reach (else at a '>', else at a space)."""
        chunks: list[str] = []
        left = MAX_BODY_CHARS
        for part in self.message.raw_text:
            if left <= 0:
                break
            chunks.extend(_rawbody_pieces(part[:left]))
            left -= len(part) + 1
        return chunks

    @cached_property
    def links(self) -> list[str]:
        """The message's links, as the parser found them (the built-in uri rules' view)."""
        out = []
        for url in dict.fromkeys(self.message.urls):
            out.append("http://" + url if url.lower().startswith("www.") else url)
        return out

    @cached_property
    def uris(self) -> list[str]:
        """What SpamAssassin's `uri` rules read: the HTML links as written, the links
        written in the text (`_written_links`), each address written in the text as a
        mailto: link (MUAs make such addresses clickable; "To unsubscribe, write to
        list-unsubscribe@example.com" is an unsubscribe link to __UNSUB_LINK), and the
        spellings its canonicaliser derives from each (spamkit.rules.sa_uris). Bayes, and
        the built-in uri rules, read the links as the parser found them (`links`)."""
        return canonical_uris(dict.fromkeys(self.message.html_links + self.written_links),
                              self.redirectors, self.registry)

    @cached_property
    def written_links(self) -> list[str]:
        """The links written in the text, as SpamAssassin's uri rules get them: found by
        its text link finder (spamkit.rules.sa_text_uris: links with a scheme or "www.",
        addresses, bare hosts under a known top-level domain) in the text its body rules
        read (the Subject first, each part cut at body_part_scan_size), and kept only
        when one of the link's spellings has a host under a known top-level domain or is
        an IP address (what it asks of a link found in text, not of one in HTML)."""
        registry = self.registry or _NO_REGISTRY  # (no rule files: no top-level domains)
        found = _text_link_finder(registry).links(self.texts("body:bytes"))
        return [link for link in map(from_bytes_view, found) if any(
            uri_host(spelling, registry, mail=True) is not None
            for spelling in canonical_uris([link], self.redirectors, registry))]

    @cached_property
    def headers_in_utf8(self) -> bool:
        """The header block is UTF-8 (what the parser decoded it as; ASCII is too)."""
        head, _ = split_header_block(normalize_newlines(self.raw[: self.max_bytes]))
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    @cached_property
    def full_text(self) -> str:
        return self.raw[: self.max_bytes].decode("latin-1")

    @cached_property
    def html_facts(self) -> list[HtmlFacts]:
        """What SpamAssassin's HTML rules know of each text/html part (read on first use:
        only rule sets with HTML evals ask)."""
        deadline = time.monotonic() + HTML_TIME_BUDGET  # one budget for all the parts
        return [html_facts(source, deadline) for source in self.message.html_sources]

    @cached_property
    def html_only(self) -> bool:
        types = self.message.content_types
        return "text/html" in types and "text/plain" not in types

    @cached_property
    def relays(self) -> Relays:
        """The relays of the Received headers, split where trust ends; after them, as
        SpamAssassin 4 adds them, a hop for the address a webmail or freemail header
        names (X-Originating-IP and the other originating_ip_headers)."""
        received = list(self.header_values("received", raw=True))
        for name in ORIGINATING_IP_HEADERS:
            values = self.header_values(name, raw=True)
            found = first_address_in(values[0]) if values else None
            if found:
                received.append(f"from X-Originating-IP: {found}")
        return Relays(received)

    @cached_property
    def guessed_envelope_from(self) -> str | None:
        """The envelope sender as SpamAssassin guesses it when the MTA did not pass it
        (spamc, a file): the `envelope-from` of the last untrusted relay (of the first
        trusted one when all are trusted); else X-Envelope-From, Envelope-Sender or
        Return-Path, each only when no Received header comes before it (a list that
        relayed the message sent it with a new sender), and none of them when an
        X-Sender header and a fetchmail line say a fetcher may have guessed it."""
        relays = self.relays
        hop = relays.untrusted[0] if relays.untrusted else relays.trusted[-1] if relays.trusted else None
        if hop is not None and hop.envfrom.find("@") > 0:
            return hop.envfrom
        x_sender = self.header_values("x-sender")
        if x_sender and "@" in first_address(x_sender[0]) \
                and any("(fetchmail" in value for value in self.header_values("received", raw=True)):
            return None
        names = [name.lower() for name, _ in self.message.raw_headers]
        first_received = names.index("received") if "received" in names else len(names)
        for header in ("x-envelope-from", "envelope-sender", "return-path"):
            if header not in names:
                continue
            last = len(names) - 1 - names[::-1].index(header)
            if last > first_received:  # written after a hop: maybe a list's new sender
                if header == "x-envelope-from":
                    return None
                continue
            return first_address(self.header_values(header, raw=True)[0])
        return None

    @cached_property
    def from_address(self) -> str:
        value = self.message.header("from")
        return first_address(value) if value is not None else ""


def display_name(value: str) -> str:
    """The name before "<" in a header (the `:name` modifier), as the regex
    `^\\s*"?([^"<]*?)"?\\s*<` takes it, stripped: "" when it does not match. Found
    without the regex, whose two runs of white space around a lazy group backtracked:
    a From header of 20,000 spaces and a letter took 0.9 s, 100 kB (the header cap)
    about 22 s."""
    start = len(value) - len(value.lstrip())
    for name_start in ((start + 1, start) if value[start:start + 1] == '"' else (start,)):
        end = min((i for i in (value.find('"', name_start), value.find("<", name_start)) if i >= 0),
                  default=-1)
        if end < 0:
            continue
        if value[end] == "<" or value[end + 1:].lstrip().startswith("<"):
            return value[name_start:end].strip()
    return ""


def first_address(value: str) -> str:
    """The first address of a header value, lower-cased; "" if none. A display name in
    quotes is passed over: From: "boss@example.com" <x@spam.example> is from
    x@spam.example, for the lists as for the rules."""
    match = _ADDRESS.search(_without_quoted_names(value))
    return "" if match is None else _address_of(match)


def _without_quoted_names(value: str) -> str:
    return _QUOTED_NAME.sub(" ", value) if '"' in value else value


def _address_of(match: re.Match[str], lower: bool = True) -> str:
    address = (match.group(1) or match.group(2) or "").strip()
    return address.lower() if lower else address


def _rawbody_pieces(text: str) -> list[str]:
    """One part's rawbody texts (MessageContext.rawbody_chunks)."""
    if len(text) <= RAWBODY_CHUNK:
        return [text]
    pieces: list[str] = []
    start = 0
    while len(text) - start > 2 * RAWBODY_CHUNK:
        for separator in ("\n", ">", " "):
            end = text.find(separator, start + RAWBODY_CHUNK)
            if 0 <= end and end - start + 1 <= 2 * RAWBODY_CHUNK:
                break
        else:
            end = start + RAWBODY_CHUNK
        pieces.append(text[start:end + 1])
        start = end + 1
    if start < len(text):
        pieces.append(text[start:])
    return pieces


_NO_REGISTRY = Registry(RegistryLists())


@functools.lru_cache(maxsize=8)
def _text_link_finder(registry: Registry) -> TextLinkFinder:
    """One finder a rule set's registry (its pattern holds the top-level domains)."""
    return TextLinkFinder(registry)
