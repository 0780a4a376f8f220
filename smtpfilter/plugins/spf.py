"""spf: check the client against the sender domain's SPF record (RFC 7208), and say so.

The result goes into a Received-SPF header at the top of the message (RFC 7208 9.1), one
for the MAIL FROM identity and one for the HELO name. The rules read it
(`eval:check_for_spf_fail()` and the rest of SpamAssassin's SPF evals), so SpamAssassin's
25_spf.cf and the SME guide's `score SPF_FAIL 14` work as they do there: the score
decides. `SpfRejectFail` refuses a "fail" outright instead (550 5.7.23).
`SpfRejectPolicy` is SME's SPFRejectPolicy: it refuses by the SPF result, but only mail
whose author domain (From:) publishes no DMARC policy; with one, even p=none, the dmarc
filter and the score decide, as the domain's owner asked.

pyspf does the evaluation; its DNS lookups go through the filter's resolver (DnsServers,
DnsTimeout). A lookup that fails gives "temperror", which refuses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dns.exception
import dns.resolver
import spf as pyspf

from smtpfilter.dns import DnsClient
from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject, tempfail, time_left
from smtpfilter.plugins.authres import clean, without_ours
from smtpfilter.plugins.dmarc import author_domain, find_policy
from smtpfilter.networks import LocalClients
from spamkit.config.endpoints import is_ip_address

log = logging.getLogger("spamkit.smtpfilter")

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")
# SpfRejectPolicy: the lowest level that refuses each result (each level adds to the one
# before, as SME's SPFRejectPolicy does)
REFUSED_FROM_LEVEL = {"fail": 1, "softfail": 2, "neutral": 3, "none": 4, "permerror": 4,
                      "temperror": 4}


class Spf(Filter):
    name = "spf"
    blocking = True

    def __init__(self, local: LocalClients, dns_client: DnsClient, receiver: str,
                 reject_fail: bool = False, reject_policy: int = 0) -> None:
        self.local = local
        self.receiver = clean(receiver, 100)
        self.reject_fail = reject_fail
        self.reject_policy = reject_policy
        self.dns = dns_client
        # pyspf looks names up through one module-level function; the filter process has
        # one resolver setting (DnsServers), so pointing that function at it is enough.
        pyspf.DNSLookup = _lookup_through(dns_client)
        self.timeout = dns_client.timeout

    def data(self, tx: Transaction) -> Decision:
        if self.local.holds(tx):
            return CONTINUE  # the MTA in front, or our own users: nothing to check
        helo = tx.helo.strip().rstrip(".")
        # the HELO identity is checked when it is a domain name (not an address literal)
        helo_is_name = "." in helo and not helo.startswith("[") and not is_ip_address(helo)
        helo_result = self._check(tx.peer, f"postmaster@{helo}", helo, tx.deadline) if helo_is_name else None
        sender = tx.mail_from.strip("<>")
        if sender:
            mail_result = self._check(tx.peer, sender, helo, tx.deadline)
        else:  # a bounce: RFC 7208 2.4 checks postmaster@ the HELO name instead
            mail_result = helo_result or ("none", "no sender and no HELO domain to check")
        headers = self._header(mail_result, "mailfrom", tx, sender or f"postmaster@{helo}")
        if helo_result is not None:
            headers += self._header(helo_result, "helo", tx, f"postmaster@{helo}")
        # results that claim to be this server's, arriving with the message, go (RFC 8601 5)
        tx.data = headers + without_ours(tx.data, self.receiver)
        tx.notes["spf"] = mail_result[0]
        tx.notes["spf_domain"] = (sender or f"postmaster@{helo}").rpartition("@")[2].lower()  # for dmarc
        if self.reject_fail and mail_result[0] == "fail":
            return reject(self.name, "550 5.7.23 SPF validation failed: "
                                     f"{clean(mail_result[1], 200)}")
        return self._by_policy(mail_result[0], tx)

    def _by_policy(self, result: str, tx: Transaction) -> Decision:
        """SpfRejectPolicy: refuse this result if its level is reached and the author domain
        publishes no DMARC policy (a DMARC lookup that fails refuses nothing)."""
        level = REFUSED_FROM_LEVEL.get(result)
        if level is None or level > self.reject_policy:
            return CONTINUE
        author = author_domain(tx.data)
        if author is not None:
            policy = find_policy(self.dns, author, tx.deadline)
            if policy is not None:  # a policy (DMARC decides), or DNS failed: cannot tell
                return CONTINUE
        domain = clean(str(tx.notes["spf_domain"]), 100)
        if result == "temperror":
            return tempfail(self.name, f"451 4.7.24 SPF check of {domain} failed for now, "
                                       "please try again later")
        return reject(self.name, f"550 5.7.23 SPF {result} for {domain}, and its author domain "
                                 "publishes no DMARC policy")

    def _check(self, client: str, sender: str, helo: str, deadline: float | None = None) -> tuple[str, str]:
        """(result, explanation); never raises: a fault in the check is a temperror, as is
        one that `deadline` (the DATA checks') cuts short."""
        seconds = time_left(self.timeout, deadline)
        if seconds <= 0:
            return "temperror", "not checked: the DATA checks' deadline had passed"
        try:
            result, _code, explanation = pyspf.query(
                i=client, s=sender, h=helo, timeout=seconds, querytime=seconds).check()
        except Exception as error:  # pyspf on input it did not expect: pass the mail on
            log.exception("SPF check of %s from %s failed", sender, client)
            return "temperror", f"check failed: {type(error).__name__}"
        return (result if result in RESULTS else "temperror"), str(explanation)

    def _header(self, outcome: tuple[str, str], identity: str, tx: Transaction,
                sender: str) -> bytes:
        result, explanation = outcome
        line = (f"Received-SPF: {result} ({self.receiver}: {clean(explanation, 200)})\r\n"
                f"\treceiver={self.receiver}; client-ip={clean(tx.peer, 60)}; "
                f"envelope-from=\"{clean(sender, 200)}\"; helo=\"{clean(tx.helo, 100)}\"; "
                f"identity={identity};\r\n")
        return line.encode("utf-8", "replace")


def _lookup_through(dns_client: DnsClient) -> Callable[..., list[tuple[tuple[str, str], Any]]]:
    """pyspf's DNSLookup(name, qtype, strict, timeout) on our resolver (as it is at each
    lookup: the system's may change): a list of ((name, qtype), value); pyspf.TempError
    when DNS fails."""

    def lookup(name: str, qtype: str, strict: bool = True,
               timeout: float = 20) -> list[tuple[tuple[str, str], Any]]:
        try:
            answer = dns_client.resolve(name, qtype, min(timeout, dns_client.timeout))
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, OSError) as error:
            raise pyspf.TempError(f"DNS {error}") from None
        except dns.exception.DNSException:
            return []  # a name DNS cannot carry (a label over 63 bytes): nothing there
        if answer.rrset is None:
            return []
        out: list[tuple[tuple[str, str], Any]] = []
        for record in answer.rrset:
            if qtype in ("A", "AAAA"):
                out.append(((name, qtype), record.address))
            elif qtype == "MX":
                out.append(((name, qtype), (record.preference, record.exchange)))
            elif qtype == "PTR":
                out.append(((name, qtype), record.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                out.append(((name, qtype), record.strings))
        return out

    return lookup
