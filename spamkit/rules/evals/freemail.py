"""Freemail evals (SpamAssassin's FreeMail plugin): is an address at a free mail provider,
and do the addresses a message gives to write back to disagree?

The provider list is the rule files' own `freemail_domains` lines (Debian's
20_freemail_domains.cf lists about 2,000; `*` stands for any part of one label and `?`
for one character, as in `hotmail.co.??`). Never counted: `freemail_welcomelist` (or
`freemail_whitelist`) entries, and the role and bounce addresses the plugin passes over
(abuse@, support@, postmaster@, bounce-..., Gmail's forwarding addresses).

As in the plugin, addresses written in the body count only when there are few: a body
with five or more addresses, or three or more freemail ones, is a newsletter or a list
and is not compared. Body addresses are those of mailto: links and those written in the
text that end in a known top-level domain (the rule files' util_rb_tld), not inside a
link and not quoted from a header ("<x@example.com>", "x@example.com Subject:"; one
before "fax:", "tel:", "phone:" or "e-mail:" counts).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import TYPE_CHECKING

from spamkit.lazyregex import LazyPattern

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext
    from spamkit.rules.registry import Registry

# SpamAssassin's defaults (freemail_max_body_emails, freemail_max_body_freemails): the
# body is not compared once this many addresses, or freemail addresses, are found in it
MAX_BODY_ADDRESSES = 5
MAX_BODY_FREEMAILS = 3
_MAX_FOUND = 40  # body addresses looked at, at most (the plugin's sanity bound)
_MAX_LINKED = 20
# role, bounce and forwarding addresses the plugin never counts as freemail
# (and "x=y=z@", the plugin's ".+=.+=.+" branch: `_equals_before_at`)
_DEFAULT_WELCOME = LazyPattern(
    r"^(?:abuse|support|sales|info|helpdesk|contact|kontakt|(?:post|host|domain)master|undisclosed.*"
    r"|request-[a-f0-9]{16}|bounced?-"
    r"|[a-f0-9]{8}(?:\.[a-f0-9]{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}))@",
    re.IGNORECASE)
# envelope senders of bulk mail, whose Reply-To is not compared (and "x=y@", the
# plugin's ".+=.+" branch: `_equals_before_at`)
_BULK_ENVELOPE = LazyPattern(
    r"(?:^(?:post|host|domain)master|^double-bounce|^(?:sentto|owner|return|(?:gr)?bounced?)-.+"
    r"|-(?:request|bounces?|admin|owner)|\b(?:do[._-t]?)?no[._-t]?repl(?:y|ies))@",
    re.IGNORECASE)
_LINK_WITH_ADDRESS = LazyPattern(r"<?https?://\S{0,255}(?:@|%40)\S{0,255}", re.IGNORECASE)
# a link tag's mailto: address, as `<a\s[^>]*?\bhref\s*=\s*["']?\s*mailto:([^"'>\s?]+)`
# finds them, in two parts (`mailto_links`)
_LINK_TAG_START = LazyPattern(r"<a\s", re.IGNORECASE)
_MAILTO_HREF = LazyPattern(r"""\bhref\s*=\s*["']?\s*mailto:([^"'>\s?]+)""", re.IGNORECASE)


class FreemailDomains:
    def __init__(self, domains: Iterable[str], welcome: Iterable[str] = ()) -> None:
        self.exact: set[str] = set()
        patterns = []
        for domain in (d.lower().strip() for d in domains):
            if not domain or re.search(r"[^a-z0-9.*?-]", domain):
                continue  # (SpamAssassin warns and skips such an entry)
            if "*" in domain or "?" in domain:
                patterns.append(re.escape(domain).replace(r"\*", "[^.]*").replace(r"\?", "."))
            else:
                self.exact.add(domain)
        self.wildcard = re.compile("|".join(patterns)) if patterns else None
        self.welcome = {w.lower() for w in (w.strip() for w in welcome) if re.search(r"\w[.@]\w", w)}

    def __bool__(self) -> bool:
        return bool(self.exact) or self.wildcard is not None

    def is_freemail(self, address: str) -> bool:
        address = address.lower().strip("<> ")
        domain = address.rpartition("@")[2]
        if not domain or address in self.welcome or domain in self.welcome:
            return False
        if role_address(address):
            return False
        return domain in self.exact or bool(self.wildcard and self.wildcard.fullmatch(domain))


class AddressPattern:
    """The plugin's address regex: a local part, one to four labels, and a top-level
    domain from the registry's list (no list, no address)."""

    def __init__(self, registry: Registry | None) -> None:
        self.tlds = sorted(registry.tlds, key=len, reverse=True) if registry is not None else []

    @cached_property
    def pattern(self) -> re.Pattern[str] | None:
        if not self.tlds:
            return None
        atom = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
        tld = r"(?<![a-z0-9-])(?:" + "|".join(map(re.escape, self.tlds)) + r")(?![a-z0-9-]|\.[a-z0-9])"
        return re.compile(rf"(?=.{{0,64}}@)(?<!{atom})({atom}+(?:\.{atom}+)*@"
                          rf"(?:[a-z0-9](?:[a-z0-9-]{{0,59}}[a-z0-9])?\.){{1,4}}{tld})", re.IGNORECASE)

    @cached_property
    def quoted(self) -> re.Pattern[str] | None:
        """An address as a header quoted in the body writes it, "<x@y>" or "x@y Subject:"
        (one before "fax:", "tel:", "phone:" or "e-mail:" is not): not one to write to."""
        if self.pattern is None:
            return None
        return re.compile(rf"<?(?<!mailto:){self.pattern.pattern}(?:>|\s{{1,10}}(?!(?:fa(?:x|csi)|tel|phone"
                          r"|e?-?mail))[a-z]{2,11}:)", re.IGNORECASE)


def role_address(address: str) -> bool:
    """A role, bounce or forwarding address, which the plugin never counts as freemail."""
    return bool(_DEFAULT_WELCOME.search(address)) or _equals_before_at(address, 2, from_start=True)


def bulk_envelope(envelope: str) -> bool:
    """A bulk mail envelope sender, whose Reply-To the plugin does not compare."""
    return bool(_BULK_ENVELOPE.search(envelope)) or _equals_before_at(envelope, 1, from_start=False)


def mailto_links(html: str) -> list[re.Match[str]]:
    """The matches `<a\\s[^>]*?\\bhref\\s*=\\s*["']?\\s*mailto:([^"'>\\s?]+)` finds, one
    after the other, in linear time. As one regex, each "<a " searched to the next ">":
    60 kB of "<a " with no ">" took 19 s. Here the tag starts and the mailto: hrefs are
    found once each, and each start takes the first href after it, before its ">"
    (no part of a match can hold a ">")."""
    starts = [match.start() for match in _LINK_TAG_START.finditer(html)]
    if not starts:  # (no link tag: the hrefs need not be looked for)
        return []
    hrefs = list(_MAILTO_HREF.finditer(html))
    href_starts = [match.start() for match in hrefs]
    found: list[re.Match[str]] = []
    position, index, tag_end = 0, 0, -1
    while True:
        index = bisect.bisect_left(starts, position, index)
        if index == len(starts):
            return found
        start = starts[index]
        if tag_end < start + 3:
            tag_end = html.find(">", start + 3)
            if tag_end < 0:
                tag_end = len(html)
        after = bisect.bisect_left(href_starts, start + 3)
        if after < len(hrefs) and href_starts[after] < tag_end:
            found.append(hrefs[after])
            position = hrefs[after].end()
        else:
            position = start + 1


def _equals_before_at(text: str, equals: int, from_start: bool) -> bool:
    """Whether `text` holds ".+=.+@" (one `equals`) or ".+=.+=.+@" (two), as a regex
    search finds them (from the start of `text` only, as "^", when `from_start`), in
    linear time. In a regex the ".+" backtrack: a 6 kB Return-Path of "=" with no "@"
    after them took a second of one rule's time, each time FREEMAIL_REPLYTO looked at
    it. "." stops at a line break, so each line is on its own; on a line the earliest
    "=" that leave a character before each and the last "@" are the best choice."""
    for line in text.split("\n")[:1] if from_start else text.split("\n"):
        at = line.rfind("@")
        if at < 3:  # (none, or no room for "x=y" before it; find's end must not go negative)
            continue
        position = 0
        for _ in range(equals):
            position = line.find("=", position + 1, at - 1)  # a character before it, and after it
            if position < 0:
                break
            position += 1
        else:
            return True
    return False


def _freemail_domains(context: MessageContext) -> FreemailDomains | None:
    return context.freemail if context.freemail else None


def all_from_addresses(context: MessageContext) -> list[str]:
    """SpamAssassin's all_from_addrs: the first Resent-From's addresses; else those of
    From, Envelope-Sender, Resent-Sender, X-Envelope-From and the envelope sender."""
    resent = context.header_values("resent-from")
    if resent:
        found = context.addresses_in(resent[0])
    else:
        found = [address for name in ("From", "Envelope-Sender", "Resent-Sender", "X-Envelope-From",
                                      "EnvelopeFrom") for address in context.addresses(name)]
    return list(dict.fromkeys(re.sub(r"\.{2,}", ".", address) for address in found if address))


def check_freemail_from(context: MessageContext, pattern: str = "") -> bool:
    """A From-like address (all_from_addresses) is freemail, and matches `pattern` when
    one is given (FREEMAIL_FROM)."""
    domains = _freemail_domains(context)
    if domains is None:
        return False
    matcher = re.compile(pattern) if pattern else None
    return any(domains.is_freemail(address) and (matcher is None or matcher.search(address))
               for address in all_from_addresses(context))


def check_freemail_header(context: MessageContext, header: str, pattern: str = "") -> bool:
    """An address in the header (EnvelopeFrom included; "Reply-To:addr" is Reply-To) is
    freemail, and matches `pattern` when one is given (FREEMAIL_REPLYTO_END_DIGIT)."""
    domains = _freemail_domains(context)
    if domains is None:
        return False
    matcher = re.compile(pattern) if pattern else None
    name = header.split(":", 1)[0]
    return any(domains.is_freemail(address) and (matcher is None or matcher.search(address))
               for address in context.addresses(name))


def _body_freemails(context: MessageContext) -> list[str] | None:
    """The freemail addresses of the body, or None when the body holds too many
    addresses (or freemail ones) to be compared."""
    if "body-freemails" in context.cache:
        return context.cache["body-freemails"]  # type: ignore[return-value]
    domains = _freemail_domains(context)
    addresses = context.address_pattern
    pattern = addresses.pattern if addresses is not None else None
    found: list[str] = []
    for source in context.message.html_sources:
        for match in mailto_links(source):
            if pattern is not None and (address := pattern.match(match.group(1))) and len(found) < _MAX_LINKED:
                found.append(address.group(1).lower())
    if addresses is not None and pattern is not None and (quoted := addresses.quoted) is not None:
        for text in context.texts("body"):
            text = quoted.sub(" ", _LINK_WITH_ADDRESS.sub(" ", text))
            found.extend(match.group(1).lower() for match in pattern.finditer(text))
            if len(dict.fromkeys(found)) >= _MAX_FOUND:
                break
    unique = list(dict.fromkeys(found))[:_MAX_FOUND]
    freemails: list[str] | None = None  # (too many addresses: not compared)
    if len(unique) < MAX_BODY_ADDRESSES and domains is not None:
        freemails = [address for address in unique if domains.is_freemail(address)]
        if len(freemails) >= MAX_BODY_FREEMAILS:
            freemails = None
    context.cache["body-freemails"] = freemails
    return freemails


def check_freemail_replyto(context: MessageContext, what: str = "replyto") -> bool:
    """Different freemail addresses to write back to: From and Reply-To both freemail
    and apart, or (replyto) a freemail Reply-To, or (reply) a freemail From with no
    other Reply-To, and a freemail address in the body that differs from it
    (FREEMAIL_REPLYTO, FREEMAIL_REPLY). Bulk envelope senders are passed over."""
    domains = _freemail_domains(context)
    if domains is None:
        return False
    envelope = context.header_text("EnvelopeFrom", "addr") or ""
    if envelope and bulk_envelope(envelope):
        return False
    from_addresses = context.addresses("From")
    reply_to = context.addresses("Reply-To")
    from_free = any(domains.is_freemail(address) for address in from_addresses)
    reply_free = any(domains.is_freemail(address) for address in reply_to)
    if from_free and reply_free and not set(from_addresses) & set(reply_to):
        return True
    if what == "replyto" and not reply_free:
        return False
    if what == "reply" and ((reply_to and not reply_free) or not from_free):
        return False
    body = _body_freemails(context)
    if not body:
        return False
    answer_to = reply_to if what == "replyto" or reply_free else from_addresses
    return any(found != address for found in body for address in answer_to)


check_freemail_replyto.accepts = lambda args: args in ((), ("replyto",), ("reply",))  # type: ignore[attr-defined]

EVALS: dict[str, Callable[..., bool]] = {
    "check_freemail_from": check_freemail_from,
    "check_freemail_header": check_freemail_header,
    "check_freemail_replyto": check_freemail_replyto,
}
