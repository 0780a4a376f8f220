"""SpamAssassin's named lists (WLBLEval): addresses from `enlist_addrlist`, hosts from
`enlist_uri_host`, and the evals that consult them.

Debian's rules keep their phishing lists this way: the banks, PayPal and government
senders whose mail should carry SPF or DKIM (FROM_BANK_NOAUTH, FROM_PAYPAL_SPOOF), and
the new top-level domains spam favours (PDS_OTHER_BAD_TLD, __REPLYTO_ADDRLIST_SUSPNTLD).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from spamkit.config.endpoints import is_ip_address
from spamkit.rules.evals.freemail import all_from_addresses
from spamkit.rules.namedlists import NamedLists
from spamkit.rules.sa_uris import uri_host

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext


def _in_list(lists: NamedLists | None, name: str, address: str) -> bool:
    entries = lists.addresses.get(name) if lists is not None else None
    if not entries:
        return False  # (SpamAssassin warns of a list never enlisted to, and says no)
    address = address.lower()
    return address in entries or any(glob.match(address) for glob in entries.values())


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


def _named(name: str) -> Callable[[MessageContext], bool]:
    def check(context: MessageContext) -> bool:
        return check_uri_host_listed(context, name)
    check.__doc__ = f"A link's host is on the {name} list (blocklist_uri_host, welcomelist_uri_host)."
    return check


check_from_in_list.accepts = check_replyto_in_list.accepts = check_uri_host_listed.accepts = (  # type: ignore[attr-defined]
    lambda args: len(args) == 1)

EVALS: dict[str, Callable[..., bool]] = {
    "check_from_in_list": check_from_in_list,
    "check_replyto_in_list": check_replyto_in_list,
    "check_uri_host_listed": check_uri_host_listed,
    "check_uri_host_in_blocklist": _named("BLOCK"),
    "check_uri_host_in_blacklist": _named("BLOCK"),
    "check_uri_host_in_welcomelist": _named("WELCOME"),
    "check_uri_host_in_whitelist": _named("WELCOME"),
}
