"""Freemail evals (SpamAssassin's FreeMail plugin): is an address at a free mail provider?

The provider list is the rule files' own `freemail_domains` lines (Debian's
20_freemail_domains.cf lists about 2,000, some with `*` for one label, as in `aol.*`);
`freemail_welcomelist` (or `freemail_whitelist`) entries are never counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

_ADDRESS = re.compile(r"[\w.+'-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")
# SpamAssassin's defaults: a body with more addresses than this is a newsletter or a list
MAX_BODY_ADDRESSES = 5
MAX_BODY_FREEMAILS = 3


class FreemailDomains:
    def __init__(self, domains: Iterable[str], welcome: Iterable[str] = ()) -> None:
        self.exact: set[str] = set()
        patterns = []
        for domain in (d.lower().strip() for d in domains):
            if not domain:
                continue
            if "*" in domain:
                patterns.append(re.escape(domain).replace(r"\*", "[^.]*"))
            else:
                self.exact.add(domain)
        self.wildcard = re.compile("|".join(patterns)) if patterns else None
        self.welcome = {w.lower().strip() for w in welcome if w.strip()}

    def __bool__(self) -> bool:
        return bool(self.exact) or self.wildcard is not None

    def is_freemail(self, address: str) -> bool:
        address = address.lower().strip("<> ")
        domain = address.rpartition("@")[2]
        if not domain or address in self.welcome or domain in self.welcome:
            return False
        return domain in self.exact or bool(self.wildcard and self.wildcard.fullmatch(domain))


def _freemails(context: MessageContext, header: str) -> list[str]:
    domains = context.freemail
    if not domains:
        return []
    text = context.header_text(header) or ""
    return [a.lower() for a in _ADDRESS.findall(text) if domains.is_freemail(a)]


def _body_freemails(context: MessageContext) -> list[str]:
    cached = context.cache.get("body-freemails")
    if cached is None:
        domains = context.freemail
        addresses = {a.lower() for a in _ADDRESS.findall(" ".join(context.message.text)[:250_000])}
        cached = []
        if domains and len(addresses) <= MAX_BODY_ADDRESSES:
            cached = [a for a in addresses if domains.is_freemail(a)]
            if len(cached) > MAX_BODY_FREEMAILS:
                cached = []
        context.cache["body-freemails"] = cached
    return cached  # type: ignore[return-value]


def check_freemail_from(context: MessageContext, pattern: str = "") -> bool:
    """A From address is freemail (and matches `pattern`, when given)."""
    return check_freemail_header(context, "From", pattern)


def check_freemail_header(context: MessageContext, header: str, pattern: str = "") -> bool:
    """An address in the header (EnvelopeFrom included) is freemail (and matches `pattern`)."""
    found = _freemails(context, header)
    if pattern:
        matcher = re.compile(pattern)
        found = [a for a in found if matcher.search(a)]
    return bool(found)


def check_freemail_replyto(context: MessageContext, what: str = "replyto") -> bool:
    """replyto: Reply-To has a freemail address that differs from the freemail in From or
    in the body. reply: From and the body have different freemail addresses."""
    from_addresses = set(_freemails(context, "From"))
    body = set(_body_freemails(context))
    if what == "reply":
        return bool(from_addresses) and bool(body - from_addresses)
    reply_to = set(_freemails(context, "Reply-To"))
    if not reply_to:
        return False
    return bool(from_addresses and reply_to - from_addresses) or bool(body and reply_to - body)


check_freemail_replyto.accepts = lambda args: args in ((), ("replyto",), ("reply",))  # type: ignore[attr-defined]

EVALS: dict[str, Callable[..., bool]] = {
    "check_freemail_from": check_freemail_from,
    "check_freemail_header": check_freemail_header,
    "check_freemail_replyto": check_freemail_replyto,
}
