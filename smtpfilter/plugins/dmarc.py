"""dmarc: the author domain's DMARC policy (RFC 7489), applied to what spf and dkim found.

The From domain passes when SPF passed for an aligned envelope domain or a DKIM
signature of an aligned domain verified. The result goes into Authentication-Results
with the policy the domain asked for (policy.dmarc=reject|quarantine|none); the rules
(DMARC_REJECT, DMARC_QUAR, ...) score it. `DmarcReject` refuses a failure whose domain
asked for reject (550 5.7.1), as the domain's owner wants; it is off by default because
a mailing list that rewrites a message breaks its signature and DMARC with it.

spf and dkim must run before this filter (the configuration is refused otherwise).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses

from smtpfilter.dmarcreports import Observation, ReportStore
from smtpfilter.dns import DnsClient, Outcome
from smtpfilter.domains import ascii_domain, organizational_domain
from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject
from smtpfilter.plugins import authres
from smtpfilter.networks import LocalClients

log = logging.getLogger("spamkit.smtpfilter")


@dataclass(frozen=True)
class Policy:
    domain: str  # where the record was found: the author domain or its organizational domain
    p: str
    sp: str
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: tuple[str, ...] = ()  # mailto: URIs that want aggregate reports


class Dmarc(Filter):
    name = "dmarc"
    blocking = True

    def __init__(self, local: LocalClients, dns_client: DnsClient, authserv_id: str,
                 reject_failures: bool = False, reports: ReportStore | None = None) -> None:
        self.local = local
        self.dns = dns_client
        self.authserv_id = authres.clean(authserv_id, 100)
        self.reject_failures = reject_failures
        self.reports = reports  # DmarcReporting: what to tell domains that ask (rua=)

    def data(self, tx: Transaction) -> Decision:
        if self.local.holds(tx):
            return CONTINUE
        author = author_domain(tx.data)
        result, policy, applied = self.evaluate(author, tx)
        line = f"dmarc={result}"
        if author:
            line += f" header.from={authres.clean(author, 100)}"
        if policy is not None:
            line += f" policy.dmarc={policy.sp if applies_sp(author, policy) else policy.p}"
        tx.notes["dmarc"] = result
        tx.data = authres.header(self.authserv_id, [line]) + tx.data
        refused = self.reject_failures and result == "fail" and applied == "reject"
        if self.reports is not None and policy is not None and policy.rua and author:
            self._record(author, policy, "reject" if refused else "none", tx)
        if refused:
            return reject(self.name, f"550 5.7.1 Rejected by the DMARC policy of "
                                     f"{authres.clean(author or '', 100)}")
        return CONTINUE

    def _record(self, author: str, policy: Policy, disposition: str, tx: Transaction) -> None:
        """One row for the domain's aggregate report; a fault here costs no mail."""
        assert self.reports is not None
        spf_aligned, dkim_aligned = _alignment(author, policy, tx)
        signatures = tx.notes.get("dkim", [])
        try:
            self.reports.record(Observation(
                policy.domain, {"p": policy.p, "sp": policy.sp, "adkim": policy.adkim,
                                "aspf": policy.aspf, "pct": policy.pct}, policy.rua, tx.peer,
                author, disposition, "pass" if dkim_aligned else "fail",
                "pass" if spf_aligned else "fail",
                tuple((domain, selector, result) for result, domain, selector in signatures)
                if isinstance(signatures, list) else (),
                (str(tx.notes.get("spf_domain", "")), str(tx.notes.get("spf", "none")))))
        except Exception:
            log.exception("dmarc: could not record a report row for %s", policy.domain)

    def evaluate(self, author: str | None, tx: Transaction) -> tuple[str, Policy | None, str]:
        """(result, the policy found, the disposition after pct): result is pass, fail,
        none (no policy), temperror or permerror (no single author domain)."""
        if author is None:
            return "permerror", None, "none"
        looked_up = self.policy(author, tx.deadline)
        if looked_up == "temperror":
            return "temperror", None, "none"
        if not isinstance(looked_up, Policy):
            return "none", None, "none"
        policy = looked_up
        spf_aligned, dkim_aligned = _alignment(author, policy, tx)
        if spf_aligned or dkim_aligned:
            return "pass", policy, "none"
        disposition = policy.sp if applies_sp(author, policy) else policy.p
        if policy.pct < 100 and random.randrange(100) >= policy.pct:  # the domain's sampling
            disposition = {"reject": "quarantine", "quarantine": "none"}.get(disposition, "none")
        return "fail", policy, disposition

    def policy(self, author: str, deadline: float | None = None) -> Policy | str | None:
        return find_policy(self.dns, author, deadline)


def find_policy(dns_client: DnsClient, author: str, deadline: float | None = None) -> Policy | str | None:
    """The record at _dmarc.<author>, else at its organizational domain; None when there
    is none, "temperror" when DNS failed (or `deadline` passed)."""
    candidates = [author]
    organizational = organizational_domain(author)
    if organizational != author:
        candidates.append(organizational)
    for domain in candidates:
        answer = dns_client.lookup(f"_dmarc.{domain}", "TXT", deadline)
        if answer.outcome is Outcome.FAILED:
            return "temperror"
        records = [text for text in answer.texts if text.startswith(b"v=DMARC1")]
        if len(records) == 1:
            return parse_record(records[0].decode("ascii", "replace"), domain)
        if len(records) > 1:
            return None  # RFC 7489 6.6.3: more than one record is no policy
    return None


def _alignment(author: str, policy: Policy, tx: Transaction) -> tuple[bool, bool]:
    """(SPF passed for an aligned domain, a DKIM signature of an aligned domain verified)."""
    spf_domain = str(tx.notes.get("spf_domain", ""))
    spf_aligned = tx.notes.get("spf") == "pass" and aligned(spf_domain, author, policy.aspf)
    signatures = tx.notes.get("dkim", [])
    dkim_aligned = isinstance(signatures, list) and any(
        result == "pass" and aligned(domain, author, policy.adkim)
        for result, domain, _selector in signatures)
    return spf_aligned, dkim_aligned


def applies_sp(author: str | None, policy: Policy) -> bool:
    return author is not None and author != policy.domain


def parse_record(text: str, domain: str) -> Policy | None:
    tags = {}
    for part in text.split(";"):
        name, equals, value = part.partition("=")
        if equals:
            tags[name.strip().lower()] = value.strip().lower()
    p = tags.get("p", "")
    if p not in ("none", "quarantine", "reject"):
        return None  # no usable policy (6.6.3 would take p=none when rua= is there; it asks for nothing)
    sp = tags.get("sp", p) if tags.get("sp", p) in ("none", "quarantine", "reject") else p
    try:
        pct = min(100, max(0, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    rua = tuple(uri.strip() for uri in tags.get("rua", "").split(",")
                if uri.strip().startswith("mailto:"))[:5]
    return Policy(domain, p, sp, "s" if tags.get("adkim") == "s" else "r",
                  "s" if tags.get("aspf") == "s" else "r", pct, rua)


def aligned(domain: str, author: str, mode: str) -> bool:
    domain, author = domain.lower().rstrip("."), author.lower().rstrip(".")
    if not domain:
        return False
    if mode == "s":
        return domain == author
    return organizational_domain(domain) == organizational_domain(author)


def author_domain(message: bytes) -> str | None:
    """The From header's domain when the message has exactly one From field whose
    addresses all share one domain; None otherwise (RFC 7489 6.6.1)."""
    # (as UTF-8, RFC 6532: compat32 would hand 8-bit bytes over as U+FFFD)
    head = message.split(b"\r\n\r\n", 1)[0][:100_000].decode("utf-8", "surrogateescape")
    try:
        headers = HeaderParser(policy=compat32).parsestr(head + "\r\n\r\n")
        values = headers.get_all("from") or []
        if len(values) != 1:
            return None
        domains = {ascii_domain(address.rpartition("@")[2])
                   for _name, address in getaddresses([str(values[0])]) if "@" in address}
    except Exception:  # the standard library on a header it cannot take: no author domain
        return None
    if len(domains) != 1:
        return None
    domain = domains.pop()
    return domain if domain and domain.isascii() and " " not in domain else None
