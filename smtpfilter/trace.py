"""The Received header the filter puts on each message it takes (RFC 5321 4.4: a server
that takes a message MUST add one).

In front of the MTA the filter is the server the sending host talks to; the MTA behind
it logs every message as from 127.0.0.1. Without this header the sending host's address
and HELO name were in no header of the delivered message: not for an abuse report, not
for the rules that read the relay path (the first untrusted relay was whatever the
sender had written, forged or not), and not for Bayes, which learns the relays' hosts
and networks from users' folders later. The header is added before the DATA checks, so
that what is scored is what is later learned.

The name in it is the client's reverse name only where that name leads back to the
client's address (forward-confirmed, as Postfix writes it), else "unknown": a name
anyone may set for their own address proves nothing. Loopback and private addresses are
not looked up (no public answer exists; the MTA in front talks from 127.0.0.1).
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import secrets
from typing import TYPE_CHECKING

from smtpfilter.dns import DnsClient, Outcome, reverse_name
from spamkit.config.endpoints import is_host_name
from spamkit.errors import ConfigError

if TYPE_CHECKING:
    from spamkit.config import Config

_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")
_ADDRESS_CHARACTERS = re.compile(r"[^\x21-\x7e]|[<>()]")


def trace_resolver(config: Config) -> DnsClient | None:
    """The resolver our Received header's reverse lookups use: the DNS filters' own. A
    machine whose system names no resolver, with DnsServers unset, writes "unknown"
    rather than refusing to start (a bad DnsServers is still an error)."""
    from smtpfilter.plugins import configured_dns

    try:
        return configured_dns(config)
    except ConfigError:
        if config["DnsServers"]:
            raise
        return None


def new_id() -> str:
    """A message's id in our Received header and our log line: 12 hex digits."""
    return secrets.token_hex(6).upper()


class Trace:
    def __init__(self, dns: DnsClient | None, hostname: str) -> None:
        self.dns = dns
        self.hostname = _clean(hostname) or "localhost"

    def received(self, peer: str, helo: str, *, esmtp: bool, tls: bool, rcpt_tos: list[str],
                 message_id: str, now: float | None = None, authenticated: bool = False,
                 name: str | None = None, software: str = "spamkit") -> bytes:
        """The header, folded as Postfix folds it, ending in CRLF. Nothing the client sent
        (its HELO name, the recipient) can end the header early or start another. The
        protocol says TLS and AUTH as RFC 3848 does (ESMTPS, ESMTPA, ESMTPSA); who logged
        in is not written, as Postfix by default, only logged. `name`: the client's
        confirmed name where the MTA has already found it (the milter's), else looked up."""
        protocol = ("ESMTP" + "S" * tls + "A" * authenticated) if esmtp else "SMTP"
        address = f"IPv6:{peer}" if ":" in peer else peer
        known = _clean(name) if name is not None else self.confirmed_name(peer)
        first = f"Received: from {_clean(helo) or 'unknown'} ({known or 'unknown'} [{address}])"
        by = f"by {self.hostname} ({software}) with {protocol} id {_clean(message_id) or 'unknown'}"
        lines = [first, by]
        if len(rcpt_tos) == 1 and not _ADDRESS_CHARACTERS.search(rcpt_tos[0]) and len(rcpt_tos[0]) <= 254:
            lines.append(f"for <{rcpt_tos[0]}>; {email.utils.formatdate(now, localtime=True)}")
        else:
            lines[-1] += f"; {email.utils.formatdate(now, localtime=True)}"
        return ("\r\n\t".join(lines) + "\r\n").encode("ascii")

    def confirmed_name(self, peer: str) -> str:
        """The client's forward-confirmed reverse name, "localhost" for loopback, else
        "unknown" (no name, a name that does not lead back, a lookup that failed, or a
        private address)."""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return "unknown"
        if address.is_loopback:
            return "localhost"
        if self.dns is None or not address.is_global:  # (private, link-local, documentation...)
            return "unknown"
        pointer = reverse_name(peer)
        answer = self.dns.lookup(pointer, "PTR") if pointer else None
        if answer is None or answer.outcome is not Outcome.FOUND:
            return "unknown"
        for record in answer.records[:3]:  # (Postfix looks at the first few, too)
            name = record.rstrip(".")
            if not is_host_name(name):
                continue
            forward = self.dns.lookup(name, "AAAA" if address.version == 6 else "A")
            if forward.outcome is Outcome.FOUND and any(
                    _same_address(found, address) for found in forward.records):
                return name.lower()
        return "unknown"


def _same_address(text: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False


def _clean(name: str) -> str:
    """A HELO name as a header may carry it: host-name characters only, the rest as '?',
    at most 255 of them (the client may have sent anything)."""
    return _NAME_CHARACTERS.sub("?", name[:255])
