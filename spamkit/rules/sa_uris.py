"""The links as SpamAssassin's uri rules and URI evals see them: each link, and the
other spellings its canonicaliser (Util.pm's uri_list_canonicalize, Debian's 4.0) derives
from it, so that a rule written for "http://1.2.3.4/" also matches the link written
"http://0x01020304/" or "http://%77ww.example.com/".

From each link it adds: the link with a scheme supplied ("www.x.com" is http://www.x.com),
%-escapes of printable characters decoded, character references of printable ASCII
and of dot look-alikes decoded, backslashes as slashes, the default port dropped, the
host without control characters, without a user part, without a trailing
non-alphanumeric run, a dotted or single-number IP address in hex or octal written in
decimal, and a bare "http://name" as http://www.name.com. A redirector's target (the
rule files' redirector_pattern, or any http link inside another link's path) is a link
of its own, canonicalised in turn. For mailto: links, the address without ?query or
&rest, and an address inside <...>. Host names are not put in IDNA: Debian's
SpamAssassin runs without Net::LibIDN2 (idn_to_ascii).

Only the rules from SpamAssassin's files read this view; the built-in uri rules read
the links as the parser found them (decision 0005).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

import regex

from spamkit.config.endpoints import is_ip_address
from spamkit.lazyregex import LazyPattern
from spamkit.rules.perl_regex import compile_perl, literals_for
from spamkit.rules.registry import Registry

MAX_LINKS = 2000  # links canonicalised a message (redirector targets included)
REDIRECTOR_BUDGET = 0.05  # seconds a redirector pattern may take on one link

_SKIPPED = LazyPattern(r"(?:[#?&]|/(?!/))")  # a fragment, query or path alone
_MAILTO = LazyPattern(r"mailto:|[^:]*@", re.IGNORECASE)
_MAILTO_BEFORE_QUERY = LazyPattern(r"([^@]+@[^?]+)\?")
_MAILTO_BEFORE_AMPERSAND = LazyPattern(r"([^@]+@[^?&]+)&")
_MAILTO_AFTER_SPACES = LazyPattern(r"(?:mailto:)?(?:%20)*([^@]+@[^?&%]+)")
_MAILTO_IN_BRACKETS = LazyPattern(r"[^?&]*<([^@>]+@[^>]+)>")
_HTTP_SLASHES = LazyPattern(r"^(https?:)/{0,2}", re.IGNORECASE)
_ESCAPE = LazyPattern(r"%[0-9a-fA-F]{2}")
_ESCAPE_SPLIT = LazyPattern(r"(%[0-9a-fA-F]{2})")
_ESCAPE_KEPT = LazyPattern(r"20|7f|[0189a-f][0-9a-f]", re.IGNORECASE)
_TO_ESCAPE = LazyPattern(r'[^\x21-\x7e]|["%<>]')  # (each UTF-8 byte of a character beyond ASCII)
_HAS_SCHEME = LazyPattern(r"^[-_a-z0-9]+:", re.IGNORECASE)
_BARE_QUERY = LazyPattern(r"^(https?://[^/?#]+)([?#])", re.IGNORECASE)
_DECIMAL_REFERENCE = LazyPattern(r"&#0*(3[3-9]|[4-9]\d|1[01]\d|12[0-6]);")
_HEX_REFERENCE = LazyPattern(r"&#x0*(2[1-9]|[3-6][a-fA-F0-9]|7[0-9a-eA-E]);")
_DOT_REFERENCE = LazyPattern(r"&#(?:x2e|12290|x3002|65294|xff0e|65377|xff61);", re.IGNORECASE)
_HTTP_PARTS = LazyPattern(r"^(https?://)([^@/?#]*@)?([^/?#:]+)((?::(\d*))?.*)$", re.IGNORECASE)
_EMBEDDED_HTTP = LazyPattern(r"(https?:/{0,2}[^&#]+)", re.IGNORECASE)
_CONTROLS = LazyPattern(r"[\x00-\x20]")
_USER = LazyPattern(r"^[^@]+@")
_TRAILING_JUNK = LazyPattern(r"[^0-9A-Za-z]+$")
_DOTTED_NUMBERS = LazyPattern(r"^((?:0x[0-9a-f]+|\d+)\.)((?:0x[0-9a-f]+|\d+)\.)((?:0x[0-9a-f]+|\d+)\.)(0x[0-9a-f]+|\d+)$",
                             re.IGNORECASE)
_HEX_OCTET = LazyPattern(r"^0x([0-9a-f]+)", re.IGNORECASE)
_OCTAL_OCTET = LazyPattern(r"^0+([1-3][0-7]{0,2}|[4-7][0-7]?)\b")
_HEX_NUMBER = LazyPattern(r"^0x[0-9a-f]*?([0-9a-f]{1,8})$", re.IGNORECASE)
_SINGLE_LABEL = LazyPattern(r"^(?:www\.)?([^.]+)$")
_PERL_SPACE = "\t\n\x0b\x0c\r "


@dataclass(frozen=True)
class Redirector:
    """A redirector_pattern line: a link it matches redirects to its first capture."""

    pattern: regex.Pattern[str]
    # one of these is in every link it matches (lower-case when it ignores case), so
    # most links are passed over without running it (None: no such literal)
    literals: tuple[str, ...] | None
    ignorecase: bool

    @classmethod
    def from_text(cls, text: str) -> Redirector:
        """From '/regex/flags' (or m'...'flags); PerlRegexError when it does not compile."""
        pattern = compile_perl(text)
        return cls(pattern, literals_for(text), bool(pattern.flags & regex.IGNORECASE))

    def may_match(self, link: str, lowered: str) -> bool:
        if self.literals is None:
            return True
        haystack = lowered if self.ignorecase else link
        return any(literal in haystack for literal in self.literals)


class Redirectors:
    """The rule files' redirector patterns, with one search that passes over a link
    holding none of their literals (most links) without trying each pattern."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self.patterns = [Redirector.from_text(text) for text in texts]
        literals = [p.literals for p in self.patterns]
        self._gate = None if not literals or None in literals else LazyPattern(
            "|".join(re.escape(literal.lower()) for group in literals if group for literal in group))

    def may_match(self, lowered: str) -> bool:
        return bool(self.patterns) and (self._gate is None or self._gate.search(lowered) is not None)


NO_REDIRECTORS = Redirectors()


def canonical_uris(uris: Iterable[str], redirectors: Redirectors = NO_REDIRECTORS,
                   registry: Registry | None = None) -> list[str]:
    """Every link of `uris` and each spelling derived from it, once each, in order."""
    pending = list(uris)
    found: dict[str, None] = {}
    index = 0
    while index < len(pending) and index < MAX_LINKS:
        uri = pending[index].replace("\n", "").strip(_PERL_SPACE).replace("\r", "")
        index += 1
        found[uri] = None
        for variant in _variants(uri, redirectors, registry, pending):
            found[variant] = None
    return list(found)


def _variants(uri: str, redirectors: Redirectors, registry: Registry | None,
              pending: list[str]) -> list[str]:
    """The spellings SpamAssassin derives from one link; redirector targets go to `pending`."""
    if len(uri) <= 1 or _SKIPPED.match(uri):
        return []
    if _MAILTO.match(uri):
        return _mailto_variants(uri)
    variants = []
    canonical = _HTTP_SLASHES.sub(lambda m: m.group(1) + "//", uri.replace("\\", "/"), count=1)
    if _ESCAPE.search(canonical):
        canonical = decode_printable_escapes(canonical)
    if not _HAS_SCHEME.match(canonical):
        canonical = ("ftp://" if canonical.startswith("ftp.") else "http://") + canonical
    canonical = _BARE_QUERY.sub(r"\1/\2", canonical, count=1)
    canonical = _DECIMAL_REFERENCE.sub(lambda m: chr(int(m.group(1))), canonical)
    canonical = _HEX_REFERENCE.sub(lambda m: chr(int(m.group(1), 16)), canonical)
    canonical = _DOT_REFERENCE.sub(".", canonical)
    if canonical != uri:
        variants.append(canonical)
    parts = _HTTP_PARTS.match(canonical)
    if parts is not None:
        variants += _http_variants(parts, redirectors, registry, pending)
    return variants


def _mailto_variants(uri: str) -> list[str]:
    variants = []
    for pattern, prefix in ((_MAILTO_BEFORE_QUERY, ""), (_MAILTO_BEFORE_AMPERSAND, ""),
                            (_MAILTO_AFTER_SPACES, "mailto:"), (_MAILTO_IN_BRACKETS, "mailto:")):
        if pattern is _MAILTO_AFTER_SPACES and ("%20" not in uri or not _has_address_after_spaces(uri)):
            continue
        match = pattern.match(uri)
        if match is not None:
            variants.append(prefix + match.group(1))
    return variants


def _has_address_after_spaces(uri: str) -> bool:
    """Whether _MAILTO_AFTER_SPACES matches: it does when the first "@" has something
    before it and neither "?", "&", "%" nor the end right after it. Asked first because
    the regex, when it fails, gives back its "%20"s one at a time and reads to the first
    "@" again each time (a link of 100,000 "%20" took 19 s)."""
    at = uri.find("@")
    return at > 0 and uri[at + 1:at + 2] not in ("", "?", "&", "%")


def decode_printable_escapes(uri: str) -> str:
    """Util.pm's url_encode: %-escapes of printable characters decoded (those of white
    space, controls, 8-bit bytes and a first digit of 0, 1, 8, 9 or a-f kept), and
    white space, controls, 8-bit characters, '"', '%', '<' and '>' written as escapes."""
    pieces = []
    for piece in _ESCAPE_SPLIT.split(uri):
        if _ESCAPE.fullmatch(piece):
            if _ESCAPE_KEPT.search(piece) is None:
                piece = chr(int(piece[1:], 16))
        else:
            piece = _TO_ESCAPE.sub(lambda m: "".join(f"%{b:02x}" for b in m.group(0).encode("utf-8")), piece)
        pieces.append(piece)
    return "".join(pieces)


def _http_variants(parts: re.Match[str], redirectors: Redirectors,
                   registry: Registry | None, pending: list[str]) -> list[str]:
    proto, auth, host, rest, port = parts.group(1), parts.group(2) or "", parts.group(3), parts.group(4), parts.group(5)
    variants = []
    rest_without_port = ""
    if not port:  # (none, or ":" alone)
        port = "80" if proto == "http://" else "443"
    else:
        default = r"^:80\b" if proto == "http://" else r"^:443\b"
        rest_without_port, dropped = re.subn(default, "", rest, count=1)
        if dropped:
            variants.append(proto + host + rest_without_port)
        else:
            rest_without_port = rest
    # (SpamAssassin adds the IDNA spelling of a host here; without Net::LibIDN2 that is the
    # host lower-cased, which it compares with the host lower-cased: never a new one)
    ascii_name = idn_to_ascii(host)
    if _CONTROLS.search(host):
        host = _CONTROLS.sub("", host)
        variants.append(proto + host + rest)
    _redirect_target(proto + host + rest, rest, redirectors, pending)
    if _USER.search(host):
        host = _USER.sub("", host)
        variants.append(proto + host + rest)
    if _TRAILING_JUNK.search(host):
        host = _TRAILING_JUNK.sub("", host)
        variants.append(proto + host + rest)
    numbers = _DOTTED_NUMBERS.match(host)
    if numbers is not None:
        variants.append(proto + "".join(_decimal_octet(octet) for octet in numbers.groups()) + rest)
    elif re.fullmatch(r"0x[0-9a-f]+", host, re.IGNORECASE):
        hexadecimal = _HEX_NUMBER.match(host)
        assert hexadecimal is not None
        variants.append(proto + _ulong_to_ip(int(hexadecimal.group(1), 16)) + rest)
    elif re.fullmatch(r"[0-9]+", host):
        variants.append(proto + _ulong_to_ip(int(host)) + rest)
    elif proto == "http://" and auth == "" and ascii_name != "localhost" and port == "80":
        single = _SINGLE_LABEL.match(ascii_name)
        if single is not None and not (registry is not None and registry.is_domain_valid(ascii_name)):
            variants.append(proto + "www." + single.group(1) + ".com" + rest)
    return variants


def idn_to_ascii(host: str) -> str:
    """SpamAssassin's idn_to_ascii as Debian installs it, without Net::LibIDN2 (which
    the package neither depends on nor recommends): ASCII letters lower-cased, nothing
    else changed."""
    return host.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _redirect_target(uri: str, rest: str, redirectors: Redirectors, pending: list[str]) -> None:
    """A redirector_pattern's capture with a dot in it, else an http link inside the
    path: a link of its own, canonicalised in turn."""
    lowered = uri.lower()
    for redirector in redirectors.patterns if redirectors.may_match(lowered) else ():
        if not redirector.may_match(uri, lowered):
            continue
        try:
            match = redirector.pattern.search(uri, timeout=REDIRECTOR_BUDGET)
        except TimeoutError:
            continue
        if match is not None:
            target = match.group(1) if match.groups() else None
            if target is None or "." not in target:
                continue
            pending.append(target)
            return
    embedded = _EMBEDDED_HTTP.search(rest)
    if embedded is not None and "." in embedded.group(1):
        pending.append(embedded.group(1))


def _decimal_octet(octet: str) -> str:
    """One part of a dotted address (its dot kept) in decimal, from hex or octal."""
    octet = _HEX_OCTET.sub(lambda m: str(int(m.group(1), 16)), octet, count=1)
    octet = _OCTAL_OCTET.sub(lambda m: str(int(m.group(1), 8)), octet, count=1)
    return octet.lstrip("0")


def _ulong_to_ip(number: int) -> str:
    """Util.pm's decode_ulong_to_ip: the number's hex digits, read as bytes, the first four."""
    digits = f"{min(number, 2**64 - 1):08x}"
    if len(digits) % 2:
        digits += "0"
    return ".".join(str(byte) for byte in bytes.fromhex(digits)[:4])


# what SpamAssassin's uri_to_domain strips from a link to leave its host
_HOST_SCHEME = LazyPattern(r"^[a-z]+:/{0,2}")
_HOST_USER = LazyPattern(r"^[^/]*@")
_HOST_PATH_START = LazyPattern(r"[/?#]")
_HOST_PORT = LazyPattern(r":\d*$")
_HOST_ENCODED_PRINTABLE = LazyPattern(r"%(?:2[1-9a-f]|[3-6][0-9a-f]|7[0-9a-e])")
_HOST_LABEL = LazyPattern(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")


def uri_host(uri: str, registry: Registry | None, mail: bool = False) -> str | None:
    """A link's host as SpamAssassin's uri_to_domain gives it: lower-case, without
    scheme, user, port or path; an IPv4 address, or a valid name under a top-level
    domain the rule files list (util_rb_tld). None for any other link: javascript:,
    cid:, file: and (unless `mail`) mailto: links, encoded characters, unknown TLDs
    (even a final dot). With `mail`, a mailto: link's host is its domain (none with two
    @s), as uri_to_domain gives it for the test of a link found in text."""
    uri = uri.lower()
    if uri.startswith(("javascript:", "cid:", "file:")):
        return None
    if uri.startswith("mailto:"):
        address = uri[7:].split("?", 1)[0]
        if not mail or address.count("@") != 1:
            return None
        uri = address.rpartition("@")[2]
    else:
        uri = _HOST_PORT.sub("", _HOST_USER.sub("", _HOST_PATH_START.split(_HOST_SCHEME.sub("", uri, count=1),
                                                                            maxsplit=1)[0]))
    if _HOST_ENCODED_PRINTABLE.search(uri):
        return None
    host = idn_to_ascii(uri)
    if is_ip_address(host) and "." in host:
        return host
    if registry is None or not is_fqdn_valid(host) or not registry.is_domain_valid(host):
        return None
    return host


def is_fqdn_valid(host: str) -> bool:
    """SpamAssassin's is_fqdn_valid: two labels or more, 253 characters at most, each
    label 1-63 letters, digits, "-" (not at an end) or "_" (not in the last two)."""
    host = host.rstrip(".")
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2:
        return False
    return all(len(label) <= 63 and _HOST_LABEL.fullmatch(label) is not None for label in labels) \
        and "_" not in labels[-1] + labels[-2]
