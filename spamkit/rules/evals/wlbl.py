"""SpamAssassin's address lists (WLBLEval, WelcomeListSubject) and the evals that consult
them: addresses from `enlist_addrlist`, hosts from `enlist_uri_host`, the recipient
lists (welcomelist_to, blocklist_to, more_spam_to, all_spam_to), the welcomelists that a
relay vouches for (welcomelist_from_rcvd and its def_ form), and the Subject lists.

Debian's rules keep their phishing lists this way: the banks, PayPal and government
senders whose mail should carry SPF or DKIM (FROM_BANK_NOAUTH, FROM_PAYPAL_SPOOF), and
the new top-level domains spam favours (PDS_OTHER_BAD_TLD, __REPLYTO_ADDRLIST_SUSPNTLD).
An administrator's local.cf keeps the rest: `all_spam_to abuse@example.com`,
`welcomelist_from_rcvd *@partner.example partner.example`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from spamkit.config.endpoints import is_ip_address
from spamkit.lazyregex import LazyPattern
from spamkit.rules.evals.freemail import all_from_addresses
from spamkit.rules.namedlists import NamedLists, lazy_address_glob
from spamkit.rules.relays import Relay
from spamkit.rules.sa_uris import is_fqdn_valid, uri_host
from spamkit.tokenizer.urls import ascii_host

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext


def _in_list(lists: NamedLists | None, name: str, address: str) -> bool:
    return lists is not None and lists.enlisted(name, address.lower())


def check_from_in_list(context: MessageContext, name: str) -> bool:
    """A From-like address (SpamAssassin's all_from_addrs) is on the named list."""
    return any(_in_list(context.named_lists, name, address) for address in all_from_addresses(context))


def check_replyto_in_list(context: MessageContext, name: str) -> bool:
    """The first Reply-To address is on the named list."""
    address = context.header_text("Reply-To", "addr")
    return bool(address) and _in_list(context.named_lists, name, address or "")


def check_uri_host_listed(context: MessageContext, name: str) -> bool:
    """A link's host (uri_host) is on the named list: the host itself, else its nearest
    parent domain on the list decides ("!sub.example.com" excepts it from example.com);
    an address matches only itself."""
    lists = context.named_lists
    entries = lists.uri_hosts.get(name) if lists is not None else None
    if not entries:
        return False
    for host in _uri_hosts(context):
        for key in [host] if is_ip_address(host) else _domain_keys(host):
            verdict = entries.get(key)
            if verdict is not None:
                if verdict:
                    return True
                break
    return False


def _uri_hosts(context: MessageContext) -> list[str]:
    """The hosts of the message's links (uri_host), once each; worked out once a message."""
    hosts = context.cache.get("uri_hosts")
    if hosts is None:
        found = (uri_host(uri, context.registry) for uri in context.uris)
        hosts = context.cache["uri_hosts"] = [host for host in dict.fromkeys(found) if host is not None]
    return cast("list[str]", hosts)


def _domain_keys(host: str) -> list[str]:
    """sub.example.com, example.com, com: the host, then its parents, the last 11 only."""
    labels = host.split(".")
    keys = [".".join(labels[index:]) for index in range(len(labels))]
    return keys[-11:]


def check_to_in_list(context: MessageContext, name: str) -> bool:
    """A recipient address (all_to_addresses) is on the named list."""
    return any(_in_list(context.named_lists, name, address) for address in all_to_addresses(context))


# the recipients SpamAssassin's all_to_addrs reads after To (and before Cc): the headers
# MTAs and delivery agents write with the envelope's recipient
_TO_HEADERS = ("To", "Apparently-To", "Delivered-To", "Envelope-Recipients", "Apparently-Resent-To",
               "X-Envelope-To", "Envelope-To", "X-Delivered-To", "X-Original-To", "X-Rcpt-To", "X-Real-To", "Cc")
_RECEIVED_FOR = LazyPattern(r" for <?(\S+@(\S+?))>?;")


def all_to_addresses(context: MessageContext) -> list[str]:
    """SpamAssassin's all_to_addrs, in lower case: the first Resent-To's and Resent-Cc's
    addresses; else the "for <address>" of the top three Received lines, then every
    address of To, the envelope headers above and Cc. Then the SMTP envelope's own
    recipients, which SpamAssassin never sees (spamd is given no envelope): an
    `all_spam_to` address that was only in Bcc is a recipient all the same."""
    cached = context.cache.get("all_to_addresses")
    if cached is not None:
        return cast("list[str]", cached)
    resent = [address for name in ("resent-to", "resent-cc") for value in context.header_values(name)[:1]
              for address in context.addresses_in(value)]
    if resent:
        found = resent
    else:
        found = [match.group(1).lower() for value in context.header_values("received")[:3]
                 if (match := _RECEIVED_FOR.search(value)) and is_fqdn_valid(ascii_host(match.group(2)))]
        found += [address for name in _TO_HEADERS for address in context.addresses(name)]
    found += [address for recipient in context.recipients if (address := recipient.strip().strip("<>").lower())]
    addresses = context.cache["all_to_addresses"] = list(dict.fromkeys(found))
    return addresses


def _to_in(setting: str) -> Callable[[MessageContext], bool]:
    def check(context: MessageContext) -> bool:
        lists = context.named_lists
        if lists is None or not lists.by_setting.get(setting):
            return False  # (the built-in rules ask on every message; most sites list no one)
        return any(lists.in_setting(setting, address) for address in all_to_addresses(context))
    check.__doc__ = f"A recipient (all_to_addresses) is on {setting}."
    return check


def _from_relay_state(context: MessageContext, setting: str) -> int:
    """WLBLEval's reading of welcomelist_from_rcvd (or def_): 1 when a From-like address
    matches an entry and the relay that handed the mail over is one the entry names; -1
    when an address matched but no relay did (a forgery, unless welcomelist_allows_relays
    lists the address); else 0.

    The relay is the first untrusted one, or with none, any trusted one. An entry names
    a relay by its reverse DNS (the domain, or a name below it) or by its address in
    brackets: "[192.0.2.7]", "[192.0.2]" (the addresses that start so), "[192.0.2.0/24]",
    "[2001:db8::]/32"."""
    key = f"from-relay {setting}"
    cached = context.cache.get(key)
    if cached is not None:
        return cast(int, cached)
    state = 0
    lists = context.named_lists
    entries = lists.from_relays.get(setting) if lists is not None else None
    relays = (context.relays.untrusted[:1] or context.relays.trusted) if entries else []
    if entries and relays and lists is not None:
        for address in all_from_addresses(context):
            found = _vouched_for(entries, address, relays)
            if found == -1 and lists.in_setting("welcomelist_allows_relays", address):
                found = 0
            if found == 1:
                state = 1
                break
            state = state or found
    context.cache[key] = state
    return state


def _vouched_for(entries: dict[str, list[str]], address: str, relays: list[Relay]) -> int:
    """1: an entry's pattern matches the address and one of its relays is among `relays`;
    -1: only patterns matched; 0: none did."""
    forged = 0
    for pattern, names in entries.items():
        if not lazy_address_glob(pattern).match(address):
            continue
        if any(_relay_is(name, relay) for name in names for relay in relays):
            return 1
        forged = -1
    return forged


_BRACKETED = LazyPattern(r"\[(.*)\](/\d{1,3})?", re.DOTALL)


def _relay_is(name: str, relay: Relay) -> bool:
    """The relay is the one a welcomelist_from_rcvd entry names (see _from_relay_state)."""
    bracketed = _BRACKETED.fullmatch(name)
    if bracketed is None:
        rdns = relay.rdns.lower()
        return bool(rdns) and (rdns == name or rdns.endswith("." + name))
    listed = bracketed.group(1) + (bracketed.group(2) or "")
    ip = relay.ip.removeprefix("IPv6:")
    if not ip:
        return False
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", listed):
        return ip == listed
    if re.fullmatch(r"[\d.]+", listed):  # a classful prefix: "192.0.2" or "192.0.2."
        return ip.startswith(listed.rstrip(".") + ".")
    return _network_contains(listed, ip)


def _network_contains(listed: str, ip: str) -> bool:
    """NetAddr::IP's `contains`, which SpamAssassin asks here: both read as 128-bit
    numbers, IPv4 as IPv4-compatible IPv6 (192.0.2.7 is ::192.0.2.7, 192.0.2.0/24 is
    ::192.0.2.0/120). So an IPv4 relay is within `[::192.0.2.0]/120`, and not within an
    IPv4-mapped `[::ffff:192.0.2.7]`."""
    try:
        address = ipaddress.ip_address(ip)
        network = ipaddress.ip_network(listed, strict=False)
    except ValueError:  # (SpamAssassin logs the bad address and goes on)
        return False
    unmatched_bits = 128 - network.prefixlen - (96 if network.version == 4 else 0)
    return int(address) >> unmatched_bits == int(network.network_address) >> unmatched_bits


def check_from_in_welcomelist(context: MessageContext) -> bool:
    """The sender is on a welcomelist: spamkit's lists (welcomelist_from, global or the
    recipient's), or welcomelist_from_rcvd with the relay it names."""
    return context.listed == "white" or _from_relay_state(context, "welcomelist_from_rcvd") == 1


def check_from_in_default_welcomelist(context: MessageContext) -> bool:
    """def_welcomelist_from_rcvd, as check_from_in_welcomelist reads welcomelist_from_rcvd."""
    return _from_relay_state(context, "def_welcomelist_from_rcvd") == 1


def check_forged_in_welcomelist(context: MessageContext) -> bool:
    """A From-like address is on welcomelist_from_rcvd, but came through another relay
    (and is on no list that would welcome it anyway)."""
    welcome = 1 if context.listed == "white" else _from_relay_state(context, "welcomelist_from_rcvd")
    return welcome < 0 and _from_relay_state(context, "def_welcomelist_from_rcvd") == 0


def check_forged_in_default_welcomelist(context: MessageContext) -> bool:
    """The same for def_welcomelist_from_rcvd, when no list of the administrator's
    welcomes the sender."""
    welcome = 1 if context.listed == "white" else _from_relay_state(context, "welcomelist_from_rcvd")
    return _from_relay_state(context, "def_welcomelist_from_rcvd") < 0 and welcome == 0


def _subject_in(setting: str) -> Callable[[MessageContext], bool]:
    def check(context: MessageContext) -> bool:
        lists = context.named_lists
        if lists is None or not lists.subjects.get(setting):
            return False
        subject = context.header_text("Subject") or ""
        return subject != "" and lists.subject_listed(setting, subject.lower())
    check.__doc__ = f"The Subject holds a text of {setting} (WelcomeListSubject)."
    return check


def _named(name: str) -> Callable[[MessageContext], bool]:
    def check(context: MessageContext) -> bool:
        return check_uri_host_listed(context, name)
    check.__doc__ = f"A link's host is on the {name} list (blocklist_uri_host, welcomelist_uri_host)."
    return check


check_from_in_list.accepts = check_replyto_in_list.accepts = check_uri_host_listed.accepts = (  # type: ignore[attr-defined]
    lambda args: len(args) == 1)
check_to_in_list.accepts = check_from_in_list.accepts  # type: ignore[attr-defined]

EVALS: dict[str, Callable[..., bool]] = {
    "check_from_in_list": check_from_in_list,
    "check_replyto_in_list": check_replyto_in_list,
    "check_to_in_list": check_to_in_list,
    **{f"check_to_in_{name}": _to_in(setting) for name, setting in (
        ("welcomelist", "welcomelist_to"), ("whitelist", "welcomelist_to"), ("blocklist", "blocklist_to"),
        ("blacklist", "blocklist_to"), ("more_spam", "more_spam_to"), ("all_spam", "all_spam_to"))},
    "check_from_in_welcomelist": check_from_in_welcomelist,
    "check_from_in_whitelist": check_from_in_welcomelist,
    "check_from_in_default_welcomelist": check_from_in_default_welcomelist,
    "check_from_in_default_whitelist": check_from_in_default_welcomelist,
    "check_forged_in_welcomelist": check_forged_in_welcomelist,
    "check_forged_in_whitelist": check_forged_in_welcomelist,
    "check_forged_in_default_welcomelist": check_forged_in_default_welcomelist,
    "check_forged_in_default_whitelist": check_forged_in_default_welcomelist,
    **{f"check_subject_in_{name}": _subject_in(setting) for name, setting in (
        ("welcomelist", "welcomelist_subject"), ("whitelist", "welcomelist_subject"),
        ("blocklist", "blocklist_subject"), ("blacklist", "blocklist_subject"))},
    "check_uri_host_listed": check_uri_host_listed,
    "check_uri_host_in_blocklist": _named("BLOCK"),
    "check_uri_host_in_blacklist": _named("BLOCK"),
    "check_uri_host_in_welcomelist": _named("WELCOME"),
    "check_uri_host_in_whitelist": _named("WELCOME"),
}
